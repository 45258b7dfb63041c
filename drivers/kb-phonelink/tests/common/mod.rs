//! Test rig: a PC endpoint on 127.0.0.1 with a file-backed store in a temp dir, phones on
//! their own runtime (as separate processes would be), and a hostile frame pipe.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic, unreachable_pub)]

use kb_phonelink::phone::{Pairing, reconnect_over};
use kb_phonelink::{
    BackendChoice, FramePipe, LinkConfig, LinkError, LinkRuntime, MessageConn, PairingStore, PcConfig, PcEndpoint, PcEvent,
    Phone, StaticKey,
};
use kb_types::ErrorCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Generous bound for anything the tests wait for (only catches hangs).
pub const WAIT: Duration = Duration::from_secs(30);

pub fn link_cfg() -> LinkConfig {
    LinkConfig {
        keepalive_interval: Duration::from_millis(200),
        peer_timeout: Duration::from_secs(5),
        handshake_timeout: Duration::from_secs(10),
        confirm_timeout: Duration::from_secs(30),
        ..LinkConfig::default()
    }
}

pub struct Rig {
    pub dir: tempfile::TempDir,
    pub pc: PcEndpoint,
    pub rt: LinkRuntime,
    /// Events seen while waiting for another one (kept for later waits).
    pub stash: std::sync::Mutex<Vec<PcEvent>>,
}

pub fn rig_with(cfg: PcConfig) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(PairingStore::open(dir.path(), BackendChoice::File).unwrap());
    let rt = LinkRuntime::new().unwrap();
    let pc = PcEndpoint::new(store, cfg, rt.clone()).unwrap();
    pc.open_direct(&["127.0.0.1:0".parse().unwrap()]).unwrap();
    Rig { dir, pc, rt, stash: Default::default() }
}

pub fn rig() -> Rig {
    rig_with(PcConfig { link: link_cfg(), ..PcConfig::default() })
}

pub fn phone(name: &str) -> Phone {
    phone_with_key(name).0
}

pub fn phone_with_key(name: &str) -> (Phone, StaticKey) {
    let key = StaticKey::generate().unwrap();
    (Phone::new(key.clone(), name, link_cfg(), LinkRuntime::new().unwrap()), key)
}

/// The first event matching `pred` (others are skipped), or panic after [`WAIT`].
pub fn wait_event(rig: &Rig, what: &str, mut pred: impl FnMut(&PcEvent) -> bool) -> PcEvent {
    {
        let mut stash = rig.stash.lock().unwrap();
        if let Some(i) = stash.iter().position(&mut pred) {
            return stash.remove(i);
        }
    }
    let end = Instant::now() + WAIT;
    while Instant::now() < end {
        if let Some(e) = rig.pc.next_event(Duration::from_millis(200)) {
            if pred(&e) {
                return e;
            }
            rig.stash.lock().unwrap().push(e);
        }
    }
    panic!("no {what} event within {WAIT:?}");
}

pub fn wait_refused(rig: &Rig, code: ErrorCode) -> PcEvent {
    wait_event(rig, code.name(), |e| matches!(e, PcEvent::Refused { code: c, .. } if *c == code))
}

pub fn code_of(e: &LinkError) -> ErrorCode {
    match e {
        LinkError::Failed { code, .. } => *code,
        other => panic!("expected a coded failure, got {other:?}"),
    }
}

/// Pair `phone` through a fresh offer: returns its pairing and both ends of the link.
pub fn pair(rig: &Rig, phone: &Phone) -> (Pairing, Arc<dyn MessageConn>, Arc<dyn MessageConn>) {
    let offer = rig.pc.start_pairing(&[]).unwrap();
    let pending = phone.pair(&offer.text).unwrap();
    let code = pending.code.clone();
    let PcEvent::PairingRequest { request, code: pc_code, .. } =
        wait_event(rig, "pairing request", |e| matches!(e, PcEvent::PairingRequest { .. }))
    else {
        unreachable!()
    };
    assert_eq!(pc_code, code, "both screens show the same code");
    rig.pc.confirm(request).unwrap();
    let (pairing, phone_conn) = phone.wait_confirmed(pending).unwrap();
    let PcEvent::Connected { conn, new_pairing, .. } = wait_event(rig, "connected", |e| matches!(e, PcEvent::Connected { .. }))
    else {
        unreachable!()
    };
    assert!(new_pairing);
    (pairing, phone_conn, conn)
}

/// A message each way.
pub fn ping_pong(a: &dyn MessageConn, b: &dyn MessageConn) {
    a.send(b"ping").unwrap();
    assert_eq!(b.recv(Some(WAIT)).unwrap(), b"ping");
    b.send(b"pong").unwrap();
    assert_eq!(a.recv(Some(WAIT)).unwrap(), b"pong");
}

/// The good phone reconnects over the direct listener and talks: the PC still serves.
pub fn good_phone_still_works(rig: &Rig, phone: &Phone, pairing: &Pairing) {
    let phone_conn = phone.reconnect(pairing).unwrap();
    let PcEvent::Connected { conn, new_pairing, .. } = wait_event(rig, "connected", |e| matches!(e, PcEvent::Connected { .. }))
    else {
        unreachable!()
    };
    assert!(!new_pairing);
    ping_pong(&*phone_conn, &*conn);
    phone_conn.close();
}

/// What a hostile transport does with each frame.
pub enum Act {
    Forward(Vec<u8>),
    Drop,
    Many(Vec<Vec<u8>>),
}

/// Direction of a frame through the middle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    ToPc,
    ToPhone,
}

/// A pipe pair with a hostile middle: `f(dir, frame)` decides per frame.
pub fn hostile(rt: &LinkRuntime, f: impl FnMut(Dir, Vec<u8>) -> Act + Send + 'static) -> (FramePipe, FramePipe) {
    let (phone_end, mut a) = FramePipe::pair(64);
    let (mut b, pc_end) = FramePipe::pair(64);
    let f = Arc::new(std::sync::Mutex::new(f));
    rt.handle().spawn(async move {
        // A side that ends does not end the other: the middle is a black hole then.
        let (mut a_open, mut b_open) = (true, true);
        while a_open || b_open {
            let (dir, frame) = tokio::select! {
                x = a.rx.recv(), if a_open => match x { Some(x) => (Dir::ToPc, x), None => { a_open = false; continue } },
                x = b.rx.recv(), if b_open => match x { Some(x) => (Dir::ToPhone, x), None => { b_open = false; continue } },
            };
            let act = (f.lock().unwrap())(dir, frame);
            let out = match act {
                Act::Forward(x) => vec![x],
                Act::Drop => vec![],
                Act::Many(v) => v,
            };
            let tx = if dir == Dir::ToPc { &b.tx } else { &a.tx };
            for x in out {
                let _ = tx.send(x).await;
            }
        }
    });
    (phone_end, pc_end)
}

/// Reconnect `key`'s phone over a hostile middle: both ends of the link.
pub fn reconnect_through(
    rig: &Rig,
    key: &StaticKey,
    pairing: &Pairing,
    f: impl FnMut(Dir, Vec<u8>) -> Act + Send + 'static,
) -> Result<(Arc<dyn MessageConn>, Arc<dyn MessageConn>), LinkError> {
    let (phone_end, pc_end) = hostile(&rig.rt, f);
    rig.pc.accept_pipe(pc_end, "hostile");
    let (pairing, key) = (pairing.clone(), key.clone());
    let phone = rig.rt.block_on(async move { reconnect_over(phone_end, &pairing, &key, "phone", &link_cfg()).await })??;
    let PcEvent::Connected { conn, .. } = wait_event(rig, "connected", |e| matches!(e, PcEvent::Connected { .. })) else {
        unreachable!()
    };
    Ok((phone as Arc<dyn MessageConn>, conn))
}

/// Wait until `conn` has ended; its reason.
pub fn wait_closed(conn: &dyn MessageConn) -> LinkError {
    let end = Instant::now() + WAIT;
    loop {
        match conn.recv(Some(Duration::from_millis(200))) {
            Err(LinkError::TimedOut) | Ok(_) if Instant::now() < end => continue,
            Err(e) => return e,
            Ok(_) => panic!("still open after {WAIT:?}"),
        }
    }
}
