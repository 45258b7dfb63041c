//! Harness bodies for `kb_crypto` parsers (uses nothing but `kb_crypto` and `std`, so
//! `drivers/kb-crypto/tests/no_panic.rs` can include this file).

use kb_crypto::sm2::{CiphertextLayout, Sm2Ciphertext, Sm2PrivateKey, Sm2Signature};
use kb_crypto::{PrivateKey, PublicKey, SignatureScheme};
use std::sync::OnceLock;

/// The fixed decryption key: the GM/T 0003.5 / GB/T 32918.5 example key pair
/// (`tests/vectors/sm2.json`). The `sm2_ciphertext` seeds are encrypted to it.
pub const FIXED_KEY: [u8; 32] = [
    0x39, 0x45, 0x20, 0x8F, 0x7B, 0x21, 0x44, 0xB1, 0x3F, 0x36, 0xE3, 0x8A, 0xC6, 0xD3, 0x9F, 0x95, 0x88, 0x93, 0x93, 0x69, 0x28,
    0x60, 0xB5, 0x1A, 0x42, 0xFB, 0x81, 0xEF, 0x4D, 0xF7, 0xC5, 0xB8,
];

/// `e = SM3(ZA ‖ "message digest")` of the GM/T 0003.5 signature example; the
/// `sm2_signature` seeds `gmt_*` are the published `(r, s)` over it.
pub const FIXED_E: [u8; 32] = [
    0xF0, 0xB4, 0x3E, 0x94, 0xBA, 0x45, 0xAC, 0xCA, 0xAC, 0xE6, 0x92, 0xED, 0x53, 0x43, 0x82, 0xEB, 0x17, 0xE6, 0xAB, 0x5A, 0x19,
    0xCE, 0x7B, 0x31, 0xF4, 0x48, 0x6F, 0xDF, 0xC0, 0xD2, 0x86, 0x40,
];

/// The fixed key (derived once; deriving the public point costs a scalar multiplication).
pub fn fixed_key() -> &'static Sm2PrivateKey {
    static KEY: OnceLock<Sm2PrivateKey> = OnceLock::new();
    KEY.get_or_init(|| match Sm2PrivateKey::from_bytes(&FIXED_KEY) {
        Ok(k) => k,
        Err(e) => unreachable!("the GM/T example key is valid: {e}"),
    })
}

/// SM2 ciphertexts in any layout: layout detection, GM/T 0009 DER, and a full
/// decryption attempt with [`FIXED_KEY`]. Re-encoding a parsed ciphertext must parse
/// back to the same value.
pub fn sm2_ciphertext(data: &[u8]) -> bool {
    let candidates = Sm2Ciphertext::candidates(data);
    if let Ok(ct) = Sm2Ciphertext::from_der(data) {
        let again = ct.to_der().ok().and_then(|d| Sm2Ciphertext::from_der(&d).ok());
        assert!(again.as_ref() == Some(&ct), "DER ciphertext does not round-trip");
    }
    if let Ok(list) = &candidates {
        for ct in list {
            for layout in [CiphertextLayout::C1C3C2, CiphertextLayout::C1C2C3] {
                let raw = ct.encode(layout, true);
                assert!(Sm2Ciphertext::from_raw(&raw, layout).ok().as_ref() == Some(ct), "raw ciphertext does not round-trip");
            }
        }
    }
    let _ = fixed_key().decrypt(data);
    candidates.is_ok()
}

/// SM2 signatures, DER and raw; a parsed signature must round-trip and is verified
/// against [`FIXED_E`] with the fixed key (both through `Sm2PublicKey` and `PublicKey`).
pub fn sm2_signature(data: &[u8]) -> bool {
    let der = Sm2Signature::from_der(data);
    let any = Sm2Signature::from_any(data);
    for sig in der.iter().chain(any.iter()) {
        assert!(Sm2Signature::from_der(&sig.to_der()).as_ref() == Ok(sig), "DER signature does not round-trip");
        assert!(Sm2Signature::from_raw(&sig.to_raw()).as_ref() == Ok(sig), "raw signature does not round-trip");
        let _ = fixed_key().public_key().verify_digest(&FIXED_E, sig);
    }
    let pk = PublicKey::Sm2(*fixed_key().public_key());
    let _ = pk.verify_digest(&SignatureScheme::sm2_default(), &FIXED_E, data);
    any.is_ok()
}

/// SubjectPublicKeyInfo and PKCS#8 DER of every algorithm. Parsed keys must re-encode
/// and parse back to the same key.
pub fn keys(data: &[u8]) -> bool {
    let public = PublicKey::from_spki_der(data);
    if let Ok(pk) = &public {
        let _ = pk.algorithm();
        let again = pk.to_spki_der().ok().and_then(|d| PublicKey::from_spki_der(&d).ok());
        assert!(again.as_ref() == Some(pk), "SPKI does not round-trip");
    }
    let private = PrivateKey::from_pkcs8_der(data);
    if let Ok(k) = &private {
        let pk = k.public_key();
        let _ = pk.algorithm();
        let again = k.to_pkcs8_der().ok().and_then(|d| PrivateKey::from_pkcs8_der(&d).ok()).map(|k| k.public_key());
        assert!(again.as_ref() == Some(&pk), "PKCS#8 does not round-trip");
    }
    public.is_ok() || private.is_ok()
}

/// SM4 modes on every backend this CPU runs (`kb_crypto::sm4::Sm4Backend`): input is
/// `key (16) ‖ iv (16) ‖ control (1) ‖ body`. The body goes through CBC (PKCS#7), ECB
/// (no padding), CTR and GCM decryption, fed in chunks of `control % 37 + 1` bytes,
/// and through CBC encryption and back. Every backend must produce the same results
/// (outputs and errors) as the portable one, and CBC must round-trip. Returns whether
/// the body is a CBC ciphertext with valid padding.
pub fn sm4_modes(data: &[u8]) -> bool {
    use kb_crypto::sm4::{CbcDecryptor, CbcEncryptor, Ctr, EcbDecryptor, GcmDecryptor, Padding, Sm4, Sm4Backend, Transform};
    let (Some(key), Some(iv), Some(&control), Some(body)) = (data.get(..16), data.get(16..32), data.get(32), data.get(33..))
    else {
        return false;
    };
    let (Ok(key), Ok(iv)) = (<[u8; 16]>::try_from(key), <[u8; 16]>::try_from(iv)) else { return false };
    let step = usize::from(control) % 37 + 1;
    let run = |t: &mut dyn Transform, input: &[u8]| {
        let mut out = Vec::new();
        for c in input.chunks(step) {
            t.update(c, &mut out);
        }
        t.finish(&mut out).map(|()| out)
    };
    let results = |backend: Sm4Backend| {
        let sched = Sm4::with_backend(&key, backend)?;
        let cbc = run(&mut CbcDecryptor::with_cipher(sched.clone(), &iv, Padding::Pkcs7), body);
        let ecb = run(&mut EcbDecryptor::with_cipher(sched.clone(), Padding::None), body);
        let ctr = run(&mut Ctr::with_cipher(sched.clone(), &iv), body);
        let gcm = GcmDecryptor::with_cipher(sched.clone(), &iv[..12], &key[..usize::from(control % 17)])
            .and_then(|mut t| run(&mut t, body));
        let sealed = run(&mut CbcEncryptor::with_cipher(sched.clone(), &iv, Padding::Pkcs7), body);
        let back = sealed.as_ref().ok().map(|s| run(&mut CbcDecryptor::with_cipher(sched, &iv, Padding::Pkcs7), s));
        assert!(back.as_ref().and_then(|b| b.as_ref().ok()) == Some(&body.to_vec()), "{backend:?}: CBC does not round-trip");
        Some((cbc, ecb, ctr, gcm, sealed))
    };
    let reference = results(Sm4Backend::Portable);
    for backend in Sm4Backend::ALL {
        if let Some(r) = results(backend) {
            assert!(Some(&r) == reference.as_ref(), "{backend:?} differs from the portable SM4");
        }
    }
    matches!(reference, Some((Ok(_), ..)))
}

/// SM2 verification, differential (not a parser): input `e (32) ‖ r (32) ‖ s (32) ‖ key`,
/// where `key` is a public key in any form `Sm2PublicKey::from_sec1` reads; when it does
/// not parse (or is absent) the fixed key is used. `verify_digest` (our variable-time
/// joint multiplication) must give the same answer as `verify_digest_reference`
/// (RustCrypto's constant-time `verify_prehash`), for the key and for the fixed key.
/// Returns whether the signature verified.
pub fn sm2_verify(data: &[u8]) -> bool {
    use kb_crypto::sm2::Sm2PublicKey;
    let (Some(e), Some(sig), Some(key)) = (data.get(..32), data.get(32..96), data.get(96..)) else { return false };
    let Ok(e) = <[u8; 32]>::try_from(e) else { return false };
    let Ok(sig) = Sm2Signature::from_raw(sig) else { return false };
    let fixed = *fixed_key().public_key();
    let parsed = Sm2PublicKey::from_sec1(key).ok();
    let mut verified = false;
    for pk in parsed.iter().chain([&fixed]) {
        let fast = pk.verify_digest(&e, &sig);
        let reference = pk.verify_digest_reference(&e, &sig);
        assert!(fast == reference, "fast verification says {fast:?}, the reference {reference:?}");
        verified |= fast.is_ok();
    }
    verified
}
