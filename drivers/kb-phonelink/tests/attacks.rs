//! Attacks on the phone link, each refused with its stable code — and after each, a good
//! paired phone still connects and talks (the PC endpoint keeps serving).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::*;
use kb_phonelink::phone::{Pairing, pair_over};
use kb_phonelink::wire::{FrameType, parse_frame};
use kb_phonelink::{LinkError, MAX_FRAME, Offer, PcConfig, PcEvent, StaticKey};
use kb_types::ErrorCode;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use zeroize::Zeroizing;

/// A rig with one good phone already paired.
fn setup() -> (Rig, kb_phonelink::Phone, StaticKey, Pairing) {
    let rig = rig();
    let (good, key) = phone_with_key("good phone");
    let (pairing, c1, _c2) = pair(&rig, &good);
    c1.close();
    (rig, good, key, pairing)
}

fn is_transport(f: &[u8]) -> bool {
    matches!(parse_frame(f, MAX_FRAME), Ok((FrameType::Transport, _)))
}

#[test]
fn expired_qr() {
    let rig = rig_with(PcConfig { link: link_cfg(), offer_ttl: Duration::ZERO, ..PcConfig::default() });
    let offer = rig.pc.start_pairing(&[]).unwrap();
    assert!(Offer::parse(&offer.text).unwrap().is_expired(u64::MAX));
    let e = phone("late").pair(&offer.text).err().unwrap();
    assert_eq!(code_of(&e), ErrorCode::PairingOfferExpired);
    wait_refused(&rig, ErrorCode::PairingOfferExpired);
}

#[test]
fn reused_and_replaced_qr() {
    let rig = rig();
    let first = phone("first");
    let offer = rig.pc.start_pairing(&[]).unwrap();
    let pending = first.pair(&offer.text).unwrap();
    let PcEvent::PairingRequest { request, .. } =
        wait_event(&rig, "pairing request", |e| matches!(e, PcEvent::PairingRequest { .. }))
    else {
        unreachable!()
    };
    rig.pc.confirm(request).unwrap();
    let (pairing, _conn) = first.wait_confirmed(pending).unwrap();
    wait_event(&rig, "connected", |e| matches!(e, PcEvent::Connected { new_pairing: true, .. }));

    let e = phone("second").pair(&offer.text).err().unwrap();
    assert_eq!(code_of(&e), ErrorCode::PairingOfferUsed);
    wait_refused(&rig, ErrorCode::PairingOfferUsed);

    // A used offer stays refused as used after a new one is shown; a replaced one is unknown.
    let newer = rig.pc.start_pairing(&[]).unwrap();
    assert_eq!(code_of(&phone("third").pair(&offer.text).err().unwrap()), ErrorCode::PairingOfferUsed);
    rig.pc.start_pairing(&[]).unwrap();
    assert_eq!(code_of(&phone("fourth").pair(&newer.text).err().unwrap()), ErrorCode::PairingOfferUnknown);
    good_phone_still_works(&rig, &first, &pairing);
}

#[test]
fn wrong_secret() {
    let (rig, good, _, pairing) = setup();
    let offer = rig.pc.start_pairing(&[]).unwrap();
    let mut forged = Offer::parse(&offer.text).unwrap();
    forged.secret = Zeroizing::new([0x42; 16]);
    let e = phone("guesser").pair(&forged.encode().unwrap()).err().unwrap();
    assert_eq!(code_of(&e), ErrorCode::PairingProofFailed);
    wait_refused(&rig, ErrorCode::PairingProofFailed);
    // A failed guess does not burn the offer: the real phone can still use it.
    let p = phone("owner");
    let pending = p.pair(&offer.text).unwrap();
    assert_eq!(pending.code.len(), 6);
    good_phone_still_works(&rig, &good, &pairing);
}

#[test]
fn a_second_phone_racing_the_first() {
    let (rig, good, _, pairing) = setup();
    let offer = rig.pc.start_pairing(&[]).unwrap();
    let (a, b) = (phone("a"), phone("b"));
    let text = offer.text.clone();
    let (ra, rb) = std::thread::scope(|s| {
        let ja = s.spawn(|| a.pair(&text));
        let jb = s.spawn(|| b.pair(&text));
        (ja.join().unwrap(), jb.join().unwrap())
    });
    let (winner, loser) = match (ra, rb) {
        (Ok(w), Err(l)) | (Err(l), Ok(w)) => (w, l),
        (Ok(_), Ok(_)) => panic!("one offer paired two phones"),
        (Err(x), Err(y)) => panic!("neither paired: {x:?} / {y:?}"),
    };
    assert_eq!(code_of(&loser), ErrorCode::PairingOfferUsed);
    let PcEvent::PairingRequest { code, .. } =
        wait_event(&rig, "pairing request", |e| matches!(e, PcEvent::PairingRequest { .. }))
    else {
        unreachable!()
    };
    assert_eq!(code, winner.code);
    wait_refused(&rig, ErrorCode::PairingOfferUsed);
    good_phone_still_works(&rig, &good, &pairing);
}

/// Establish a link through a middle that applies `attack` to the phone's transport
/// frames once `armed` (after the hello); the PC closes with `link_integrity`.
fn frame_attack(name: &str, attack: impl FnMut(Vec<u8>) -> Act + Send + 'static) {
    let (rig, good, key, pairing) = setup();
    let armed = Arc::new(AtomicUsize::new(0));
    let armed2 = armed.clone();
    let mut attack = attack;
    let (phone_conn, pc_conn) = reconnect_through(&rig, &key, &pairing, move |dir, f| {
        if dir == Dir::ToPc && is_transport(&f) && armed2.load(Ordering::SeqCst) == 1 { attack(f) } else { Act::Forward(f) }
    })
    .unwrap();
    ping_pong(&*phone_conn, &*pc_conn);
    armed.store(1, Ordering::SeqCst);
    for i in 0..3u8 {
        let _ = phone_conn.send(&[i; 100]);
    }
    let why = wait_closed(&*pc_conn);
    assert_eq!(code_of(&why), ErrorCode::LinkIntegrity, "{name}: {why:?}");
    // The PC tells the phone why.
    assert_eq!(code_of(&wait_closed(&*phone_conn)), ErrorCode::LinkIntegrity, "{name}");
    good_phone_still_works(&rig, &good, &pairing);
}

#[test]
fn tampered_frame() {
    frame_attack("tampered", |mut f| {
        let last = f.len() - 1;
        f[last] ^= 0x01;
        Act::Forward(f)
    });
}

#[test]
fn replayed_frame() {
    frame_attack("replayed", |f| Act::Many(vec![f.clone(), f]));
}

#[test]
fn reordered_frames() {
    let mut held: Option<Vec<u8>> = None;
    frame_attack("reordered", move |f| match held.take() {
        None => {
            held = Some(f);
            Act::Drop
        }
        Some(first) => Act::Many(vec![f, first]),
    });
}

#[test]
fn truncated_frame() {
    frame_attack("truncated", |mut f| {
        f.truncate(f.len() - 5);
        Act::Forward(f)
    });
}

#[test]
fn dropped_frame() {
    let mut n = 0;
    frame_attack("dropped", move |f| {
        n += 1;
        if n == 1 { Act::Drop } else { Act::Forward(f) }
    });
}

#[test]
fn oversized_frame() {
    let (rig, good, key, pairing) = setup();
    let inject = Arc::new(AtomicUsize::new(0));
    let inject2 = inject.clone();
    let (phone_conn, pc_conn) = reconnect_through(&rig, &key, &pairing, move |dir, f| {
        if dir == Dir::ToPc && inject2.load(Ordering::SeqCst) == 1 {
            let mut big = f.clone();
            big.resize(MAX_FRAME + 1, 0);
            Act::Forward(big)
        } else {
            Act::Forward(f)
        }
    })
    .unwrap();
    ping_pong(&*phone_conn, &*pc_conn);
    inject.store(1, Ordering::SeqCst);
    phone_conn.send(b"x").unwrap();
    assert_eq!(code_of(&wait_closed(&*pc_conn)), ErrorCode::LinkFrameTooLarge);

    // Over the WebSocket, a message past the cap is cut by the transport and no
    // handshake happens: the PC reports the refused connection.
    let addr = rig.pc.direct_addrs()[0];
    let rt = kb_phonelink::LinkRuntime::new().unwrap();
    let sent = rt
        .block_on(async move {
            let mut pipe = kb_phonelink::direct::connect(addr, &link_cfg()).await?;
            pipe.tx.send(vec![1u8; MAX_FRAME + 1000]).await.map_err(|_| LinkError::Closed)?;
            Ok::<_, LinkError>(pipe.rx.recv().await)
        })
        .unwrap();
    assert!(matches!(sent, Ok(None)), "the PC closed the transport");
    good_phone_still_works(&rig, &good, &pairing);
}

#[test]
fn unpaired_phone() {
    let (rig, good, _, pairing) = setup();
    let stranger = phone("stranger");
    let fake = Pairing { link_secret: Zeroizing::new([7; 32]), ..pairing.clone() };
    let e = stranger.reconnect(&fake).err().unwrap();
    assert_eq!(code_of(&e), ErrorCode::PhoneNotPaired);
    wait_refused(&rig, ErrorCode::PhoneNotPaired);
    good_phone_still_works(&rig, &good, &pairing);
}

#[test]
fn paired_phone_with_a_wrong_link_secret() {
    let (rig, good, _, pairing) = setup();
    let wrong = Pairing { link_secret: Zeroizing::new([7; 32]), ..pairing.clone() };
    let e = good.reconnect(&wrong).err().unwrap();
    assert_eq!(code_of(&e), ErrorCode::LinkHandshakeFailed);
    good_phone_still_works(&rig, &good, &pairing);
}

#[test]
fn revoked_phone() {
    let (rig, good, _, pairing) = setup();
    let (other, _) = phone_with_key("revoked");
    let (other_pairing, c, _) = pair(&rig, &other);
    c.close();
    rig.pc.revoke(&other.id()).unwrap();
    let e = other.reconnect(&other_pairing).err().unwrap();
    assert_eq!(code_of(&e), ErrorCode::PhoneRevoked);
    wait_refused(&rig, ErrorCode::PhoneRevoked);
    good_phone_still_works(&rig, &good, &pairing);
}

#[test]
fn handshake_garbage_is_refused() {
    let (rig, good, key, pairing) = setup();
    // A pairing message for an offer id the PC never made.
    let bogus = Offer { offer_id: [0xee; 8], ..Offer::parse(&rig.pc.start_pairing(&[]).unwrap().text).unwrap() };
    let (phone_end, pc_end) = kb_phonelink::FramePipe::pair(8);
    rig.pc.accept_pipe(pc_end, "bogus");
    let e = rig
        .rt
        .block_on(async move { pair_over(phone_end, &bogus, &key, "x", &link_cfg(), &Default::default()).await })
        .unwrap()
        .err()
        .unwrap();
    assert_eq!(code_of(&e), ErrorCode::PairingOfferUnknown);
    // Random bytes as a first frame.
    let (phone_end, pc_end) = kb_phonelink::FramePipe::pair(8);
    rig.pc.accept_pipe(pc_end, "noise");
    rig.rt.block_on(async move { phone_end.tx.send(vec![1, 0x11, 9, 9, 9]).await.is_ok() }).unwrap();
    wait_refused(&rig, ErrorCode::LinkHandshakeFailed);
    good_phone_still_works(&rig, &good, &pairing);
}

/// Slowloris: silent TCP peers and a half-sent HTTP upgrade. The pool (4) evicts the
/// oldest, every silent peer is dropped by its deadline, and the good phone gets through
/// while they hang.
#[test]
fn slowloris_on_the_direct_listener() {
    let cfg = PcConfig {
        link: kb_phonelink::LinkConfig { handshake_timeout: Duration::from_secs(2), ..link_cfg() },
        max_pending: 4,
        ..PcConfig::default()
    };
    let rig = rig_with(cfg);
    let (good, _) = phone_with_key("good phone");
    let (pairing, c, _) = pair(&rig, &good);
    c.close();
    let addr = rig.pc.direct_addrs()[0];
    let mut hogs: Vec<TcpStream> = (0..6).map(|_| TcpStream::connect(addr).unwrap()).collect();
    hogs[5].write_all(b"GET /kb-link/1 HTTP/1.1\r\nHost: x\r\n").unwrap();
    // While they hang, the good phone connects (evicting the oldest hog).
    good_phone_still_works(&rig, &good, &pairing);
    // Every hog is closed by the PC: by eviction or by its deadline.
    for h in &mut hogs {
        h.set_read_timeout(Some(WAIT)).unwrap();
        let mut buf = [0u8; 64];
        match h.read(&mut buf) {
            Ok(0) => {}
            Ok(n) => panic!("a hog got {n} bytes"),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("a hog was not closed: {e}"),
        }
    }
    wait_refused(&rig, ErrorCode::LinkBusy);
    wait_refused(&rig, ErrorCode::LinkHandshakeTimeout);
    let end = std::time::Instant::now() + WAIT;
    while rig.pc.pending_handshakes() > 0 {
        assert!(std::time::Instant::now() < end, "handshake slots still held");
        std::thread::sleep(Duration::from_millis(20));
    }
    good_phone_still_works(&rig, &good, &pairing);
}
