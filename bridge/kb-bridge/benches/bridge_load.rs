//! Load on the bridge, against the same work done in-process, in the same run:
//!
//! 1. SM2 signatures per second and p50/p99 latency at 1, 16 and 64 concurrent clients
//!    (each its own WebSocket connection, one request at a time, as a bid tool does; and
//!    one connection with 16 requests in flight), against the in-process rate of the device service signing the same precomputed
//!    digests with the same key (`DeviceManager::sign_digest`, PIN cached). Each point
//!    alternates slices through the bridge with in-process slices (medians of each, so
//!    both see the same bursts of load on a shared machine), and prints the process's
//!    CPU time and its threads' voluntary context switches per signature: the thread
//!    hand-offs a request costs, a figure the machine's load hardly moves.
//! 2. A CMS envelope streamed through the bridge (upload → SM4-CBC envelope → download)
//!    against raw SM4-CBC encryption speed in-process, and the process's memory while it
//!    streams (client and server share this process: the figure is an upper bound on the
//!    server's).
//!
//! `cargo bench -p kb-bridge --bench bridge_load -- [--seconds S] [--mb N] [--quick] [--card]`
//! (defaults 3 s per point, 1024 MiB; `--quick`: 0.5 s, 64 MiB). Media: an in-memory
//! software token, so the figures are the bridge's own cost, not a card's. It says it is
//! software in this process, as a file key does, so the device service runs its commands
//! on the caller's thread while it is idle; `--card`: it says it is not, and every
//! command goes through the medium's actor thread, as a card's does.

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use kb_bridge::activity::{PromptWatch, WatchedPrompter};
use kb_bridge::client::{BridgeClient, ClientOptions};
use kb_bridge::consent::{Consent, GrantStore};
use kb_bridge::methods::Service;
use kb_bridge::secret::ClientSecret;
use kb_bridge::{Bridge, BridgeConfig};
use kb_crypto::sm4::{CbcEncryptor, Padding};
use kb_crypto::{PrivateKey, SignatureScheme};
use kb_pki::chain::TrustStore;
use kb_pki::issue::{self, CertKind, CertificateParams};
use kb_pki::time::UnixTime;
use kb_pki::{Certificate, LocalSigner};
use kb_service::audit::{AuditRecord, AuditSink};
use kb_service::devices::DeviceManager;
use kb_service::pin_cache::PinCachePolicy;
use kb_service::prompter::{Prompter, ScriptedPrompter};
use kb_token::memory::MemoryTransport;
use kb_types::{Algorithm, DeviceId, KeyUsage, TransportKind};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const PIN: &str = "12345678";

struct NoopAudit;

impl AuditSink for NoopAudit {
    fn record(&self, rec: &AuditRecord) -> kb_service::Result<()> {
        std::hint::black_box(rec);
        Ok(())
    }
}

struct Args {
    seconds: f64,
    mb: u64,
    card: bool,
}

fn args() -> Args {
    let mut a = Args { seconds: 3.0, mb: 1024, card: false };
    let v: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < v.len() {
        match v[i].as_str() {
            "--seconds" => {
                a.seconds = v[i + 1].parse().expect("--seconds S");
                i += 1;
            }
            "--mb" => {
                a.mb = v[i + 1].parse().expect("--mb N");
                i += 1;
            }
            "--card" => a.card = true,
            "--quick" => {
                a.seconds = 0.5;
                a.mb = 64;
            }
            _ => {} // cargo bench passes --bench
        }
        i += 1;
    }
    a
}

fn rss_kib(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix(field).map(|v| v.trim().trim_end_matches(" kB").trim().parse().unwrap_or(0)))
        .unwrap_or(0)
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

/// Slices per point: the bridge and the in-process peer alternate, so both see the
/// same bursts of load on a shared machine.
const SLICES: usize = 6;

/// One timed slice: signatures, wall time, the process's CPU ticks, the threads'
/// voluntary context switches (each a thread going to sleep to wait for another: the
/// hand-offs), latencies (µs).
struct Slice {
    n: u64,
    secs: f64,
    ticks: u64,
    switches: u64,
    lat: Vec<u64>,
}

impl Slice {
    fn rate(&self) -> f64 {
        self.n as f64 / self.secs
    }

    fn cpu_us(&self) -> f64 {
        self.ticks as f64 * 1e6 / ticks_per_second() / self.n as f64
    }

    fn switches_each(&self) -> f64 {
        self.switches as f64 / self.n as f64
    }
}

fn median(v: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = v.collect();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The process's user + system CPU time in clock ticks (`/proc/self/stat`).
fn cpu_ticks() -> u64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command (which may hold spaces), from field 3 on.
    let rest = s.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    f.get(11).and_then(|u| u.parse::<u64>().ok()).unwrap_or(0) + f.get(12).and_then(|u| u.parse::<u64>().ok()).unwrap_or(0)
}

/// Voluntary context switches of every thread of this process so far.
fn voluntary_switches() -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return 0 };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("status")).ok())
        .filter_map(|s| {
            s.lines().find_map(|l| l.strip_prefix("voluntary_ctxt_switches:").and_then(|v| v.trim().parse::<u64>().ok()))
        })
        .sum()
}

/// `getconf CLK_TCK`: 100 on Linux.
fn ticks_per_second() -> f64 {
    100.0
}

/// Every connection signing for `d`, each waiting for its answer before the next.
async fn through_bridge(conns: &[Arc<BridgeClient>], params: &serde_json::Value, d: Duration) -> Slice {
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let (start, cpu0, sw0) = (Instant::now(), cpu_ticks(), voluntary_switches());
    let mut tasks = Vec::new();
    for c in conns {
        let (c, stop, count, params) = (Arc::clone(c), Arc::clone(&stop), Arc::clone(&count), params.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(1 << 14);
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                c.request(c.next_id(), "sign", params.clone()).await.unwrap();
                lat.push(t.elapsed().as_micros() as u64);
                count.fetch_add(1, Ordering::Relaxed);
            }
            lat
        }));
    }
    tokio::time::sleep(d).await;
    stop.store(true, Ordering::Relaxed);
    let n = count.load(Ordering::Relaxed);
    let secs = start.elapsed().as_secs_f64();
    let (ticks, switches) = (cpu_ticks() - cpu0, voluntary_switches() - sw0);
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    Slice { n, secs, ticks, switches, lat }
}

fn main() {
    let a = args();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();

    // One medium: an SM2 sign + encrypt pair with certificates from a throwaway CA.
    let ca_key = LocalSigner::new(PrivateKey::generate(Algorithm::Sm2).unwrap());
    let root = issue::self_signed(
        &CertificateParams::new("CN=Bench Root", CertKind::Root { path_len: None }, UnixTime::now(), 30),
        &ca_key,
    )
    .unwrap();
    let leaf = |k: &PrivateKey, u| -> Certificate {
        issue::issue(&CertificateParams::leaf("CN=投标人", u, UnixTime::now(), 30), &k.public_key(), Some(&root), &ca_key)
            .unwrap()
    };
    let tr = MemoryTransport::new(TransportKind::Pcsc);
    let token = tr.new_token("BENCH", PIN, "87654321");
    let token = if a.card { token } else { token.with_in_process() };
    let (sk, ek) = (PrivateKey::generate(Algorithm::Sm2).unwrap(), PrivateKey::generate(Algorithm::Sm2).unwrap());
    let (sc, ec) = (leaf(&sk, KeyUsage::Sign), leaf(&ek, KeyUsage::Encrypt));
    token.put_key("c", KeyUsage::Sign, sk.clone());
    token.put_key("c", KeyUsage::Encrypt, ek);
    token.put_certificate("c", KeyUsage::Sign, sc.der()).unwrap();
    token.put_certificate("c", KeyUsage::Encrypt, ec.der()).unwrap();
    let id: DeviceId = token.id();
    tr.insert(token);
    let scripted = Arc::new(ScriptedPrompter::new());
    scripted.push_pin(PIN);
    let watch = Arc::new(PromptWatch::default());
    let prompter: Arc<dyn Prompter> = Arc::new(WatchedPrompter::new(scripted, Arc::clone(&watch)));
    let manager = DeviceManager::new(Arc::clone(&prompter), Arc::new(NoopAudit), PinCachePolicy::default());
    // Many clients sign here, each as itself: the `pin_cache_shared` setting lets the one
    // PIN typed below serve them all (by default each client types its own).
    manager.pin_cache().set_shared(true);
    manager.add_transport(Arc::new(tr)).unwrap();
    assert!(manager.wait_enumerated(Duration::from_secs(10)));
    let scheme = SignatureScheme::sm2_default();
    let digest = sk.public_key().message_digest(&scheme, b"bid").unwrap();
    manager.sign_digest(&id, "c", KeyUsage::Sign, &scheme, &digest, "bench").unwrap(); // caches the PIN

    let config = BridgeConfig { port: 0, max_connections: 512, ..BridgeConfig::default() };
    let consent = Consent::new(Arc::new(GrantStore::in_memory()), config.consent, prompter);
    let service = Arc::new(Service::new(manager.clone(), TrustStore::from_certs([root.clone()]), consent, config));
    let secret = ClientSecret::generate().unwrap();
    // The bridge on the runtime `keybridge serve` gives it; the clients on their own.
    let srv = kb_bridge::runtime_builder().build().unwrap();
    let running = srv.block_on(Bridge::new(service, secret.clone(), watch).start()).unwrap();
    let url = running.url();
    let thumb = sc.thumbprint(kb_types::HashAlgorithm::Sha1).to_uppercase();
    let enc_thumb = ec.thumbprint(kb_types::HashAlgorithm::Sha1).to_uppercase();
    let digest_b64: String = <base64ct::Base64 as base64ct::Encoding>::encode_string(&digest);
    let round = Duration::from_secs_f64(a.seconds);

    let medium = if a.card { "a card (through its actor thread)" } else { "software in this process, like a file key" };
    println!("# bridge load, {} s per point, in-memory SM2 key ({medium}), PIN cached", a.seconds);
    // In-process: the device service itself, one caller at a time (the medium's actor
    // serialises signatures anyway).
    let in_process = |d: Duration| -> Slice {
        let (t0, cpu0, sw0) = (Instant::now(), cpu_ticks(), voluntary_switches());
        let mut n = 0u64;
        while t0.elapsed() < d {
            manager.sign_digest(&id, "c", KeyUsage::Sign, &scheme, &digest, "bench").unwrap();
            n += 1;
        }
        let secs = t0.elapsed().as_secs_f64();
        Slice { n, secs, ticks: cpu_ticks() - cpu0, switches: voluntary_switches() - sw0, lat: Vec::new() }
    };
    let whole = in_process(round);
    println!(
        "in-process sign_digest: {:.0}/s ({:.0} µs CPU, {:.1} thread switches each)",
        whole.rate(),
        whole.cpu_us(),
        whole.switches_each()
    );
    // The floor of any bridge that signs on a thread other than its client's: the same
    // signature made on another thread, handed over and back through std's channels (two
    // thread hand-offs, nothing else), in slices alternating with signing on the caller's
    // thread. Where a hand-off wakes a sleeping thread on an idle vCPU, this is what a
    // hand-off costs the one waiting client.
    let (floor, floor_peer, floor_switches) = std::thread::scope(|scope| {
        let (req_tx, req_rx) = std::sync::mpsc::channel::<()>();
        let (res_tx, res_rx) = std::sync::mpsc::channel::<()>();
        let (m, id, scheme, digest) = (&manager, &id, &scheme, &digest);
        scope.spawn(move || {
            while req_rx.recv().is_ok() {
                m.sign_digest(id, "c", KeyUsage::Sign, scheme, digest, "bench").unwrap();
                if res_tx.send(()).is_err() {
                    break;
                }
            }
        });
        let (mut handed, mut own, mut switches) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..SLICES {
            let (t0, sw0) = (Instant::now(), voluntary_switches());
            let mut n = 0u64;
            while t0.elapsed() < round / SLICES as u32 {
                req_tx.send(()).unwrap();
                res_rx.recv().unwrap();
                n += 1;
            }
            handed.push(n as f64 / t0.elapsed().as_secs_f64());
            switches.push((voluntary_switches() - sw0) as f64 / n as f64);
            own.push(in_process(round / SLICES as u32).rate());
        }
        (median(handed.into_iter()), median(own.into_iter()), median(switches.into_iter()))
    });
    println!(
        "floor: the same signature on another thread, handed over and back: {floor:.0}/s = {:.0}% of in-process ({floor_peer:.0}/s, alternating slices), {floor_switches:.1} thread switches each: {:.0} µs a hand-off",
        100.0 * floor / floor_peer,
        (1e6 / floor - 1e6 / floor_peer) / 2.0
    );
    // The bridge's own round trip, no medium involved: devices.list from one client.
    let (rt_us, rtt) = rt.block_on(async {
        let o = ClientOptions { url: url.clone(), origin: None, secret: Some(secret.clone()), sdk: "bench-rtt".into() };
        let c = BridgeClient::connect(o).await.unwrap();
        let (t, cpu0, sw0) = (Instant::now(), cpu_ticks(), voluntary_switches());
        let mut n = 0u64;
        while t.elapsed() < round {
            c.request(c.next_id(), "devices.list", json!({})).await.unwrap();
            n += 1;
        }
        let secs = t.elapsed().as_secs_f64();
        let s = Slice { n, secs, ticks: cpu_ticks() - cpu0, switches: voluntary_switches() - sw0, lat: Vec::new() };
        (secs * 1e6 / n as f64, s)
    });
    println!(
        "bridge round trip without the medium (devices.list, 1 client): {rt_us:.0} µs ({:.0} µs CPU, {:.1} thread switches each)",
        rtt.cpu_us(),
        rtt.switches_each()
    );
    println!(
        "Each point: {SLICES} slices through the bridge alternating with {SLICES} in-process, the same length each; rates are the medians, the ratio theirs."
    );
    println!(
        "| clients | signs/s | in-process signs/s | vs in-process | p50 ms | p99 ms | CPU µs/sign (bridge / in-process) | thread switches/sign (bridge / in-process) |"
    );
    println!("|--:|--:|--:|--:|--:|--:|--:|--:|");
    let params = json!({"certificate": {"thumbprint": thumb}, "input": {"digest": digest_b64}, "format": "raw"});
    let slice = round / SLICES as u32;
    // (connections, requests in flight per connection)
    for (clients, depth) in [(1usize, 1usize), (16, 1), (64, 1), (1, 16)] {
        let conns = rt.block_on(async {
            let mut conns = Vec::new();
            for i in 0..clients {
                let o = ClientOptions { url: url.clone(), origin: None, secret: Some(secret.clone()), sdk: format!("bench-{i}") };
                let c = Arc::new(BridgeClient::connect(o).await.unwrap());
                for _ in 0..depth {
                    conns.push(Arc::clone(&c));
                }
            }
            // Warm up each connection once.
            for c in &conns {
                c.request(c.next_id(), "sign", params.clone()).await.unwrap();
            }
            conns
        });
        let (mut bridge, mut local) = (Vec::new(), Vec::new());
        for _ in 0..SLICES {
            bridge.push(rt.block_on(through_bridge(&conns, &params, slice)));
            local.push(in_process(slice));
        }
        let mut lat: Vec<u64> = bridge.iter().flat_map(|s| s.lat.iter().copied()).collect();
        lat.sort_unstable();
        let (rate, local_rate) = (median(bridge.iter().map(Slice::rate)), median(local.iter().map(Slice::rate)));
        let total = |v: &[Slice]| {
            let (ticks, switches, n) = v.iter().fold((0, 0, 0), |(t, w, n), s| (t + s.ticks, w + s.switches, n + s.n));
            Slice { n, secs: 0.0, ticks, switches, lat: Vec::new() }
        };
        let (b, l) = (total(&bridge), total(&local));
        let who = if depth == 1 { clients.to_string() } else { format!("{clients} ({depth} in flight)") };
        println!(
            "| {who} | {rate:.0} | {local_rate:.0} | {:.0}% | {:.2} | {:.2} | {:.0} / {:.0} | {:.1} / {:.1} |",
            100.0 * rate / local_rate,
            percentile(&lat, 0.5),
            percentile(&lat, 0.99),
            b.cpu_us(),
            l.cpu_us(),
            b.switches_each(),
            l.switches_each()
        );
        drop(conns);
    }

    // Raw SM4-CBC in-process over 64 MiB, best of 3.
    let buf = vec![0x5au8; 64 << 20];
    let mut best = 0f64;
    for _ in 0..3 {
        let mut out = Vec::with_capacity(buf.len() + 16);
        let mut enc = CbcEncryptor::new(&[7; 16], &[9; 16], Padding::Pkcs7);
        let t = Instant::now();
        for chunk in buf.chunks(1 << 16) {
            kb_crypto::sm4::Transform::update(&mut enc, chunk, &mut out);
            out.clear();
        }
        best = best.max(buf.len() as f64 / t.elapsed().as_secs_f64() / 1e6);
    }
    drop(buf);
    println!("raw SM4-CBC encrypt (in-process): {best:.0} MB/s");

    // The envelope through the bridge.
    let total = a.mb << 20;
    let (mbps, peak_kib, base_kib) = rt.block_on(async {
        let o = ClientOptions { url: url.clone(), origin: None, secret: Some(secret.clone()), sdk: "bench-envelope".into() };
        let c = Arc::new(BridgeClient::connect(o).await.unwrap());
        let base = rss_kib("VmRSS:");
        let peak = Arc::new(AtomicU64::new(base));
        let sampling = Arc::new(AtomicBool::new(true));
        let sampler = {
            let (peak, sampling) = (Arc::clone(&peak), Arc::clone(&sampling));
            tokio::spawn(async move {
                while sampling.load(Ordering::Relaxed) {
                    peak.fetch_max(rss_kib("VmRSS:"), Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        };
        let start = Instant::now();
        let up = c.open_upload(Some(total)).await.unwrap();
        let (down, mut rx) = c.open_download().await.unwrap();
        let call = c
            .begin(c.next_id(), "encrypt", json!({"format": "cms_envelope", "recipients": [{"thumbprint": enc_thumb}], "input": {"stream": up.0}, "output": {"stream": down.0}}))
            .await
            .unwrap();
        let sender = {
            let c = Arc::clone(&c);
            tokio::spawn(async move { c.upload(up, tokio::io::AsyncReadExt::take(tokio::io::repeat(0x42), total)).await.unwrap() })
        };
        let mut got = 0u64;
        while let Some(chunk) = rx.recv().await {
            got += chunk.len() as u64;
        }
        sender.await.unwrap();
        let r = call.response().await.unwrap();
        assert_eq!(r["output"]["length"].as_u64(), Some(got));
        let secs = start.elapsed().as_secs_f64();
        sampling.store(false, Ordering::Relaxed);
        sampler.await.unwrap();
        (total as f64 / secs / 1e6, peak.load(Ordering::Relaxed), base)
    });
    println!(
        "envelope through the bridge: {} MiB in, {mbps:.0} MB/s = {:.0}% of raw SM4-CBC; process RSS while streaming: peak {:.1} MiB (before: {:.1} MiB)",
        a.mb,
        100.0 * mbps / best,
        peak_kib as f64 / 1024.0,
        base_kib as f64 / 1024.0
    );
    srv.block_on(running.shutdown());
}
