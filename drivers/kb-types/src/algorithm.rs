use serde::{Deserialize, Serialize};
use std::fmt;

/// Public-key algorithm of a key pair or certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    /// SM2 (GM/T 0003) on the SM2 recommended curve.
    Sm2,
    /// RSA with the given modulus size in bits.
    Rsa {
        /// Modulus size in bits.
        bits: u32,
    },
    /// ECDSA on NIST P-256.
    EcdsaP256,
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Algorithm::Sm2 => f.write_str("SM2"),
            Algorithm::Rsa { bits } => write!(f, "RSA-{bits}"),
            Algorithm::EcdsaP256 => f.write_str("ECDSA P-256"),
        }
    }
}

/// Hash (digest) algorithms KeyBridge computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HashAlgorithm {
    /// SM3 (GB/T 32905), 256-bit.
    Sm3,
    /// SHA-1: legacy thumbprints only, never for new signatures.
    Sha1,
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
    /// MD5: legacy thumbprints only.
    Md5,
}

impl HashAlgorithm {
    /// Output length in bytes.
    pub const fn output_len(self) -> usize {
        match self {
            HashAlgorithm::Sm3 | HashAlgorithm::Sha256 => 32,
            HashAlgorithm::Sha1 => 20,
            HashAlgorithm::Sha384 => 48,
            HashAlgorithm::Sha512 => 64,
            HashAlgorithm::Md5 => 16,
        }
    }

    /// Lower-case name as used on the command line (`sm3`, `sha256`, ...).
    pub const fn name(self) -> &'static str {
        match self {
            HashAlgorithm::Sm3 => "sm3",
            HashAlgorithm::Sha1 => "sha1",
            HashAlgorithm::Sha256 => "sha256",
            HashAlgorithm::Sha384 => "sha384",
            HashAlgorithm::Sha512 => "sha512",
            HashAlgorithm::Md5 => "md5",
        }
    }

    /// Parse a lower- or upper-case name, with or without a dash (`SHA-256`).
    pub fn from_name(name: &str) -> Option<Self> {
        let n: String = name.chars().filter(|c| *c != '-').collect::<String>().to_ascii_lowercase();
        [Self::Sm3, Self::Sha1, Self::Sha256, Self::Sha384, Self::Sha512, Self::Md5].into_iter().find(|h| h.name() == n)
    }
}

impl fmt::Display for HashAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a key pair or certificate is for, in the dual-certificate model of SM2
/// keys: one signing pair and one encryption pair per container.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyUsage {
    /// Signing certificate (签名证书).
    Sign,
    /// Encryption certificate (加密证书).
    Encrypt,
    /// One certificate used for both (common for RSA).
    Both,
}

impl fmt::Display for KeyUsage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyUsage::Sign => "sign",
            KeyUsage::Encrypt => "encrypt",
            KeyUsage::Both => "sign+encrypt",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_names_round_trip() {
        for h in [
            HashAlgorithm::Sm3,
            HashAlgorithm::Sha1,
            HashAlgorithm::Sha256,
            HashAlgorithm::Sha384,
            HashAlgorithm::Sha512,
            HashAlgorithm::Md5,
        ] {
            assert_eq!(HashAlgorithm::from_name(h.name()), Some(h));
        }
        assert_eq!(HashAlgorithm::from_name("SHA-256"), Some(HashAlgorithm::Sha256));
        assert_eq!(HashAlgorithm::from_name("sha3"), None);
    }
}
