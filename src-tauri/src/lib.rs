//! The KeyBridge desktop app's window: a thin Tauri 2 shell over KeyBridge's core.
//!
//! - The **core** (`keybridge-tray`, crate `keybridge-tray`, long-lived: the tray icon,
//!   the device service, the local bridge, prompts, notifications, one instance) never
//!   links WebKit. `keybridge-desktop` started without `--window` replaces itself with it
//!   ([`shell::run`]).
//! - The **window** (`keybridge-desktop --window SOCKET`, started by the core on demand)
//!   holds the webview; its commands go to the core over a private socket
//!   ([`link`]) and the core's events come back the same way. Closing the window ends the
//!   process, and WebKit's processes with it.
//!
//! Every command is listed once ([`keybridge_tray::for_each_command!`]): the list makes
//! the window's Tauri commands ([`commands`]) and the core's dispatch. Events go out
//! under tauri-specta's names, so `ui/src/bindings.ts` types commands, events and the
//! error-code table alike (generated; `cargo test -p keybridge-desktop
//! bindings_are_current` fails when it drifts, `KB_REGEN=1` rewrites it).

#![cfg_attr(test, allow(clippy::panic, clippy::unwrap_used, clippy::expect_used))]

pub mod commands;
pub mod shell;

pub use keybridge_tray::link;
pub use keybridge_tray::{AppControl, Core, PaintReport, Shell, runtime_dir, start_core};

use kb_desktop::DesktopOptions;
use kb_desktop::ble::BleStatus;
use kb_desktop::model::*;
use kb_desktop::phone::*;
use link::{CoreNews, WindowLink, WindowWatch};
use serde::Serialize;
use specta::Type;
use std::path::Path;
use std::sync::Arc;
use tauri::{AppHandle, Emitter, Manager, Runtime};
use tauri_specta::collect_events;

/// One row of the error-code table, as the window's constant `ERROR_CODES`.
#[derive(Serialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct ErrorCodeRow {
    /// Stable number.
    pub code: u32,
    /// Stable name.
    pub name: &'static str,
    /// Chinese message.
    pub zh: &'static str,
    /// English message.
    pub en: &'static str,
}

/// Every error code.
pub fn error_codes() -> Vec<ErrorCodeRow> {
    kb_types::ErrorCode::ALL
        .iter()
        .map(|c| ErrorCodeRow {
            code: c.number(),
            name: c.name(),
            zh: c.message(kb_types::Lang::ZhCn),
            en: c.message(kb_types::Lang::En),
        })
        .collect()
}

/// The commands, events and constants the window sees.
pub fn specta_builder<R: Runtime>() -> tauri_specta::Builder<R> {
    tauri_specta::Builder::<R>::new()
        .commands(commands::collect())
        .events(collect_events![
            PromptRequest,
            PromptClosed,
            MediaChanged,
            LogExportProgress,
            ExpiryNotice,
            UpdateStatus,
            OperationStatus,
            BleStatus,
            kb_desktop::renewal::RenewalEvent,
            PhoneEvent
        ])
        .constant("ERROR_CODES", error_codes())
        .disable_serde_phases()
        // Times in ms and byte counts: i64/u64 that stay below 2^53.
        .dangerously_cast_bigints_to_number()
}

/// The commands on `builder` (the window process); the returned specta builder mounts
/// the events in [`attach_window`].
pub fn with_commands<R: Runtime>(builder: tauri::Builder<R>) -> (tauri::Builder<R>, tauri_specta::Builder<R>) {
    let specta = specta_builder::<R>();
    (builder.invoke_handler(specta.invoke_handler()), specta)
}

/// Connect the window app to the core at `socket` with `token`: the link is managed for
/// the commands, the core's events are emitted to the page, a show request calls `show`,
/// and the end of the link, or the core ending a window it never showed, calls `end`.
pub fn attach_window<R: Runtime>(
    app: &AppHandle<R>,
    specta: &tauri_specta::Builder<R>,
    socket: &Path,
    token: &str,
    show: impl Fn(&AppHandle<R>) + Send + 'static,
    end: impl Fn(&AppHandle<R>) + Send + 'static,
) -> Result<Arc<WindowLink>, AppError> {
    specta.mount_events(app);
    let h = app.clone();
    let link = WindowLink::connect(socket, token, move |news| match news {
        CoreNews::Event { name, payload } => {
            if let Err(e) = h.emit(&name, payload) {
                tracing::warn!("event {name} not delivered: {e}");
            }
        }
        CoreNews::Show => show(&h),
        CoreNews::Close => {
            tracing::info!("the core ends this window: the open it was started for did not come");
            end(&h);
        }
        CoreNews::Lost => {
            tracing::info!("the core is gone: the window closes");
            end(&h);
        }
    })?;
    app.manage(link.clone());
    Ok(link)
}

/// The core and its window in one app (the tests' mock runtime): the core started with
/// its channel in the temporary directory, the app linked to it as the window, and
/// `Arc<Desktop>` managed too. A prompt with no window builds the `main` window in `app`.
pub fn install<R: Runtime>(
    app: &tauri::App<R>,
    specta: &tauri_specta::Builder<R>,
    opts: DesktopOptions,
    paints: PaintReport,
) -> Result<(), AppError> {
    struct InProcess<R: Runtime>(AppHandle<R>);
    impl<R: Runtime> Shell for InProcess<R> {
        fn show_window(&self) {
            shell::show_in_process(&self.0);
        }
    }
    struct NoWatch;
    impl WindowWatch for NoWatch {}
    let handle = app.handle().clone();
    let exit = handle.clone();
    let control = AppControl { exit: Box::new(move |code| exit.exit(code)), paints };
    // The channel's directory in the home (a test's temporary one), else the temporary directory.
    let parent = opts.home.clone().filter(|h| h.is_dir()).unwrap_or_else(std::env::temp_dir);
    let core = start_core(opts, &parent, control, Arc::new(InProcess(handle.clone())), Arc::new(NoWatch))?;
    let token =
        core.channel.new_token().map_err(|e| AppError::new(kb_types::ErrorCode::Io, core.desktop.lang(), e.to_string()))?;
    attach_window(&handle, specta, core.channel.path(), &token, |_| {}, |_| {})?;
    app.manage(core.desktop.clone());
    app.manage(core);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The core (no Tauri) names each event itself: the names are the ones tauri-specta
    /// gives the page, for every event the page hears.
    #[test]
    fn the_core_names_events_as_the_page_hears_them() {
        use keybridge_tray::CoreEvent;
        fn name<E: tauri_specta::Event + CoreEvent>() -> &'static str {
            assert_eq!(<E as CoreEvent>::NAME, <E as tauri_specta::Event>::NAME);
            <E as CoreEvent>::NAME
        }
        let names = [
            name::<PromptRequest>(),
            name::<PromptClosed>(),
            name::<MediaChanged>(),
            name::<LogExportProgress>(),
            name::<ExpiryNotice>(),
            name::<UpdateStatus>(),
            name::<OperationStatus>(),
            name::<BleStatus>(),
            name::<kb_desktop::renewal::RenewalEvent>(),
            name::<PhoneEvent>(),
        ];
        assert_eq!(names, keybridge_tray::core::EVENT_NAMES);
    }

    #[test]
    fn bindings_are_current() {
        // The generated TypeScript (specta's exporter writes a file).
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("bindings.ts");
        super::specta_builder::<tauri::Wry>()
            .export(
                specta_typescript::Typescript::default()
                    .header("// Generated by `KB_REGEN=1 cargo test -p keybridge-desktop bindings_are_current`. Do not edit."),
                &out,
            )
            .unwrap();
        let text = std::fs::read_to_string(&out).unwrap();
        let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../ui/src/bindings.ts");
        if std::env::var_os("KB_REGEN").is_some() {
            std::fs::write(&file, &text).unwrap();
        }
        let current = std::fs::read_to_string(&file).unwrap_or_default();
        assert!(current == text, "ui/src/bindings.ts is stale: KB_REGEN=1 cargo test -p keybridge-desktop bindings_are_current");
        for name in ["listMedia", "changePin", "answerPrompt", "mediaChanged", "promptRequest", "ERROR_CODES", "wrong_pin"] {
            assert!(text.contains(name), "{name} missing from the bindings");
        }
    }
}
