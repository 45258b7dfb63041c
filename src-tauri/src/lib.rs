//! The KeyBridge desktop app: a thin Tauri 2 shell over [`kb_desktop::Desktop`].
//!
//! Every command is one line into `Desktop` on a blocking thread (a command may wait for
//! the PIN dialog, which is answered by another command). Events go out through
//! tauri-specta, so `ui/src/bindings.ts` types commands, events and the error-code table
//! alike (generated; `cargo test -p keybridge-desktop bindings_are_current` fails when it
//! drifts, `KB_REGEN=1` rewrites it).

#![cfg_attr(test, allow(clippy::panic, clippy::unwrap_used, clippy::expect_used))]

pub mod shell;

use kb_desktop::ble::BleStatus;
use kb_desktop::model::*;
use kb_desktop::phone::*;
use kb_desktop::prompter::PromptSink;
use kb_desktop::{Desktop, DesktopOptions, EventSink};
use serde::Serialize;
use specta::Type;
use std::sync::Arc;
use tauri::{AppHandle, Manager, Runtime, State};
use tauri_specta::{Event, collect_commands, collect_events};

type Shared<'a> = State<'a, Arc<Desktop>>;
type Res<T> = Result<T, AppError>;

/// Run `f` on a blocking thread: commands may wait for a prompt the window answers.
async fn blocking<T: Send + 'static>(d: &Arc<Desktop>, f: impl FnOnce(&Desktop) -> Res<T> + Send + 'static) -> Res<T> {
    let d = Arc::clone(d);
    let lang = d.lang();
    tauri::async_runtime::spawn_blocking(move || f(&d))
        .await
        .unwrap_or_else(|e| Err(AppError::new(kb_types::ErrorCode::Internal, lang, e.to_string())))
}

/// Version, agreement state, paths.
#[tauri::command]
#[specta::specta]
async fn app_info(d: Shared<'_>) -> Res<AppInfo> {
    Ok(d.info())
}

/// The window painted its first screen (each time a window is built: at start and when
/// it is opened again from the tray). For the measurements (`tests/desktop/measure.sh`)
/// `--exit-after-paint` prints `painted` and quits, `--report-paints` prints `painted`.
#[tauri::command]
#[specta::specta]
async fn app_ready(control: State<'_, AppControl>) -> Res<()> {
    tracing::info!("window painted");
    if control.paints != PaintReport::Off {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "painted");
        let _ = out.flush();
    }
    if control.paints == PaintReport::PrintAndExit {
        (control.exit)(0);
    }
    Ok(())
}

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

/// Accept the privacy policy and user agreement.
#[tauri::command]
#[specta::specta]
async fn accept_agreement(d: Shared<'_>, version: String) -> Res<()> {
    d.accept_agreement(&version)
}

/// Quit (the user declined the agreement, or chose Quit).
#[tauri::command]
#[specta::specta]
async fn quit_app(control: State<'_, AppControl>) -> Res<()> {
    (control.exit)(0);
    Ok(())
}

/// What commands need of the app itself, without naming its runtime (commands are not
/// generic, so one set serves the real app and the mock runtime of the tests).
pub struct AppControl {
    /// Quit with this exit code.
    pub exit: Box<dyn Fn(i32) + Send + Sync>,
    /// What to say when a window has painted.
    pub paints: PaintReport,
}

/// Every medium with its certificates.
#[tauri::command]
#[specta::specta]
async fn list_media(d: Shared<'_>) -> Res<Vec<Medium>> {
    blocking(&d, |d| d.list_media()).await
}

/// Certificate details.
#[tauri::command]
#[specta::specta]
async fn cert_details(d: Shared<'_>, cert: CertRef) -> Res<CertDetails> {
    blocking(&d, move |d| d.cert_details(&cert)).await
}

/// A thumbprint on request.
#[tauri::command]
#[specta::specta]
async fn cert_thumbprint(d: Shared<'_>, cert: CertRef, alg: Thumbprint) -> Res<String> {
    blocking(&d, move |d| d.thumbprint(&cert, alg)).await
}

/// Save a certificate (.cer / .pem).
#[tauri::command]
#[specta::specta]
async fn export_cert(d: Shared<'_>, cert: CertRef, path: String, format: ExportFormat) -> Res<String> {
    blocking(&d, move |d| d.export_cert(&cert, &path, format)).await
}

/// Change a PIN (old and new from the window's form).
#[tauri::command]
#[specta::specta]
async fn change_pin(d: Shared<'_>, device: String, kind: PinKindView, old_pin: String, new_pin: String) -> Res<()> {
    blocking(&d, move |d| d.change_pin(&device, kind, &old_pin, &new_pin)).await
}

/// Unblock the user PIN with the SO PIN.
#[tauri::command]
#[specta::specta]
async fn unblock_pin(d: Shared<'_>, device: String, so_pin: String, new_pin: String) -> Res<()> {
    blocking(&d, move |d| d.unblock_pin(&device, &so_pin, &new_pin)).await
}

/// Delete a certificate (the PIN is asked through the prompt).
#[tauri::command]
#[specta::specta]
async fn delete_certificate(d: Shared<'_>, cert: CertRef) -> Res<()> {
    blocking(&d, move |d| d.delete_certificate(&cert)).await
}

/// Seal images on a medium.
#[tauri::command]
#[specta::specta]
async fn list_seals(d: Shared<'_>, device: String) -> Res<Vec<SealView>> {
    blocking(&d, move |d| d.list_seals(&device)).await
}

/// One seal image.
#[tauri::command]
#[specta::specta]
async fn read_seal(d: Shared<'_>, device: String, id: String) -> Res<SealImage> {
    blocking(&d, move |d| d.read_seal(&device, &id)).await
}

/// Write a seal image (file or handwriting canvas).
#[tauri::command]
#[specta::specta]
async fn write_seal(d: Shared<'_>, device: String, name: String, mime: String, data_base64: String) -> Res<SealView> {
    blocking(&d, move |d| d.write_seal(&device, &name, &mime, &data_base64)).await
}

/// Delete a seal image.
#[tauri::command]
#[specta::specta]
async fn delete_seal(d: Shared<'_>, device: String, id: String) -> Res<()> {
    blocking(&d, move |d| d.delete_seal(&device, &id)).await
}

/// The newest audit records of a time range, with the total.
#[tauri::command]
#[specta::specta]
async fn audit_query(d: Shared<'_>, from_ms: i64, to_ms: i64, limit: u32) -> Res<AuditPage> {
    blocking(&d, move |d| d.audit_query(from_ms, to_ms, limit)).await
}

/// The settings.
#[tauri::command]
#[specta::specta]
async fn get_settings(d: Shared<'_>) -> Res<AppSettings> {
    Ok(d.settings())
}

/// Save the settings.
#[tauri::command]
#[specta::specta]
async fn save_settings(d: Shared<'_>, settings: AppSettings) -> Res<AppSettings> {
    blocking(&d, move |d| d.save_settings(&settings)).await
}

/// Web sites with a remembered consent answer.
#[tauri::command]
#[specta::specta]
async fn list_grants(d: Shared<'_>) -> Res<Vec<SiteGrant>> {
    blocking(&d, |d| d.list_grants()).await
}

/// Forget a web site's consent answer.
#[tauri::command]
#[specta::specta]
async fn revoke_grant(d: Shared<'_>, origin: String) -> Res<()> {
    blocking(&d, move |d| d.revoke_grant(&origin)).await
}

/// Forget every cached PIN.
#[tauri::command]
#[specta::specta]
async fn clear_pin_cache(d: Shared<'_>) -> Res<()> {
    d.clear_pin_cache();
    Ok(())
}

/// Export the logs, encrypted; progress as `log-export-progress` events.
#[tauri::command]
#[specta::specta]
async fn export_logs(d: Shared<'_>, path: String) -> Res<LogExportResult> {
    blocking(&d, move |d| d.export_logs(&path)).await
}

/// Check for an update now.
#[tauri::command]
#[specta::specta]
async fn check_update(d: Shared<'_>) -> Res<UpdateStatus> {
    blocking(&d, |d| d.check_update()).await
}

/// The personal-data and third-party library lists.
#[tauri::command]
#[specta::specta]
async fn privacy_info(d: Shared<'_>) -> Res<PrivacyInfo> {
    Ok(d.privacy_info())
}

/// Answer a prompt (PIN, confirm, consent, QR).
#[tauri::command]
#[specta::specta]
async fn answer_prompt(d: Shared<'_>, id: u32, answer: PromptAnswer) -> Res<()> {
    d.prompter().answer(id, answer).map_err(|e| AppError::service(&e, d.lang()))
}

/// Cancel a key operation started from the window (its PIN dialog is withdrawn, the
/// medium is told); false when it already ended.
#[tauri::command]
#[specta::specta]
async fn cancel_operation(d: Shared<'_>, operation: u32) -> Res<bool> {
    Ok(d.cancel_operation(operation))
}

/// Prompts waiting for an answer (a window opened late shows them).
#[tauri::command]
#[specta::specta]
async fn pending_prompts(d: Shared<'_>) -> Res<Vec<PromptRequest>> {
    Ok(d.prompter().pending())
}

/// The 蓝牙设备 page: Bluetooth's state and the 未连接 / 已连接 lists (no scan).
#[tauri::command]
#[specta::specta]
async fn ble_state(d: Shared<'_>) -> Res<BleStatus> {
    blocking(&d, |d| Ok(d.ble_state())).await
}

/// Refresh: scan for BLE keys (busy meanwhile, as `ble-status` events).
#[tauri::command]
#[specta::specta]
async fn ble_scan(d: Shared<'_>) -> Res<BleStatus> {
    blocking(&d, |d| d.ble_scan()).await
}

/// Connect to a BLE key (the user picked it): it joins the media.
#[tauri::command]
#[specta::specta]
async fn ble_connect(d: Shared<'_>, address: String) -> Res<BleStatus> {
    blocking(&d, move |d| d.ble_connect(&address)).await
}

/// Disconnect a BLE key (it stays remembered).
#[tauri::command]
#[specta::specta]
async fn ble_disconnect(d: Shared<'_>, address: String) -> Res<BleStatus> {
    blocking(&d, move |d| d.ble_disconnect(&address)).await
}

/// Forget a remembered BLE key.
#[tauri::command]
#[specta::specta]
async fn ble_forget(d: Shared<'_>, address: String) -> Res<BleStatus> {
    blocking(&d, move |d| d.ble_forget(&address)).await
}

/// Reconnect a remembered BLE key when it comes in range (or not).
#[tauri::command]
#[specta::specta]
async fn ble_set_auto_reconnect(d: Shared<'_>, address: String, on: bool) -> Res<BleStatus> {
    blocking(&d, move |d| d.ble_set_auto_reconnect(&address, on)).await
}

/// The 证书续期 page: the CA (development or not), the one key's certificates with their
/// renewal state, or what blocks it (several keys plugged in).
#[tauri::command]
#[specta::specta]
async fn renewal_page(d: Shared<'_>) -> Res<kb_desktop::renewal::RenewalPage> {
    blocking(&d, |d| d.renewal_page()).await
}

/// 获取二维码: a binding QR code (the PIN in the dialog); its state comes as `renewal-event`.
#[tauri::command]
#[specta::specta]
async fn renewal_bind(d: Shared<'_>) -> Res<kb_desktop::renewal::RenewalBinding> {
    blocking(&d, |d| d.renewal_bind()).await
}

/// 安装证书: install the approved renewal of a certificate (the PIN in the dialog).
#[tauri::command]
#[specta::specta]
async fn renewal_install(d: Shared<'_>, cert: CertRef) -> Res<kb_desktop::renewal::RenewalInstallResult> {
    blocking(&d, move |d| d.renewal_install(&cert)).await
}

/// Ask the CA now for renewals approved or rejected since last noticed.
#[tauri::command]
#[specta::specta]
async fn renewal_check(d: Shared<'_>) -> Res<Vec<kb_desktop::renewal::RenewalEvent>> {
    blocking(&d, |d| d.renewal_check()).await
}

/// The phone keys page: paired phones, where their secrets are, the listener and relay.
#[tauri::command]
#[specta::specta]
async fn phone_page(d: Shared<'_>) -> Res<PhonePage> {
    blocking(&d, |d| d.phone_page()).await
}

/// Show a new pairing QR code (the previous one stops working).
#[tauri::command]
#[specta::specta]
async fn start_phone_pairing(d: Shared<'_>) -> Res<PairingOffer> {
    blocking(&d, |d| d.start_phone_pairing()).await
}

/// Withdraw the pairing QR code.
#[tauri::command]
#[specta::specta]
async fn cancel_phone_pairing(d: Shared<'_>) -> Res<()> {
    blocking(&d, |d| d.cancel_phone_pairing()).await
}

/// The phone shows the same code: pair it.
#[tauri::command]
#[specta::specta]
async fn confirm_phone_pairing(d: Shared<'_>, request: u64) -> Res<()> {
    blocking(&d, move |d| d.confirm_phone_pairing(request)).await
}

/// Reject the phone that scanned the code.
#[tauri::command]
#[specta::specta]
async fn reject_phone_pairing(d: Shared<'_>, request: u64) -> Res<()> {
    blocking(&d, move |d| d.reject_phone_pairing(request)).await
}

/// Rename a paired phone.
#[tauri::command]
#[specta::specta]
async fn rename_phone(d: Shared<'_>, peer: String, name: String) -> Res<()> {
    blocking(&d, move |d| d.rename_phone(&peer, &name)).await
}

/// Revoke a paired phone (its certificates go offline).
#[tauri::command]
#[specta::specta]
async fn revoke_phone(d: Shared<'_>, peer: String) -> Res<()> {
    blocking(&d, move |d| d.revoke_phone(&peer)).await
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
        .commands(collect_commands![
            app_info,
            app_ready,
            accept_agreement,
            quit_app,
            list_media,
            cert_details,
            cert_thumbprint,
            export_cert,
            change_pin,
            unblock_pin,
            delete_certificate,
            list_seals,
            read_seal,
            write_seal,
            delete_seal,
            audit_query,
            get_settings,
            save_settings,
            clear_pin_cache,
            list_grants,
            revoke_grant,
            export_logs,
            check_update,
            privacy_info,
            answer_prompt,
            pending_prompts,
            cancel_operation,
            ble_state,
            ble_scan,
            ble_connect,
            ble_disconnect,
            ble_forget,
            ble_set_auto_reconnect,
            renewal_page,
            renewal_bind,
            renewal_install,
            renewal_check,
            phone_page,
            start_phone_pairing,
            cancel_phone_pairing,
            confirm_phone_pairing,
            reject_phone_pairing,
            rename_phone,
            revoke_phone,
        ])
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

/// Shows a desktop notification: app, title, body.
pub type Notifier<R> = Box<dyn Fn(&AppHandle<R>, &str, &str) + Send + Sync>;

/// Sends the core's events to the window.
pub struct WindowEvents<R: Runtime> {
    app: AppHandle<R>,
    /// Show a desktop notification (the real app; tests leave it out).
    pub notify: Option<Notifier<R>>,
}

impl<R: Runtime> WindowEvents<R> {
    /// Events for `app`.
    pub fn new(app: AppHandle<R>) -> Self {
        WindowEvents { app, notify: None }
    }

    fn emit<E: Event + Serialize + Clone>(&self, e: &E) {
        if let Err(err) = e.emit(&self.app) {
            tracing::warn!("event {} not delivered: {err}", E::NAME);
        }
    }
}

impl<R: Runtime> PromptSink for WindowEvents<R> {
    fn open(&self, request: &PromptRequest) {
        // A key operation from the bridge may come while KeyBridge is in the tray with no
        // window: this builds it again, and the new page lists the waiting prompt itself
        // (`pending_prompts`), so the event below may reach no page without loss.
        shell::show_main(&self.app);
        self.emit(request);
    }
    fn close(&self, id: u32) {
        self.emit(&PromptClosed { id });
    }
    fn notify(&self, message: &str) {
        if let Some(n) = &self.notify {
            n(&self.app, "KeyBridge", message);
        }
    }
}

impl<R: Runtime> EventSink for WindowEvents<R> {
    fn media_changed(&self, event: &MediaChanged) {
        self.emit(event);
        shell::media_count_changed(&self.app);
    }
    fn expiry_notice(&self, notice: &ExpiryNotice) {
        self.emit(notice);
        if let Some(n) = &self.notify {
            let names: Vec<String> = notice
                .certificates
                .iter()
                .map(|c| match c.status {
                    CertStatus::Expired => format!("{}（已过期）", c.subject_cn),
                    _ => format!("{}（{} 天后过期）", c.subject_cn, c.days_left),
                })
                .collect();
            n(&self.app, "证书即将过期 · Certificate expiring", &names.join("\n"));
        }
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
        if let (Some(n), kb_desktop::renewal::RenewalEventKind::Approved) = (&self.notify, event.kind) {
            n(
                &self.app,
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
        if let Some(n) = &self.notify {
            n(&self.app, "KeyBridge 有新版本 · Update available", &format!("{} → {}", status.current, status.latest));
        }
    }
}

/// The commands on `builder`; the returned specta builder mounts the events in
/// [`install`].
pub fn with_commands<R: Runtime>(builder: tauri::Builder<R>) -> (tauri::Builder<R>, tauri_specta::Builder<R>) {
    let specta = specta_builder::<R>();
    (builder.invoke_handler(specta.invoke_handler()), specta)
}

/// Start the core on a built app: events mounted, [`Desktop`] opened and managed with the
/// [`AppControl`]. `events` builds the event sink (the real app adds notifications).
pub fn install<R: Runtime>(
    app: &tauri::App<R>,
    specta: &tauri_specta::Builder<R>,
    opts: DesktopOptions,
    paints: PaintReport,
    events: impl FnOnce(AppHandle<R>) -> WindowEvents<R>,
) -> Result<(), AppError> {
    specta.mount_events(app);
    let sink = Arc::new(events(app.handle().clone()));
    let desktop = Desktop::open(opts, sink.clone(), sink)?;
    for p in desktop.startup_problems() {
        tracing::warn!("start-up problem: {p}");
    }
    app.manage(desktop);
    let handle = app.handle().clone();
    app.manage(AppControl { exit: Box::new(move |code| handle.exit(code)), paints });
    Ok(())
}

/// [`with_commands`] and [`install`] from the builder's setup hook. (Tauri keeps one setup
/// hook: a caller with its own calls the two itself, as [`shell::run`] does.)
pub fn setup<R: Runtime>(
    builder: tauri::Builder<R>,
    opts: DesktopOptions,
    paints: PaintReport,
    events: impl FnOnce(AppHandle<R>) -> WindowEvents<R> + Send + 'static,
) -> tauri::Builder<R> {
    let (builder, specta) = with_commands(builder);
    builder.setup(move |app| install(app, &specta, opts, paints, events).map_err(|e| Box::new(e) as Box<dyn std::error::Error>))
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
