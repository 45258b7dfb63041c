//! SM3 (GB/T 32905-2016), RustCrypto's implementation.

pub use sm3::{Digest, Sm3};

/// SM3 of `data`.
pub fn sm3(data: &[u8]) -> [u8; 32] {
    Sm3::digest(data).into()
}
