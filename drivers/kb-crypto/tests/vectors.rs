//! Published test vectors (`tests/vectors/*.json` at the workspace root) against kb-crypto.
//!
//! - SM2: GM/T 0003.5 / GB/T 32918.5 signature and encryption examples (ZA, e, the
//!   published `(r, s)`, the published ciphertext in every layout).
//! - SM3: GB/T 32905 Appendix A.
//! - SM4: GB/T 32907 Appendix A, including the 1,000,000-iteration example.
//! - SM4-GCM: RFC 8998 Appendix A.1.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kb_crypto::sm2::{CiphertextLayout, Sm2Ciphertext, Sm2PrivateKey, Sm2PublicKey, Sm2Signature};
use kb_crypto::sm4::{self, EcbDecryptor, EcbEncryptor, GcmDecryptor, GcmEncryptor, Padding, Sm4, Sm4Backend, Transform};
use kb_crypto::{CryptoError, HashAlgorithm, PublicKey, SignatureScheme};
use serde::Deserialize;

mod common;

const SM2_JSON: &str = include_str!("../../../tests/vectors/sm2.json");
const SM3_JSON: &str = include_str!("../../../tests/vectors/sm3.json");
const SM4_JSON: &str = include_str!("../../../tests/vectors/sm4.json");
const GCM_JSON: &str = include_str!("../../../tests/vectors/sm4_gcm.json");

fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap_or_else(|e| panic!("bad hex in vector file ({e}): {s}"))
}

fn unhex32(s: &str) -> [u8; 32] {
    unhex(s).try_into().unwrap_or_else(|v: Vec<u8>| panic!("want 32 bytes, got {}: {s}", v.len()))
}

fn unhex16(s: &str) -> [u8; 16] {
    unhex(s).try_into().unwrap_or_else(|v: Vec<u8>| panic!("want 16 bytes, got {}: {s}", v.len()))
}

fn flip(v: &[u8], byte: usize, bit: u8) -> Vec<u8> {
    let mut v = v.to_vec();
    v[byte] ^= 1 << bit;
    v
}

// ---------------------------------------------------------------- SM2

#[derive(Deserialize)]
struct Sm2File {
    source: String,
    private_key: String,
    public_key: Point,
    signature: SigVector,
    encryption: EncVector,
}

#[derive(Deserialize)]
struct Point {
    x: String,
    y: String,
}

#[derive(Deserialize)]
struct SigVector {
    source: String,
    id: String,
    message: String,
    za: String,
    e: String,
    k: String,
    r: String,
    s: String,
}

#[derive(Deserialize)]
struct EncVector {
    source: String,
    message: String,
    k: String,
    c1: String,
    c3: String,
    c2: String,
    der: String,
}

fn sm2_file() -> Sm2File {
    let f: Sm2File = serde_json::from_str(SM2_JSON).unwrap();
    assert!(f.source.contains("GM/T 0003.5") && f.signature.source.contains("GM/T 0003.5"));
    assert!(f.encryption.source.contains("GM/T 0009"));
    f
}

fn sm2_key(f: &Sm2File) -> Sm2PrivateKey {
    Sm2PrivateKey::from_bytes(&unhex(&f.private_key)).unwrap()
}

use common::N;

/// `(a + b) mod n` for any 256-bit `a`, `b` (schoolbook add, then subtract n until below it).
fn add_mod_n(a: &[u8; 32], b: &[u8; 32]) -> [u8; 32] {
    let mut sum = [0u8; 33];
    let mut carry = 0u16;
    for i in (0..32).rev() {
        let t = u16::from(a[i]) + u16::from(b[i]) + carry;
        sum[i + 1] = t as u8;
        carry = t >> 8;
    }
    sum[0] = carry as u8;
    let mut n33 = [0u8; 33];
    n33[1..].copy_from_slice(&N);
    while sum >= n33 {
        let mut borrow = 0i16;
        for i in (0..33).rev() {
            let t = i16::from(sum[i]) - i16::from(n33[i]) - borrow;
            sum[i] = t.rem_euclid(256) as u8;
            borrow = i16::from(t < 0);
        }
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(&sum[1..]);
    out
}

#[test]
fn sm2_add_mod_n_helper_is_right() {
    // n-1 + 1 = 0; n-1 + 2 = 1; 0 + 5 = 5.
    let mut n1 = N;
    n1[31] -= 1;
    let mut one = [0u8; 32];
    one[31] = 1;
    let mut two = [0u8; 32];
    two[31] = 2;
    assert_eq!(add_mod_n(&n1, &one), [0u8; 32]);
    assert_eq!(add_mod_n(&n1, &two), one);
    let mut five = [0u8; 32];
    five[31] = 5;
    assert_eq!(add_mod_n(&[0u8; 32], &five), five);
}

#[test]
fn sm2_private_key_range_is_gmt_0003() {
    // GM/T 0003.1 §6.1: d ∈ [1, n−2]. n−1 must be refused (1 + d has no inverse mod n).
    let minus = |k: u8| {
        let mut d = N;
        d[31] -= k;
        d
    };
    for (what, d) in [("0", [0u8; 32]), ("n", N), ("n-1", minus(1)), ("all ones", [0xff; 32])] {
        assert!(matches!(Sm2PrivateKey::from_bytes(&d), Err(CryptoError::InvalidKey(_))), "d = {what} accepted");
    }
    let mut one = [0u8; 32];
    one[31] = 1;
    for (what, d) in [("1", one), ("n-2", minus(2))] {
        let k = Sm2PrivateKey::from_bytes(&d).unwrap_or_else(|e| panic!("d = {what}: {e}"));
        let sig = k.sign(b"id", b"msg").unwrap_or_else(|e| panic!("d = {what}: {e}"));
        k.public_key().verify(b"id", b"msg", &sig).unwrap();
    }
}

#[test]
fn sm2_key_pair_matches_published_public_key() {
    let f = sm2_file();
    let k = sm2_key(&f);
    let xy = [unhex(&f.public_key.x), unhex(&f.public_key.y)].concat();
    assert_eq!(hex::encode_upper(k.public_key().to_xy()), hex::encode_upper(&xy));
    assert_eq!(Sm2PublicKey::from_sec1(&xy).unwrap(), *k.public_key());
    assert_eq!(*k.to_bytes(), unhex32(&f.private_key));
}

#[test]
fn sm2_za_and_e_match_published() {
    let f = sm2_file();
    let pk = *sm2_key(&f).public_key();
    let v = &f.signature;
    assert_eq!(hex::encode_upper(pk.za(v.id.as_bytes()).unwrap()), v.za);
    assert_eq!(hex::encode_upper(pk.digest(v.id.as_bytes(), v.message.as_bytes()).unwrap()), v.e);
    // Streaming through the ZA-primed hasher gives the same e.
    use kb_crypto::sm3::Digest;
    let mut h = pk.digest_hasher(v.id.as_bytes()).unwrap();
    for b in v.message.as_bytes() {
        h.update([*b]);
    }
    assert_eq!(hex::encode_upper(h.finalize()), v.e);
    // The generic key API: message_digest == e.
    let scheme = SignatureScheme::Sm2Sm3 { id: v.id.as_bytes().to_vec() };
    assert_eq!(hex::encode_upper(PublicKey::Sm2(pk).message_digest(&scheme, v.message.as_bytes()).unwrap()), v.e);
    // A different ID gives a different ZA.
    assert_ne!(hex::encode_upper(pk.za(b"1234567812345679").unwrap()), v.za);
}

#[test]
fn sm2_published_nonce_is_consistent() {
    // r = (e + x1) mod n with (x1, y1) = kG: proves the vector's k, e and r belong together,
    // and that kG (our scalar multiplication) is right.
    let f = sm2_file();
    let v = &f.signature;
    let kg = *Sm2PrivateKey::from_bytes(&unhex(&v.k)).unwrap().public_key();
    let x1: [u8; 32] = kg.to_xy()[..32].try_into().unwrap();
    assert_eq!(hex::encode_upper(add_mod_n(&unhex32(&v.e), &x1)), v.r);
    // The encryption example uses the same k: C1 = kG.
    assert_eq!(v.k, f.encryption.k);
    assert_eq!(hex::encode_upper(kg.to_uncompressed()), f.encryption.c1);
}

#[test]
fn sm2_published_signature_verifies() {
    let f = sm2_file();
    let pk = *sm2_key(&f).public_key();
    let v = &f.signature;
    let (id, msg) = (v.id.as_bytes(), v.message.as_bytes());
    let sig = Sm2Signature { r: unhex32(&v.r), s: unhex32(&v.s) };

    pk.verify(id, msg, &sig).unwrap();
    pk.verify_digest(&unhex32(&v.e), &sig).unwrap();
    // Through the generic API, in both encodings.
    let scheme = SignatureScheme::Sm2Sm3 { id: id.to_vec() };
    let gpk = PublicKey::Sm2(pk);
    gpk.verify(&scheme, msg, &sig.to_der()).unwrap();
    gpk.verify(&scheme, msg, &sig.to_raw()).unwrap();
    assert_eq!(Sm2Signature::from_der(&sig.to_der()).unwrap(), sig);

    // Any flipped bit in r, s, the message or e must fail.
    let raw = sig.to_raw();
    for (byte, bit) in [(0usize, 7u8), (13, 0), (31, 3), (32, 0), (47, 5), (63, 7)] {
        let bad = Sm2Signature::from_raw(&flip(&raw, byte, bit)).unwrap();
        assert_eq!(pk.verify(id, msg, &bad), Err(CryptoError::BadSignature), "sig byte {byte} bit {bit}");
    }
    for byte in 0..msg.len() {
        assert_eq!(pk.verify(id, &flip(msg, byte, 0), &sig), Err(CryptoError::BadSignature), "msg byte {byte}");
    }
    let bad_e: [u8; 32] = flip(&unhex(&v.e), 31, 0).try_into().unwrap();
    assert_eq!(pk.verify_digest(&bad_e, &sig), Err(CryptoError::BadSignature));
    // Other IDs: GM/T default with one digit changed, OpenSSL's empty default, and a long one.
    for other in [&b"1234567812345679"[..], b"", b"ALICE123@YAHOO.COM"] {
        assert_eq!(pk.verify(other, msg, &sig), Err(CryptoError::BadSignature), "id {other:?}");
    }
    // Another key must not verify it.
    let other_key = Sm2PrivateKey::from_bytes(&unhex(&v.k)).unwrap();
    assert_eq!(other_key.public_key().verify(id, msg, &sig), Err(CryptoError::BadSignature));
}

#[test]
fn sm2_published_ciphertext_decrypts_in_every_layout() {
    let f = sm2_file();
    let key = sm2_key(&f);
    let v = &f.encryption;
    let msg = v.message.as_bytes();
    let c1 = unhex(&v.c1);
    assert_eq!((c1.len(), c1[0]), (65, 0x04));
    let (c3, c2, der) = (unhex(&v.c3), unhex(&v.c2), unhex(&v.der));
    assert_eq!(c2.len(), msg.len());

    // DER (GM/T 0009): parses into exactly the published parts and re-encodes byte for byte.
    let parsed = Sm2Ciphertext::from_der(&der).unwrap();
    assert_eq!(parsed.x[..], c1[1..33]);
    assert_eq!(parsed.y[..], c1[33..]);
    assert_eq!(parsed.c3[..], c3[..]);
    assert_eq!(parsed.c2, c2);
    assert_eq!(hex::encode_upper(parsed.to_der().unwrap()), v.der);
    assert_eq!(&key.decrypt(&der).unwrap()[..], msg);
    assert_eq!(&key.decrypt_ciphertext(&parsed).unwrap()[..], msg);

    // Raw layouts, assembled by hand from the published parts.
    let c1c3c2 = [&c1[..], &c3, &c2].concat();
    let c1c2c3 = [&c1[..], &c2, &c3].concat();
    let layouts = [
        ("C1C3C2 with 04", c1c3c2.clone(), CiphertextLayout::C1C3C2, true),
        ("C1C3C2 without 04", c1c3c2[1..].to_vec(), CiphertextLayout::C1C3C2, false),
        ("C1C2C3 with 04", c1c2c3.clone(), CiphertextLayout::C1C2C3, true),
        ("C1C2C3 without 04", c1c2c3[1..].to_vec(), CiphertextLayout::C1C2C3, false),
    ];
    for (name, bytes, layout, with_04) in &layouts {
        assert_eq!(&key.decrypt(bytes).unwrap()[..], msg, "{name}");
        let ct = Sm2Ciphertext::from_raw(bytes, *layout).unwrap();
        assert_eq!(ct, parsed, "{name}");
        assert_eq!(&ct.encode(*layout, *with_04), bytes, "{name}");
        assert!(Sm2Ciphertext::candidates(bytes).unwrap().contains(&parsed), "{name}");
    }

    // Tampering with C3, C2 or C1 must fail; so must another key.
    let c2_at = 65 + 32;
    for (what, byte) in [("C3", 65usize), ("C3 end", 96), ("C2", c2_at), ("C2 end", c1c3c2.len() - 1)] {
        let bad = flip(&c1c3c2, byte, 0);
        assert_eq!(key.decrypt(&bad).err(), Some(CryptoError::DecryptFailed), "{what}");
    }
    let bad_c1 = flip(&c1c3c2, 64, 0); // last byte of C1.y: no longer on the curve
    assert!(key.decrypt(&bad_c1).is_err());
    let other = Sm2PrivateKey::from_bytes(&unhex(&v.k)).unwrap();
    assert_eq!(other.decrypt(&der).err(), Some(CryptoError::DecryptFailed));
}

#[test]
fn sm2_encrypting_to_published_key_round_trips() {
    let f = sm2_file();
    let key = sm2_key(&f);
    let v = &f.encryption;
    let ct = key.public_key().encrypt(v.message.as_bytes()).unwrap();
    // Fresh k: a different C1 from the published one, same plaintext.
    assert_ne!(ct.encode(CiphertextLayout::C1C3C2, true)[..65], unhex(&v.c1)[..]);
    assert_eq!(&key.decrypt(&ct.to_der().unwrap()).unwrap()[..], v.message.as_bytes());
}

// ---------------------------------------------------------------- SM3

#[derive(Deserialize)]
struct Sm3File {
    source: String,
    cases: Vec<Sm3Case>,
}

#[derive(Deserialize)]
struct Sm3Case {
    name: String,
    message_ascii: String,
    repeat: usize,
    digest: String,
}

#[test]
fn sm3_published_vectors() {
    let f: Sm3File = serde_json::from_str(SM3_JSON).unwrap();
    assert!(f.source.contains("GB/T 32905"));
    assert_eq!(f.cases.len(), 2);
    for c in &f.cases {
        let msg = c.message_ascii.repeat(c.repeat).into_bytes();
        assert_eq!(hex::encode(kb_crypto::sm3::sm3(&msg)), c.digest, "{}", c.name);
        assert_eq!(hex::encode(kb_crypto::digest(HashAlgorithm::Sm3, &msg)), c.digest, "{}", c.name);
        let mut h = kb_crypto::Hasher::new(HashAlgorithm::Sm3);
        for b in &msg {
            h.update(std::slice::from_ref(b));
        }
        assert_eq!(hex::encode(h.finish()), c.digest, "{} (byte at a time)", c.name);
        assert_eq!(
            hex::encode(kb_crypto::hash::digest_reader(HashAlgorithm::Sm3, &msg[..]).unwrap()),
            c.digest,
            "{} (reader)",
            c.name
        );
        // One changed bit changes the digest.
        assert_ne!(hex::encode(kb_crypto::sm3::sm3(&flip(&msg, 0, 0))), c.digest);
    }
}

// ---------------------------------------------------------------- SM4

#[derive(Deserialize)]
struct Sm4File {
    source: String,
    cases: Vec<Sm4Case>,
}

#[derive(Deserialize)]
struct Sm4Case {
    name: String,
    key: String,
    plaintext: String,
    iterations: usize,
    ciphertext: String,
}

/// Every SM4 implementation this CPU can run ([`Sm4Backend`]): each is tested on its
/// own, not only the one `Sm4::new` picks.
fn sm4_backends() -> Vec<Sm4Backend> {
    let b: Vec<_> = Sm4Backend::ALL.into_iter().filter(|b| b.is_available()).collect();
    assert!(b.contains(&Sm4Backend::Portable));
    eprintln!("SM4 backends tested: {b:?}");
    b
}

#[test]
fn sm4_published_vectors() {
    let f: Sm4File = serde_json::from_str(SM4_JSON).unwrap();
    assert!(f.source.contains("GB/T 32907"));
    assert_eq!(f.cases.len(), 2);
    assert!(f.cases.iter().any(|c| c.iterations == 1_000_000));
    for backend in sm4_backends() {
        for c in &f.cases {
            let key = unhex16(&c.key);
            let pt = unhex16(&c.plaintext);
            let cipher = Sm4::with_backend(&key, backend).unwrap();
            assert_eq!(cipher.backend(), backend);
            let name = format!("{} [{backend:?}]", c.name);

            // Single-block path.
            let mut b = pt;
            for _ in 0..c.iterations {
                cipher.encrypt_block(&mut b);
            }
            assert_eq!(hex::encode(b), c.ciphertext, "{name} (encrypt_block)");
            for _ in 0..c.iterations {
                cipher.decrypt_block(&mut b);
            }
            assert_eq!(b, pt, "{name} (decrypt_block back)");

            // The CBC chain with a zero IV and zero plaintext after the first block is
            // the same repeated encryption: the CBC-encryption path.
            let mut blocks = vec![[0u8; 16]; c.iterations];
            blocks[0] = pt;
            let mut chain = [0u8; 16];
            cipher.cbc_encrypt_blocks(&mut chain, &mut blocks);
            assert_eq!(hex::encode(chain), c.ciphertext, "{name} (cbc_encrypt_blocks)");

            // Parallel path: 37 independent copies (every width's tail), all must agree.
            let mut blocks = vec![pt; 37];
            for _ in 0..c.iterations.min(1000) {
                cipher.encrypt_blocks(&mut blocks);
            }
            if c.iterations <= 1000 {
                for blk in &blocks {
                    assert_eq!(hex::encode(blk), c.ciphertext, "{name} (encrypt_blocks)");
                }
            }
            for _ in 0..c.iterations.min(1000) {
                cipher.decrypt_blocks(&mut blocks);
            }
            assert!(blocks.iter().all(|blk| *blk == pt), "{name} (decrypt_blocks back)");
        }
    }
}

#[test]
fn sm4_published_block_through_ecb_mode() {
    let f: Sm4File = serde_json::from_str(SM4_JSON).unwrap();
    let c = &f.cases[0];
    assert_eq!(c.iterations, 1);
    let key = unhex16(&c.key);
    for backend in sm4_backends() {
        let sched = || Sm4::with_backend(&key, backend).unwrap();
        let ct = sm4::transform_all(&mut EcbEncryptor::with_cipher(sched(), Padding::None), &unhex(&c.plaintext)).unwrap();
        assert_eq!(hex::encode(&ct), c.ciphertext, "{backend:?}");
        let pt = sm4::transform_all(&mut EcbDecryptor::with_cipher(sched(), Padding::None), &ct).unwrap();
        assert_eq!(hex::encode(pt), c.plaintext, "{backend:?}");
    }
}

// ---------------------------------------------------------------- SM4-GCM

#[derive(Deserialize)]
struct GcmFile {
    source: String,
    key: String,
    iv: String,
    aad: String,
    plaintext: String,
    ciphertext: String,
    tag: String,
}

#[test]
fn sm4_gcm_rfc8998_vector() {
    let v: GcmFile = serde_json::from_str(GCM_JSON).unwrap();
    assert!(v.source.contains("RFC 8998"));
    let key = unhex16(&v.key);
    let (iv, aad, pt, ct, tag) = (unhex(&v.iv), unhex(&v.aad), unhex(&v.plaintext), unhex(&v.ciphertext), unhex(&v.tag));
    let expected = [&ct[..], &tag].concat();

    // Seal == C ‖ T, one-shot and in awkward chunks, on every backend.
    assert_eq!(hex::encode_upper(sm4::gcm_seal(&key, &iv, &aad, &pt).unwrap()), hex::encode_upper(&expected));
    for backend in sm4_backends() {
        let sched = || Sm4::with_backend(&key, backend).unwrap();
        for step in [1usize, 7, 16, 33] {
            let mut e = GcmEncryptor::with_cipher(sched(), &iv, &aad).unwrap();
            let mut out = Vec::new();
            for c in pt.chunks(step) {
                e.update(c, &mut out);
            }
            e.finish(&mut out).unwrap();
            assert_eq!(out, expected, "step {step} [{backend:?}]");

            let mut d = GcmDecryptor::with_cipher(sched(), &iv, &aad).unwrap();
            let mut back = Vec::new();
            for c in expected.chunks(step) {
                d.update(c, &mut back);
            }
            d.finish(&mut back).unwrap();
            assert_eq!(back, pt, "step {step} [{backend:?}]");
        }
    }

    // Open works.
    assert_eq!(sm4::gcm_open(&key, &iv, &aad, &expected).unwrap(), pt);

    // Tampering with C, T, AAD, IV or key fails.
    let bad = Some(CryptoError::IntegrityFailed);
    assert_eq!(sm4::gcm_open(&key, &iv, &aad, &flip(&expected, 0, 0)).err(), bad, "C first bit");
    assert_eq!(sm4::gcm_open(&key, &iv, &aad, &flip(&expected, ct.len() - 1, 7)).err(), bad, "C last byte");
    assert_eq!(sm4::gcm_open(&key, &iv, &aad, &flip(&expected, ct.len(), 0)).err(), bad, "tag first byte");
    assert_eq!(sm4::gcm_open(&key, &iv, &aad, &flip(&expected, expected.len() - 1, 0)).err(), bad, "tag last byte");
    assert_eq!(sm4::gcm_open(&key, &iv, &flip(&aad, 19, 1), &expected).err(), bad, "AAD");
    assert_eq!(sm4::gcm_open(&key, &iv, &[], &expected).err(), bad, "AAD dropped");
    assert_eq!(sm4::gcm_open(&key, &flip(&iv, 11, 0), &aad, &expected).err(), bad, "IV");
    let other_key: [u8; 16] = flip(&key, 0, 0).try_into().unwrap();
    assert_eq!(sm4::gcm_open(&other_key, &iv, &aad, &expected).err(), bad, "key");
    assert_eq!(sm4::gcm_open(&key, &iv, &aad, &expected[..expected.len() - 1]).err(), bad, "truncated tag");
}

/// `a − b` for `a ≥ b` (256-bit, big-endian).
fn sub(a: &[u8; 32], b: &[u8; 32]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let t = i16::from(a[i]) - i16::from(b[i]) - borrow;
        out[i] = t.rem_euclid(256) as u8;
        borrow = i16::from(t < 0);
    }
    out
}

fn one() -> [u8; 32] {
    let mut o = [0u8; 32];
    o[31] = 1;
    o
}

/// The fast SM2 verification (our variable-time joint multiplication, `sm2/verify.rs`)
/// gives exactly the answers of RustCrypto's constant-time `verify_prehash` on good
/// signatures and on every kind of bad one: other digest, other key, r or s off by one,
/// zero, n, above n, all ones, r + s = n, a flipped bit anywhere in r, s or e; for many
/// random keys. Speed is the benchmark's business (`cargo run --release -p kb-bench`).
#[test]
fn fast_and_reference_verification_agree_on_good_and_bad_signatures() {
    let mut checked = 0;
    let rounds = 200usize;
    for i in 0..rounds {
        let key = Sm2PrivateKey::generate().unwrap();
        let other = Sm2PrivateKey::generate().unwrap();
        let pk = key.public_key();
        let e = kb_crypto::rng::random_array::<32>().unwrap();
        let sig = key.sign_digest(&e).unwrap();
        let bit = |v: &[u8; 32], k: usize| -> [u8; 32] { flip(v, (i * 7 + k) % 32, ((i + k) % 8) as u8).try_into().unwrap() };
        let mut above_n = N;
        above_n[31] += 1;
        let cases: Vec<(Sm2Signature, [u8; 32], &Sm2PublicKey, bool)> = vec![
            (sig, e, pk, true),
            (sig, bit(&e, 0), pk, false),
            (sig, e, other.public_key(), false),
            (Sm2Signature { r: add_mod_n(&sig.r, &one()), s: sig.s }, e, pk, false),
            (Sm2Signature { r: sig.r, s: sub(&sig.s, &one()) }, e, pk, false),
            (Sm2Signature { r: bit(&sig.r, 1), s: sig.s }, e, pk, false),
            (Sm2Signature { r: sig.r, s: bit(&sig.s, 2) }, e, pk, false),
            (Sm2Signature { r: [0; 32], s: sig.s }, e, pk, false),
            (Sm2Signature { r: sig.r, s: [0; 32] }, e, pk, false),
            (Sm2Signature { r: N, s: sig.s }, e, pk, false),
            (Sm2Signature { r: sig.r, s: N }, e, pk, false),
            (Sm2Signature { r: above_n, s: sig.s }, e, pk, false),
            (Sm2Signature { r: sig.r, s: above_n }, e, pk, false),
            // s + n: the same residue as s, but not below n.
            (Sm2Signature { r: sig.r, s: add_n_if_fits(&sig.s).unwrap_or(above_n) }, e, pk, false),
            // r + s = n: t = 0 must be refused, not computed with.
            (Sm2Signature { r: sig.r, s: sub(&N, &sig.r) }, e, pk, false),
            (Sm2Signature::from_raw(&[0xff; 64]).unwrap(), e, pk, false),
            // The signature's own r and s swapped.
            (Sm2Signature { r: sig.s, s: sig.r }, e, pk, false),
        ];
        for (k, (s, e, pk, good)) in cases.into_iter().enumerate() {
            let fast = pk.verify_digest(&e, &s).is_ok();
            let reference = pk.verify_digest_reference(&e, &s).is_ok();
            assert_eq!(fast, reference, "round {i} case {k}: fast {fast}, reference {reference}");
            assert_eq!(fast, good, "round {i} case {k}");
            assert_eq!(pk.verify_digest_rustcrypto_vartime(&e, &s).is_ok(), good, "round {i} case {k}: previous path");
            checked += 1;
        }
    }
    assert_eq!(checked, rounds * 17);
}

/// `s + n` when it still fits in 256 bits (the same residue as `s`, but not below n).
fn add_n_if_fits(s: &[u8; 32]) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    let mut carry = 0u16;
    for i in (0..32).rev() {
        let t = u16::from(s[i]) + u16::from(N[i]) + carry;
        out[i] = t as u8;
        carry = t >> 8;
    }
    (carry == 0).then_some(out)
}

/// Crafted signatures for the rare paths of the final check and the point at infinity
/// (`tests/common`): `x1 ≥ n` (accepted only through `x1 = v + n`), a small `x1` (where
/// `v + n < p` as well), and `[s]G + [t]P = O` (rejected). Each verifies the same way on
/// both paths; r or e off by one and a flipped s bit are rejected by both.
#[test]
fn fast_and_reference_verification_agree_on_crafted_edge_cases() {
    for round in 0..10 {
        let cases = [
            ("x1 >= n", common::signature_with_large_x1(), true),
            ("small x1", common::signature_with_small_x1(), true),
            ("infinity", common::signature_at_infinity(), false),
        ];
        for (what, (pk, e, sig), good) in cases {
            let e_plus_1 = add_mod_n(&e, &one());
            let variants = [
                (sig, e, good),
                (Sm2Signature { r: add_mod_n(&sig.r, &one()), s: sig.s }, e, false),
                (sig, e_plus_1, false),
                (Sm2Signature { r: sig.r, s: flip(&sig.s, 31, 0).try_into().unwrap() }, e, false),
            ];
            for (k, (s, e, want)) in variants.into_iter().enumerate() {
                let fast = pk.verify_digest(&e, &s).is_ok();
                let reference = pk.verify_digest_reference(&e, &s).is_ok();
                assert_eq!(fast, reference, "round {round}, {what}, variant {k}: fast {fast}, reference {reference}");
                assert_eq!(fast, want, "round {round}, {what}, variant {k}");
            }
        }
    }
}

/// Fast signing (comb `[k]G`, precomputed `(1 + d)^−1`, hedged SM3 nonce) and RustCrypto's
/// `sign_prehash` (the reference) are held to each other: each one's signatures verify
/// under both verifiers, and not under another key or digest. Includes the published key.
#[test]
fn fast_and_reference_signing_cross_verify() {
    let f = sm2_file();
    let mut keys = vec![sm2_key(&f)];
    keys.extend((0..24).map(|_| Sm2PrivateKey::generate().unwrap()));
    let other = Sm2PrivateKey::generate().unwrap();
    for (i, key) in keys.iter().enumerate() {
        let pk = key.public_key();
        let e = kb_crypto::rng::random_array::<32>().unwrap();
        let mut e2 = e;
        e2[i % 32] ^= 0x80;
        for (which, sig) in [("fast", key.sign_digest(&e).unwrap()), ("reference", key.sign_digest_reference(&e).unwrap())] {
            assert!(pk.verify_digest(&e, &sig).is_ok(), "key {i}: {which} signature, fast verify");
            assert!(pk.verify_digest_reference(&e, &sig).is_ok(), "key {i}: {which} signature, reference verify");
            assert!(pk.verify_digest_reference(&e2, &sig).is_err(), "key {i}: {which}, other digest");
            assert!(other.public_key().verify_digest_reference(&e, &sig).is_err(), "key {i}: {which}, other key");
        }
    }
    // The published message signed by the fast path verifies through the whole-message API.
    let v = &f.signature;
    let key = sm2_key(&f);
    let sig = key.sign(v.id.as_bytes(), v.message.as_bytes()).unwrap();
    assert!(key.public_key().verify(v.id.as_bytes(), v.message.as_bytes(), &sig).is_ok());
    assert!(key.public_key().verify_digest_reference(&unhex32(&v.e), &sig).is_ok());
}
