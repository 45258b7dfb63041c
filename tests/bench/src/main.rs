#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]
//! `kb-bench`: KeyBridge's SM2 / SM3 / SM4 against OpenSSL, measured in the same run.
//!
//! ```text
//! cargo run --release -p kb-bench            # ~2 s per measurement
//! cargo run --release -p kb-bench -- --quick # CI smoke, well under a minute
//! ```
//!
//! Every row has our figure (through `kb_crypto`'s public API), the `openssl speed`
//! CLI figure where the CLI has that row, and the same operation through the `openssl`
//! crate in this process, so there is an apples-to-apples library-call figure next
//! to the CLI one. Throughput is in MB/s with 1 MB = 10^6 bytes (as `openssl speed`).
//!
//! All figures are divided by CPU time, not wall-clock time: `openssl speed` divides
//! by user CPU time unless given `-elapsed`, and this process reads its own thread's
//! on-CPU nanoseconds from `/proc/thread-self/schedstat` (falling back to wall time
//! where that file does not exist). On a shared, busy machine this keeps the two
//! sides comparable; on an idle one the two clocks agree to within a percent. Each
//! in-process figure is the median of five slices (see `rate`); the CLI figure is
//! what `openssl speed` prints.

use kb_crypto::sm2::{DEFAULT_ID, Sm2PrivateKey};
use kb_crypto::sm3::sm3;
use kb_crypto::sm4::{CbcDecryptor, CbcEncryptor, Ctr, EcbEncryptor, GcmEncryptor, Padding, Sm4, Sm4Backend, Transform};
use openssl::md::Md;
use openssl::md_ctx::MdCtx;
use openssl::pkey::{Id, PKey, Private};
use openssl::pkey_ctx::PkeyCtx;
use openssl::symm::{Cipher, Crypter, Mode};
use std::hint::black_box;
use std::process::Command;
use std::time::{Duration, Instant};

/// Message signed in the SM2 sign/verify rows: 20 bytes, as `openssl speed sm2` signs.
const SIGN_MSG_LEN: usize = 20;
/// Message encrypted in the SM2 encrypt/decrypt rows: a 32-byte content key.
const PKE_MSG_LEN: usize = 32;
/// Buffer for the SM4 rows and the small SM3 row.
const SMALL: usize = 8 * 1024;
/// Buffer for the large SM3 row.
const LARGE: usize = 1024 * 1024;

struct Config {
    /// Seconds per in-process measurement.
    secs: f64,
    /// Only these sections (`sm2`, `sm3`, `sm4`); all when empty.
    only: Vec<String>,
    /// `openssl speed -seconds`.
    cli_secs: u32,
}

// ---------------------------------------------------------------------------------
// Timing

/// This thread's on-CPU time, or `None` where the kernel does not expose it.
fn thread_cpu() -> Option<Duration> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = s.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

/// Slices each measurement is split into; the median slice is reported.
const SLICES: usize = 5;

/// Operations per second of `f`: a warm-up of a fifth of the budget, then `SLICES`
/// slices of `secs / SLICES` wall time each, every slice's call count divided by the
/// CPU time it took; the median slice is returned, so a burst of interference from
/// other work on the machine does not move the figure. Both in-process sides (ours
/// and the `openssl` crate) are measured the same way.
fn rate(secs: f64, mut f: impl FnMut()) -> f64 {
    let warm = Duration::from_secs_f64((secs / 5.0).max(0.05));
    let t = Instant::now();
    while t.elapsed() < warm {
        f();
    }
    let mut rates = [0f64; SLICES];
    for r in &mut rates {
        *r = one_slice(secs / SLICES as f64, &mut f);
    }
    rates.sort_by(f64::total_cmp);
    rates[SLICES / 2]
}

/// Operations per second of `f` and of `g`, measured in alternating slices (f, g, f, g, …)
/// so both see the same interference from other work on a busy machine; each median.
/// For rows whose ratio matters most (SM3, SM2 signing), where one side measured a
/// second after the other could land in a different burst of load.
fn rate_pair(secs: f64, mut f: impl FnMut(), mut g: impl FnMut()) -> (f64, f64) {
    let slice = secs / SLICES as f64;
    let (mut a, mut b) = ([0f64; SLICES], [0f64; SLICES]);
    one_slice(slice / 2.0, &mut f); // warm-up
    one_slice(slice / 2.0, &mut g);
    for i in 0..SLICES {
        a[i] = one_slice(slice, &mut f);
        b[i] = one_slice(slice, &mut g);
    }
    a.sort_by(f64::total_cmp);
    b.sort_by(f64::total_cmp);
    (a[SLICES / 2], b[SLICES / 2])
}

/// Calls of `f` per CPU second over one slice of `secs` wall time.
fn one_slice(secs: f64, f: &mut impl FnMut()) -> f64 {
    let slice = Duration::from_secs_f64(secs);
    let cpu0 = thread_cpu();
    let t = Instant::now();
    let mut n = 0u64;
    while n < 3 || t.elapsed() < slice {
        f();
        n += 1;
    }
    let wall = t.elapsed();
    let spent = match (cpu0, thread_cpu()) {
        (Some(a), Some(b)) if b > a => b - a,
        _ => wall,
    };
    n as f64 / spent.as_secs_f64()
}

/// MB/s (10^6 bytes) of `f` processing `bytes` per call.
fn mbps(secs: f64, bytes: usize, f: impl FnMut()) -> f64 {
    rate(secs, f) * bytes as f64 / 1e6
}

fn data(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i.wrapping_mul(131) ^ (i >> 7)) as u8).collect()
}

// ---------------------------------------------------------------------------------
// The `openssl speed` CLI

/// Run `openssl speed -mr -seconds N <args>` and return its stdout.
fn openssl_speed(cfg: &Config, args: &[&str]) -> Option<String> {
    let out =
        Command::new("openssl").arg("speed").arg("-mr").arg("-seconds").arg(cfg.cli_secs.to_string()).args(args).output().ok()?;
    if !out.status.success() {
        eprintln!("openssl speed {}: exit {}", args.join(" "), out.status);
        return None;
    }
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `+F:<n>:<name>:<bytes/s>...` for a single `-bytes` size: MB/s.
fn cli_throughput(cfg: &Config, args: &[&str]) -> Option<f64> {
    let text = openssl_speed(cfg, args)?;
    let line = text.lines().find(|l| l.starts_with("+F:"))?;
    let v: f64 = line.rsplit(':').next()?.trim().parse().ok()?;
    Some(v / 1e6)
}

/// `+F7:<n>:256:CurveSM2:<sign/s>:<verify/s>`.
fn cli_sm2(cfg: &Config) -> Option<(f64, f64)> {
    let text = openssl_speed(cfg, &["sm2"])?;
    let line = text.lines().find(|l| l.starts_with("+F7:"))?;
    let f: Vec<&str> = line.split(':').collect();
    let sign = f.get(4)?.trim().parse().ok()?;
    let verify = f.get(5)?.trim().parse().ok()?;
    Some((sign, verify))
}

fn cli_version() -> String {
    Command::new("openssl")
        .arg("version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "openssl CLI not found".to_owned())
}

/// The current clock of CPU 0 as /proc/cpuinfo reports it (it varies with load and boost).
fn cpu_mhz() -> Option<f64> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    info.lines().find(|l| l.starts_with("cpu MHz"))?.split_once(':')?.1.trim().parse().ok()
}

/// MB/s of copying a 256 MiB buffer (far beyond every cache): each byte read once and
/// written once, the memory traffic of a streaming cipher.
fn copy_bandwidth(secs: f64) -> f64 {
    const N: usize = 256 << 20;
    let src = data(N);
    let mut dst = vec![0u8; N];
    mbps(secs.max(1.0), N, || {
        dst.copy_from_slice(black_box(&src));
        black_box(&dst);
    })
}

fn cpu_model() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = info
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_owned())
        .unwrap_or_else(|| std::env::consts::ARCH.to_owned());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    format!("{model}, {cores} logical CPUs")
}

// ---------------------------------------------------------------------------------
// The table

struct Row {
    name: String,
    unit: &'static str,
    ours: f64,
    cli: Option<f64>,
    lib: Option<f64>,
}

fn fmt_num(v: f64) -> String {
    if v >= 100.0 { format!("{v:.0}") } else { format!("{v:.1}") }
}

fn fmt_opt(v: Option<f64>) -> String {
    v.map(fmt_num).unwrap_or_else(|| "—".to_owned())
}

fn fmt_ratio(ours: f64, peer: Option<f64>) -> String {
    match peer {
        Some(p) if p > 0.0 => format!("{:.2}×", ours / p),
        _ => "—".to_owned(),
    }
}

fn print_table(rows: &[Row]) {
    let header = ["operation", "unit", "KeyBridge", "OpenSSL CLI", "ours/CLI", "OpenSSL lib", "ours/lib"];
    let cells: Vec<[String; 7]> = rows
        .iter()
        .map(|r| {
            [
                r.name.clone(),
                r.unit.to_owned(),
                fmt_num(r.ours),
                fmt_opt(r.cli),
                fmt_ratio(r.ours, r.cli),
                fmt_opt(r.lib),
                fmt_ratio(r.ours, r.lib),
            ]
        })
        .collect();
    let mut w = header.map(|h| h.chars().count());
    for c in &cells {
        for (wi, s) in w.iter_mut().zip(c) {
            *wi = (*wi).max(s.chars().count());
        }
    }
    let line = |c: &[String]| {
        let mut s = String::from("|");
        for (i, (cell, wi)) in c.iter().zip(&w).enumerate() {
            let pad = wi - cell.chars().count();
            if i < 2 {
                s += &format!(" {cell}{} |", " ".repeat(pad));
            } else {
                s += &format!(" {}{cell} |", " ".repeat(pad));
            }
        }
        s
    };
    println!("{}", line(&header.map(str::to_owned)));
    let mut sep = String::from("|");
    for (i, wi) in w.iter().enumerate() {
        if i < 2 {
            sep += &format!(" {} |", "-".repeat(*wi));
        } else {
            sep += &format!(" {}: |", "-".repeat(wi - 1));
        }
    }
    println!("{sep}");
    for c in &cells {
        println!("{}", line(c));
    }
}

// ---------------------------------------------------------------------------------
// OpenSSL in-process

fn ossl_sm2_key() -> PKey<Private> {
    let mut ctx = PkeyCtx::new_id(Id::SM2).expect("EVP_PKEY_CTX for SM2");
    ctx.keygen_init().expect("SM2 keygen init");
    ctx.keygen().expect("SM2 keygen")
}

fn ossl_crypt(cipher: Cipher, mode: Mode, key: &[u8], iv: &[u8]) -> Crypter {
    let mut c = Crypter::new(cipher, mode, key, Some(iv)).expect("Crypter");
    c.pad(false);
    c
}

// ---------------------------------------------------------------------------------

fn main() {
    let mut cfg = Config { secs: 2.0, cli_secs: 2, only: Vec::new() };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => (cfg.secs, cfg.cli_secs) = (0.25, 1),
            "--only" => cfg.only.push(args.next().expect("--only takes sm2, sm3 or sm4")),
            "--seconds" => {
                let s: f64 = args.next().and_then(|v| v.parse().ok()).expect("--seconds takes a number");
                (cfg.secs, cfg.cli_secs) = (s, s.ceil().max(1.0) as u32);
            }
            "-h" | "--help" => {
                println!("usage: kb-bench [--quick | --seconds S] [--only sm2|sm3|sm4]...");
                return;
            }
            other => {
                eprintln!("unknown argument {other:?}; usage: kb-bench [--quick | --seconds S] [--only sm2|sm3|sm4]...");
                std::process::exit(2);
            }
        }
    }
    let secs = cfg.secs;
    let clock = if thread_cpu().is_some() { "thread CPU time" } else { "wall time" };
    println!("CPU:     {}", cpu_model());
    println!("OpenSSL: CLI {} / linked library {}", cli_version(), openssl::version::version());
    println!(
        "Timing:  {secs} s per in-process row (median of {SLICES} slices, divided by {clock}); `openssl speed -seconds {}` (divided by user CPU time)",
        cfg.cli_secs
    );
    println!();

    let key = [0x42u8; 16];
    let iv = [0x24u8; 16];
    let small = data(SMALL);
    let large = data(LARGE);
    let sign_msg = data(SIGN_MSG_LEN);
    let pke_msg = data(PKE_MSG_LEN);
    let mut rows = Vec::new();

    let wants = |section: &str| cfg.only.is_empty() || cfg.only.iter().any(|o| o == section);

    // --- SM2 ------------------------------------------------------------------
    if wants("sm2") {
        eprintln!("SM2 …");
        let (cli_sign, cli_verify) = cli_sm2(&cfg).map_or((None, None), |(s, v)| (Some(s), Some(v)));

        let sk = Sm2PrivateKey::generate().expect("SM2 key");
        let pk = *sk.public_key();
        let ours_sign = rate(secs, || {
            black_box(sk.sign(black_box(DEFAULT_ID), black_box(&sign_msg)).expect("sign"));
        });
        let e = pk.digest(DEFAULT_ID, &sign_msg).expect("e");
        let ours_sign_e_ref = rate(secs, || {
            black_box(sk.sign_digest_reference(black_box(&e)).expect("sign"));
        });
        let sig = sk.sign(DEFAULT_ID, &sign_msg).expect("sign");
        let ours_verify = rate(secs, || {
            pk.verify(black_box(DEFAULT_ID), black_box(&sign_msg), black_box(&sig)).expect("verify");
        });
        let ours_enc = rate(secs, || {
            black_box(pk.encrypt(black_box(&pke_msg)).expect("encrypt").to_der().expect("der"));
        });
        let ct = pk.encrypt(&pke_msg).expect("encrypt").to_der().expect("der");
        let ours_dec = rate(secs, || {
            let pt = sk.decrypt(black_box(&ct)).expect("decrypt");
            black_box(&pt[..]);
        });

        let opk = ossl_sm2_key();
        let mut md = MdCtx::new().expect("MdCtx");
        let mut osig = Vec::new();
        let lib_sign = rate(secs, || {
            md.digest_sign_init(Some(Md::sm3()), &opk).expect("DigestSignInit");
            osig.clear();
            md.digest_sign_to_vec(black_box(&sign_msg), &mut osig).expect("DigestSign");
            black_box(&osig);
        });
        let mut pctx = PkeyCtx::new(&opk).expect("PkeyCtx");
        pctx.sign_init().expect("sign_init");
        // Ours and OpenSSL's in alternating slices: the row issue 18's goal is about.
        let (ours_sign_e, lib_sign_e) = rate_pair(
            secs,
            || {
                black_box(sk.sign_digest(black_box(&e)).expect("sign"));
            },
            || {
                osig.clear();
                pctx.sign_to_vec(black_box(&e), &mut osig).expect("sign");
                black_box(&osig);
            },
        );
        // Verifying a prehashed e, ours and OpenSSL's EVP_PKEY_verify in alternating
        // slices; then RustCrypto's variable-time path (ours before issue 18's own
        // arithmetic), alternating with OpenSSL again.
        let sig_e = sk.sign_digest(&e).expect("sign");
        osig.clear();
        pctx.sign_to_vec(&e, &mut osig).expect("sign");
        let osig_e = osig.clone();
        let mut vctx = PkeyCtx::new(&opk).expect("PkeyCtx");
        vctx.verify_init().expect("verify_init");
        let mut lib_verify_e_once = || assert!(vctx.verify(black_box(&e), black_box(&osig_e)).expect("verify"));
        let (ours_verify_e, lib_verify_e) =
            rate_pair(secs, || pk.verify_digest(black_box(&e), black_box(&sig_e)).expect("verify"), &mut lib_verify_e_once);
        let (prev_verify_e, lib_verify_e2) = rate_pair(
            secs,
            || pk.verify_digest_rustcrypto_vartime(black_box(&e), black_box(&sig_e)).expect("verify"),
            &mut lib_verify_e_once,
        );
        // A file-type key's signature as the device service makes it: a login with the
        // PIN it has cached (no KDF: the PIN verified moments ago), the key file read and
        // checked, the key opened (or taken from the keys opened under that login), the
        // signature — against EVP_PKEY_sign in alternating slices. The key file uses the
        // test KDF parameters: a login older than the cache's 60 s runs the KDF again,
        // which with the real parameters (Argon2id, 64 MiB) costs ~0.2 s once a minute.
        let (file_sign_e, lib_sign_e2) = {
            use kb_token::Token;
            let dir = tempfile::tempdir().expect("temporary directory");
            let user = kb_types::Pin::new("12345678");
            let mut token = kb_filekey::FileToken::create(
                dir.path().join("bench.kbkey"),
                "bench",
                &user,
                &kb_types::Pin::new("admin-87654321"),
                kb_filekey::CreateOptions::weak_for_tests(),
            )
            .expect("key file");
            {
                let mut s = token.login(&user).expect("login");
                s.create_container("c").expect("container");
                s.generate_key_pair("c", kb_types::KeyUsage::Sign, kb_types::Algorithm::Sm2).expect("key pair");
            }
            let scheme = kb_crypto::SignatureScheme::sm2_default();
            rate_pair(
                secs,
                || {
                    let mut s = token.login(black_box(&user)).expect("login");
                    black_box(s.sign_digest("c", kb_types::KeyUsage::Sign, &scheme, black_box(&e)).expect("sign"));
                },
                || {
                    osig.clear();
                    pctx.sign_to_vec(black_box(&e), &mut osig).expect("sign");
                    black_box(&osig);
                },
            )
        };
        md.digest_sign_init(Some(Md::sm3()), &opk).expect("DigestSignInit");
        osig.clear();
        md.digest_sign_to_vec(&sign_msg, &mut osig).expect("DigestSign");
        let lib_verify = rate(secs, || {
            md.digest_verify_init(Some(Md::sm3()), &opk).expect("DigestVerifyInit");
            assert!(md.digest_verify(black_box(&sign_msg), black_box(&osig)).expect("DigestVerify"));
        });
        let mut ectx = PkeyCtx::new(&opk).expect("PkeyCtx");
        ectx.encrypt_init().expect("encrypt_init");
        let mut oct = Vec::new();
        let lib_enc = rate(secs, || {
            oct.clear();
            ectx.encrypt_to_vec(black_box(&pke_msg), &mut oct).expect("encrypt");
            black_box(&oct);
        });
        let mut dctx = PkeyCtx::new(&opk).expect("PkeyCtx");
        dctx.decrypt_init().expect("decrypt_init");
        let mut opt = Vec::new();
        dctx.decrypt_to_vec(&oct, &mut opt).expect("decrypt");
        assert_eq!(opt, pke_msg);
        let lib_dec = rate(secs, || {
            opt.clear();
            dctx.decrypt_to_vec(black_box(&oct), &mut opt).expect("decrypt");
            black_box(&opt);
        });

        rows.push(Row {
            name: format!("SM2 sign ({SIGN_MSG_LEN}-byte msg, incl. ZA + SM3)"),
            unit: "ops/s",
            ours: ours_sign,
            cli: cli_sign,
            lib: Some(lib_sign),
        });
        rows.push(Row {
            name: "SM2 sign (prehashed e; lib: EVP_PKEY_sign; alternating slices)".to_owned(),
            unit: "ops/s",
            ours: ours_sign_e,
            cli: None,
            lib: Some(lib_sign_e),
        });
        rows.push(Row {
            name: "SM2 sign through a file-type key (login with the cached PIN + sign e; alternating)".to_owned(),
            unit: "ops/s",
            ours: file_sign_e,
            cli: None,
            lib: Some(lib_sign_e2),
        });
        rows.push(Row {
            name: "SM2 sign (prehashed e; RustCrypto reference path)".to_owned(),
            unit: "ops/s",
            ours: ours_sign_e_ref,
            cli: None,
            lib: Some(lib_sign_e),
        });
        rows.push(Row {
            name: format!("SM2 verify ({SIGN_MSG_LEN}-byte msg, incl. ZA + SM3)"),
            unit: "ops/s",
            ours: ours_verify,
            cli: cli_verify,
            lib: Some(lib_verify),
        });
        rows.push(Row {
            name: "SM2 verify (prehashed e; lib: EVP_PKEY_verify; alternating slices)".to_owned(),
            unit: "ops/s",
            ours: ours_verify_e,
            cli: None,
            lib: Some(lib_verify_e),
        });
        rows.push(Row {
            name: "SM2 verify (prehashed e; RustCrypto vartime, the previous path; alternating)".to_owned(),
            unit: "ops/s",
            ours: prev_verify_e,
            cli: None,
            lib: Some(lib_verify_e2),
        });
        rows.push(Row {
            name: format!("SM2 encrypt ({PKE_MSG_LEN}-byte msg, DER out)"),
            unit: "ops/s",
            ours: ours_enc,
            cli: None,
            lib: Some(lib_enc),
        });
        rows.push(Row {
            name: format!("SM2 decrypt ({PKE_MSG_LEN}-byte msg, DER in)"),
            unit: "ops/s",
            ours: ours_dec,
            cli: None,
            lib: Some(lib_dec),
        });
    }

    // --- SM3 ------------------------------------------------------------------
    if wants("sm3") {
        eprintln!("SM3 …");
        for (label, buf) in [("8 KiB", &small), ("1 MiB", &large)] {
            let n = buf.len();
            let cli = cli_throughput(&cfg, &["-bytes", &n.to_string(), "-evp", "sm3"]);
            let (ours, lib) = rate_pair(
                secs,
                || {
                    black_box(sm3(black_box(buf)));
                },
                || {
                    black_box(openssl::hash::hash(openssl::hash::MessageDigest::sm3(), black_box(buf)).expect("sm3"));
                },
            );
            let (ours, lib) = (ours * n as f64 / 1e6, lib * n as f64 / 1e6);
            rows.push(Row {
                name: format!("SM3 ({label} buffers; alternating slices)"),
                unit: "MB/s",
                ours,
                cli,
                lib: Some(lib),
            });
        }
    }

    // --- SM4 ------------------------------------------------------------------
    let mut sm4_ctr_rates = Vec::new();
    if wants("sm4") {
        eprintln!("SM4 …");
        let bytes = SMALL.to_string();
        let mut obuf = vec![0u8; SMALL + 32];
        let cli_cbc_enc = cli_throughput(&cfg, &["-bytes", &bytes, "-evp", "sm4-cbc"]);
        let cli_cbc_dec = cli_throughput(&cfg, &["-decrypt", "-bytes", &bytes, "-evp", "sm4-cbc"]);
        let cli_ctr = cli_throughput(&cfg, &["-bytes", &bytes, "-evp", "sm4-ctr"]);
        let cli_ecb = cli_throughput(&cfg, &["-bytes", &bytes, "-evp", "sm4-ecb"]);
        let mut c = ossl_crypt(Cipher::sm4_ecb(), Mode::Encrypt, &key, &iv);
        let lib_ecb = mbps(secs, SMALL, || {
            black_box(c.update(black_box(&small), &mut obuf).expect("update"));
        });
        let mut c = ossl_crypt(Cipher::sm4_cbc(), Mode::Encrypt, &key, &iv);
        let lib_cbc_enc = mbps(secs, SMALL, || {
            black_box(c.update(black_box(&small), &mut obuf).expect("update"));
        });
        let mut c = ossl_crypt(Cipher::sm4_cbc(), Mode::Decrypt, &key, &iv);
        let lib_cbc_dec = mbps(secs, SMALL, || {
            black_box(c.update(black_box(&small), &mut obuf).expect("update"));
        });
        let mut c = ossl_crypt(Cipher::sm4_ctr(), Mode::Encrypt, &key, &iv);
        let lib_ctr = mbps(secs, SMALL, || {
            black_box(c.update(black_box(&small), &mut obuf).expect("update"));
        });
        let chosen = Sm4Backend::detect();
        for backend in Sm4Backend::ALL.into_iter().filter(|b| b.is_available()) {
            let tag = if backend == chosen { format!("{backend:?}, chosen") } else { format!("{backend:?}") };
            let sched = || Sm4::with_backend(&key, backend).expect("available");
            let measure = |t: &mut dyn Transform| {
                let mut out = Vec::with_capacity(SMALL + 64);
                mbps(secs, SMALL, || {
                    out.clear();
                    t.update(black_box(&small), &mut out);
                    black_box(&out);
                })
            };
            let ours = measure(&mut EcbEncryptor::with_cipher(sched(), Padding::None));
            rows.push(Row {
                name: format!("SM4-ECB encrypt (8 KiB buffers; the parallel core alone) [{tag}]"),
                unit: "MB/s",
                ours,
                cli: cli_ecb,
                lib: Some(lib_ecb),
            });
            let ours = measure(&mut CbcEncryptor::with_cipher(sched(), &iv, Padding::None));
            rows.push(Row {
                name: format!("SM4-CBC encrypt (8 KiB buffers) [{tag}]"),
                unit: "MB/s",
                ours,
                cli: cli_cbc_enc,
                lib: Some(lib_cbc_enc),
            });
            let ours = measure(&mut CbcDecryptor::with_cipher(sched(), &iv, Padding::None));
            rows.push(Row {
                name: format!("SM4-CBC decrypt (8 KiB buffers) [{tag}]"),
                unit: "MB/s",
                ours,
                cli: cli_cbc_dec,
                lib: Some(lib_cbc_dec),
            });
            let ours = measure(&mut Ctr::with_cipher(sched(), &iv));
            sm4_ctr_rates.push((backend, ours));
            rows.push(Row {
                name: format!("SM4-CTR (8 KiB buffers) [{tag}]"),
                unit: "MB/s",
                ours,
                cli: cli_ctr,
                lib: Some(lib_ctr),
            });
            // GCM: OpenSSL 3.0 has no SM4-GCM, so the peer is its SM4-CTR (GCM = CTR + GHASH).
            let ours = measure(&mut GcmEncryptor::with_cipher(sched(), &iv[..12], b"").expect("gcm"));
            rows.push(Row {
                name: format!("SM4-GCM encrypt (8 KiB; peer: OpenSSL SM4-CTR) [{tag}]"),
                unit: "MB/s",
                ours,
                cli: cli_ctr,
                lib: Some(lib_ctr),
            });
        }
        // CBC encryption (what seals an envelope) is the SM4 row nearest its goal: ours
        // (the chosen backend) and OpenSSL's library call again, in alternating slices.
        let mut ours_t = CbcEncryptor::with_cipher(Sm4::new(&key), &iv, Padding::None);
        let mut theirs = ossl_crypt(Cipher::sm4_cbc(), Mode::Encrypt, &key, &iv);
        let mut out = Vec::with_capacity(SMALL + 64);
        let (ours, lib) = rate_pair(
            secs,
            || {
                out.clear();
                ours_t.update(black_box(&small), &mut out);
                black_box(&out);
            },
            || {
                black_box(theirs.update(black_box(&small), &mut obuf).expect("update"));
            },
        );
        rows.push(Row {
            name: format!("SM4-CBC encrypt (8 KiB buffers; alternating slices) [{chosen:?}, chosen]"),
            unit: "MB/s",
            ours: ours * SMALL as f64 / 1e6,
            cli: cli_cbc_enc,
            lib: Some(lib * SMALL as f64 / 1e6),
        });
    }

    println!();
    print_table(&rows);
    println!();
    println!("ours/CLI and ours/lib > 1.00× means KeyBridge is faster. \"—\": the CLI has no such row.");
    println!("OpenSSL 3.0 has no SM4-GCM: the GCM rows' peer is OpenSSL's SM4-CTR.");
    println!();
    println!("SM4 backends on this CPU ([chosen] is what Sm4::new uses):");
    for backend in Sm4Backend::ALL.into_iter().filter(|b| b.is_available()) {
        println!("  {backend:?}: {}", backend.features());
    }
    if sm4_ctr_rates.is_empty() {
        return;
    }
    println!();
    let mhz = cpu_mhz();
    let bw = copy_bandwidth(secs);
    println!("Memory: copying a 256 MiB buffer moves {:.0} MB/s ({:.0} MB/s read + the same written; one core).", bw, bw);
    for (backend, ctr) in &sm4_ctr_rates {
        let cpb = mhz.map(|m| format!("{:.2} cycles/byte at {m:.0} MHz", m / ctr)).unwrap_or_else(|| "clock unknown".to_owned());
        println!(
            "SM4-CTR [{backend:?}]: {ctr:.0} MB/s = {cpb}; {:.0}% of the copy bandwidth (an 8 KiB buffer stays in L1/L2: this is compute, not memory, bound).",
            100.0 * ctr / bw
        );
    }
}
