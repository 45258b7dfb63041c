//! The host with an in-process phone over the real direct listener on loopback: pairing
//! with the code on both sides, the phone's medium attached (connected event, online),
//! rename, and revoke closing the live link (disconnected, offline) and refusing the
//! phone's reconnect with `phone_revoked`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kb_phone::agent::PhoneAgent;
use kb_phone::msg::PhoneInfo;
use kb_phone::testing::ScriptedPhone;
use kb_phonehost::{HostConfig, HostEvent, PhoneHost};
use kb_phonelink::{BackendChoice, LinkConfig, LinkRuntime, Phone, StaticKey};
use kb_token::memory::MemoryToken;
use kb_types::{ErrorCode, HasErrorCode, TransportKind};
use std::sync::Arc;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(30);

fn expect(rx: &Receiver<HostEvent>, what: &str, pred: impl Fn(&HostEvent) -> bool) -> HostEvent {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(e) if pred(&e) => return e,
            Ok(_) => {}
            Err(e) => panic!("no {what}: {e}"),
        }
    }
}

#[test]
fn pair_attach_rename_and_revoke_a_live_phone() {
    let dir = tempfile::tempdir().unwrap();
    let cfg =
        HostConfig { backend: BackendChoice::File, listen: vec!["127.0.0.1:0".parse().unwrap()], ..HostConfig::new(dir.path()) };
    let host = PhoneHost::start(cfg).unwrap();
    let events = host.subscribe();
    let offer = host.start_pairing().unwrap();

    let phone = Phone::new(StaticKey::generate().unwrap(), "张三的手机", LinkConfig::default(), LinkRuntime::new().unwrap());
    let pending = phone.pair(&offer.text).unwrap();
    let HostEvent::AwaitingConfirmation { request, code, name, .. } =
        expect(&events, "confirmation request", |e| matches!(e, HostEvent::AwaitingConfirmation { .. }))
    else {
        unreachable!()
    };
    assert_eq!((code.as_str(), name.as_str()), (pending.code.as_str(), "张三的手机"));
    host.confirm(request).unwrap();
    let (pairing, conn) = phone.wait_confirmed(pending).unwrap();
    expect(&events, "paired", |e| matches!(e, HostEvent::Paired { .. }));

    let token = MemoryToken::new(TransportKind::File, "phone-key", "12345678", "admin-pin-0");
    let info = PhoneInfo { name: "张三的手机".into(), model: "test".into(), app_version: "tests".into() };
    let agent = Arc::new(PhoneAgent::new(Box::new(token), Arc::new(ScriptedPhone::new()), Duration::from_secs(60), info));
    let serving = {
        let agent = Arc::clone(&agent);
        std::thread::spawn(move || agent.serve(conn))
    };
    let HostEvent::Connected { peer, media, .. } = expect(&events, "connected", |e| matches!(e, HostEvent::Connected { .. }))
    else {
        unreachable!()
    };
    assert_eq!(media.len(), 1, "the phone's medium");
    let listed = host.phones();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].online && !listed[0].revoked && listed[0].media == media, "{listed:?}");
    assert_eq!(host.find(&peer[..6]).unwrap().peer, peer);

    host.rename(&peer, "投标专用手机").unwrap();
    assert_eq!(host.phones()[0].name, "投标专用手机");

    host.revoke(&peer).unwrap();
    expect(&events, "disconnected", |e| matches!(e, HostEvent::Disconnected { peer: p } if *p == peer));
    let after = host.phones();
    assert!(after[0].revoked && !after[0].online, "{after:?}");
    serving.join().unwrap().ok();
    let e = phone.reconnect(&pairing).map(|_| ()).unwrap_err();
    assert_eq!(e.code(), ErrorCode::PhoneRevoked, "{e}");
}
