//! A bid file's envelope through the bridge, both ways, against the raw crypto in the
//! same run:
//!
//! 1. Seal: the file uploaded once and `encrypt`ed with a `signer` — a CMS envelope
//!    (SM4-CBC) for the encryption certificate and a detached SM2 signature over the
//!    same content, in one pass — downloaded into a temporary file. Compared with the
//!    slower of SM3 and SM4-CBC encryption measured in-process (one thread each).
//! 2. Open: that envelope uploaded and `decrypt`ed, the plaintext downloaded and checked.
//!    Compared with the 600 MB/s goal and single-thread SM4-CBC decryption.
//! 3. Memory: the process's peak RSS (`VmHWM`, reset through `/proc/self/clear_refs`
//!    before each phase). Client and server share this process, so the figure is an
//!    upper bound on the serving side's.
//!
//! `cargo bench -p kb-bridge --bench envelope -- [--mb N] [--quick]` (default 1024 MiB;
//! `--quick`: 32 MiB, for run-all's smoke). Media: an in-memory software token (the
//! test rig's), PIN cached, so the figures are the bridge's and the crypto's own cost.

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use common::{PIN, rig};
use kb_crypto::hash::Hasher;
use kb_crypto::sm4::{CbcDecryptor, CbcEncryptor, Padding, Transform};
use kb_pki::cms::SignedMessage;
use kb_types::HashAlgorithm;
use serde_json::json;
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Instant;

const BYTE: u8 = 0x42;

fn args() -> u64 {
    let v: Vec<String> = std::env::args().skip(1).collect();
    let mut mb = 1024;
    let mut i = 0;
    while i < v.len() {
        match v[i].as_str() {
            "--mb" => {
                mb = v[i + 1].parse().expect("--mb N");
                i += 1;
            }
            "--quick" => mb = 32,
            _ => {} // cargo bench passes --bench
        }
        i += 1;
    }
    mb
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

/// MB/s of `op` over `mb` MiB fed in 64 KiB pieces; the best of three.
fn rate(mb: u64, mut op: impl FnMut(&[u8])) -> f64 {
    let piece = vec![BYTE; 64 << 10];
    let n = mb * 16;
    (0..3)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..n {
                op(&piece);
            }
            (n * 65536) as f64 / t.elapsed().as_secs_f64() / 1e6
        })
        .fold(0.0, f64::max)
}

/// SM3, SM4-CBC encryption and SM4-CBC decryption in MB/s, one thread each.
fn references(mb: u64) -> (f64, f64, f64) {
    let mut h = Hasher::new(HashAlgorithm::Sm3);
    let sm3 = rate(mb, |p| h.update(p));
    std::hint::black_box(h.finish());
    let mut out = Vec::with_capacity(70_000);
    let mut e = CbcEncryptor::new(&[7; 16], &[9; 16], Padding::Pkcs7);
    let enc = rate(mb, |p| {
        out.clear();
        e.update(p, &mut out);
    });
    let mut d = CbcDecryptor::new(&[7; 16], &[9; 16], Padding::Pkcs7);
    let dec = rate(mb, |p| {
        out.clear();
        d.update(p, &mut out);
    });
    (sm3, enc, dec)
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

fn main() {
    let mb = args();
    let total = mb << 20;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let r = rt.block_on(rig());
    r.prompter.push_pin(PIN);
    let c = Arc::new(rt.block_on(r.native()));
    let signer = json!({"thumbprint": r.key.sign_thumb()});
    let enc = json!({"thumbprint": r.key.enc_thumb()});
    // Cache the PIN (one signature), so no phase waits for the prompter.
    rt.block_on(c.request(c.next_id(), "sign", json!({"certificate": signer, "input": {"data": "AA=="}, "format": "raw"})))
        .unwrap();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("# envelope through the bridge: {mb} MiB, {cores} cores, in-memory SM2 keys, PIN cached");
    let ref_mb = mb.min(256);
    let (sm3_a, enc_a, dec_a) = references(ref_mb);

    // Seal: upload once; envelope + signature; download into a file.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bid.env");
    reset_peak();
    let base = status_kib("VmRSS:");
    let t = Instant::now();
    let (sealed, signature) = rt.block_on(async {
        let up = c.open_upload(Some(total)).await.unwrap();
        let (down, mut rx) = c.open_download().await.unwrap();
        let call = c
            .begin(
                c.next_id(),
                "encrypt",
                json!({"format": "cms_envelope", "recipients": [enc], "signer": signer, "input": {"stream": up.0}, "output": {"stream": down.0}}),
            )
            .await
            .unwrap();
        let sender = {
            let c = Arc::clone(&c);
            tokio::spawn(async move { c.upload(up, tokio::io::AsyncReadExt::take(tokio::io::repeat(BYTE), total)).await.unwrap() })
        };
        let mut f = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&path).unwrap());
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
    });
    let seal_s = t.elapsed().as_secs_f64();
    let seal_peak = status_kib("VmHWM:");

    // Open: upload the envelope; decrypt; download and check the plaintext.
    reset_peak();
    let t = Instant::now();
    let opened = rt.block_on(async {
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
            let c = Arc::clone(&c);
            let file = FileReader(std::fs::File::open(&path).unwrap());
            tokio::spawn(async move { c.upload(up, file).await.unwrap() })
        };
        let mut got = 0u64;
        while let Some(chunk) = rx.recv().await {
            assert!(chunk.iter().all(|&b| b == BYTE), "the opened bid differs");
            got += chunk.len() as u64;
        }
        assert_eq!(sender.await.unwrap(), sealed);
        call.response().await.unwrap();
        got
    });
    let open_s = t.elapsed().as_secs_f64();
    let open_peak = status_kib("VmHWM:");
    assert_eq!(opened, total, "the opened bid has the sealed length");

    // The same envelope opened in-process, file to nowhere: the envelope code's own
    // speed, without the bridge's transport.
    let local = kb_pki::cms::LocalDecrypter::new(r.key.enc_key.clone(), r.key.enc_cert.clone()).unwrap();
    let t = Instant::now();
    let n = kb_pki::cms::envelope::decrypt(std::fs::File::open(&path).unwrap(), std::io::sink(), &local).unwrap();
    let local_open = n as f64 / t.elapsed().as_secs_f64() / 1e6;
    assert_eq!(n, total);

    // The signature covers the content (checked outside the timings).
    let msg = SignedMessage::from_der(&signature).unwrap();
    msg.verify_reader(std::io::repeat(BYTE).take(total), &[]).unwrap();
    let (sm3_b, enc_b, dec_b) = references(ref_mb);
    let (sm3, enc_rate, dec) = (sm3_a.max(sm3_b), enc_a.max(enc_b), dec_a.max(dec_b));
    let bound = sm3.min(enc_rate);

    let seal = total as f64 / seal_s / 1e6;
    let open = total as f64 / open_s / 1e6;
    let mib = |k: u64| k as f64 / 1024.0;
    println!(
        "in-process, one thread each (best of the runs before and after): SM3 {sm3:.0} MB/s, SM4-CBC encrypt {enc_rate:.0} MB/s, SM4-CBC decrypt {dec:.0} MB/s"
    );
    println!("| phase | MB/s of bid | against | goal | peak RSS (MiB) |");
    println!("|---|--:|--:|---|--:|");
    println!(
        "| seal (envelope + detached signature, one pass) | {seal:.0} | {:.0}% of the slower of SM3 and SM4-CBC encrypt ({bound:.0}) | ≥ 90%: {} | {:.1} |",
        100.0 * seal / bound,
        if seal >= 0.9 * bound { "met" } else { "not met" },
        mib(seal_peak)
    );
    println!(
        "| open (decrypt) | {open:.0} | {:.1}× one-thread SM4-CBC decrypt ({dec:.0}) | ≥ 600 MB/s: {} | {:.1} |",
        open / dec,
        if open >= 600.0 { "met" } else { "not met" },
        mib(open_peak)
    );
    println!("in-process open (the same envelope, file → envelope::decrypt → nothing, no bridge): {local_open:.0} MB/s");
    println!(
        "process RSS before the phases: {:.1} MiB; peak RSS ≤ 64 MiB: {}",
        mib(base),
        if seal_peak.max(open_peak) <= 64 * 1024 { "met" } else { "not met" }
    );
    rt.block_on(r.bridge.shutdown());
}
