//! The KeyBridge desktop app: a thin Tauri 2 shell over [`kb_desktop::Desktop`], in two
//! processes.
//!
//! - The **core** (`keybridge-desktop`, long-lived: the tray icon, the device service, the
//!   local bridge, prompts, notifications, one instance) never creates a webview, so it
//!   never starts WebKit.
//! - The **window** (`keybridge-desktop --window SOCKET`, started by the core on demand)
//!   holds the webview; its commands go to the core over a private socket
//!   ([`link`]) and the core's events come back the same way. Closing the window ends the
//!   process, and WebKit's processes with it.
//!
//! Every command is listed once ([`commands`]): the list makes the window's Tauri
//! commands and the core's dispatch. Events go out through tauri-specta's names, so
//! `ui/src/bindings.ts` types commands, events and the error-code table alike (generated;
//! `cargo test -p keybridge-desktop bindings_are_current` fails when it drifts,
//! `KB_REGEN=1` rewrites it).

#![cfg_attr(test, allow(clippy::panic, clippy::unwrap_used, clippy::expect_used))]

pub mod commands;
pub mod link;
pub mod shell;

use kb_desktop::ble::BleStatus;
use kb_desktop::model::*;
use kb_desktop::phone::*;
use kb_desktop::prompter::PromptSink;
use kb_desktop::{Desktop, DesktopOptions, EventSink};
use link::{CoreChannel, CoreNews, Dispatch, ToWindow, WindowLink, WindowWatch};
use serde::Serialize;
use specta::Type;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use tauri::{AppHandle, Emitter, Manager, Runtime};
use tauri_specta::{Event, collect_events};

/// What the app says when a window has painted (the measurements read it on stdout).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PaintReport {
    /// Nothing (the app as users run it).
    #[default]
    Off,
    /// Print `painted` on every paint (`--report-paints`).
    Print,
    /// Print `painted` on the first paint and quit (`--exit-after-paint`).
    PrintAndExit,
}

/// What commands need of the core's process itself, without naming its runtime.
pub struct AppControl {
    /// Quit with this exit code.
    pub exit: Box<dyn Fn(i32) + Send + Sync>,
    /// What to say when a window has painted.
    pub paints: PaintReport,
}

impl AppControl {
    /// The window painted its first screen: print `painted` for the measurements
    /// (`tests/desktop/measure.sh`) when asked to, and quit after it with
    /// `--exit-after-paint`. The core prints, so the line comes on the stdout of the
    /// process that was started, whichever process drew the window.
    pub fn painted(&self) -> Result<(), AppError> {
        tracing::info!("window painted");
        if self.paints != PaintReport::Off {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "painted");
            let _ = out.flush();
        }
        if self.paints == PaintReport::PrintAndExit {
            (self.exit)(0);
        }
        Ok(())
    }

    /// Quit KeyBridge (core and window).
    pub fn quit(&self) {
        (self.exit)(0);
    }
}

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

/// What the core needs of the process it runs in: a window on demand, desktop
/// notifications, the tray's device count.
pub trait Shell: Send + Sync {
    /// Bring the window forward, starting it when there is none.
    fn show_window(&self);
    /// Show a desktop notification.
    fn notify(&self, _title: &str, _body: &str) {}
    /// The number of media changed (the tray shows it).
    fn media_count_changed(&self) {}
}

/// The core's events: to the window over the channel when one is connected (a page that
/// opens later reads the state itself), and to the shell.
pub struct CoreEvents {
    channel: OnceLock<Arc<CoreChannel>>,
    shell: Arc<dyn Shell>,
}

impl CoreEvents {
    fn emit<E: Event + Serialize>(&self, e: &E) {
        let Some(ch) = self.channel.get() else { return };
        match serde_json::to_value(e) {
            Ok(payload) => {
                ch.send(&ToWindow::Event { name: E::NAME.to_owned(), payload });
            }
            Err(err) => tracing::warn!("event {} not encoded: {err}", E::NAME),
        }
    }
}

impl PromptSink for CoreEvents {
    fn open(&self, request: &PromptRequest) {
        // A key operation from the bridge may come while KeyBridge is in the tray with no
        // window: this starts it, and the new page lists the waiting prompt itself
        // (`pending_prompts`), so the event below may reach no page without loss.
        self.shell.show_window();
        self.emit(request);
    }
    fn close(&self, id: u32) {
        self.emit(&PromptClosed { id });
    }
    fn notify(&self, message: &str) {
        self.shell.notify("KeyBridge", message);
    }
}

impl EventSink for CoreEvents {
    fn media_changed(&self, event: &MediaChanged) {
        self.emit(event);
        self.shell.media_count_changed();
    }
    fn expiry_notice(&self, notice: &ExpiryNotice) {
        self.emit(notice);
        let names: Vec<String> = notice
            .certificates
            .iter()
            .map(|c| match c.status {
                CertStatus::Expired => format!("{}（已过期）", c.subject_cn),
                _ => format!("{}（{} 天后过期）", c.subject_cn, c.days_left),
            })
            .collect();
        self.shell.notify("证书即将过期 · Certificate expiring", &names.join("\n"));
    }
    fn log_export_progress(&self, progress: &LogExportProgress) {
        self.emit(progress);
    }
    fn operation_status(&self, status: &OperationStatus) {
        self.emit(status);
    }
    fn ble_status(&self, status: &BleStatus) {
        self.emit(status);
    }
    fn renewal_event(&self, event: &kb_desktop::renewal::RenewalEvent) {
        self.emit(event);
        if matches!(event.kind, kb_desktop::renewal::RenewalEventKind::Approved) {
            self.shell.notify(
                "证书续期已审核通过 · Renewal approved",
                &format!("{}：请在“证书续期”中安装证书 · install it under Renewal", event.subjects.join("、")),
            );
        }
    }
    fn phone_event(&self, event: &PhoneEvent) {
        self.emit(event);
    }
    fn update_available(&self, status: &UpdateStatus) {
        self.emit(status);
        self.shell.notify("KeyBridge 有新版本 · Update available", &format!("{} → {}", status.current, status.latest));
    }
}

/// The running core: the desktop service and the channel its window connects to.
pub struct Core {
    /// The device service, bridge, prompts, settings.
    pub desktop: Arc<Desktop>,
    /// Where the window connects.
    pub channel: Arc<CoreChannel>,
}

/// Start the core: [`Desktop`] opened with events to the window channel and `shell`, the
/// channel listening in a private directory under `runtime_dir`, commands run with
/// `control`, the window's life reported to `watch`.
pub fn start_core(
    opts: DesktopOptions,
    runtime_dir: &Path,
    control: AppControl,
    shell: Arc<dyn Shell>,
    watch: Arc<dyn WindowWatch>,
) -> Result<Core, AppError> {
    let events = Arc::new(CoreEvents { channel: OnceLock::new(), shell });
    let desktop = Desktop::open(opts, events.clone(), events.clone())?;
    for p in desktop.startup_problems() {
        tracing::warn!("start-up problem: {p}");
    }
    // The channel's threads hold the core weakly: dropping the `Core` ends it.
    let weak = Arc::downgrade(&desktop);
    let lang_of = weak.clone();
    let dispatch: Arc<Dispatch> = Arc::new(move |cmd: &str, args| match weak.upgrade() {
        Some(d) => commands::dispatch(&d, &control, cmd, args),
        None => Err(AppError::new(kb_types::ErrorCode::WindowLinkLost, kb_types::Lang::default(), "the core has stopped")),
    });
    let lang = move || lang_of.upgrade().map(|d| d.lang()).unwrap_or_default();
    let channel = CoreChannel::listen(runtime_dir, dispatch, watch, lang)
        .map_err(|e| AppError::new(kb_types::ErrorCode::Io, desktop.lang(), format!("window channel: {e}")))?;
    let _ = events.channel.set(channel.clone());
    Ok(Core { desktop, channel })
}

/// Where the core makes its private channel directory: the user's runtime directory
/// (`$XDG_RUNTIME_DIR`, only the user's), else the temporary directory.
pub fn runtime_dir() -> std::path::PathBuf {
    std::env::var_os("XDG_RUNTIME_DIR").map(std::path::PathBuf::from).filter(|p| p.is_dir()).unwrap_or_else(std::env::temp_dir)
}

/// The commands on `builder` (the window process); the returned specta builder mounts
/// the events in [`attach_window`].
pub fn with_commands<R: Runtime>(builder: tauri::Builder<R>) -> (tauri::Builder<R>, tauri_specta::Builder<R>) {
    let specta = specta_builder::<R>();
    (builder.invoke_handler(specta.invoke_handler()), specta)
}

/// Connect the window app to the core at `socket` with `token`: the link is managed for
/// the commands, the core's events are emitted to the page, a show request calls `show`,
/// and the end of the link calls `lost`.
pub fn attach_window<R: Runtime>(
    app: &AppHandle<R>,
    specta: &tauri_specta::Builder<R>,
    socket: &Path,
    token: &str,
    show: impl Fn(&AppHandle<R>) + Send + 'static,
    lost: impl Fn(&AppHandle<R>) + Send + 'static,
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
        CoreNews::Lost => lost(&h),
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
