//! The relay transport against a real nats-server (Debian's, started here on loopback with
//! the configuration the installer ships): frames both ways in order, tunnels apart, the
//! permissions a client gets, size caps, a relay restart, a two-node cluster.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod relay_support;

use std::future::Future;
use std::time::Duration;

use async_nats::{Event, ServerError};
use futures_util::{FutureExt, StreamExt};
use kb_phonelink::MAX_FRAME;
use kb_phonelink::relay::{
    self, Credentials, HEADER_LEN, MAX_PAYLOAD, RelayEndpoint, RelayError, RelayOptions, Role, Tunnel, TunnelEnd, TunnelId,
    TunnelState,
};
use kb_types::{ErrorCode, HasErrorCode};
use relay_support::{NatsServer, free_port, pc_credentials, phone_credentials};
use tokio::sync::mpsc;

/// Catches hangs only; every wait below is for a condition.
async fn bounded<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), f).await.unwrap_or_else(|_| panic!("timed out: {what}"))
}

fn options(c: Credentials) -> RelayOptions {
    RelayOptions { credentials: Some(c), hello_interval: Duration::from_millis(200), ..RelayOptions::default() }
}

fn endpoint(url: &str, tunnel: TunnelId) -> RelayEndpoint {
    RelayEndpoint::new(url, tunnel).unwrap()
}

/// The PC over TCP at `pc_url`, the phone over WebSocket at `phone_url`, both ready.
async fn pair(pc_url: &str, phone_url: &str) -> (Tunnel, Tunnel, TunnelId) {
    let t = TunnelId::random().unwrap();
    let pc = relay::open(&endpoint(pc_url, t), Role::Pc, &options(pc_credentials())).await.unwrap();
    let ph = relay::open(&endpoint(phone_url, t), Role::Phone, &options(phone_credentials())).await.unwrap();
    bounded("pc ready", pc.watch.ready()).await.unwrap();
    bounded("phone ready", ph.watch.ready()).await.unwrap();
    (pc, ph, t)
}

async fn recv(t: &mut Tunnel) -> Vec<u8> {
    bounded("a frame", t.pipe.rx.recv()).await.expect("the pipe ended")
}

async fn send(t: &Tunnel, f: &[u8]) {
    t.pipe.tx.send(f.to_vec()).await.unwrap();
}

async fn exchange(pc: &mut Tunnel, ph: &mut Tunnel, tag: &str) {
    send(pc, format!("{tag} to phone").as_bytes()).await;
    send(ph, format!("{tag} to pc").as_bytes()).await;
    assert_eq!(recv(ph).await, format!("{tag} to phone").as_bytes());
    assert_eq!(recv(pc).await, format!("{tag} to pc").as_bytes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_flow_both_ways_in_order_and_wait_for_a_late_peer() {
    let relay = NatsServer::single();
    let t = TunnelId::random().unwrap();
    let mut pc = relay::open(&endpoint(&relay.url(), t), Role::Pc, &options(pc_credentials())).await.unwrap();
    assert_eq!(pc.watch.state(), TunnelState::WaitingForPeer);
    // Written before the phone is there: held in the pipe, not lost.
    let early: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 100]).collect();
    for f in &early {
        send(&pc, f).await;
    }
    let mut ph = relay::open(&endpoint(&relay.ws_url(), t), Role::Phone, &options(phone_credentials())).await.unwrap();
    for f in &early {
        assert_eq!(&recv(&mut ph).await, f);
    }
    // Many frames each way, in order, up to the largest a frame may be.
    let sizes = [0usize, 1, 1000, MAX_FRAME];
    for i in 0..200usize {
        let n = sizes[i % sizes.len()];
        send(&pc, &vec![(i % 251) as u8; n]).await;
        send(&ph, &vec![(i % 241) as u8; n]).await;
    }
    for i in 0..200usize {
        let n = sizes[i % sizes.len()];
        assert_eq!(recv(&mut ph).await, vec![(i % 251) as u8; n], "frame {i} to the phone");
        assert_eq!(recv(&mut pc).await, vec![(i % 241) as u8; n], "frame {i} to the pc");
    }
    assert_eq!((pc.watch.dropped(), ph.watch.dropped()), (0, 0));

    // A clean close: the PC drops its pipe; the phone's pipe ends and says why.
    let pc_watch = pc.watch.clone();
    drop(pc.pipe);
    assert_eq!(bounded("phone end", ph.watch.ended()).await, TunnelEnd::PeerClosed);
    assert_eq!(bounded("phone pipe", ph.pipe.rx.recv()).await, None);
    assert_eq!(bounded("pc end", pc_watch.ended()).await, TunnelEnd::Closed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_does_not_read_does_not_stop_its_own_frames_going_out() {
    let relay = NatsServer::single();
    let t = TunnelId::random().unwrap();
    let small = |c| RelayOptions { depth: 2, ..options(c) };
    let mut pc = relay::open(&endpoint(&relay.url(), t), Role::Pc, &small(pc_credentials())).await.unwrap();
    let ph = relay::open(&endpoint(&relay.ws_url(), t), Role::Phone, &small(phone_credentials())).await.unwrap();
    bounded("ready", ph.watch.ready()).await.unwrap();
    // The phone does not read: its pipe fills (2) and one more frame waits in its pump.
    for i in 0..4u8 {
        send(&pc, &[i]).await;
    }
    bounded("frames reach the phone's end", async {
        while ph.watch.received() < 3 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    // Its own frames still go out.
    for i in 0..10u8 {
        send(&ph, &[100 + i]).await;
        assert_eq!(recv(&mut pc).await, [100 + i]);
    }
    assert_eq!(ph.watch.sent(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tunnels_do_not_see_each_other() {
    let relay = NatsServer::single();
    let (mut pc_a, mut ph_a, _) = pair(&relay.url(), &relay.ws_url()).await;
    let (mut pc_b, mut ph_b, _) = pair(&relay.url(), &relay.ws_url()).await;
    for i in 0..20 {
        send(&pc_a, format!("a{i}").as_bytes()).await;
        send(&pc_b, format!("b{i}").as_bytes()).await;
        send(&ph_a, format!("A{i}").as_bytes()).await;
        send(&ph_b, format!("B{i}").as_bytes()).await;
    }
    for i in 0..20 {
        assert_eq!(recv(&mut ph_a).await, format!("a{i}").as_bytes());
        assert_eq!(recv(&mut ph_b).await, format!("b{i}").as_bytes());
        assert_eq!(recv(&mut pc_a).await, format!("A{i}").as_bytes());
        assert_eq!(recv(&mut pc_b).await, format!("B{i}").as_bytes());
    }
    for t in [&pc_a, &ph_a, &pc_b, &ph_b] {
        assert_eq!(t.watch.dropped(), 0, "no message of the other tunnel reached this one");
    }
}

/// A raw NATS client with the shipped users, and the events the server sends it.
async fn raw_client(url: &str, c: Credentials) -> (async_nats::Client, mpsc::UnboundedReceiver<Event>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let client = async_nats::ConnectOptions::new()
        .user_and_password(c.user, c.password)
        .event_callback(move |e| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(e);
            }
        })
        .connect(url)
        .await
        .unwrap();
    (client, rx)
}

/// Waits for the server's permissions-violation error naming `what` (e.g.
/// `Subscription to ">"`).
async fn expect_violation(events: &mut mpsc::UnboundedReceiver<Event>, what: &str) {
    bounded(what, async {
        loop {
            match events.recv().await {
                Some(Event::ServerError(ServerError::Other(m))) if m.contains("Permissions Violation") => {
                    if m.contains(what) {
                        return;
                    }
                }
                Some(_) => {}
                None => panic!("the client closed"),
            }
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_permissions_confine_clients_and_a_reader_sees_only_the_frames() {
    let relay = NatsServer::single();
    let (mut pc, mut ph, t) = pair(&relay.url(), &relay.ws_url()).await;
    let ep = endpoint(&relay.url(), t);

    // A phone's credentials: nothing outside the subjects a phone needs.
    let (sniffer, mut events) = raw_client(&relay.url(), phone_credentials()).await;
    let to_pc = ep.subject(Role::Pc);
    let mut denied = Vec::new();
    for subject in [">", "kb.>", "kb.t.>", "kb.t.*.*", "$SYS.>", "_INBOX.>", to_pc.as_str()] {
        denied.push(sniffer.subscribe(subject.to_string()).await.unwrap());
        expect_violation(&mut events, &format!("Subscription to \"{subject}\"")).await;
    }
    sniffer.publish(ep.subject(Role::Phone), "x".into()).await.unwrap();
    expect_violation(&mut events, &format!("Publish to \"{}\"", ep.subject(Role::Phone))).await;
    sniffer.publish("elsewhere", "x".into()).await.unwrap();
    expect_violation(&mut events, "Publish to \"elsewhere\"").await;

    // What it may read: frames to phones. NATS cannot refuse a wildcard within the allowed
    // subjects (docs/relay.md), so it may read every tunnel's frames to phones: the bytes
    // are exactly the frame behind a header of kind, session and counter — nothing else.
    let mut literal = sniffer.subscribe(ep.subject(Role::Phone)).await.unwrap();
    let mut wildcard = sniffer.subscribe("kb.t.*.ph").await.unwrap();
    // async-nats's flush does not wait for the server; a refusal does: the server handles a
    // connection's protocol in order, so once it refuses this one, the two above are in place.
    denied.push(sniffer.subscribe(">").await.unwrap());
    expect_violation(&mut events, "Subscription to \">\"").await;
    for frame in [&b"ciphertext one"[..], b"ciphertext two"] {
        send(&pc, frame).await;
        assert_eq!(recv(&mut ph).await, frame, "reading does not take frames away");
        for sub in [&mut literal, &mut wildcard] {
            let m = bounded("sniffed", sub.next()).await.unwrap();
            assert_eq!(m.payload.len(), HEADER_LEN + frame.len());
            assert_eq!(m.payload[0], 3, "a data message");
            assert_eq!(&m.payload[HEADER_LEN..], frame);
            assert!(m.headers.is_none());
        }
    }
    // Both frames reached the permitted subscriptions, after anything the refused ones
    // would have had on the same connection: they got nothing.
    for sub in &mut denied {
        assert!(sub.next().now_or_never().is_none(), "a refused subscription received a message");
    }

    // The PC's credentials may publish to the phone's subject: junk and a foreign session's
    // frames are dropped, the tunnel goes on.
    let (injector, _ev) = raw_client(&relay.url(), pc_credentials()).await;
    injector.publish(ep.subject(Role::Phone), "junk".into()).await.unwrap();
    let mut foreign = vec![3u8; HEADER_LEN];
    foreign.extend_from_slice(b"forged");
    injector.publish(ep.subject(Role::Phone), foreign.into()).await.unwrap();
    injector.flush().await.unwrap();
    exchange(&mut pc, &mut ph, "after the injection").await;
    bounded("dropped", async {
        while ph.watch.dropped() < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert_eq!(ph.watch.dropped(), 2);

    // Wrong credentials: refused with a stable code.
    let wrong = Credentials { user: "kb-phone".into(), password: "wrong".into() };
    let err = relay::open(&ep, Role::Phone, &options(wrong)).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::RelayRefused, "{err}");
    // A PC's credentials used as the phone's end: the relay refuses its subscription.
    let misused =
        relay::open(&endpoint(&relay.url(), TunnelId::random().unwrap()), Role::Phone, &options(pc_credentials())).await.unwrap();
    let end = bounded("refused", misused.watch.ended()).await;
    assert!(matches!(end, TunnelEnd::Refused(_)), "{end:?}");
    assert_eq!(end.code(), ErrorCode::RelayRefused);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_frames_are_refused() {
    let relay = NatsServer::single();
    let (mut pc, mut ph, t) = pair(&relay.url(), &relay.ws_url()).await;
    let ep = endpoint(&relay.url(), t);

    // Above the relay's max_payload: the server's limit, enforced by the client it told.
    let (raw, _ev) = raw_client(&relay.url(), pc_credentials()).await;
    assert_eq!(raw.server_info().max_payload, 66_560, "installer/relay/kb-relay-common.conf");
    let too_big = raw.publish(ep.subject(Role::Phone), vec![0u8; 66_561].into()).await;
    assert!(too_big.is_err(), "the relay's max_payload let 66,561 bytes through");
    // Within max_payload but one byte over a tunnel message: the receiver drops it.
    let mut big = vec![3u8; MAX_PAYLOAD + 1];
    big[1..9].copy_from_slice(&[9; 8]);
    raw.publish(ep.subject(Role::Phone), big.into()).await.unwrap();
    raw.flush().await.unwrap();
    exchange(&mut pc, &mut ph, "still open").await;

    // This end refuses to send a frame over MAX_FRAME: the tunnel ends, the peer is told.
    send(&pc, &vec![0u8; MAX_FRAME + 1]).await;
    let end = bounded("pc end", pc.watch.ended()).await;
    assert_eq!(end, TunnelEnd::FrameTooLarge { len: MAX_FRAME + 1 });
    assert_eq!(end.code(), ErrorCode::InputTooLarge);
    assert_eq!(bounded("phone end", ph.watch.ended()).await, TunnelEnd::PeerClosed);
    assert_eq!(bounded("phone pipe", ph.pipe.rx.recv()).await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_restart_is_survived_by_both_ends() {
    let mut relay = NatsServer::single();
    let (mut pc, mut ph, _) = pair(&relay.url(), &relay.ws_url()).await;
    exchange(&mut pc, &mut ph, "before").await;

    relay.kill();
    let reconnecting = |s: &TunnelState| *s == TunnelState::Reconnecting;
    assert_eq!(bounded("pc sees the drop", pc.watch.wait_until(reconnecting)).await, TunnelState::Reconnecting);
    assert_eq!(bounded("phone sees the drop", ph.watch.wait_until(reconnecting)).await, TunnelState::Reconnecting);
    // A frame written during the outage waits; it is not published into the void.
    send(&pc, b"during").await;

    relay.start();
    bounded("pc back", pc.watch.ready()).await.unwrap();
    bounded("phone back", ph.watch.ready()).await.unwrap();
    assert_eq!(recv(&mut ph).await, b"during");
    exchange(&mut pc, &mut ph, "after").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_stays_away_ends_the_tunnel_cleanly() {
    let mut relay = NatsServer::single();
    let t = TunnelId::random().unwrap();
    let short = |c| RelayOptions { reconnect_timeout: Duration::from_millis(500), ..options(c) };
    let mut pc = relay::open(&endpoint(&relay.url(), t), Role::Pc, &short(pc_credentials())).await.unwrap();
    let mut ph = relay::open(&endpoint(&relay.ws_url(), t), Role::Phone, &short(phone_credentials())).await.unwrap();
    bounded("ready", pc.watch.ready()).await.unwrap();
    relay.kill();
    for t in [&mut pc, &mut ph] {
        let end = bounded("end", t.watch.ended()).await;
        assert_eq!(end, TunnelEnd::RelayLost);
        assert_eq!(end.code(), ErrorCode::RelayLost);
        assert_eq!(bounded("pipe end", t.pipe.rx.recv()).await, None);
        assert!(t.pipe.tx.send(b"x".to_vec()).await.is_err());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ends_on_different_cluster_nodes_still_meet() {
    let (ca, cb) = (free_port(), free_port());
    let a = NatsServer::cluster_node("kb-relay-a", ca, &[cb]);
    let b = NatsServer::cluster_node("kb-relay-b", cb, &[ca]);
    let (mut pc, mut ph, _) = pair(&a.url(), &b.ws_url()).await;
    for i in 0..50 {
        exchange(&mut pc, &mut ph, &format!("across the route {i}")).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_never_comes_and_a_relay_that_is_not_there_fail_with_codes() {
    let relay = NatsServer::single();
    let t = TunnelId::random().unwrap();
    let o = RelayOptions { peer_timeout: Some(Duration::from_millis(300)), ..options(pc_credentials()) };
    let mut pc = relay::open(&endpoint(&relay.url(), t), Role::Pc, &o).await.unwrap();
    let end = bounded("peer timeout", pc.watch.ended()).await;
    assert_eq!((end.code(), end), (ErrorCode::RelayPeerTimeout, TunnelEnd::PeerTimeout));
    assert_eq!(bounded("pipe end", pc.pipe.rx.recv()).await, None);

    let nowhere = endpoint(&format!("nats://127.0.0.1:{}", free_port()), t);
    let o = RelayOptions { connect_timeout: Duration::from_millis(300), ..options(pc_credentials()) };
    let err = relay::open(&nowhere, Role::Pc, &o).await.unwrap_err();
    assert!(matches!(err, RelayError::Unreachable(_)), "{err:?}");
    assert_eq!(err.code(), ErrorCode::RelayUnreachable);
}
