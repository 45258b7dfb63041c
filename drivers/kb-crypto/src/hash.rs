//! Every digest KeyBridge computes, behind one enum, streaming.

use kb_types::HashAlgorithm;
use sha2::Digest as _;

/// An incremental hasher for any [`HashAlgorithm`].
#[derive(Clone)]
pub enum Hasher {
    /// SM3.
    Sm3(sm3::Sm3),
    /// SHA-1.
    Sha1(sha1::Sha1),
    /// SHA-256.
    Sha256(sha2::Sha256),
    /// SHA-384.
    Sha384(sha2::Sha384),
    /// SHA-512.
    Sha512(sha2::Sha512),
    /// MD5.
    Md5(md5::Md5),
}

impl Hasher {
    /// A fresh hasher.
    pub fn new(alg: HashAlgorithm) -> Self {
        match alg {
            HashAlgorithm::Sm3 => Hasher::Sm3(sm3::Sm3::new()),
            HashAlgorithm::Sha1 => Hasher::Sha1(sha1::Sha1::new()),
            HashAlgorithm::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            HashAlgorithm::Sha384 => Hasher::Sha384(sha2::Sha384::new()),
            HashAlgorithm::Sha512 => Hasher::Sha512(sha2::Sha512::new()),
            HashAlgorithm::Md5 => Hasher::Md5(md5::Md5::new()),
        }
    }

    /// The algorithm.
    pub fn algorithm(&self) -> HashAlgorithm {
        match self {
            Hasher::Sm3(_) => HashAlgorithm::Sm3,
            Hasher::Sha1(_) => HashAlgorithm::Sha1,
            Hasher::Sha256(_) => HashAlgorithm::Sha256,
            Hasher::Sha384(_) => HashAlgorithm::Sha384,
            Hasher::Sha512(_) => HashAlgorithm::Sha512,
            Hasher::Md5(_) => HashAlgorithm::Md5,
        }
    }

    /// Absorb bytes.
    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sm3(h) => h.update(data),
            Hasher::Sha1(h) => h.update(data),
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha384(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
            Hasher::Md5(h) => h.update(data),
        }
    }

    /// The digest.
    pub fn finish(self) -> Vec<u8> {
        match self {
            Hasher::Sm3(h) => h.finalize().to_vec(),
            Hasher::Sha1(h) => h.finalize().to_vec(),
            Hasher::Sha256(h) => h.finalize().to_vec(),
            Hasher::Sha384(h) => h.finalize().to_vec(),
            Hasher::Sha512(h) => h.finalize().to_vec(),
            Hasher::Md5(h) => h.finalize().to_vec(),
        }
    }
}

impl std::io::Write for Hasher {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One-shot digest.
pub fn digest(alg: HashAlgorithm, data: &[u8]) -> Vec<u8> {
    let mut h = Hasher::new(alg);
    h.update(data);
    h.finish()
}

/// Digest everything a reader yields, in constant memory.
pub fn digest_reader(alg: HashAlgorithm, mut r: impl std::io::Read) -> std::io::Result<Vec<u8>> {
    let mut h = Hasher::new(alg);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answers() {
        let abc = b"abc";
        assert_eq!(
            hex::encode(digest(HashAlgorithm::Sha256, abc)),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(hex::encode(digest(HashAlgorithm::Sha1, abc)), "a9993e364706816aba3e25717850c26c9cd0d89d");
        assert_eq!(hex::encode(digest(HashAlgorithm::Md5, abc)), "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(
            hex::encode(digest(HashAlgorithm::Sm3, abc)),
            "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
        );
        for alg in [HashAlgorithm::Sm3, HashAlgorithm::Sha384, HashAlgorithm::Sha512] {
            assert_eq!(digest(alg, abc).len(), alg.output_len());
        }
    }

    #[test]
    fn streaming_equals_one_shot() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i * 31 % 251) as u8).collect();
        let r = digest_reader(HashAlgorithm::Sm3, &data[..]).unwrap_or_default();
        assert_eq!(r, digest(HashAlgorithm::Sm3, &data));
    }
}
