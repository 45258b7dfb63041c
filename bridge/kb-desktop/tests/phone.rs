//! The phone keys page against a real phone over loopback: the desktop's host listens on
//! 127.0.0.1 (settings `phone_listen`), an in-process phone (kb-phonelink's `Phone` and
//! kb-phone's `PhoneAgent` over a copy of the demo file key) scans the QR string, the code
//! is confirmed through the Desktop, the phone's certificates are listed like any
//! medium's, and revoking it takes them offline. Secrets go to the file store.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use kb_desktop::model::*;
use kb_desktop::phone::{BackendChoice, PhoneEvent, SecretStoreKind};
use kb_desktop::prompter::PromptSink;
use kb_desktop::{Desktop, DesktopOptions, EventSink};
use kb_filekey::{FileToken, KdfParams};
use kb_phone::agent::PhoneAgent;
use kb_phone::msg::PhoneInfo;
use kb_phone::testing::ScriptedPhone;
use kb_phonelink::{LinkConfig, LinkRuntime, Phone, StaticKey};
use kb_types::ErrorCode;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);

/// The window's side: phone events to a channel, the rest ignored.
struct Window(Mutex<Sender<PhoneEvent>>);

impl EventSink for Window {
    fn media_changed(&self, _: &MediaChanged) {}
    fn expiry_notice(&self, _: &ExpiryNotice) {}
    fn log_export_progress(&self, _: &LogExportProgress) {}
    fn update_available(&self, _: &UpdateStatus) {}
    fn operation_status(&self, _: &OperationStatus) {}
    fn phone_event(&self, event: &PhoneEvent) {
        let _ = self.0.lock().unwrap().send(event.clone());
    }
}

impl PromptSink for Window {
    fn open(&self, request: &PromptRequest) {
        panic!("no prompt expected: {request:?}");
    }
    fn close(&self, _: u32) {}
    fn notify(&self, _: &str) {}
}

fn open(home: &Path, settings: &str) -> (Arc<Desktop>, Receiver<PhoneEvent>) {
    let config = home.join("config");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(config.join("settings.toml"), settings).unwrap();
    let (tx, rx) = channel();
    let window = Arc::new(Window(Mutex::new(tx)));
    let opts = DesktopOptions {
        home: Some(home.to_path_buf()),
        create_demo: true,
        kdf: KdfParams::weak_for_tests(),
        file_logging: false,
        hardware: false,
        bridge: None,
        update_keys: Vec::new(),
        phone_secrets: BackendChoice::File,
        ble: None,
        autostart_dir: None,
    };
    let d = Desktop::open(opts, window.clone(), window).unwrap();
    assert!(d.startup_problems().is_empty(), "{:?}", d.startup_problems());
    (d, rx)
}

fn expect(rx: &Receiver<PhoneEvent>, what: &str, pred: impl Fn(&PhoneEvent) -> bool) -> PhoneEvent {
    let deadline = Instant::now() + WAIT;
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(e) if pred(&e) => return e,
            Ok(_) => {}
            Err(e) => panic!("no {what} event: {e}"),
        }
    }
}

/// Wait until the media list has a phone medium in the state `pred` wants.
fn phone_medium(d: &Desktop, what: &str, pred: impl Fn(&Medium) -> bool) -> Medium {
    let deadline = Instant::now() + WAIT;
    loop {
        let media = d.list_media().unwrap();
        if let Some(m) = media.iter().find(|m| m.kind == MediumKind::Phone && pred(m)) {
            return m.clone();
        }
        assert!(Instant::now() < deadline, "no phone medium {what}: {media:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The demo key the desktop created, copied for the phone to hold.
fn phone_key(home: &Path, dir: &Path) -> PathBuf {
    let found = walk(home).into_iter().find(|p| p.extension().is_some_and(|x| x == kb_filekey::EXTENSION)).unwrap();
    let copy = dir.join(found.file_name().unwrap());
    std::fs::copy(&found, &copy).unwrap();
    copy
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .flat_map(|e| if e.path().is_dir() { walk(&e.path()) } else { vec![e.path()] })
        .collect()
}

const LOOPBACK: &str = "phone_listen = [\"127.0.0.1:0\"]\n";

#[test]
fn pair_confirm_list_rename_and_revoke_a_phone() {
    let home = tempfile::tempdir().unwrap();
    let (d, events) = open(home.path(), LOOPBACK);
    let page = d.phone_page().unwrap();
    assert!(page.pairing_available && page.phones.is_empty(), "{page:?}");
    assert_eq!(page.listen, vec!["127.0.0.1:0".to_string()]);
    assert!(page.listening.is_empty(), "the listener opens for pairing only");
    assert_eq!((page.secrets.kind, page.secrets.fallback), (SecretStoreKind::File, false), "{:?}", page.secrets);

    let offer = d.start_phone_pairing().unwrap();
    assert!(offer.text.starts_with("KB1:"), "{offer:?}");
    assert!((1..=300).contains(&offer.seconds_left), "{offer:?}");
    assert!(offer.expires_ms > 0 && offer.endpoints.iter().all(|e| e.starts_with("ws://127.0.0.1:")), "{offer:?}");
    assert_eq!(d.phone_page().unwrap().listening.len(), 1);

    // The phone scans the QR string; the desktop shows the same code and the user confirms.
    let phone = Phone::new(StaticKey::generate().unwrap(), "张三的手机", LinkConfig::default(), LinkRuntime::new().unwrap());
    let pending = phone.pair(&offer.text).unwrap();
    let PhoneEvent::ConfirmCode { request, code, name, .. } =
        expect(&events, "confirm code", |e| matches!(e, PhoneEvent::ConfirmCode { .. }))
    else {
        unreachable!()
    };
    assert_eq!((code.as_str(), name.as_str()), (pending.code.as_str(), "张三的手机"));
    assert_eq!(code.len(), 6);
    d.confirm_phone_pairing(request).unwrap();
    let (_pairing, conn) = phone.wait_confirmed(pending).unwrap();
    let PhoneEvent::Paired { peer, .. } = expect(&events, "paired", |e| matches!(e, PhoneEvent::Paired { .. })) else {
        unreachable!()
    };

    // The phone serves a copy of the demo key: its certificates are listed like any medium's.
    let keys = tempfile::tempdir().unwrap();
    let token = FileToken::open(phone_key(home.path(), keys.path())).unwrap();
    let info = PhoneInfo { name: "张三的手机".into(), model: "test".into(), app_version: "tests".into() };
    let agent = Arc::new(PhoneAgent::new(Box::new(token), Arc::new(ScriptedPhone::new()), Duration::from_secs(60), info));
    let serving = {
        let agent = Arc::clone(&agent);
        std::thread::spawn(move || agent.serve(conn))
    };
    let PhoneEvent::Online { media, .. } = expect(&events, "online", |e| matches!(e, PhoneEvent::Online { .. })) else {
        unreachable!()
    };
    let m = phone_medium(&d, "online", |m| m.online);
    assert_eq!(media, vec![m.id.clone()]);
    assert!(m.verifies_user, "the phone asks its own PIN");
    assert_eq!(m.certificates.len(), 2, "the demo key's sign and encrypt certificates: {m:?}");
    let page = d.phone_page().unwrap();
    assert_eq!(page.phones.len(), 1);
    let p = &page.phones[0];
    assert!(p.peer == peer && p.online && !p.revoked && p.media == media && p.last_seen_ms.is_some(), "{p:?}");

    d.rename_phone(&peer, "  投标专用手机 ").unwrap();
    assert_eq!(d.phone_page().unwrap().phones[0].name, "投标专用手机");
    let e = d.rename_phone(&peer, " \t ").unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidParameter.number());
    let e = d.rename_phone("no-such-phone", "x").unwrap_err();
    assert_eq!(e.code, ErrorCode::PhoneNotPaired.number(), "{e}");

    // Revoked: its link closes, its certificates go offline, it stays listed as revoked.
    d.revoke_phone(&peer).unwrap();
    expect(&events, "offline", |e| matches!(e, PhoneEvent::Offline { peer: p } if *p == peer));
    let gone = phone_medium(&d, "offline", |m| !m.online);
    assert_eq!(gone.id, m.id);
    let p = d.phone_page().unwrap().phones.remove(0);
    assert!(p.revoked && !p.online, "{p:?}");
    serving.join().unwrap().ok();
}

#[test]
fn a_rejected_phone_is_not_paired() {
    let home = tempfile::tempdir().unwrap();
    let (d, events) = open(home.path(), LOOPBACK);
    let offer = d.start_phone_pairing().unwrap();
    let phone = Phone::new(StaticKey::generate().unwrap(), "陌生手机", LinkConfig::default(), LinkRuntime::new().unwrap());
    let pending = phone.pair(&offer.text).unwrap();
    let PhoneEvent::ConfirmCode { request, .. } =
        expect(&events, "confirm code", |e| matches!(e, PhoneEvent::ConfirmCode { .. }))
    else {
        unreachable!()
    };
    d.reject_phone_pairing(request).unwrap();
    let PhoneEvent::PairingEnded { request: ended, error } =
        expect(&events, "pairing ended", |e| matches!(e, PhoneEvent::PairingEnded { .. }))
    else {
        unreachable!()
    };
    assert_eq!((ended, error.code), (request, ErrorCode::PairingRejected.number()), "{error:?}");
    assert!(phone.wait_confirmed(pending).is_err());
    assert!(d.phone_page().unwrap().phones.is_empty());
    // The QR code was used: a second phone scanning it is refused.
    let other = Phone::new(StaticKey::generate().unwrap(), "第二部手机", LinkConfig::default(), LinkRuntime::new().unwrap());
    assert!(other.pair(&offer.text).and_then(|p| other.wait_confirmed(p)).is_err());
    d.cancel_phone_pairing().unwrap();
}

#[test]
fn without_a_phone_transport_the_page_says_what_to_configure() {
    let home = tempfile::tempdir().unwrap();
    let (d, _events) = open(home.path(), "");
    let page = d.phone_page().unwrap();
    assert!(!page.pairing_available && page.listen.is_empty() && page.relay_url.is_none(), "{page:?}");
    assert!(page.settings_file.ends_with("settings.toml"), "{}", page.settings_file);
    let e = d.start_phone_pairing().unwrap_err();
    assert_eq!(e.code, ErrorCode::LinkNoEndpoint.number());
    assert!(e.detail.contains("phone_listen") && e.detail.contains(&page.settings_file), "{}", e.detail);
    // Nothing is listed, and no phone medium joined.
    assert!(d.list_media().unwrap().iter().all(|m| m.kind != MediumKind::Phone));
}
