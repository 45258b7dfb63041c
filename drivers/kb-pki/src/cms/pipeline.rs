//! The two halves of an envelope's content that use both cores.
//!
//! - [`CbcOpener`]: SM4-CBC decryption in parallel batches. CBC decryption is
//!   parallel — each plaintext block needs its own ciphertext block and the one
//!   before it — so a batch is split into 64 KiB pieces, each decrypted by whichever
//!   thread takes it next, with the previous piece's last ciphertext block as its IV. The
//!   final block (and any ragged tail) goes through the ordinary streaming
//!   [`CbcDecryptor`], so padding checks and their errors are exactly the sequential
//!   ones. Memory: one batch of ciphertext and one of plaintext. The caller reads the
//!   ciphertext straight into the batch ([`CbcOpener::space`]), so it is not copied
//!   on its way in.
//! - [`for_each_chunk`]: reads the content in chunks and hands each to the caller
//!   (the SM4-CBC encryption, which is sequential) while a second thread feeds the
//!   same chunk to a tap (the SM3 digest of a signature over the content), pipelined
//!   over a bounded pool of buffers: the slower of the two bounds the time, not their
//!   sum.

use crate::Result;
use kb_crypto::sm4::{BLOCK, CbcDecryptor, Padding, Sm4, Transform};
use std::io::{Read, Write};
use std::sync::mpsc;
use zeroize::Zeroizing;

/// Ciphertext decrypted per parallel batch.
pub(crate) const BATCH: usize = 1 << 20;
/// Below this, a batch is not worth a second thread.
const MIN_PARALLEL: usize = 64 * 1024;
/// A batch is decrypted in pieces of this size, taken by whichever thread is free.
const PIECE: usize = 64 * 1024;
/// Each piece is decrypted in slices of this size (copy, decrypt, xor stay in cache).
const SLICE: usize = 32 * 1024;
/// Buffers in flight between the reader and the tap thread.
const TAP_POOL: usize = 4;

/// How many threads decrypt: the cores this process may use, at most 4.
pub(crate) fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()).min(4)
}

/// SM4-CBC decryption with PKCS#7 padding, in parallel batches (see the module docs).
pub(crate) struct CbcOpener {
    cipher: Sm4,
    /// The ciphertext block before `pending` (the IV at first).
    prev: [u8; BLOCK],
    /// Ciphertext not yet decrypted: `pending[..filled]`. One batch and one block: a
    /// full buffer decrypts a batch and keeps the block after it (the last block always
    /// waits for [`CbcOpener::finish`]).
    pending: Vec<u8>,
    filled: usize,
    /// Plaintext of the batch being written.
    out: Zeroizing<Vec<u8>>,
    threads: usize,
}

impl CbcOpener {
    pub(crate) fn new(key: &[u8; 16], iv: &[u8; 16], threads: usize) -> Self {
        Self {
            cipher: Sm4::new(key),
            prev: *iv,
            pending: vec![0; BATCH + BLOCK],
            filled: 0,
            out: Zeroizing::new(Vec::new()),
            threads: threads.max(1),
        }
    }

    /// Room for at most `max` (at least 1) more bytes of ciphertext, to read into;
    /// then [`CbcOpener::commit`] the bytes read.
    pub(crate) fn space(&mut self, max: usize) -> &mut [u8] {
        let end = self.pending.len().min(self.filled.saturating_add(max.max(1)));
        &mut self.pending[self.filled..end]
    }

    /// `n` bytes were read into [`CbcOpener::space`]: when that fills a batch, its
    /// plaintext is written to `w`. Returns the plaintext bytes written.
    pub(crate) fn commit(&mut self, n: usize, w: &mut dyn Write) -> Result<u64> {
        debug_assert!(self.filled + n <= self.pending.len());
        self.filled += n;
        if self.filled < self.pending.len() {
            return Ok(0);
        }
        self.decrypt_front(BATCH, w)
    }

    /// Feed ciphertext; writes the plaintext of every complete batch to `w`. Returns
    /// the plaintext bytes written.
    #[cfg(test)]
    pub(crate) fn update(&mut self, mut ct: &[u8], w: &mut dyn Write) -> Result<u64> {
        let mut written = 0;
        while !ct.is_empty() {
            let room = self.space(ct.len());
            let take = room.len();
            room.copy_from_slice(&ct[..take]);
            ct = &ct[take..];
            written += self.commit(take, w)?;
        }
        Ok(written)
    }

    /// Decrypt what is left, check the padding and write the rest of the plaintext.
    /// Fails exactly as [`CbcDecryptor::finish`] does on the same ciphertext.
    pub(crate) fn finish(mut self, w: &mut dyn Write) -> Result<u64> {
        // What the sequential decryptor would have decrypted before `finish`.
        let bulk = self.filled.saturating_sub(1) / BLOCK * BLOCK;
        let mut written = self.decrypt_front(bulk, w)?;
        let mut last = CbcDecryptor::with_cipher(self.cipher.clone(), &self.prev, Padding::Pkcs7);
        let mut tail = Zeroizing::new(Vec::with_capacity(2 * BLOCK));
        last.update(&self.pending[..self.filled], &mut tail);
        last.finish(&mut tail)?;
        w.write_all(&tail)?;
        written += tail.len() as u64;
        Ok(written)
    }

    /// Decrypt the first `n` bytes of `pending` (a multiple of the block size), write
    /// them, and drop them from `pending`.
    fn decrypt_front(&mut self, n: usize, w: &mut dyn Write) -> Result<u64> {
        debug_assert!(n.is_multiple_of(BLOCK) && n <= self.filled);
        if n == 0 {
            return Ok(0);
        }
        self.out.resize(n, 0);
        let ct = &self.pending[..n];
        let cipher = &self.cipher;
        // Pieces of PIECE bytes, each with the ciphertext block before it as its IV; the
        // threads take the next piece until none is left, so a thread the OS does not
        // run for a while holds nothing up (this machine is shared).
        let prev = self.prev;
        let pieces: Vec<([u8; BLOCK], &[u8], &mut [u8])> = ct
            .chunks(PIECE)
            .zip(self.out[..n].chunks_mut(PIECE))
            .enumerate()
            .map(|(i, (c, o))| (if i == 0 { prev } else { block_at(ct, i * PIECE - BLOCK) }, c, o))
            .collect();
        let helpers = if n >= MIN_PARALLEL { (self.threads - 1).min(pieces.len() - 1) } else { 0 };
        let queue = std::sync::Mutex::new(pieces.into_iter());
        let work = || {
            loop {
                // A poisoned lock means a helper panicked: its join below re-raises it.
                let Some((iv, c, o)) = queue.lock().map_or(None, |mut q| q.next()) else { return };
                cbc_decrypt_part(cipher, &iv, c, o);
            }
        };
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..helpers).map(|_| s.spawn(work)).collect();
            work();
            for h in handles {
                h.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
            }
        });
        self.prev = block_at(ct, n - BLOCK);
        w.write_all(&self.out[..n])?;
        self.pending.copy_within(n..self.filled, 0);
        self.filled -= n;
        Ok(n as u64)
    }
}

fn block_at(b: &[u8], at: usize) -> [u8; BLOCK] {
    let mut blk = [0u8; BLOCK];
    blk.copy_from_slice(&b[at..at + BLOCK]);
    blk
}

/// CBC-decrypt whole blocks `ct` (whose preceding ciphertext block is `iv`) into `out`.
fn cbc_decrypt_part(cipher: &Sm4, iv: &[u8; BLOCK], ct: &[u8], out: &mut [u8]) {
    let mut prev = *iv;
    for (c, o) in ct.chunks(SLICE).zip(out.chunks_mut(SLICE)) {
        o.copy_from_slice(c);
        let (blocks, _) = o.as_chunks_mut::<BLOCK>();
        cipher.decrypt_blocks(blocks);
        let (cts, _) = c.as_chunks::<BLOCK>();
        for (b, ct_block) in blocks.iter_mut().zip(cts) {
            *b = (u128::from_ne_bytes(*b) ^ u128::from_ne_bytes(prev)).to_ne_bytes();
            prev = *ct_block;
        }
    }
}

/// A function that sees every content byte, in order, on its own thread.
pub(crate) type Tap<'t> = &'t mut (dyn FnMut(&[u8]) + Send);

/// Read `r` to the end in reads of at most `chunk` bytes, calling `each` with every
/// read (`None` once, at the end). With a `tap`, each read is also handed to the tap
/// on a second thread while `each` runs on this one; the tap has seen everything when
/// this returns `Ok`.
pub(crate) fn for_each_chunk(
    mut r: impl Read,
    chunk: usize,
    tap: Option<Tap<'_>>,
    mut each: impl FnMut(Option<&[u8]>) -> Result<()>,
) -> Result<()> {
    let Some(tap) = tap else {
        let mut buf = vec![0u8; chunk];
        loop {
            let k = r.read(&mut buf)?;
            if k == 0 {
                return each(None);
            }
            each(Some(&buf[..k]))?;
        }
    };
    std::thread::scope(|s| {
        // Full buffers go to the tap; it sends them back to be read into again.
        let (to_tap, tap_rx) = mpsc::sync_channel::<Vec<u8>>(TAP_POOL);
        let (back_tx, back) = mpsc::channel::<Vec<u8>>();
        let worker = s.spawn(move || {
            for buf in tap_rx {
                tap(&buf);
                if back_tx.send(buf).is_err() {
                    break;
                }
            }
        });
        let mut fresh = TAP_POOL;
        let mut run = || -> Result<()> {
            loop {
                let mut buf = if fresh > 0 {
                    fresh -= 1;
                    vec![0u8; chunk]
                } else {
                    // The tap thread only stops early by panicking: joined below.
                    let Ok(b) = back.recv() else { return Ok(()) };
                    b
                };
                buf.resize(chunk, 0);
                let k = r.read(&mut buf)?;
                if k == 0 {
                    return each(None);
                }
                each(Some(&buf[..k]))?;
                buf.truncate(k);
                if to_tap.send(buf).is_err() {
                    return Ok(());
                }
            }
        };
        let result = run();
        drop(to_tap);
        worker.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
        result
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use kb_crypto::sm4::CbcEncryptor;

    fn sequential(key: &[u8; 16], iv: &[u8; 16], ct: &[u8]) -> kb_crypto::Result<Vec<u8>> {
        let mut d = CbcDecryptor::new(key, iv, Padding::Pkcs7);
        let mut out = Vec::new();
        d.update(ct, &mut out);
        d.finish(&mut out)?;
        Ok(out)
    }

    /// `ct` through a [`CbcOpener`] with `threads`, fed in pieces of `feed` bytes.
    fn parallel(key: &[u8; 16], iv: &[u8; 16], ct: &[u8], threads: usize, feed: usize) -> Result<Vec<u8>> {
        let mut o = CbcOpener::new(key, iv, threads);
        let mut out = Vec::new();
        let mut n = 0;
        for piece in ct.chunks(feed.max(1)) {
            n += o.update(piece, &mut out)?;
        }
        n += o.finish(&mut out)?;
        assert_eq!(n, out.len() as u64);
        Ok(out)
    }

    fn encrypt(key: &[u8; 16], iv: &[u8; 16], pt: &[u8]) -> Vec<u8> {
        kb_crypto::sm4::transform_all(&mut CbcEncryptor::new(key, iv, Padding::Pkcs7), pt).unwrap_or_default()
    }

    fn content(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 31 + i / 251) as u8).collect()
    }

    #[test]
    fn parallel_opening_matches_sequential_at_every_boundary() {
        let (key, iv) = ([7u8; 16], [9u8; 16]);
        let b = BATCH;
        // Around a batch, and around a full buffer (a batch and the block held back).
        let around = [b - 16, b - 1, b, b + 1, b + 15, b + 16, b + 17, b + 31, b + 32, 2 * b + 32, 2 * b + 33];
        for len in [0, 1, 15, 16, 17, 4095, MIN_PARALLEL - 17, MIN_PARALLEL, 3 * b].into_iter().chain(around) {
            let pt = content(len);
            let ct = encrypt(&key, &iv, &pt);
            for threads in [1, 2, 3] {
                for feed in [ct.len().max(1), 65536, 1000, 16] {
                    if feed == 16 && len > 70_000 {
                        continue; // slow in a debug build; small feeds are covered above
                    }
                    let got = parallel(&key, &iv, &ct, threads, feed).unwrap_or_else(|e| panic!("{len}/{threads}/{feed}: {e}"));
                    assert!(got == pt, "{len} bytes, {threads} threads, fed {feed} at a time");
                }
            }
        }
    }

    #[test]
    fn bad_ciphertext_fails_as_the_sequential_decryptor_does() {
        let (key, iv) = ([1u8; 16], [2u8; 16]);
        let pt = content(BATCH + 100);
        let ct = encrypt(&key, &iv, &pt);
        let mut cases: Vec<Vec<u8>> = vec![
            Vec::new(),                       // no ciphertext at all
            ct[..ct.len() - 1].to_vec(),      // ragged
            ct[..BATCH + 5].to_vec(),         // ragged just past a batch
            ct[..ct.len() - 16].to_vec(),     // a block short: padding is content
            ct[..BATCH].to_vec(),             // cut at the batch boundary
            ct[..BATCH + BLOCK].to_vec(),     // cut where the buffer is full
            ct[..BATCH + BLOCK + 3].to_vec(), // ragged just past a full buffer
        ];
        let mut flipped = ct.clone();
        let n = flipped.len();
        flipped[n - 1] ^= 0x55; // corrupt padding
        cases.push(flipped);
        let mut early = ct.clone();
        early[100] ^= 1; // corrupt content: decrypts to garbage, padding intact
        cases.push(early);
        for (i, c) in cases.iter().enumerate() {
            let seq = sequential(&key, &iv, c).map_err(|e| e.to_string());
            for threads in [1, 2] {
                let par = parallel(&key, &iv, c, threads, 65536).map_err(|e| match e {
                    crate::PkiError::Crypto(e) => e.to_string(),
                    other => format!("not a crypto error: {other}"),
                });
                assert_eq!(par, seq, "case {i}, {threads} threads");
            }
        }
    }

    #[test]
    fn the_tap_sees_every_byte_in_order() {
        let pt = content(3 * 65536 + 77);
        for chunk in [1000, 65536] {
            let mut seen = Vec::new();
            let mut tap = |b: &[u8]| seen.extend_from_slice(b);
            let mut each_seen = Vec::new();
            let mut ends = 0;
            for_each_chunk(&pt[..], chunk, Some(&mut tap), |c| {
                match c {
                    Some(c) => each_seen.extend_from_slice(c),
                    None => ends += 1,
                }
                Ok(())
            })
            .unwrap_or_else(|e| panic!("{e}"));
            assert!(seen == pt && each_seen == pt);
            assert_eq!(ends, 1);
        }
    }

    #[test]
    fn a_failing_step_stops_the_pipeline_with_its_error() {
        let pt = content(10 * 65536);
        let mut tapped = 0usize;
        let mut tap = |b: &[u8]| tapped += b.len();
        let mut calls = 0;
        let r = for_each_chunk(&pt[..], 65536, Some(&mut tap), |_| {
            calls += 1;
            if calls == 3 { Err(crate::PkiError::Io("stop".into())) } else { Ok(()) }
        });
        assert!(matches!(r, Err(crate::PkiError::Io(m)) if m == "stop"));
        assert_eq!(tapped, 2 * 65536, "the tap got what was processed before the failure, no more");
        // A failing reader is reported too.
        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("disk gone"))
            }
        }
        let mut tap = |_: &[u8]| {};
        assert!(for_each_chunk(Broken, 16, Some(&mut tap), |_| Ok(())).is_err());
    }
}
