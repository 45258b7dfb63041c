//! A bid file's envelope through the bridge, both ways, against the raw crypto in the
//! same run:
//!
//! 1. Seal: the file uploaded once and `encrypt`ed with a `signer` — a CMS envelope
//!    (SM4-CBC) for the encryption certificate and a detached SM2 signature over the
//!    same content, in one pass — downloaded into a temporary file. Compared with the
//!    slower of SM3 and SM4-CBC encryption measured in-process (one thread each) in
//!    slices just before and just after it (the load of a shared machine changes from
//!    minute to minute: a reference from another moment compares two loads).
//! 2. Open: that envelope uploaded and `decrypt`ed, the plaintext downloaded and checked.
//!    Compared with the 600 MB/s goal and single-thread SM4-CBC decryption.
//! 3. Memory: the process's peak RSS (`VmHWM`, reset through `/proc/self/clear_refs`
//!    before each phase). Client and server share this process, so the figure is an
//!    upper bound on the serving side's.
//! 4. CPU: CPU-seconds per GiB of each part, from the threads' own clocks
//!    (`/proc/self/task/*/stat`): the bridge and the client run on separate runtimes
//!    whose threads are named for their part (see [`GROUPS`]). Unlike MB/s, these counts
//!    hardly move with the machine's load; their sum bounds what two idle cores can do.
//!
//! `cargo bench -p kb-bridge --bench envelope -- [--mb N] [--rounds N] [--quick]`
//! (default 1024 MiB, one round; `--quick`: 32 MiB, for run-all's smoke). Media: an
//! in-memory software token (the test rig's), PIN cached, so the figures are the
//! bridge's and the crypto's own cost. With `PERF_CTL_FIFO` set (a FIFO that
//! `perf record --control fifo:…` reads), profiling is switched on for the open phases
//! only.

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use common::{PIN, rig};
use kb_bridge::client::BridgeClient;
use kb_crypto::hash::Hasher;
use kb_crypto::sm4::{CbcDecryptor, CbcEncryptor, Padding, Transform};
use kb_pki::cms::SignedMessage;
use kb_types::HashAlgorithm;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;
use tokio::runtime::Runtime;

const BYTE: u8 = 0x42;
const GIB: f64 = (1u64 << 30) as f64;

struct Args {
    mb: u64,
    rounds: usize,
}

fn args() -> Args {
    let v: Vec<String> = std::env::args().skip(1).collect();
    let mut a = Args { mb: 1024, rounds: 1 };
    let mut i = 0;
    while i < v.len() {
        match v[i].as_str() {
            "--mb" => {
                a.mb = v[i + 1].parse().expect("--mb N");
                i += 1;
            }
            "--rounds" => {
                a.rounds = v[i + 1].parse().expect("--rounds N");
                i += 1;
            }
            "--quick" => a.mb = 32,
            _ => {} // cargo bench passes --bench
        }
        i += 1;
    }
    a
}

/// A `/proc/self/status` field in KiB.
fn status_kib(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix(field).map(|v| v.trim().trim_end_matches(" kB").trim().parse().unwrap_or(0)))
        .unwrap_or(0)
}

/// Reset the peak RSS to the current RSS (Linux: `5` to clear_refs).
fn reset_peak() {
    if std::fs::write("/proc/self/clear_refs", "5").is_err() {
        println!("(cannot reset VmHWM: the peak includes what came before)");
    }
}

/// Seconds per clock tick of `/proc/*/stat` (USER_HZ: 100 on Linux).
const TICK: f64 = 0.01;

/// A `/proc/…/stat` line's name and CPU ticks (utime + stime: the 14th and 15th fields,
/// counted past the parenthesised name, which may hold spaces).
fn stat_ticks(text: &str) -> Option<(String, u64)> {
    let (open, close) = (text.find('(')?, text.rfind(')')?);
    let f: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    Some((text[open + 1..close].to_string(), f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?))
}

/// The threads' CPU ticks by thread id, and the process's (which keeps those of threads
/// that ended).
#[derive(Default)]
struct Cpu {
    threads: HashMap<u32, (String, u64)>,
    process: u64,
}

fn cpu_now() -> Cpu {
    let mut threads = HashMap::new();
    for e in std::fs::read_dir("/proc/self/task").into_iter().flatten().flatten() {
        let Some(tid) = e.file_name().to_str().and_then(|t| t.parse().ok()) else { continue };
        if let Some(t) = std::fs::read_to_string(e.path().join("stat")).ok().and_then(|s| stat_ticks(&s)) {
            threads.insert(tid, t);
        }
    }
    let process = std::fs::read_to_string("/proc/self/stat").ok().and_then(|s| stat_ticks(&s)).map_or(0, |t| t.1);
    Cpu { threads, process }
}

/// This thread's CPU seconds.
fn thread_cpu() -> f64 {
    std::fs::read_to_string("/proc/thread-self/stat").ok().and_then(|s| stat_ticks(&s)).map_or(0.0, |t| t.1 as f64 * TICK)
}

/// The parts CPU time is counted in: a thread name prefix, and what runs there.
const GROUPS: [(&str, &str); 7] = [
    ("cli-tx", "client upload: reads the file, frames, masks, sends"),
    ("cli-rx", "client receive: reads the socket, unframes, hands chunks on"),
    ("main", "the bench's consumer: checks (open) or writes (seal) the chunks"),
    ("srv-io", "bridge connection tasks: upload frames in, download frames out"),
    ("srv-blk", "bridge request thread: stream reads, envelope code, download framing"),
    ("exited", "threads that ended in the phase (the opener's helpers, if per batch)"),
    ("other", "anything else"),
];

/// CPU seconds per group (in [`GROUPS`] order) between two snapshots.
fn cpu_between(a: &Cpu, b: &Cpu) -> [f64; GROUPS.len()] {
    let pid = std::process::id();
    let mut out = [0.0; GROUPS.len()];
    let mut live = 0u64;
    for (tid, (name, t)) in &b.threads {
        let d = t - a.threads.get(tid).filter(|(n, _)| n == name).map_or(0, |x| x.1).min(*t);
        live += d;
        let g = if *tid == pid {
            2
        } else {
            GROUPS.iter().position(|(p, _)| name.starts_with(p) && *p != "main").unwrap_or(GROUPS.len() - 1)
        };
        out[g] += d as f64 * TICK;
    }
    out[5] = b.process.saturating_sub(a.process).saturating_sub(live) as f64 * TICK;
    out
}

/// A multi-thread runtime whose first `workers` threads (the workers, started when it is
/// built) are named `io` and the rest (its blocking pool) `blocking`.
fn runtime(workers: usize, io: &'static str, blocking: &'static str) -> Runtime {
    let n = AtomicUsize::new(0);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name_fn(move || if n.fetch_add(1, Ordering::Relaxed) < workers { io } else { blocking }.to_string())
        .enable_all()
        .build()
        .unwrap()
}

/// One slice of the in-process references: MB/s and CPU seconds per GiB, one thread each.
#[derive(Clone, Copy, Default)]
struct Slice {
    secs: [f64; 3],
    cpu: [f64; 3],
    bytes: u64,
}

const REFS: [&str; 3] = ["SM3", "SM4-CBC encrypt", "SM4-CBC decrypt"];

/// SM3, SM4-CBC encryption and SM4-CBC decryption over `mb` MiB in 64 KiB pieces, once.
fn slice(mb: u64) -> Slice {
    let piece = vec![BYTE; 64 << 10];
    let n = mb * 16;
    let mut s = Slice { bytes: n * 65536, ..Slice::default() };
    let mut time = |i: usize, op: &mut dyn FnMut(&[u8])| {
        let (t, c) = (Instant::now(), thread_cpu());
        for _ in 0..n {
            op(&piece);
        }
        s.secs[i] = t.elapsed().as_secs_f64();
        s.cpu[i] = thread_cpu() - c;
    };
    let mut h = Hasher::new(HashAlgorithm::Sm3);
    time(0, &mut |p| h.update(p));
    std::hint::black_box(h.finish());
    let mut out = Vec::with_capacity(70_000);
    let mut e = CbcEncryptor::new(&[7; 16], &[9; 16], Padding::Pkcs7);
    time(1, &mut |p| {
        out.clear();
        e.update(p, &mut out);
    });
    let mut d = CbcDecryptor::new(&[7; 16], &[9; 16], Padding::Pkcs7);
    time(2, &mut |p| {
        out.clear();
        d.update(p, &mut out);
    });
    s
}

/// MB/s of each reference over some slices together (their bytes over their time).
fn rates(slices: &[Slice]) -> [f64; 3] {
    let bytes: u64 = slices.iter().map(|s| s.bytes).sum();
    std::array::from_fn(|i| bytes as f64 / slices.iter().map(|s| s.secs[i]).sum::<f64>() / 1e6)
}

/// A phase through the bridge.
struct Phase {
    secs: f64,
    peak_kib: u64,
    cpu: [f64; GROUPS.len()],
}

impl Phase {
    fn mbps(&self, bytes: u64) -> f64 {
        bytes as f64 / self.secs / 1e6
    }
}

/// Time `run` on the client's runtime, with the peak RSS and CPU by group.
fn phase<T>(cli: &Runtime, run: impl std::future::Future<Output = T>) -> (T, Phase) {
    reset_peak();
    let cpu = cpu_now();
    let t = Instant::now();
    let out = cli.block_on(run);
    let secs = t.elapsed().as_secs_f64();
    let cpu = cpu_between(&cpu, &cpu_now());
    (out, Phase { secs, peak_kib: status_kib("VmHWM:"), cpu })
}

/// A file read synchronously (page cache, in a bench) as an `AsyncRead`: tokio's `fs`
/// feature is not in the workspace.
struct FileReader(std::fs::File);

impl tokio::io::AsyncRead for FileReader {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let n = self.0.read(buf.initialize_unfilled())?;
        buf.advance(n);
        std::task::Poll::Ready(Ok(()))
    }
}

/// Switches `perf record --control fifo:…` on and off around the open phases.
struct Perf(Option<std::fs::File>);

impl Perf {
    fn from_env() -> Self {
        Perf(std::env::var_os("PERF_CTL_FIFO").map(|p| std::fs::OpenOptions::new().write(true).open(p).expect("PERF_CTL_FIFO")))
    }
    fn say(&mut self, what: &str) {
        if let Some(f) = &mut self.0 {
            f.write_all(what.as_bytes()).unwrap();
            f.flush().unwrap();
        }
    }
}

struct Bench {
    srv: Runtime,
    cli: Runtime,
    up: Runtime,
    c: Arc<BridgeClient>,
    signer: Value,
    enc: Value,
}

impl Bench {
    /// Upload once; envelope + signature; download into `path`. Returns the envelope's
    /// length and the signature.
    fn seal(&self, total: u64, path: &Path) -> ((u64, Vec<u8>), Phase) {
        let c = &self.c;
        phase(&self.cli, async {
            let up = c.open_upload(Some(total)).await.unwrap();
            let (down, mut rx) = c.open_download().await.unwrap();
            let call = c
                .begin(
                    c.next_id(),
                    "encrypt",
                    json!({"format": "cms_envelope", "recipients": [self.enc], "signer": self.signer, "input": {"stream": up.0}, "output": {"stream": down.0}}),
                )
                .await
                .unwrap();
            let sender = {
                let c = Arc::clone(c);
                self.up.spawn(async move {
                    c.upload(up, tokio::io::AsyncReadExt::take(tokio::io::repeat(BYTE), total)).await.unwrap()
                })
            };
            let mut f = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
            let mut got = 0u64;
            while let Some(chunk) = rx.recv().await {
                got += chunk.len() as u64;
                f.write_all(&chunk).unwrap();
            }
            f.flush().unwrap();
            assert_eq!(sender.await.unwrap(), total);
            let res = call.response().await.unwrap();
            assert_eq!(res["output"]["length"].as_u64(), Some(got));
            let sig = <base64ct::Base64 as base64ct::Encoding>::decode_vec(res["signature"].as_str().unwrap()).unwrap();
            (got, sig)
        })
    }

    /// Upload the envelope at `path`; decrypt; download and check the plaintext.
    fn open(&self, sealed: u64, path: &Path) -> (u64, Phase) {
        let c = &self.c;
        let expect = vec![BYTE; usize::try_from(c.hello().limits.max_chunk_bytes).unwrap()];
        phase(&self.cli, async {
            let up = c.open_upload(Some(sealed)).await.unwrap();
            let (down, mut rx) = c.open_download().await.unwrap();
            let call = c
                .begin(
                    c.next_id(),
                    "decrypt",
                    json!({"format": "cms_envelope", "input": {"stream": up.0}, "output": {"stream": down.0}}),
                )
                .await
                .unwrap();
            let sender = {
                let c = Arc::clone(c);
                let file = FileReader(std::fs::File::open(path).unwrap());
                self.up.spawn(async move { c.upload(up, file).await.unwrap() })
            };
            let mut got = 0u64;
            while let Some(chunk) = rx.recv().await {
                // A comparison the compiler vectorises (a byte loop costs more than
                // some of what is measured here).
                assert!(chunk[..] == expect[..chunk.len()], "the opened bid differs");
                got += chunk.len() as u64;
            }
            assert_eq!(sender.await.unwrap(), sealed);
            call.response().await.unwrap();
            got
        })
    }
}

fn print_cpu(name: &str, p: &Phase, bytes: u64) {
    let per = GIB / bytes as f64;
    let total: f64 = p.cpu.iter().sum();
    let parts: Vec<String> =
        GROUPS.iter().zip(p.cpu).filter(|(_, s)| *s > 0.0).map(|((g, _), s)| format!("{g} {:.2}", s * per)).collect();
    println!(
        "  {name}: {:.2} CPU-s/GiB = {} (wall {:.2} s/GiB; two idle cores could do at most {:.0} MB/s)",
        total * per,
        parts.join(" + "),
        p.secs * per,
        2.0 * GIB / (total * per) / 1e6
    );
}

fn main() {
    let a = args();
    let total = a.mb << 20;
    // The bridge as `keybridge serve` runs it (its own runtime); the client's receiving
    // side and its uploads on runtimes of their own, so each part's threads are its own.
    // One worker, as `kb_bridge::runtime_builder` (named here so its threads are counted apart).
    let srv = runtime(1, "srv-io", "srv-blk");
    let cli = runtime(1, "cli-rx", "cli-rx-blk");
    let up = runtime(1, "cli-tx", "cli-tx-blk");
    let r = srv.block_on(rig());
    r.prompter.push_pin(PIN);
    let c = Arc::new(cli.block_on(r.native()));
    let signer = json!({"thumbprint": r.key.sign_thumb()});
    let enc = json!({"thumbprint": r.key.enc_thumb()});
    // Cache the PIN (one signature), so no phase waits for the prompter.
    cli.block_on(c.request(c.next_id(), "sign", json!({"certificate": signer, "input": {"data": "AA=="}, "format": "raw"})))
        .unwrap();
    let b = Bench { srv, cli, up, c, signer, enc };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("# envelope through the bridge: {} MiB, {} round(s), {cores} cores, in-memory SM2 keys, PIN cached", a.mb, a.rounds);
    let ref_mb = a.mb.min(256);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bid.env");
    let mut perf = Perf::from_env();
    let base = status_kib("VmRSS:");
    let mut slices = vec![slice(ref_mb)];
    let mut met = (true, true, true);
    for round in 1..=a.rounds {
        let ((sealed, signature), seal) = b.seal(total, &path);
        slices.push(slice(ref_mb));
        perf.say("enable\n");
        let (opened, open) = b.open(sealed, &path);
        perf.say("disable\n");
        assert_eq!(opened, total, "the opened bid has the sealed length");
        // The signature covers the content (checked outside the timings).
        let msg = SignedMessage::from_der(&signature).unwrap();
        msg.verify_reader(std::io::repeat(BYTE).take(total), &[]).unwrap();

        let around = rates(&slices[slices.len() - 2..]);
        let bound = around[0].min(around[1]);
        let (seal_mbps, open_mbps) = (seal.mbps(total), open.mbps(total));
        let mib = |k: u64| k as f64 / 1024.0;
        println!(
            "round {round}: seal {seal_mbps:.0} MB/s = {:.0}% of the slower of SM3 and SM4-CBC encrypt in the slices around it ({:.0} / {:.0} MB/s); open {open_mbps:.0} MB/s = {:.2}× one-thread SM4-CBC decrypt ({:.0} MB/s); peak RSS seal {:.1} / open {:.1} MiB",
            100.0 * seal_mbps / bound,
            around[0],
            around[1],
            open_mbps / around[2],
            around[2],
            mib(seal.peak_kib),
            mib(open.peak_kib)
        );
        print_cpu("seal", &seal, total);
        print_cpu("open", &open, total);
        met.0 &= seal_mbps >= 0.9 * bound;
        met.1 &= open_mbps >= 600.0;
        met.2 &= seal.peak_kib.max(open.peak_kib) <= 64 * 1024;
    }
    let per = |s: &Slice, i: usize| s.cpu[i] * GIB / s.bytes as f64;
    let all = rates(&slices);
    for (i, name) in REFS.iter().enumerate() {
        let cpus: Vec<String> = slices.iter().map(|s| format!("{:.2}", per(s, i))).collect();
        println!("in-process {name}, one thread: {:.0} MB/s over all slices; CPU-s/GiB per slice {}", all[i], cpus.join(", "));
    }

    // The same envelope opened in-process, file to nowhere: the envelope code's own
    // speed, without the bridge's transport.
    let local = kb_pki::cms::LocalDecrypter::new(r.key.enc_key.clone(), r.key.enc_cert.clone()).unwrap();
    let (t, c0) = (Instant::now(), cpu_now());
    let n = kb_pki::cms::envelope::decrypt(std::fs::File::open(&path).unwrap(), std::io::sink(), &local).unwrap();
    let local_open = n as f64 / t.elapsed().as_secs_f64() / 1e6;
    let local_cpu = (cpu_now().process - c0.process) as f64 * TICK * GIB / n as f64;
    assert_eq!(n, total);
    println!(
        "in-process open (the same envelope, file → envelope::decrypt → nothing, no bridge): {local_open:.0} MB/s, {local_cpu:.2} CPU-s/GiB"
    );
    println!("CPU parts: {}", GROUPS.iter().map(|(g, what)| format!("{g} = {what}")).collect::<Vec<_>>().join("; "));
    let yes = |m: bool| if m { "met" } else { "not met" };
    println!(
        "goals (every round): seal ≥ 90%: {}; open ≥ 600 MB/s: {}; peak RSS ≤ 64 MiB: {} (RSS before the phases {:.1} MiB)",
        yes(met.0),
        yes(met.1),
        yes(met.2),
        base as f64 / 1024.0
    );
    let Bench { srv, .. } = b;
    srv.block_on(r.bridge.shutdown());
}
