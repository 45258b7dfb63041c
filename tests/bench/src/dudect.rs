#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]
//! `kb-dudect`: does SM4's running time depend on its secret inputs? A dudect-style
//! leakage measurement (Reparaz, Balasch and Verbauwhede, "Dude, is my code constant
//! time?", DATE 2017) of every SM4 core this CPU can run.
//!
//! ```text
//! cargo run --release -p kb-bench --bin kb-dudect            # 2,000,000 measurements a target
//! cargo run --release -p kb-bench --bin kb-dudect -- --quick # CI smoke: 100,000
//! cargo run --release -p kb-bench --bin kb-dudect -- --measurements N
//! ```
//!
//! For each target, every measurement times one call on an input of one of two classes,
//! chosen at random per measurement: class 0 is one fixed secret, class 1 a fresh random
//! one. All inputs are made before timing starts. If the time depends on the secret, the
//! two classes' timing distributions differ; Welch's t-test on them finds it, given
//! enough measurements. As in dudect, the test runs on the raw times and on the times
//! below several percentiles (cropping the long tail that interrupts and a busy machine
//! add), and the largest |t| is reported. |t| > 4.5 is dudect's threshold for "leakage
//! detected"; below it nothing was detected with this many measurements — evidence, not a
//! proof. The classes are interleaved at random, so load from other processes falls on
//! both alike.
//!
//! Two controls show the harness can see a leak: a byte comparison that returns at the
//! first difference (class 0 equal to the secret, so it reads all 16 bytes; class 1
//! random, so usually one), and RustCrypto's table-based `sm4` (secret-indexed table
//! loads: the exposure the new cores removed; L1-resident tables often show no timing
//! difference on one core, which is why table code is judged by reading, not by this).
//! The verdict for our cores is the measurement together with the code argument in
//! docs/benchmarks.md ("Constant time").

use kb_crypto::sm4::{Sm4, Sm4Backend};
use std::hint::black_box;
use std::time::Instant;

/// dudect's threshold: |t| above it means the two classes' times differ.
const T_THRESHOLD: f64 = 4.5;
/// Percentiles the times are cropped at (besides the raw test), as dudect does.
const CROPS: [f64; 6] = [0.99, 0.95, 0.90, 0.75, 0.50, 0.25];

/// splitmix64: inputs and class choices (not secrets; reproducible by seed).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn block(&mut self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.next().to_le_bytes());
        b[8..].copy_from_slice(&self.next().to_le_bytes());
        b
    }
}

/// Welford's running mean and variance.
#[derive(Default, Clone, Copy)]
struct Moments {
    n: f64,
    mean: f64,
    m2: f64,
}
impl Moments {
    fn push(&mut self, x: f64) {
        self.n += 1.0;
        let d = x - self.mean;
        self.mean += d / self.n;
        self.m2 += d * (x - self.mean);
    }
    fn var(&self) -> f64 {
        if self.n < 2.0 { 0.0 } else { self.m2 / (self.n - 1.0) }
    }
}

/// Welch's t between the two classes.
fn welch(c: &[Moments; 2]) -> f64 {
    let se = (c[0].var() / c[0].n + c[1].var() / c[1].n).sqrt();
    if se == 0.0 || c[0].n < 2.0 || c[1].n < 2.0 { 0.0 } else { (c[0].mean - c[1].mean) / se }
}

struct Outcome {
    max_t: f64,
    /// Which test gave it: "raw" or "<p" for a crop.
    at: String,
    median_ns: f64,
}

/// Times `run(input)` on `n` inputs of random classes; `make(class, rng)` builds an input.
fn measure<I>(n: usize, seed: u64, make: impl Fn(u8, &mut Rng) -> I, mut run: impl FnMut(&mut I)) -> Outcome {
    let mut rng = Rng(seed);
    let classes: Vec<u8> = (0..n).map(|_| (rng.next() & 1) as u8).collect();
    let mut inputs: Vec<I> = classes.iter().map(|&c| make(c, &mut rng)).collect();
    // Warm the caches and the branch predictors first.
    for input in inputs.iter_mut().take(n / 20 + 1) {
        run(input);
    }
    let mut times = Vec::with_capacity(n);
    for input in inputs.iter_mut() {
        let t0 = Instant::now();
        run(input);
        times.push(t0.elapsed().as_nanos() as f64);
    }
    // The first tenth calibrates the crops (as dudect's first batch); the rest is tested.
    let calib = n / 10;
    let mut sorted: Vec<f64> = times[..calib.max(1)].to_vec();
    sorted.sort_by(f64::total_cmp);
    let cut = |p: f64| sorted[((sorted.len() - 1) as f64 * p) as usize];
    let crops: Vec<(String, f64)> = std::iter::once(("raw".to_string(), f64::INFINITY))
        .chain(CROPS.iter().map(|&p| (format!("<p{}", (p * 100.0) as u32), cut(p))))
        .collect();
    let mut stats = vec![[Moments::default(); 2]; crops.len()];
    for (t, &c) in times.iter().zip(&classes).skip(calib) {
        for (s, (_, limit)) in stats.iter_mut().zip(&crops) {
            if *t <= *limit {
                s[c as usize].push(*t);
            }
        }
    }
    let mut best = Outcome { max_t: 0.0, at: "raw".into(), median_ns: cut(0.5) };
    for (s, (name, _)) in stats.iter().zip(&crops) {
        let t = welch(s).abs();
        if t > best.max_t {
            best.max_t = t;
            best.at = name.clone();
        }
    }
    best
}

/// A byte comparison that stops at the first difference: the harness's positive control.
#[inline(never)]
fn leaky_eq(a: &[u8; 16], b: &[u8; 16]) -> bool {
    for i in 0..16 {
        if black_box(a[i]) != black_box(b[i]) {
            return false;
        }
    }
    true
}

fn main() {
    let mut n = 2_000_000usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => n = 100_000,
            "--measurements" => n = args.next().and_then(|v| v.parse().ok()).expect("--measurements N"),
            "-h" | "--help" => {
                println!("usage: kb-dudect [--quick | --measurements N]");
                return;
            }
            other => {
                eprintln!("unknown argument {other:?}; usage: kb-dudect [--quick | --measurements N]");
                std::process::exit(2);
            }
        }
    }
    let mut seed_rng = Rng(0x005e_edd0_dec7);
    let fixed_key = seed_rng.block();
    let fixed_block = seed_rng.block();
    println!("kb-dudect: {n} measurements a target; |t| > {T_THRESHOLD} means the time depends on the secret");
    println!(
        "{:<58} {:>8} {:>6} {:>10}  verdict",
        "target (secret: class 0 fixed, class 1 random)", "max |t|", "at", "median ns"
    );
    let report = |name: &str, o: Outcome, control: bool| {
        let verdict = match (o.max_t > T_THRESHOLD, control) {
            (false, false) => "no leakage detected",
            (true, false) => "LEAKAGE DETECTED",
            (true, true) => "leak seen (control: expected)",
            (false, true) => "no difference seen (control)",
        };
        println!("{name:<58} {:>8.2} {:>6} {:>10.0}  {verdict}", o.max_t, o.at, o.median_ns);
        o.max_t > T_THRESHOLD && !control
    };
    let mut leaks = 0;
    for backend in Sm4Backend::ALL {
        if !backend.is_available() {
            println!("{:<58} {:>8} {:>6} {:>10}  not on this CPU", format!("SM4 [{backend:?}]"), "-", "-", "-");
            continue;
        }
        let sm4 = Sm4::with_backend(&fixed_key, backend).unwrap();
        // The plaintext as the secret: one block (the CBC-encryption / single-block path).
        let o = measure(n, 1, |c, r| if c == 0 { fixed_block } else { r.block() }, |b| sm4.encrypt_block(black_box(b)));
        leaks += usize::from(report(&format!("SM4 [{backend:?}] encrypt_block, secret plaintext"), o, false));
        // The bulk path: 16 blocks at once (ECB/CTR/GCM/CBC decryption).
        let o = measure(
            n / 4,
            2,
            |c, r| if c == 0 { [fixed_block; 16] } else { std::array::from_fn(|_| r.block()) },
            |b| sm4.encrypt_blocks(black_box(b)),
        );
        leaks += usize::from(report(&format!("SM4 [{backend:?}] encrypt_blocks x16, secret plaintext"), o, false));
        // The key as the secret: key schedule + one block.
        let o = measure(
            n / 4,
            3,
            |c, r| (if c == 0 { fixed_key } else { r.block() }, fixed_block),
            |(k, b)| {
                let s = Sm4::with_backend(black_box(k), backend).unwrap();
                s.encrypt_block(b);
            },
        );
        leaks += usize::from(report(&format!("SM4 [{backend:?}] key schedule + block, secret key"), o, false));
    }
    // Controls.
    let o = measure(
        n,
        4,
        |c, r| if c == 0 { fixed_block } else { r.block() },
        |b| {
            black_box(leaky_eq(black_box(b), &fixed_block));
        },
    );
    report("control: early-exit compare (must leak)", o, true);
    {
        use sm4::cipher::{BlockCipherEncrypt, KeyInit};
        let table = sm4::Sm4::new(&fixed_key.into());
        let o = measure(
            n,
            5,
            |c, r| if c == 0 { fixed_block } else { r.block() },
            |b| {
                let mut block = (*b).into();
                table.encrypt_block(black_box(&mut block));
                *b = block.into();
            },
        );
        report("control: RustCrypto sm4 0.6 (secret-indexed tables)", o, true);
    }
    if leaks > 0 {
        println!(
            "kb-dudect: {leaks} of our targets showed a timing difference (|t| > {T_THRESHOLD}); rerun on a quiet machine before concluding"
        );
    }
}
