//! The core: [`kb_desktop::Desktop`] with its events going to the window over the
//! channel and to the process's shell (window, notifications, tray).

use crate::link::{CoreChannel, Dispatch, ToWindow, WindowWatch};
use kb_desktop::ble::BleStatus;
use kb_desktop::model::*;
use kb_desktop::phone::*;
use kb_desktop::prompter::PromptSink;
use kb_desktop::renewal::RenewalEvent;
use kb_desktop::{Desktop, DesktopOptions, EventSink};
use serde::Serialize;
use std::path::Path;
use std::sync::{Arc, OnceLock};

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

/// What commands need of the core's process itself, without naming its toolkit.
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

/// An event the core sends the window's page, under the name the page listens to (the
/// one tauri-specta gives the type; src-tauri's tests check they agree).
pub trait CoreEvent: Serialize {
    /// The event's name, e.g. `prompt-request`.
    const NAME: &'static str;
}

macro_rules! event_names {
    ($($t:ty => $name:literal),* $(,)?) => {
        $(impl CoreEvent for $t { const NAME: &'static str = $name; })*
        /// Every event name, as [`CoreEvent::NAME`] gives it.
        pub const EVENT_NAMES: &[&str] = &[$($name),*];
    };
}

event_names! {
    PromptRequest => "prompt-request",
    PromptClosed => "prompt-closed",
    MediaChanged => "media-changed",
    LogExportProgress => "log-export-progress",
    ExpiryNotice => "expiry-notice",
    UpdateStatus => "update-status",
    OperationStatus => "operation-status",
    BleStatus => "ble-status",
    RenewalEvent => "renewal-event",
    PhoneEvent => "phone-event",
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
struct CoreEvents {
    channel: OnceLock<Arc<CoreChannel>>,
    shell: Arc<dyn Shell>,
}

impl CoreEvents {
    fn emit<E: CoreEvent>(&self, e: &E) {
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
    fn renewal_event(&self, event: &RenewalEvent) {
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
        Some(d) => crate::commands::dispatch(&d, &control, cmd, args),
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
