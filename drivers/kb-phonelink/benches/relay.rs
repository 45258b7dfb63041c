//! The relay under load: N concurrent tunnels through one nats-server on loopback (the
//! configuration the installer ships; PCs over TCP, phones over WebSocket, as deployed).
//!
//! 1. nats-server's memory per tunnel: its VmRSS (from /proc) once all N tunnels are ready,
//!    minus before any was opened, divided by N (two connections and two subscriptions
//!    each).
//! 2. Frames per second: every tunnel's PC keeps `--window` frames of `--frame` bytes in
//!    flight, its phone echoes each; the figure counts frames delivered in both directions.
//!
//! `cargo bench -p kb-phonelink --bench relay -- [--tunnels N] [--seconds S] [--frame B]
//! [--window W] [--quick]` (defaults 1000 tunnels, 5 s, 256 bytes, 4; `--quick`: 20
//! tunnels, 0.5 s).

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

#[path = "../tests/relay_support/mod.rs"]
mod relay_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use kb_phonelink::relay::{self, RelayEndpoint, RelayOptions, Role, Tunnel, TunnelId};
use relay_support::{NatsServer, pc_credentials, phone_credentials};

struct Args {
    tunnels: usize,
    seconds: f64,
    frame: usize,
    window: usize,
}

fn args() -> Args {
    let mut a = Args { tunnels: 1000, seconds: 5.0, frame: 256, window: 4 };
    let v: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < v.len() {
        let next = |i: usize| v.get(i + 1).expect("a value").clone();
        match v[i].as_str() {
            "--quick" => {
                a.tunnels = 20;
                a.seconds = 0.5;
            }
            "--tunnels" => {
                a.tunnels = next(i).parse().unwrap();
                i += 1;
            }
            "--seconds" => {
                a.seconds = next(i).parse().unwrap();
                i += 1;
            }
            "--frame" => {
                a.frame = next(i).parse().unwrap();
                i += 1;
            }
            "--window" => {
                a.window = next(i).parse().unwrap();
                i += 1;
            }
            // cargo bench passes --bench; ignore what is not ours.
            _ => {}
        }
        i += 1;
    }
    a
}

async fn open_pair(relay: &NatsServer) -> (Tunnel, Tunnel) {
    let t = TunnelId::random().unwrap();
    let o = |c| RelayOptions { credentials: Some(c), depth: 64, ..RelayOptions::default() };
    let pc = relay::open(&RelayEndpoint::new(relay.url(), t).unwrap(), Role::Pc, &o(pc_credentials())).await.unwrap();
    let ph = relay::open(&RelayEndpoint::new(relay.ws_url(), t).unwrap(), Role::Phone, &o(phone_credentials())).await.unwrap();
    (pc, ph)
}

fn main() {
    let a = args();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(run(a));
}

async fn run(a: Args) {
    let relay = NatsServer::single();
    let rss_before = relay.rss_kib();

    // Open all tunnels, a batch at a time so the server is not hit by thousands of
    // handshakes at once.
    let started = Instant::now();
    let mut tunnels = Vec::with_capacity(a.tunnels);
    for batch in (0..a.tunnels).collect::<Vec<_>>().chunks(100) {
        let opened = futures_util::future::join_all(batch.iter().map(|_| open_pair(&relay))).await;
        tunnels.extend(opened);
    }
    for (pc, ph) in &tunnels {
        tokio::time::timeout(Duration::from_secs(120), pc.watch.ready()).await.expect("ready in time").unwrap();
        tokio::time::timeout(Duration::from_secs(120), ph.watch.ready()).await.expect("ready in time").unwrap();
    }
    let open_secs = started.elapsed().as_secs_f64();
    let rss_ready = relay.rss_kib();

    // Traffic: each PC keeps a window of frames in flight; each phone echoes.
    let stop = Arc::new(AtomicBool::new(false));
    let delivered = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for (pc, ph) in tunnels {
        let Tunnel { pipe: mut php, watch: phw } = ph;
        let d = delivered.clone();
        tasks.spawn(async move {
            while let Some(f) = php.rx.recv().await {
                d.fetch_add(1, Ordering::Relaxed);
                if php.tx.send(f).await.is_err() {
                    break;
                }
            }
            drop(phw);
        });
        let Tunnel { pipe: mut pcp, watch: pcw } = pc;
        let (d, stop, frame, window) = (delivered.clone(), stop.clone(), vec![0x5au8; a.frame], a.window);
        tasks.spawn(async move {
            for _ in 0..window {
                pcp.tx.send(frame.clone()).await.unwrap();
            }
            let mut in_flight = window;
            while in_flight > 0 {
                if pcp.rx.recv().await.is_none() {
                    panic!("tunnel ended: {:?}", pcw.state());
                }
                d.fetch_add(1, Ordering::Relaxed);
                in_flight -= 1;
                if !stop.load(Ordering::Relaxed) {
                    pcp.tx.send(frame.clone()).await.unwrap();
                    in_flight += 1;
                }
            }
            // Dropping the PC's pipe closes the tunnel; the phone's echo task ends.
        });
    }
    let t0 = Instant::now();
    let d0 = delivered.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs_f64(a.seconds)).await;
    let frames = delivered.load(Ordering::Relaxed) - d0;
    let secs = t0.elapsed().as_secs_f64();
    let rss_traffic = relay.rss_kib();
    stop.store(true, Ordering::Relaxed);
    while tasks.join_next().await.is_some() {}

    let per_tunnel = (rss_ready.saturating_sub(rss_before)) as f64 / a.tunnels as f64;
    println!("relay benchmark: nats-server {} on loopback, installer/relay/nats-relay.conf", relay.version());
    println!("  tunnels: {} (PC over TCP, phone over WebSocket), all ready in {:.2} s", a.tunnels, open_secs);
    println!(
        "  nats-server VmRSS: {} KiB before, {} KiB with all tunnels ready, {} KiB under traffic",
        rss_before, rss_ready, rss_traffic
    );
    println!("  memory per tunnel: {:.1} KiB (ready, idle)", per_tunnel);
    println!(
        "  frames: {} in {:.2} s = {:.0} frames/s ({} B frames, window {} per tunnel, both directions counted)",
        frames,
        secs,
        frames as f64 / secs,
        a.frame,
        a.window
    );
}
