//! A small deterministic mutator and a replay loop for the stable `no_panic` tests
//! (`drivers/*/tests/no_panic.rs` include this file with `#[path]`). libFuzzer does its
//! own, far better mutation; this exists so `cargo test` on stable still pushes a few
//! thousand malformed inputs through every parser on every run.
//!
//! Mutations (one, or 2–4 stacked): bit flips, "interesting" bytes, truncation,
//! insertion, deletion, chunk duplication, DER length-field and tag tweaks (length
//! positions are found by walking the seed's TLV tree, including DER nested in OCTET
//! and BIT STRINGs), and insertion of DN/PEM tokens for the text seeds.

use std::path::Path;
use std::time::Instant;

/// SplitMix64: tiny, deterministic, good enough to drive mutations.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded from `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// A generator seeded from a name (FNV-1a), so each target has its own sequence.
    pub fn from_name(name: &str) -> Self {
        let mut h = 0xcbf2_9ce4_8422_2325u64;
        for b in name.bytes() {
            h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
        }
        Rng(h)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform-ish in `0..n` (`0` when `n == 0`).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { (self.next_u64() % n as u64) as usize }
    }

    /// One element of a non-empty slice.
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

/// Offsets of the first length octet of every well-formed TLV found in `der`.
pub fn length_offsets(der: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    walk(der, 0, &mut out, 0);
    out
}

fn walk(b: &[u8], base: usize, out: &mut Vec<usize>, depth: usize) {
    let mut i = 0;
    while i + 1 < b.len() && depth < 16 {
        let tag = b[i];
        if tag & 0x1f == 0x1f {
            return; // high-tag-number form: not in our formats
        }
        let lpos = i + 1;
        let l0 = b[lpos] as usize;
        let (len, hdr) = if l0 < 0x80 {
            (l0, 2)
        } else {
            let n = l0 & 0x7f;
            if n == 0 || n > 4 || lpos + n >= b.len() {
                return;
            }
            (b[lpos + 1..=lpos + n].iter().fold(0usize, |acc, &x| (acc << 8) | x as usize), 2 + n)
        };
        let start = i + hdr;
        let Some(end) = start.checked_add(len).filter(|&e| e <= b.len()) else { return };
        out.push(base + lpos);
        let content = &b[start..end];
        if tag & 0x20 != 0 {
            walk(content, base + start, out, depth + 1);
        } else if tag == 0x04 && content.first() == Some(&0x30) {
            walk(content, base + start, out, depth + 1); // extnValue and friends
        } else if tag == 0x03 && content.len() > 1 && content[1] == 0x30 {
            walk(&content[1..], base + start + 1, out, depth + 1); // subjectPublicKey of RSA
        }
        i = end;
    }
}

const INTERESTING: &[u8] = &[0x00, 0x01, 0x02, 0x04, 0x05, 0x06, 0x30, 0x31, 0x7f, 0x80, 0x81, 0x82, 0xa0, 0xfe, 0xff];
const TAGS: &[u8] = &[0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x0c, 0x13, 0x16, 0x17, 0x18, 0x1e, 0x30, 0x31, 0x80, 0xa0, 0xa3];
const TOKENS: &[&str] = &[
    ",",
    "=",
    "\\",
    "+",
    "\"",
    " ",
    "\0",
    "#",
    ";",
    "CN=",
    "C=",
    "E=",
    "SERIALNUMBER=",
    "2.5.4.3=",
    "1.2.3=",
    "0.0=",
    "99999999999999999999999999.1=",
    "1.2.840.113549.1.9.1=",
    "张三",
    "\u{FEFF}",
    "\u{10FFFF}",
    "-----BEGIN CERTIFICATE-----\n",
    "-----END CERTIFICATE-----\n",
    "====",
    "\r\n",
];

/// One mutated copy of `seed`: half the time one mutation, otherwise 2–4 stacked.
pub fn mutate(seed: &[u8], lengths: &[usize], rng: &mut Rng) -> Vec<u8> {
    let mut v = seed.to_vec();
    let stacked = if rng.below(2) == 0 { 1 } else { 2 + rng.below(3) };
    for _ in 0..stacked {
        if v.is_empty() {
            v.push(rng.next_u64() as u8);
            continue;
        }
        let p = rng.below(v.len());
        match rng.below(12) {
            0 | 1 => v[p] ^= 1 << rng.below(8),
            2 => v[p] = rng.pick(INTERESTING),
            3 => v.truncate(rng.below(v.len())),
            4 => {
                let n = 1 + rng.below(4);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
                v.splice(p..p, bytes);
            }
            5 => {
                let end = (p + 1 + rng.below(16)).min(v.len());
                v.drain(p..end);
            }
            6 => {
                let end = (p + 1 + rng.below(64)).min(v.len());
                let chunk = v[p..end].to_vec();
                let at = rng.below(v.len() + 1);
                v.splice(at..at, chunk);
            }
            7 => {
                let t = rng.pick(TOKENS).as_bytes();
                v.splice(p..p, t.iter().copied());
            }
            8 if !lengths.is_empty() => {
                // Tag swap at a known TLV.
                let l = rng.pick(lengths);
                if l >= 1 && l - 1 < v.len() {
                    v[l - 1] = rng.pick(TAGS);
                }
            }
            _ if !lengths.is_empty() => {
                // Length-field tweak at a known TLV.
                let l = rng.pick(lengths);
                if l >= v.len() {
                    continue;
                }
                let b = v[l];
                if b < 0x80 {
                    v[l] = match rng.below(7) {
                        0 => b.wrapping_add(1),
                        1 => b.wrapping_sub(1),
                        2 => 0x00,
                        3 => 0x7f,
                        4 => 0x80, // indefinite length: not DER
                        5 => 0x81,
                        _ => 0xff,
                    };
                } else {
                    let n = (b & 0x7f) as usize;
                    match rng.below(5) {
                        0 if l + 1 < v.len() => v[l + 1] = v[l + 1].wrapping_add(1),
                        1 if l + n < v.len() => v[l + n] = v[l + n].wrapping_sub(1),
                        2 => v[l] = 0x80 | (n as u8 + 1),
                        3 if l + 1 < v.len() => {
                            // Non-minimal: a leading zero length octet.
                            v[l] = 0x80 | (n as u8 + 1);
                            v.insert(l + 1, 0);
                        }
                        _ => {
                            for k in 1..=n {
                                if l + k < v.len() {
                                    v[l + k] = 0xff;
                                }
                            }
                        }
                    }
                }
            }
            _ => v[p] = rng.next_u64() as u8,
        }
    }
    v
}

/// Every file in `dir`, sorted by name, as `(name, bytes)`. Panics if there are none.
pub fn load_seeds(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("seed folder {}: {e}", dir.display()));
    let mut seeds: Vec<(String, Vec<u8>)> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_file())
        .map(|e| {
            let bytes = std::fs::read(e.path()).unwrap_or_else(|err| panic!("{}: {err}", e.path().display()));
            (e.file_name().to_string_lossy().into_owned(), bytes)
        })
        .collect();
    seeds.sort();
    assert!(!seeds.is_empty(), "no seeds in {}", dir.display());
    seeds
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The no-panic check: every seed must be accepted by `target` (so the loop is not
/// vacuous), then `iterations` mutated seeds are fed to it and none may panic. A panic
/// fails the test with the input in hex, ready to paste into a regression test or
/// `cargo fuzz run <target> <file>`.
pub fn check(target: &str, seeds: &[(String, Vec<u8>)], harness: fn(&[u8]) -> bool, iterations: usize) {
    let started = Instant::now();
    for (name, seed) in seeds {
        let ok = std::panic::catch_unwind(|| harness(seed));
        assert!(matches!(ok, Ok(true)), "{target}: seed {name} is not accepted by the harness ({ok:?}): {}", hex(seed));
    }
    let lengths: Vec<Vec<usize>> = seeds.iter().map(|(_, s)| length_offsets(s)).collect();
    let mut rng = Rng::from_name(target);
    let mut accepted = 0usize;
    for i in 0..iterations {
        let k = i % seeds.len();
        let input = mutate(&seeds[k].1, &lengths[k], &mut rng);
        match std::panic::catch_unwind(|| harness(&input)) {
            Ok(true) => accepted += 1,
            Ok(false) => {}
            Err(_) => panic!(
                "{target}: PANIC on iteration {i}, a mutation of seed {} ({} bytes):\n{}",
                seeds[k].0,
                input.len(),
                hex(&input)
            ),
        }
    }
    eprintln!(
        "{target}: {} seeds ok, {iterations} mutated inputs, {accepted} still accepted, no panic, {:.2?}",
        seeds.len(),
        started.elapsed()
    );
}

/// The committed seeds of `target` for a crate under `drivers/` (pass its
/// `env!("CARGO_MANIFEST_DIR")`).
pub fn seed_dir(manifest_dir: &str, target: &str) -> std::path::PathBuf {
    std::path::Path::new(manifest_dir).join("../../tests/fuzz/seeds").join(target)
}

/// Check `f` on the seeds of `target` and `iterations` mutations of them.
pub fn run(manifest_dir: &str, target: &str, f: fn(&[u8]) -> bool, iterations: usize) {
    check(target, &load_seeds(&seed_dir(manifest_dir, target)), f, iterations);
}
