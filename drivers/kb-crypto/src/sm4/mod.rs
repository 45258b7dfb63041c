//! SM4 (GB/T 32907-2016) and its modes, all streaming in constant memory.
//!
//! [`Sm4`] is KeyBridge's own block core, constant-time on every path: the S-box
//! through GFNI (AVX-512 or AVX2 widths) or AES-NI (VAES/AVX2 or SSE widths), chosen at
//! run time, or, on other CPUs, a bitsliced S-box; see [`Sm4Backend`]. RustCrypto's `sm4` (table-based, one block at
//! a time) stays as the independent reference the tests compare against.
//!
//! Every mode implements [`Transform`]: feed any number of bytes with
//! [`Transform::update`], then [`Transform::finish`]. [`transform_stream`] pumps a
//! reader into a writer through one.

mod bitslice;
mod core;
mod gcm;
mod modes;
mod sbox;
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod x86;

pub use self::core::{Sm4, Sm4Backend};
pub use gcm::{GcmDecryptor, GcmEncryptor, TAG_LEN, gcm_open, gcm_seal};
pub use modes::{CbcDecryptor, CbcEncryptor, Ctr, EcbDecryptor, EcbEncryptor, Padding};

use crate::Result;
use std::io::{Read, Write};

/// Block size in bytes.
pub const BLOCK: usize = 16;

/// A streaming cipher transform.
pub trait Transform: Send {
    /// Process `input`, appending whatever output is ready to `out`.
    fn update(&mut self, input: &[u8], out: &mut Vec<u8>);
    /// Flush the tail (padding, tag) into `out`, or fail (bad padding, bad tag,
    /// input not block-aligned). After `finish` the transform must not be reused.
    fn finish(&mut self, out: &mut Vec<u8>) -> Result<()>;
}

/// Pump `r` through `t` into `w` with a fixed 64 KiB buffer; returns bytes written.
///
/// On a decrypting transform whose `finish` fails (bad tag/padding), everything
/// already written must be discarded by the caller.
pub fn transform_stream(t: &mut dyn Transform, mut r: impl Read, mut w: impl Write) -> std::io::Result<u64> {
    let mut inbuf = vec![0u8; 64 * 1024];
    let mut out = Vec::with_capacity(inbuf.len() + 2 * BLOCK);
    let mut written = 0u64;
    loop {
        let n = r.read(&mut inbuf)?;
        if n == 0 {
            break;
        }
        out.clear();
        t.update(&inbuf[..n], &mut out);
        w.write_all(&out)?;
        written += out.len() as u64;
    }
    out.clear();
    t.finish(&mut out).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    w.write_all(&out)?;
    written += out.len() as u64;
    w.flush()?;
    Ok(written)
}

/// One-shot helper: run `input` through `t`.
pub fn transform_all(t: &mut dyn Transform, input: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(input.len() + 2 * BLOCK);
    t.update(input, &mut out);
    t.finish(&mut out)?;
    Ok(out)
}
