//! Every command through Tauri's IPC (the mock runtime's real invoke path: argument
//! deserialisation, the command, the response) against a real file-type key — the demo
//! key the app creates on a fresh home. PIN prompts are answered through the
//! `answer_prompt` command, as the window does.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod ipc;

use kb_desktop::DesktopOptions;
use kb_desktop::model::*;
use kb_filekey::KdfParams;
use keybridge_desktop::shell::MAIN;
use keybridge_desktop::{PaintReport, install, with_commands};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::path::Path;
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tauri::test::{MockRuntime, mock_builder, mock_context, noop_assets};
use tauri::{App, Manager, WebviewWindow, WebviewWindowBuilder};
use tauri_specta::Event;

struct Rig {
    _app: App<MockRuntime>,
    win: WebviewWindow<MockRuntime>,
    home: tempfile::TempDir,
    prompts: Receiver<PromptRequest>,
    media: Arc<Mutex<Vec<MediaChanged>>>,
    progress: Arc<Mutex<Vec<LogExportProgress>>>,
}

fn rig() -> Rig {
    rig_with(None)
}

fn rig_with(bridge: Option<Option<u16>>) -> Rig {
    rig_in(tempfile::tempdir().unwrap(), bridge)
}

fn options(home: &Path, bridge: Option<Option<u16>>) -> DesktopOptions {
    DesktopOptions {
        home: Some(home.to_path_buf()),
        create_demo: true,
        kdf: KdfParams::weak_for_tests(),
        file_logging: false,
        hardware: false,
        bridge,
        update_keys: vec![update_key().public_key()],
        ble: None,
        phone_secrets: kb_desktop::phone::BackendChoice::File,
        autostart_dir: Some(home.join("xdg/autostart")),
    }
}

/// The app with the core installed and no window yet.
fn app_without_window(home: &Path, bridge: Option<Option<u16>>) -> App<MockRuntime> {
    let (builder, specta) = with_commands(mock_builder());
    let app = builder.build(mock_context(noop_assets())).unwrap();
    install(&app, &specta, options(home, bridge), PaintReport::Off).unwrap();
    app
}

fn rig_in(home: tempfile::TempDir, bridge: Option<Option<u16>>) -> Rig {
    let app = app_without_window(home.path(), bridge);
    let win = WebviewWindowBuilder::new(&app, "main", Default::default()).build().unwrap();
    let (tx, prompts) = channel();
    let tx = Mutex::new(tx);
    PromptRequest::listen(&app, move |e| {
        let _ = tx.lock().unwrap().send(e.payload);
    });
    let media = Arc::new(Mutex::new(Vec::new()));
    let m = media.clone();
    MediaChanged::listen(&app, move |e| m.lock().unwrap().push(e.payload));
    let progress = Arc::new(Mutex::new(Vec::new()));
    let p = progress.clone();
    LogExportProgress::listen(&app, move |e| p.lock().unwrap().push(e.payload));
    Rig { _app: app, win, home, prompts, media, progress }
}

fn call(win: &WebviewWindow<MockRuntime>, cmd: &str, args: Value) -> Result<Value, AppError> {
    raw_call(win, cmd, args)
        .map_err(|v| serde_json::from_value(v.clone()).unwrap_or_else(|_| panic!("{cmd}: not an AppError: {v}")))
}

fn raw_call(win: &WebviewWindow<MockRuntime>, cmd: &str, args: Value) -> Result<Value, Value> {
    ipc::invoke(win, cmd, args)
}

fn ok<T: serde::de::DeserializeOwned>(win: &WebviewWindow<MockRuntime>, cmd: &str, args: Value) -> T {
    let v = call(win, cmd, args).unwrap_or_else(|e| panic!("{cmd}: {e}"));
    serde_json::from_value(v).unwrap()
}

fn err(win: &WebviewWindow<MockRuntime>, cmd: &str, args: Value) -> AppError {
    match call(win, cmd, args) {
        Ok(v) => panic!("{cmd} succeeded: {v}"),
        Err(e) => e,
    }
}

/// Run `cmd` on another thread; answer the PIN prompts it raises with `pins` in turn
/// (`None` = cancel); return its result and the prompts seen.
fn with_prompts(r: &Rig, cmd: &str, args: Value, pins: &[Option<&str>]) -> (Result<Value, AppError>, Vec<PromptRequest>) {
    let win = r.win.clone();
    let cmd2 = cmd.to_string();
    let worker = std::thread::spawn(move || call(&win, &cmd2, args));
    let mut seen = Vec::new();
    for pin in pins {
        let p = r.prompts.recv_timeout(Duration::from_secs(30)).unwrap_or_else(|_| panic!("{cmd}: no prompt"));
        let pending: Vec<PromptRequest> = ok(&r.win, "pending_prompts", json!({}));
        assert!(pending.iter().any(|q| q.id == p.id), "a waiting prompt is listed");
        let answer = match pin {
            Some(pin) => json!({"kind": "pin", "pin": pin}),
            None => json!({"kind": "cancel"}),
        };
        ok::<Value>(&r.win, "answer_prompt", json!({"id": p.id, "answer": answer}));
        // Answering twice is refused: the prompt is gone.
        assert_eq!(err(&r.win, "answer_prompt", json!({"id": p.id, "answer": answer})).name, "cancelled");
        seen.push(p);
    }
    (worker.join().unwrap(), seen)
}

fn demo(r: &Rig) -> Medium {
    let media: Vec<Medium> = ok(&r.win, "list_media", json!({}));
    assert_eq!(media.len(), 1, "{media:?}");
    media.into_iter().next().unwrap()
}

fn sign_ref() -> Value {
    json!({"device": "file:demo", "container": "demo", "usage": "sign"})
}

#[test]
fn app_info_agreement_and_media() {
    let r = rig();
    let info: AppInfo = ok(&r.win, "app_info", json!({}));
    assert!(!info.agreement_accepted, "a fresh home has not accepted the agreement");
    assert_eq!(info.demo_device.as_deref(), Some("file:demo"));
    assert_eq!(err(&r.win, "accept_agreement", json!({"version": "1999-01"})).name, "invalid_parameter");
    ok::<Value>(&r.win, "accept_agreement", json!({"version": info.agreement_version}));
    assert!(ok::<AppInfo>(&r.win, "app_info", json!({})).agreement_accepted);

    let m = demo(&r);
    assert_eq!((m.id.as_str(), m.kind, m.demo), ("file:demo", MediumKind::File, true));
    let pin = m.user_pin.unwrap();
    assert_eq!((pin.tries_left, pin.locked, pin.is_default), (pin.max_tries, false, true));
    let usages: Vec<Usage> = m.certificates.iter().map(|c| c.cert_ref.usage).collect();
    assert_eq!(usages, [Usage::Sign, Usage::Encrypt]);
    assert!(m.certificates.iter().all(|c| c.status == CertStatus::Valid && c.days_left >= 364));
    assert_eq!(m.certificates[0].subject_cn, "演示用户 (DEMO)");

    // Unknown devices and malformed arguments are refused with stable codes.
    let bad = json!({"device": "file:nope", "container": "demo", "usage": "sign"});
    assert_eq!(err(&r.win, "cert_details", json!({"cert": bad})).name, "unknown_device");
    // A malformed argument never reaches the core: Tauri refuses it while deserialising.
    let e = raw_call(&r.win, "cert_details", json!({"cert": {"device": 1}})).unwrap_err();
    assert!(e.as_str().is_some_and(|m| m.contains("invalid args `cert`")), "{e}");
}

#[test]
fn certificate_details_thumbprints_and_export() {
    let r = rig();
    let d: CertDetails = ok(&r.win, "cert_details", json!({"cert": sign_ref()}));
    assert_eq!(d.device_label, "KeyBridge 演示介质 (DEMO)");
    assert!(d.chain.trusted, "the demo certificate chains to the demo root: {:?}", d.chain);
    // The demo CA names no CRL or OCSP responder: unknown, never good.
    assert_eq!((d.revocation.state, d.revocation.code), (RevocationState::Unknown, Some(3031)), "{:?}", d.revocation);
    // Its CRL dropped into the CRL folder revokes the certificate: the line says when and why.
    {
        let demo_ca = r.home.path().join("data/demo-ca");
        let root = kb_pki::Certificate::from_pem(&std::fs::read_to_string(demo_ca.join("root.pem")).unwrap()).unwrap();
        let key = kb_crypto::PrivateKey::from_pkcs8_pem(&std::fs::read_to_string(demo_ca.join("root.key")).unwrap()).unwrap();
        let hex = d.summary.serial.replace(':', "");
        let serial: Vec<u8> = (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect();
        let now = kb_pki::time::UnixTime::now();
        let entry =
            kb_pki::revocation::CrlEntry { serial, at: now, reason: Some(kb_pki::revocation::RevocationReason::KeyCompromise) };
        let crl = kb_pki::revocation::issue_crl(
            &root,
            &kb_pki::LocalSigner::new(key),
            &[entry],
            now,
            kb_pki::time::UnixTime(now.0 + 86_400),
            1,
        )
        .unwrap();
        std::fs::create_dir_all(r.home.path().join("data/crl")).unwrap();
        std::fs::write(r.home.path().join("data/crl/demo.crl"), crl.der()).unwrap();
        let revoked: CertDetails = ok(&r.win, "cert_details", json!({"cert": sign_ref()}));
        assert_eq!((revoked.revocation.state, revoked.revocation.code), (RevocationState::Revoked, Some(3030)));
        assert!(revoked.revocation.text.contains("已吊销") && revoked.revocation.text.contains("keyCompromise"));
        std::fs::remove_file(r.home.path().join("data/crl/demo.crl")).unwrap();
    }
    assert_eq!(d.chain.path.len(), 2);
    assert_eq!(d.cert_type, CertType::Sign);
    assert!(d.public_key_algorithm.starts_with("SM2"), "{}", d.public_key_algorithm);
    assert!(d.subject_attrs.iter().any(|a| a.name == "CN" && a.value == "演示用户 (DEMO)"));
    assert!(!d.extensions.is_empty());
    assert_eq!(d.thumbprint_sha1.len(), 40);
    let sha1: String = ok(&r.win, "cert_thumbprint", json!({"cert": sign_ref(), "alg": "sha1"}));
    assert_eq!(sha1, d.thumbprint_sha1);
    for (alg, len) in [("sm3", 64), ("sha256", 64), ("md5", 32)] {
        let t: String = ok(&r.win, "cert_thumbprint", json!({"cert": sign_ref(), "alg": alg}));
        assert_eq!(t.len(), len, "{alg}");
    }
    let der_path = r.home.path().join("out/demo.cer");
    std::fs::create_dir_all(der_path.parent().unwrap()).unwrap();
    ok::<String>(&r.win, "export_cert", json!({"cert": sign_ref(), "path": der_path, "format": "der"}));
    let pem_path = r.home.path().join("out/demo.pem");
    ok::<String>(&r.win, "export_cert", json!({"cert": sign_ref(), "path": pem_path, "format": "pem"}));
    let der = std::fs::read(&der_path).unwrap();
    let pem = std::fs::read_to_string(&pem_path).unwrap();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
    assert_eq!(kb_pki::Certificate::from_pem(&pem).unwrap().der(), &der[..]);
    assert_eq!(kb_pki::Certificate::from_der(&der).unwrap().thumbprint(kb_types::HashAlgorithm::Sha1), sha1);
    assert_eq!(
        err(&r.win, "export_cert", json!({"cert": sign_ref(), "path": "relative.cer", "format": "der"})).name,
        "invalid_parameter"
    );
}

#[test]
fn pins_change_wrong_lock_and_unblock() {
    let r = rig();
    let max = demo(&r).user_pin.unwrap().max_tries;
    let change = |old: &str, new: &str| {
        call(&r.win, "change_pin", json!({"device": "file:demo", "kind": "user", "oldPin": old, "newPin": new}))
    };
    let e = change("00000000", "11112222").unwrap_err();
    assert_eq!((e.name.as_str(), e.tries_left), ("wrong_pin", Some(max - 1)));
    assert_eq!(demo(&r).user_pin.unwrap().tries_left, max - 1, "the list shows the tries left");
    change("12345678", "11112222").unwrap();
    let pin = demo(&r).user_pin.unwrap();
    assert_eq!((pin.tries_left, pin.is_default), (max, false), "a right PIN resets the counter");
    assert!(r.media.lock().unwrap().iter().any(|m| m.change == MediaChange::Changed));
    // Too short for the medium's policy.
    assert_eq!(change("11112222", "1").unwrap_err().name, "pin_policy");
    // Lock it, then unblock with the SO PIN.
    for left in (0..max).rev() {
        let e = change("99999999", "11113333").unwrap_err();
        if left > 0 {
            assert_eq!(e.tries_left, Some(left));
        } else {
            assert!(e.name == "pin_locked" || e.tries_left == Some(0), "{e:?}");
        }
    }
    assert!(demo(&r).user_pin.unwrap().locked);
    assert_eq!(change("11112222", "11113333").unwrap_err().name, "pin_locked");
    let e = err(&r.win, "unblock_pin", json!({"device": "file:demo", "soPin": "00000000", "newPin": "13572468"}));
    assert_eq!(e.name, "wrong_pin");
    ok::<Value>(&r.win, "unblock_pin", json!({"device": "file:demo", "soPin": "87654321", "newPin": "13572468"}));
    let pin = demo(&r).user_pin.unwrap();
    assert!(!pin.locked && pin.tries_left == max);
    change("13572468", "24681357").unwrap();
}

/// Closed to the tray, KeyBridge has no window (it is destroyed to release the webview):
/// a key operation's PIN question builds the window again, and the new page finds the
/// question waiting (`pending_prompts`) although the event went out before the page was
/// there to hear it.
#[test]
fn a_pin_question_with_no_window_builds_the_window_again() {
    let home = tempfile::tempdir().unwrap();
    let app = app_without_window(home.path(), None);
    assert!(app.get_webview_window(MAIN).is_none());
    let desktop = app.state::<Arc<kb_desktop::Desktop>>().inner().clone();
    let enc: CertRef = serde_json::from_value(json!({"device": "file:demo", "container": "demo", "usage": "encrypt"})).unwrap();
    let worker = std::thread::spawn(move || desktop.delete_certificate(&enc));
    let win = wait_until("the window is built again", || app.get_webview_window(MAIN));
    let prompt = wait_until("the new page lists the PIN question", || {
        let pending: Vec<PromptRequest> = ok(&win, "pending_prompts", json!({}));
        pending.into_iter().find(|p| matches!(p.body, PromptBody::Pin { .. }))
    });
    ok::<Value>(&win, "answer_prompt", json!({"id": prompt.id, "answer": {"kind": "cancel"}}));
    assert_eq!(worker.join().unwrap().unwrap_err().name, "cancelled");
    let media: Vec<Medium> = ok(&win, "list_media", json!({}));
    assert_eq!(media[0].certificates.len(), 2, "nothing deleted");
}

/// Poll `f` until it gives a value (a generous limit only catches a hang).
fn wait_until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let until = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(std::time::Instant::now() < until, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn delete_certificate_asks_for_the_pin_in_the_dialog() {
    let r = rig();
    ok::<Value>(
        &r.win,
        "save_settings",
        json!({"settings": {
        "pinCacheMinutes": 0, "nearExpiryWarningDays": 90, "logsEnabled": true, "logRetentionDays": 30,
        "updateCheck": "weekly", "updateUrl": "", "language": "zh-CN", "autostart": false}}),
    );
    let enc = json!({"device": "file:demo", "container": "demo", "usage": "encrypt"});
    // Cancel → nothing deleted.
    let (res, seen) = with_prompts(&r, "delete_certificate", json!({"cert": enc}), &[None]);
    assert_eq!(res.unwrap_err().name, "cancelled");
    match &seen[0].body {
        PromptBody::Pin { device, pin_kind, operation, previous_wrong, .. } => {
            assert_eq!((device.as_str(), *pin_kind, *previous_wrong), ("file:demo", PinKindView::User, false));
            assert!(operation.contains("delete"), "{operation}");
        }
        other => panic!("not a PIN prompt: {other:?}"),
    }
    assert_eq!(seen[0].client, "desktop");
    assert_eq!(demo(&r).certificates.len(), 2);
    // A wrong PIN, then the right one: the second prompt says the first was wrong and
    // shows one try fewer.
    let (res, seen) = with_prompts(&r, "delete_certificate", json!({"cert": enc}), &[Some("00000000"), Some("12345678")]);
    res.unwrap();
    let PromptBody::Pin { previous_wrong, tries_left, .. } = &seen[1].body else { panic!() };
    assert!(*previous_wrong);
    let max = demo(&r).user_pin.unwrap().max_tries;
    assert_eq!(*tries_left, Some(max - 1));
    let m = demo(&r);
    assert_eq!(m.certificates.len(), 1, "the encryption certificate is gone");
    assert_eq!(err(&r.win, "cert_details", json!({"cert": enc})).name, "not_found");
    // Audited, with the failures.
    let now = kb_service::audit::now_ms();
    let page: AuditPage = ok(&r.win, "audit_query", json!({"fromMs": now - 60_000, "toMs": now + 1000, "limit": 1000}));
    let audit = page.entries;
    assert_eq!(page.total as usize, audit.len());
    let newest: AuditPage = ok(&r.win, "audit_query", json!({"fromMs": now - 60_000, "toMs": now + 1000, "limit": 1}));
    assert_eq!((newest.entries.len(), newest.total), (1, page.total), "the limit cuts, the total counts all");
    assert_eq!(newest.entries[0], audit[0], "the newest one");
    assert_eq!(err(&r.win, "audit_query", json!({"fromMs": 0, "toMs": 5, "limit": 0})).name, "invalid_parameter");
    let deletes: Vec<&AuditEntry> = audit.iter().filter(|a| a.operation == "delete_certificate").collect();
    assert!(deletes.iter().any(|a| a.ok) && deletes.iter().any(|a| !a.ok), "{audit:?}");
    assert!(deletes.iter().all(|a| a.client == "desktop"));
    assert!(audit.windows(2).all(|w| w[0].time_ms >= w[1].time_ms), "newest first");
    assert_eq!(err(&r.win, "audit_query", json!({"fromMs": 10, "toMs": 5, "limit": 10})).name, "invalid_parameter");
}

#[test]
fn seals_from_an_image() {
    let r = rig();
    let seals: Vec<SealView> = ok(&r.win, "list_seals", json!({"device": "file:demo"}));
    assert!(seals.is_empty());
    let png = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("icons/32x32.png")).unwrap();
    let b64 = base64_encode(&png);
    // Not an image / wrong type: refused before the PIN is asked.
    let e = err(
        &r.win,
        "write_seal",
        json!({"device": "file:demo", "name": "x", "mime": "image/png", "dataBase64": base64_encode(b"GIF89a")}),
    );
    assert_eq!(e.name, "malformed_input");
    let e = err(&r.win, "write_seal", json!({"device": "file:demo", "name": "x", "mime": "image/gif", "dataBase64": b64}));
    assert_eq!(e.name, "malformed_input");
    let args = json!({"device": "file:demo", "name": "公司公章", "mime": "image/png", "dataBase64": format!("data:image/png;base64,{b64}")});
    let (res, _) = with_prompts(&r, "write_seal", args, &[Some("12345678")]);
    let seal: SealView = serde_json::from_value(res.unwrap()).unwrap();
    assert_eq!((seal.name.as_str(), seal.size as usize), ("公司公章", png.len()));
    let img: SealImage = ok(&r.win, "read_seal", json!({"device": "file:demo", "id": seal.id}));
    assert_eq!((img.mime.as_str(), img.data_base64.as_str()), ("image/png", b64.as_str()));
    let (res, _) = with_prompts(&r, "delete_seal", json!({"device": "file:demo", "id": seal.id}), &[]);
    res.unwrap();
    assert!(ok::<Vec<SealView>>(&r.win, "list_seals", json!({"device": "file:demo"})).is_empty());
}

#[test]
fn the_autostart_setting_writes_and_removes_the_login_entry() {
    let r = rig();
    let entry = r.home.path().join("xdg/autostart").join(kb_desktop::autostart::ENTRY_FILE_NAME);
    let mut s: AppSettings = ok(&r.win, "get_settings", json!({}));
    assert!(!s.autostart, "off by default");
    s.autostart = true;
    let saved: AppSettings = ok(&r.win, "save_settings", json!({"settings": s}));
    assert!(saved.autostart);
    let text = std::fs::read_to_string(&entry).unwrap();
    let exe = std::env::current_exe().unwrap();
    assert!(text.contains(&format!("\nExec=\"{}\" --hidden\n", exe.display())), "{text}");
    let settings = std::fs::read_to_string(r.home.path().join("config/settings.toml")).unwrap();
    assert!(settings.contains("autostart = true"), "{settings}");
    s.autostart = false;
    assert!(!ok::<AppSettings>(&r.win, "save_settings", json!({"settings": s})).autostart);
    assert!(!entry.exists());
    // An entry that cannot be written: the setting stays off and the code says why.
    std::fs::write(r.home.path().join("xdg/autostart-blocker"), "").unwrap();
    std::fs::remove_dir(r.home.path().join("xdg/autostart")).unwrap();
    std::os::unix::fs::symlink(r.home.path().join("xdg/autostart-blocker"), r.home.path().join("xdg/autostart")).unwrap();
    s.autostart = true;
    assert_eq!(err(&r.win, "save_settings", json!({"settings": s})).name, "autostart_unavailable");
    assert!(!ok::<AppSettings>(&r.win, "get_settings", json!({})).autostart);
}

#[test]
fn settings_logs_update_and_privacy() {
    let r = rig();
    let mut s: AppSettings = ok(&r.win, "get_settings", json!({}));
    assert_eq!((s.pin_cache_minutes, s.near_expiry_warning_days, s.language), (30, 90, Language::ZhCn));
    s.pin_cache_minutes = 5;
    s.language = Language::En;
    let saved: AppSettings = ok(&r.win, "save_settings", json!({"settings": s}));
    assert_eq!(saved, s);
    let text = std::fs::read_to_string(r.home.path().join("config/settings.toml")).unwrap();
    assert!(text.contains("pin_cache_minutes = 5"), "{text}");
    // Messages follow the language now.
    let e = err(&r.win, "cert_details", json!({"cert": {"device": "file:x", "container": "c", "usage": "sign"}}));
    assert!(e.message.is_ascii(), "{}", e.message);
    let mut bad = s.clone();
    bad.pin_cache_minutes = 7;
    assert_eq!(err(&r.win, "save_settings", json!({"settings": bad})).name, "invalid_parameter");
    let mut bad = s.clone();
    bad.update_url = "http://updates.example.cn/latest.json".into();
    assert_eq!(err(&r.win, "save_settings", json!({"settings": bad})).name, "config_invalid");
    ok::<Value>(&r.win, "clear_pin_cache", json!({}));

    // Logs: one log file, exported encrypted, with progress.
    let log_dir = r.home.path().join("logs");
    std::fs::create_dir_all(&log_dir).unwrap();
    let name = kb_service::logs::log_file_name(kb_service::audit::now_ms() / 1000);
    std::fs::write(log_dir.join(name), "x".repeat(300_000)).unwrap();
    let out = r.home.path().join("support.p7e");
    let res: LogExportResult = ok(&r.win, "export_logs", json!({"path": out}));
    assert_eq!(res.files, 1);
    assert_eq!(std::fs::metadata(&out).unwrap().len(), res.bytes);
    let progress = r.progress.lock().unwrap().clone();
    assert!(progress.last().is_some_and(|p| p.done == p.total && p.total > 0), "{progress:?}");

    // Update check: none configured, offline, a real manifest over loopback HTTP.
    assert_eq!(err(&r.win, "check_update", json!({})).name, "update_url_missing");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    s.update_url = format!("http://127.0.0.1:{port}/latest.json");
    ok::<AppSettings>(&r.win, "save_settings", json!({"settings": s}));
    assert_eq!(err(&r.win, "check_update", json!({})).name, "network");
    let (url, serve) = serve_manifest_once("99.0.0");
    s.update_url = url;
    ok::<AppSettings>(&r.win, "save_settings", json!({"settings": s}));
    let u: UpdateStatus = ok(&r.win, "check_update", json!({}));
    assert!(u.available && u.latest == "99.0.0" && u.notes == "SM2 improvements");
    let request = serve.join().unwrap();
    assert!(request.starts_with("GET /latest.json HTTP/1.0\r\n") && request.contains("User-Agent: KeyBridge/"), "{request}");
    // A manifest without a signature (the old form), or one signed by another key, is refused.
    let (url, serve) = serve_body_once(r#"{"version":"99.0.0","url":"https://evil.example/kb.deb"}"#.into());
    s.update_url = url;
    ok::<AppSettings>(&r.win, "save_settings", json!({"settings": s}));
    assert_eq!(err(&r.win, "check_update", json!({})).name, "update_signature_invalid");
    serve.join().unwrap();
    let stranger = kb_crypto::PrivateKey::generate(kb_types::Algorithm::Sm2).unwrap();
    let forged = kb_desktop::update::SignedManifest::sign(br#"{"version":"99.0.0"}"#, &stranger).unwrap();
    let (url, serve) = serve_body_once(serde_json::to_string(&forged).unwrap());
    s.update_url = url;
    ok::<AppSettings>(&r.win, "save_settings", json!({"settings": s}));
    assert_eq!(err(&r.win, "check_update", json!({})).name, "update_signature_invalid");
    serve.join().unwrap();

    let p: PrivacyInfo = ok(&r.win, "privacy_info", json!({}));
    assert!(p.data_items.len() >= 5 && p.libraries.iter().any(|l| l.name == "tauri"));
}

/// A web page reaches the demo key through the app's local bridge: the consent and the
/// PIN are asked in the window's dialogs (answered through `answer_prompt`), never on
/// the socket, and the signature verifies with the certificate the window lists.
#[test]
fn bridge_requests_use_the_window_dialogs() {
    let r = rig_with(Some(Some(0)));
    let info: AppInfo = ok(&r.win, "app_info", json!({}));
    let url = info.bridge_url.expect("the bridge runs");
    assert!(url.starts_with("ws://127.0.0.1:"), "{url}");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (tx, rx) = channel();
    let url2 = url.clone();
    rt.spawn(async move {
        let opts = kb_bridge::client::ClientOptions {
            url: url2,
            origin: Some("https://bid.example.cn".into()),
            secret: None,
            sdk: "test-page".into(),
        };
        let c = kb_bridge::client::BridgeClient::connect(opts).await.unwrap();
        let list = c.request(c.next_id(), "certificates.list", json!({"usage": "sign"})).await;
        let thumb = list.as_ref().map(|l| l["certificates"][0]["thumbprint"].clone()).unwrap_or_default();
        let msg = base64_encode("投标文件".as_bytes());
        let sig = c
            .request(c.next_id(), "sign", json!({"certificate": {"thumbprint": thumb}, "input": {"data": msg}, "format": "raw"}))
            .await;
        tx.send((list.map_err(|e| e.to_string()), sig.map_err(|e| e.to_string()))).unwrap();
    });
    // First the consent dialog for the origin, then the PIN dialog for the signature.
    let consent = r.prompts.recv_timeout(Duration::from_secs(30)).unwrap();
    assert_eq!(consent.client, "https://bid.example.cn");
    assert!(matches!(consent.body, PromptBody::Consent { .. }), "{consent:?}");
    assert!(ok::<Vec<SiteGrant>>(&r.win, "list_grants", json!({})).is_empty());
    ok::<Value>(&r.win, "answer_prompt", json!({"id": consent.id, "answer": {"kind": "consent", "decision": "always"}}));
    let pin = r.prompts.recv_timeout(Duration::from_secs(30)).unwrap_or_else(|_| {
        panic!("no PIN prompt; the page got {:?}", rx.try_recv());
    });
    let PromptBody::Pin { operation, device, .. } = &pin.body else { panic!("{pin:?}") };
    assert_eq!((pin.client.as_str(), device.as_str(), operation.as_str()), ("https://bid.example.cn", "file:demo", "sign"));
    ok::<Value>(&r.win, "answer_prompt", json!({"id": pin.id, "answer": {"kind": "pin", "pin": "12345678"}}));
    let (list, sig) = rx.recv_timeout(Duration::from_secs(30)).unwrap();
    let list = list.unwrap();
    let sig = sig.unwrap();
    let d: CertDetails = ok(&r.win, "cert_details", json!({"cert": sign_ref()}));
    assert_eq!(list["certificates"][0]["thumbprint"].as_str().unwrap().to_uppercase(), d.thumbprint_sha1);
    let pem_path = r.home.path().join("sign.pem");
    ok::<String>(&r.win, "export_cert", json!({"cert": sign_ref(), "path": pem_path, "format": "pem"}));
    let cert = kb_pki::Certificate::from_pem(&std::fs::read_to_string(pem_path).unwrap()).unwrap();
    let raw = {
        use base64ct::Encoding;
        base64ct::Base64::decode_vec(sig["signature"].as_str().unwrap()).unwrap()
    };
    cert.public_key().unwrap().verify(&kb_crypto::SignatureScheme::sm2_default(), "投标文件".as_bytes(), &raw).unwrap();
    // The window's audit view shows the page as the client.
    let now = kb_service::audit::now_ms();
    let audit = ok::<AuditPage>(&r.win, "audit_query", json!({"fromMs": now - 60_000, "toMs": now + 1000, "limit": 100})).entries;
    assert!(audit.iter().any(|a| a.client == "https://bid.example.cn" && a.operation == "sign" && a.ok), "{audit:?}");
    // "Always" is remembered, listed in the settings, and revocable there.
    let grants: Vec<SiteGrant> = ok(&r.win, "list_grants", json!({}));
    assert_eq!(grants.len(), 1);
    assert!(grants[0].origin == "https://bid.example.cn" && grants[0].allowed && grants[0].since_ms > 0);
    let file = std::fs::read_to_string(r.home.path().join("data/bridge-grants.json")).unwrap();
    assert!(file.contains("https://bid.example.cn"), "the same file `keybridge bridge grants` reads");
    ok::<Value>(&r.win, "revoke_grant", json!({"origin": "https://bid.example.cn"}));
    assert!(ok::<Vec<SiteGrant>>(&r.win, "list_grants", json!({})).is_empty());
    assert_eq!(err(&r.win, "revoke_grant", json!({"origin": "https://bid.example.cn"})).name, "not_found");
    assert_eq!(err(&r.win, "revoke_grant", json!({"origin": "not an origin"})).name, "invalid_parameter");
}

/// A broken settings file and a taken bridge port do not keep the window from starting:
/// defaults are used, the demo key still works, and both problems are reported with
/// their codes for the window to show.
#[test]
fn start_up_problems_are_reported_not_fatal() {
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(home.path().join("config")).unwrap();
    std::fs::write(home.path().join("config/settings.toml"), "pin_cache_minutes = \"forever\"\n").unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let r = rig_in(home, Some(Some(port)));
    let info: AppInfo = ok(&r.win, "app_info", json!({}));
    let names: Vec<&str> = info.startup_problems.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["config_invalid", "bridge_unavailable"], "{:?}", info.startup_problems);
    assert!(info.startup_problems[0].detail.contains("pin_cache_minutes"), "the key is named");
    assert!(info.startup_problems[1].detail.contains(&port.to_string()));
    assert_eq!(info.bridge_url, None);
    assert_eq!(ok::<AppSettings>(&r.win, "get_settings", json!({})).pin_cache_minutes, 30, "defaults");
    assert_eq!(demo(&r).certificates.len(), 2);
    // The broken file is left for the user to see, not overwritten.
    assert!(std::fs::read_to_string(r.home.path().join("config/settings.toml")).unwrap().contains("forever"));
}

/// The release key these tests pin in the app instead of the real one.
fn update_key() -> &'static kb_crypto::PrivateKey {
    static KEY: std::sync::OnceLock<kb_crypto::PrivateKey> = std::sync::OnceLock::new();
    KEY.get_or_init(|| kb_crypto::PrivateKey::generate(kb_types::Algorithm::Sm2).unwrap())
}

/// An HTTP server on loopback answering one GET with an update manifest signed by the
/// pinned test key; returns its URL and the request it saw.
fn serve_manifest_once(version: &str) -> (String, std::thread::JoinHandle<String>) {
    let manifest = format!(r#"{{"version":"{version}","notes":"SM2 improvements","url":"https://example.cn/kb.deb"}}"#);
    let signed = kb_desktop::update::SignedManifest::sign(manifest.as_bytes(), update_key()).unwrap();
    serve_body_once(serde_json::to_string(&signed).unwrap())
}

/// An HTTP server on loopback answering one GET with `body`.
fn serve_body_once(body: String) -> (String, std::thread::JoinHandle<String>) {
    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://127.0.0.1:{}/latest.json", server.local_addr().unwrap().port());
    let serve = std::thread::spawn(move || {
        let (mut c, _) = server.accept().unwrap();
        let mut req = [0u8; 1024];
        let n = c.read(&mut req).unwrap();
        write!(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()).unwrap();
        String::from_utf8_lossy(&req[..n]).to_string()
    });
    (url, serve)
}

/// The settings' update frequency: a scheduled check runs when one is due, tells the
/// window about a newer version, and is not repeated within the period.
#[test]
fn scheduled_update_checks_follow_the_frequency() {
    let r = rig();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    UpdateStatus::listen(&r._app, move |e| s2.lock().unwrap().push(e.payload));
    let desktop = r._app.state::<Arc<kb_desktop::Desktop>>().inner().clone();
    let now = kb_service::audit::now_ms();
    let mut s: AppSettings = ok(&r.win, "get_settings", json!({}));
    // No URL configured: nothing to do.
    assert_eq!(desktop.scheduled_update_check(now), None);
    let (url, serve) = serve_manifest_once("99.1.0");
    s.update_url = url;
    s.update_check = UpdateFrequency::Never;
    ok::<AppSettings>(&r.win, "save_settings", json!({"settings": s}));
    assert_eq!(desktop.scheduled_update_check(now), None, "never means never");
    s.update_check = UpdateFrequency::Daily;
    ok::<AppSettings>(&r.win, "save_settings", json!({"settings": s}));
    let found = desktop.scheduled_update_check(now).expect("due: never checked before");
    assert!(found.available && found.latest == "99.1.0");
    serve.join().unwrap();
    // Not again within the day (nothing listens any more: a second GET would fail the test).
    assert_eq!(desktop.scheduled_update_check(now + 3_600_000), None);
    // A day later it is due again (offline now: logged, no event, no error shown).
    assert_eq!(desktop.scheduled_update_check(now + 86_400_001), None);
    std::thread::sleep(Duration::from_millis(200));
    let events = seen.lock().unwrap().clone();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].latest, "99.1.0");
}

fn base64_encode(b: &[u8]) -> String {
    use base64ct::Encoding;
    base64ct::Base64::encode_string(b)
}

#[test]
fn renewal_page_runs_the_embedded_development_ca() {
    let r = rig();
    let page: kb_desktop::renewal::RenewalPage = ok(&r.win, "renewal_page", json!({}));
    assert_eq!(page.state, kb_desktop::renewal::RenewalPageState::Ready, "{page:?}");
    let ca = page.ca.unwrap();
    assert!(ca.development && ca.embedded && ca.loopback && ca.url.starts_with("http://127.0.0.1:"), "{ca:?}");
    assert_eq!(page.device.as_deref(), Some("file:demo"));
    assert!(!page.certificates.is_empty() && page.certificates.iter().all(|c| c.bound == Some(false) && !c.can_install));
    // Nothing applied for: nothing to notice, and 安装证书 is refused with its code.
    let notices: Vec<Value> = ok(&r.win, "renewal_check", json!({}));
    assert!(notices.is_empty());
    let e = err(&r.win, "renewal_install", json!({"cert": sign_ref()}));
    assert_eq!(e.name, "renewal_not_approved", "{e:?}");
}

/// The phone keys page's commands through IPC: without `phone_listen` the page says so
/// and pairing fails with `link_no_endpoint`; with it (loopback) a QR offer comes back and
/// can be withdrawn; unknown phones and requests fail with the phone link's codes.
#[test]
fn phone_page_commands() {
    use kb_desktop::phone::{PairingOffer, PhonePage};
    let r = rig();
    let page: PhonePage = ok(&r.win, "phone_page", json!({}));
    assert!(!page.pairing_available && page.phones.is_empty(), "{page:?}");
    assert_eq!(err(&r.win, "start_phone_pairing", json!({})).name, "link_no_endpoint");
    assert_eq!(err(&r.win, "rename_phone", json!({"peer": "0000", "name": "x"})).name, "phone_not_paired");
    assert_eq!(err(&r.win, "revoke_phone", json!({"peer": "0000"})).name, "phone_not_paired");

    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(home.path().join("config")).unwrap();
    std::fs::write(home.path().join("config/settings.toml"), "phone_listen = [\"127.0.0.1:0\"]\n").unwrap();
    let r = rig_in(home, None);
    let offer: PairingOffer = ok(&r.win, "start_phone_pairing", json!({}));
    assert!(offer.text.starts_with("KB1:") && offer.seconds_left > 0, "{offer:?}");
    let page: PhonePage = ok(&r.win, "phone_page", json!({}));
    assert_eq!(page.listening.len(), 1, "{page:?}");
    assert!(err(&r.win, "confirm_phone_pairing", json!({"request": 424242})).code / 1000 == 6);
    ok::<()>(&r.win, "cancel_phone_pairing", json!({}));
}
