//! The operating system's random number generator.

use crate::{CryptoError, Result};

/// The OS CSPRNG (`getrandom`), usable wherever RustCrypto asks for a `TryCryptoRng`.
pub fn os_rng() -> getrandom::SysRng {
    getrandom::SysRng
}

/// Fill `buf` from the OS CSPRNG.
pub fn fill(buf: &mut [u8]) -> Result<()> {
    getrandom::fill(buf).map_err(|_| CryptoError::Rng)
}

/// `N` fresh random bytes.
pub fn random_array<const N: usize>() -> Result<[u8; N]> {
    let mut b = [0u8; N];
    fill(&mut b)?;
    Ok(b)
}
