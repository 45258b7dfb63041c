//! Every command the window's page calls, listed once ([`for_each_command!`]). The list
//! makes both ends of the window channel ([`crate::link`]):
//!
//! - in the window process (src-tauri), a Tauri command per entry (the page and its
//!   generated TypeScript bindings see exactly these signatures) that sends its arguments
//!   to the core and returns the core's answer;
//! - in the core, [`dispatch`]: the entry's body, run on [`Desktop`] (`d`) and the app's
//!   [`AppControl`] (`c`).

use crate::AppControl;
use kb_desktop::Desktop;
use kb_desktop::ble::BleStatus;
use kb_desktop::model::*;
use kb_desktop::phone::*;
use serde_json::{Map, Value};

type Res<T> = Result<T, AppError>;

/// Hand every command of the window to the macro `$callback`, as
/// `(d, c) $(/// doc  fn name(arg: Type, ...) -> Ret { body })*`: the body runs in the core
/// with `d: &Desktop` and `c: &AppControl`. Types are named as in this module: the caller
/// brings `kb_desktop::model::*`, `kb_desktop::phone::*` and `kb_desktop::ble::BleStatus`
/// into scope.
#[macro_export]
macro_rules! for_each_command {
    ($callback:ident) => {
        $callback! { (d, c)

            /// Version, agreement state, paths.
            fn app_info() -> AppInfo { Ok(d.info()) }
            /// The window painted its first screen (each time a window is built: at start and when
            /// it is opened again from the tray). For the measurements (`tests/desktop/measure.sh`)
            /// `--exit-after-paint` prints `painted` and quits, `--report-paints` prints `painted`.
            fn app_ready() -> () { c.painted() }
            /// Accept the privacy policy and user agreement.
            fn accept_agreement(version: String) -> () { d.accept_agreement(&version) }
            /// Quit (the user declined the agreement, or chose Quit).
            fn quit_app() -> () {
                c.quit();
                Ok(())
            }
            /// Every medium with its certificates.
            fn list_media() -> Vec<Medium> { d.list_media() }
            /// Certificate details.
            fn cert_details(cert: CertRef) -> CertDetails { d.cert_details(&cert) }
            /// A thumbprint on request.
            fn cert_thumbprint(cert: CertRef, alg: Thumbprint) -> String { d.thumbprint(&cert, alg) }
            /// Save a certificate (.cer / .pem).
            fn export_cert(cert: CertRef, path: String, format: ExportFormat) -> String { d.export_cert(&cert, &path, format) }
            /// Change a PIN (old and new from the window's form).
            fn change_pin(device: String, kind: PinKindView, old_pin: String, new_pin: String) -> () { d.change_pin(&device, kind, &old_pin, &new_pin) }
            /// Unblock the user PIN with the SO PIN.
            fn unblock_pin(device: String, so_pin: String, new_pin: String) -> () { d.unblock_pin(&device, &so_pin, &new_pin) }
            /// Delete a certificate (the PIN is asked through the prompt).
            fn delete_certificate(cert: CertRef) -> () { d.delete_certificate(&cert) }
            /// Seal images on a medium.
            fn list_seals(device: String) -> Vec<SealView> { d.list_seals(&device) }
            /// One seal image.
            fn read_seal(device: String, id: String) -> SealImage { d.read_seal(&device, &id) }
            /// Write a seal image (file or handwriting canvas).
            fn write_seal(device: String, name: String, mime: String, data_base64: String) -> SealView { d.write_seal(&device, &name, &mime, &data_base64) }
            /// Delete a seal image.
            fn delete_seal(device: String, id: String) -> () { d.delete_seal(&device, &id) }
            /// The newest audit records of a time range, with the total.
            fn audit_query(from_ms: i64, to_ms: i64, limit: u32) -> AuditPage { d.audit_query(from_ms, to_ms, limit) }
            /// The settings.
            fn get_settings() -> AppSettings { Ok(d.settings()) }
            /// Save the settings.
            fn save_settings(settings: AppSettings) -> AppSettings { d.save_settings(&settings) }
            /// Forget every cached PIN.
            fn clear_pin_cache() -> () {
                d.clear_pin_cache();
                Ok(())
            }
            /// Web sites with a remembered consent answer.
            fn list_grants() -> Vec<SiteGrant> { d.list_grants() }
            /// Forget a web site's consent answer.
            fn revoke_grant(origin: String) -> () { d.revoke_grant(&origin) }
            /// Export the logs, encrypted; progress as `log-export-progress` events.
            fn export_logs(path: String) -> LogExportResult { d.export_logs(&path) }
            /// Check for an update now.
            fn check_update() -> UpdateStatus { d.check_update() }
            /// The personal-data and third-party library lists.
            fn privacy_info() -> PrivacyInfo { Ok(d.privacy_info()) }
            /// Answer a prompt (PIN, confirm, consent, QR).
            fn answer_prompt(id: u32, answer: PromptAnswer) -> () { d.prompter().answer(id, answer).map_err(|e| AppError::service(&e, d.lang())) }
            /// Prompts waiting for an answer (a window opened late shows them).
            fn pending_prompts() -> Vec<PromptRequest> { Ok(d.prompter().pending()) }
            /// Cancel a key operation started from the window (its PIN dialog is withdrawn, the
            /// medium is told); false when it already ended.
            fn cancel_operation(operation: u32) -> bool { Ok(d.cancel_operation(operation)) }
            /// The 蓝牙设备 page: Bluetooth's state and the 未连接 / 已连接 lists (no scan).
            fn ble_state() -> BleStatus { Ok(d.ble_state()) }
            /// Refresh: scan for BLE keys (busy meanwhile, as `ble-status` events).
            fn ble_scan() -> BleStatus { d.ble_scan() }
            /// Connect to a BLE key (the user picked it): it joins the media.
            fn ble_connect(address: String) -> BleStatus { d.ble_connect(&address) }
            /// Disconnect a BLE key (it stays remembered).
            fn ble_disconnect(address: String) -> BleStatus { d.ble_disconnect(&address) }
            /// Forget a remembered BLE key.
            fn ble_forget(address: String) -> BleStatus { d.ble_forget(&address) }
            /// Reconnect a remembered BLE key when it comes in range (or not).
            fn ble_set_auto_reconnect(address: String, on: bool) -> BleStatus { d.ble_set_auto_reconnect(&address, on) }
            /// The 证书续期 page: the CA (development or not), the one key's certificates with their
            /// renewal state, or what blocks it (several keys plugged in).
            fn renewal_page() -> kb_desktop::renewal::RenewalPage { d.renewal_page() }
            /// 获取二维码: a binding QR code (the PIN in the dialog); its state comes as `renewal-event`.
            fn renewal_bind() -> kb_desktop::renewal::RenewalBinding { d.renewal_bind() }
            /// 安装证书: install the approved renewal of a certificate (the PIN in the dialog).
            fn renewal_install(cert: CertRef) -> kb_desktop::renewal::RenewalInstallResult { d.renewal_install(&cert) }
            /// Ask the CA now for renewals approved or rejected since last noticed.
            fn renewal_check() -> Vec<kb_desktop::renewal::RenewalEvent> { d.renewal_check() }
            /// The phone keys page: paired phones, where their secrets are, the listener and relay.
            fn phone_page() -> PhonePage { d.phone_page() }
            /// Show a new pairing QR code (the previous one stops working).
            fn start_phone_pairing() -> PairingOffer { d.start_phone_pairing() }
            /// Withdraw the pairing QR code.
            fn cancel_phone_pairing() -> () { d.cancel_phone_pairing() }
            /// The phone shows the same code: pair it.
            fn confirm_phone_pairing(request: u64) -> () { d.confirm_phone_pairing(request) }
            /// Reject the phone that scanned the code.
            fn reject_phone_pairing(request: u64) -> () { d.reject_phone_pairing(request) }
            /// Rename a paired phone.
            fn rename_phone(peer: String, name: String) -> () { d.rename_phone(&peer, &name) }
            /// Revoke a paired phone (its certificates go offline).
            fn revoke_phone(peer: String) -> () { d.revoke_phone(&peer) }
        }
    };
}

fn answer<T: serde::Serialize>(lang: kb_types::Lang, r: Res<T>) -> Res<Value> {
    r.and_then(|v| serde_json::to_value(v).map_err(|e| AppError::new(kb_types::ErrorCode::Internal, lang, e.to_string())))
}

macro_rules! dispatcher {
    (($d:ident, $c:ident) $( $(#[doc = $doc:expr])* fn $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty $body:block )*) => {
        /// Every command's name, as the window invokes it.
        pub const NAMES: &[&str] = &[$(stringify!($name)),*];

        /// Run the command `cmd` with its JSON arguments in the core.
        pub fn dispatch($d: &Desktop, $c: &AppControl, cmd: &str, args: Value) -> Res<Value> {
            let lang = $d.lang();
            let bad_args = |e: serde_json::Error| AppError::input(lang, format!("{cmd}: {e}"));
            match cmd {
                $(
                    stringify!($name) => {
                        #[derive(serde::Deserialize)]
                        struct Args { $($arg: $ty),* }
                        #[allow(unused_variables)]
                        let Args { $($arg),* } = serde_json::from_value(if args.is_null() { Value::Object(Map::new()) } else { args }).map_err(bad_args)?;
                        #[allow(unused_variables)]
                        let ($d, $c) = ($d, $c);
                        let r: Res<$ret> = $body;
                        answer(lang, r)
                    }
                )*
                other => Err(AppError::new(kb_types::ErrorCode::Internal, lang, format!("unknown command {other}"))),
            }
        }
    };
}

for_each_command!(dispatcher);
