//! The phone link end to end over the direct WebSocket transport on 127.0.0.1: pairing
//! with confirmation, messages both ways (fragmented too), reconnect, reject, revoke,
//! keep-alive, a vanished phone.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::*;
use kb_phonelink::{LinkError, PcConfig, PcEvent};
use kb_types::ErrorCode;

#[test]
fn pair_confirm_talk_reconnect() {
    let rig = rig();
    let phone = phone("张三的手机");
    let (pairing, phone_conn, pc_conn) = pair(&rig, &phone);
    assert_eq!(pc_conn.peer(), &phone.id());
    assert_eq!(phone_conn.peer(), &rig.pc.pc_id());
    ping_pong(&*phone_conn, &*pc_conn);

    // A message larger than one frame is fragmented and reassembled.
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    pc_conn.send(&big).unwrap();
    assert_eq!(phone_conn.recv(Some(WAIT)).unwrap(), big);
    phone_conn.send(&big).unwrap();
    assert_eq!(pc_conn.recv(Some(WAIT)).unwrap(), big);
    // Over the cap: refused, the link stays up.
    let cap = link_cfg().max_message;
    assert_eq!(pc_conn.send(&vec![0; cap + 1]), Err(LinkError::TooLarge { len: cap + 1, cap }));
    ping_pong(&*phone_conn, &*pc_conn);

    let listed = rig.pc.store().list();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].name, "张三的手机");
    assert_eq!(listed[0].peer, phone.id().0);

    // A clean close reaches the other side as Closed.
    phone_conn.close();
    assert_eq!(wait_closed(&*pc_conn), LinkError::Closed);
    assert_eq!(pc_conn.close_reason(), Some(LinkError::Closed));

    // Paired phones come back without a QR, as often as they like.
    for _ in 0..2 {
        good_phone_still_works(&rig, &phone, &pairing);
    }
    // The stored pairing survives a round trip through the phone's storage format.
    let again = kb_phonelink::Pairing::from_json(&pairing.to_json()).unwrap();
    assert_eq!(again, pairing);
    assert!(!format!("{pairing:?}").contains(&hex::encode(&pairing.link_secret[..4])));
}

#[test]
fn a_rejected_phone_is_told_and_not_stored() {
    let rig = rig();
    let phone = phone("not mine");
    let offer = rig.pc.start_pairing(&[]).unwrap();
    let pending = phone.pair(&offer.text).unwrap();
    let PcEvent::PairingRequest { request, .. } =
        wait_event(&rig, "pairing request", |e| matches!(e, PcEvent::PairingRequest { .. }))
    else {
        unreachable!()
    };
    rig.pc.reject(request).unwrap();
    let e = phone.wait_confirmed(pending).err().unwrap();
    assert_eq!(code_of(&e), ErrorCode::PairingRejected);
    assert!(rig.pc.store().list().is_empty());
    wait_event(&rig, "pairing ended", |e| {
        matches!(e, PcEvent::PairingEnded { reason: LinkError::Failed { code: ErrorCode::PairingRejected, .. }, .. })
    });
}

#[test]
fn revoking_closes_the_live_link_and_refuses_the_phone() {
    let rig = rig();
    let phone = phone("lost phone");
    let (pairing, phone_conn, _pc_conn) = pair(&rig, &phone);
    rig.pc.revoke(&phone.id()).unwrap();
    assert_eq!(code_of(&wait_closed(&*phone_conn)), ErrorCode::PhoneRevoked);
    let e = phone.reconnect(&pairing).err().unwrap();
    assert_eq!(code_of(&e), ErrorCode::PhoneRevoked);
    wait_refused(&rig, ErrorCode::PhoneRevoked);
    assert!(rig.pc.store().list()[0].revoked);
}

#[test]
fn keep_alive_notices_a_silent_peer() {
    let rig = rig();
    let (phone, key) = phone_with_key("quiet");
    let (pairing, _c1, _c2) = pair(&rig, &phone);
    // Once the link is up, the middle swallows everything.
    let black_hole = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let bh = black_hole.clone();
    let (phone_conn, pc_conn) = reconnect_through(&rig, &key, &pairing, move |_, f| {
        if bh.load(std::sync::atomic::Ordering::SeqCst) { Act::Drop } else { Act::Forward(f) }
    })
    .unwrap();
    ping_pong(&*phone_conn, &*pc_conn);
    black_hole.store(true, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(code_of(&wait_closed(&*pc_conn)), ErrorCode::LinkPeerTimeout);
    assert_eq!(code_of(&wait_closed(&*phone_conn)), ErrorCode::LinkPeerTimeout);
}

#[test]
fn a_vanished_phone_ends_the_link_with_link_lost() {
    let rig = rig();
    let phone = phone("killed");
    let (_pairing, phone_conn, pc_conn) = pair(&rig, &phone);
    // The phone's process dies: its runtime (tasks and sockets) goes away first, so no
    // close record is sent (dropping a live handle would close cleanly).
    drop(phone);
    drop(phone_conn);
    let why = wait_closed(&*pc_conn);
    assert_eq!(code_of(&why), ErrorCode::LinkLost, "{why:?}");
}

/// The PC side driven from async code: the caller's runtime, `next_event_async`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pc_side_is_driven_from_async_code() {
    use kb_phonelink::{BackendChoice, LinkRuntime, MessageConn, PairingStore, PcConfig, PcEndpoint, Phone, StaticKey};
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(PairingStore::open(dir.path(), BackendChoice::File).unwrap());
    let rt = LinkRuntime::current_or_new().unwrap();
    let pc = PcEndpoint::new(store, PcConfig { link: link_cfg(), ..PcConfig::default() }, rt.clone()).unwrap();
    pc.open_direct(&["127.0.0.1:0".parse().unwrap()]).unwrap();
    let offer = pc.start_pairing(&[]).unwrap();
    let phone = Phone::new(StaticKey::generate().unwrap(), "async phone", link_cfg(), rt);
    let pending = tokio::time::timeout(WAIT, phone.pair_async(&offer.text)).await.unwrap().unwrap();
    let PcEvent::PairingRequest { request, code, name, .. } = tokio::time::timeout(WAIT, pc.next_event_async()).await.unwrap()
    else {
        panic!("expected a pairing request")
    };
    assert_eq!((code.as_str(), name.as_str()), (pending.code.as_str(), "async phone"));
    assert_eq!(pending.pc_name, "KeyBridge");
    pc.confirm(request).unwrap();
    let (_pairing, phone_conn) = tokio::time::timeout(WAIT, pending.confirmed_async()).await.unwrap().unwrap();
    let PcEvent::Connected { conn, .. } = tokio::time::timeout(WAIT, pc.next_event_async()).await.unwrap() else {
        panic!("expected connected")
    };
    phone_conn.send(b"from async").unwrap();
    let got = tokio::task::spawn_blocking(move || conn.recv(Some(WAIT))).await.unwrap().unwrap();
    assert_eq!(got, b"from async");
}

/// The PC may send the moment it has the link (before the phone has read the PC's
/// `Paired` / `Hello`): nothing is lost or refused, after pairing and after reconnect.
#[test]
fn the_pc_may_talk_first() {
    let rig = rig();
    let phone = phone("listener");
    let offer = rig.pc.start_pairing(&[]).unwrap();
    let pending = phone.pair(&offer.text).unwrap();
    let PcEvent::PairingRequest { request, .. } =
        wait_event(&rig, "pairing request", |e| matches!(e, PcEvent::PairingRequest { .. }))
    else {
        unreachable!()
    };
    rig.pc.confirm(request).unwrap();
    let PcEvent::Connected { conn, .. } = wait_event(&rig, "connected", |e| matches!(e, PcEvent::Connected { .. })) else {
        unreachable!()
    };
    conn.send(b"first").unwrap();
    // Let the frames reach the phone before it reads its setup records.
    std::thread::sleep(std::time::Duration::from_millis(200));
    let (pairing, phone_conn) = phone.wait_confirmed(pending).unwrap();
    assert_eq!(phone_conn.recv(Some(WAIT)).unwrap(), b"first");
    phone_conn.close();

    // Reconnect: the PC talks as soon as it reports the phone.
    let pc = rig.pc.clone();
    let talker = std::thread::spawn(move || {
        let end = std::time::Instant::now() + WAIT;
        while std::time::Instant::now() < end {
            if let Some(PcEvent::Connected { conn, .. }) = pc.next_event(std::time::Duration::from_millis(100)) {
                conn.send(b"again").unwrap();
                return conn;
            }
        }
        panic!("no reconnect");
    });
    let phone_conn = phone.reconnect(&pairing).unwrap();
    let _pc_conn = talker.join().unwrap();
    assert_eq!(phone_conn.recv(Some(WAIT)).unwrap(), b"again");
}

#[test]
fn a_port_already_hosting_the_phone_link_is_refused_with_the_likely_cause() {
    // `keybridge serve` (or the desktop app) already listens; `keybridge phone pair` on the
    // same settings must say why it cannot, not only "address in use".
    let first = rig();
    let taken = first.pc.direct_addrs()[0];
    let second = rig_with(PcConfig { link: link_cfg(), ..PcConfig::default() });
    let e = second.pc.open_direct(&[taken]).unwrap_err();
    assert_eq!(code_of(&e), ErrorCode::LinkListenFailed);
    assert!(e.to_string().contains("another KeyBridge"), "{e}");
    // The first listener is untouched.
    assert_eq!(first.pc.direct_addrs(), [taken]);
}
