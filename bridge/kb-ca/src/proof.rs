//! Proofs of possession the CA checks: a signature with a certificate's key over a
//! canonical message. The client builds them through a [`kb_pki::Signer`] (so the key
//! stays on its medium); the CA verifies them with the certificate's public key — a
//! binding for someone else's certificate cannot be proven.

use kb_crypto::{HashAlgorithm, SignatureScheme};
use kb_pki::{Certificate, Signer};

/// What a binding proof signs: the challenge, the medium and the certificate.
pub fn binding_message(challenge: &str, medium_serial: &str, certificate_der: &[u8]) -> Vec<u8> {
    format!(
        "KeyBridge CA binding v1\nchallenge={challenge}\nmedium={medium_serial}\ncertificate={}\n",
        hex::encode(kb_crypto::digest(HashAlgorithm::Sha256, certificate_der))
    )
    .into_bytes()
}

/// What an enrolment authorisation signs (EST `simpleenroll` for 变更: the old
/// certificate's key vouches for the new key in the CSR).
pub fn enrol_message(application_id: &str, new_spki_der: &[u8]) -> Vec<u8> {
    format!(
        "KeyBridge EST enrol v1\napplication={application_id}\nspki={}\n",
        hex::encode(kb_crypto::digest(HashAlgorithm::Sha256, new_spki_der))
    )
    .into_bytes()
}

/// Sign `message` with `signer` (its default scheme: SM2 with the default ID).
pub fn sign(signer: &dyn Signer, message: &[u8]) -> kb_pki::Result<Vec<u8>> {
    signer.sign_message(message)
}

/// Check a signature over `message` with `cert`'s key, in the key's default scheme.
pub fn verify(cert: &Certificate, message: &[u8], signature: &[u8]) -> bool {
    match cert.public_key() {
        Ok(k) => k.verify(&SignatureScheme::default_for(k.algorithm()), message, signature).is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kb_crypto::PrivateKey;
    use kb_pki::LocalSigner;
    use kb_pki::issue::TestCa;
    use kb_types::{Algorithm, KeyUsage};

    #[test]
    fn a_proof_verifies_only_with_its_own_key_and_message() {
        let ca = TestCa::new(Algorithm::Sm2, "CN=CA").unwrap();
        let mine = LocalSigner::new(PrivateKey::generate(Algorithm::Sm2).unwrap());
        let other = LocalSigner::new(PrivateKey::generate(Algorithm::Sm2).unwrap());
        let cert = ca.leaf("CN=张三", mine.public_key(), KeyUsage::Sign).unwrap();
        let msg = binding_message("c1", "KBF-1", cert.der());
        let sig = sign(&mine, &msg).unwrap();
        assert!(verify(&cert, &msg, &sig));
        assert!(!verify(&cert, &binding_message("c2", "KBF-1", cert.der()), &sig));
        assert!(!verify(&cert, &binding_message("c1", "KBF-2", cert.der()), &sig));
        // Someone else's key cannot prove this certificate.
        assert!(!verify(&cert, &msg, &sign(&other, &msg).unwrap()));
        assert_ne!(enrol_message("a", b"x"), enrol_message("b", b"x"));
    }
}
