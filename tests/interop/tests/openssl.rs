//! Interop with the OpenSSL 3 command line, both directions: SM2 signatures (default,
//! custom, binary and empty IDs), SM2 keys (PKCS#8 / SPKI), SM2 encryption (GM/T 0009
//! DER), SM3, SM4-CBC/CTR/ECB, RSA PKCS#1 v1.5 signatures and OAEP, ECDSA P-256.
//!
//! OpenSSL's SM2 default ID is the *empty* string, not GM/T 0009's `1234567812345678`:
//! every SM2 call here passes the ID explicitly (`distid:` / `hexdistid:`) except the
//! empty-ID cases, which check exactly that default.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kb_crypto::rsa::RsaPadding;
use kb_crypto::sm2::{DEFAULT_ID, Sm2Ciphertext, Sm2PrivateKey, Sm2PublicKey, Sm2Signature};
use kb_crypto::sm4::{self, CbcDecryptor, CbcEncryptor, Ctr, EcbDecryptor, EcbEncryptor, Padding};
use kb_crypto::{CryptoError, HashAlgorithm, PrivateKey, PublicKey, SignatureScheme};
use kb_interop::{
    OpenSsl, flip, openssl, path_in, pem, random_ascii_id, random_bytes, random_len, random_message, read, tempdir, write,
};
use kb_types::Algorithm;
use std::path::Path;

/// The `-sigopt` / `-pkeyopt` value that makes OpenSSL use `id` (None: OpenSSL's empty default).
fn distid(id: &[u8]) -> Option<String> {
    if id.is_empty() {
        None
    } else if id.iter().all(|b| b.is_ascii_graphic()) {
        Some(format!("distid:{}", std::str::from_utf8(id).unwrap()))
    } else {
        Some(format!("hexdistid:{}", hex::encode(id)))
    }
}

/// The IDs every SM2 signature test runs with.
fn sm2_ids() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("GM/T default", DEFAULT_ID.to_vec()),
        ("custom ASCII", random_ascii_id().into_bytes()),
        ("binary", [&[0x00u8, 0xff, 0x80][..], &random_bytes(random_len(1, 40))].concat()),
        ("empty (OpenSSL's default)", Vec::new()),
    ]
}

fn pub_pem(dir: &Path, name: &str, pk: &PublicKey) -> String {
    write(dir, name, pem("PUBLIC KEY", &pk.to_spki_der().unwrap()))
}

fn priv_pem(dir: &Path, name: &str, k: &PrivateKey) -> String {
    write(dir, name, k.to_pkcs8_pem().unwrap().as_bytes())
}

/// `openssl dgst -sm3 -verify` (and `pkeyutl -verify -rawin`): Ok if OpenSSL accepts.
fn openssl_sm2_verify(o: &OpenSsl, pub_path: &str, id: &[u8], msg_path: &str, sig_path: &str, via_pkeyutl: bool) -> bool {
    let opt = distid(id);
    let out = if via_pkeyutl {
        let mut args = vec!["pkeyutl", "-verify", "-rawin", "-digest", "sm3", "-pubin", "-inkey", pub_path];
        if let Some(opt) = &opt {
            args.extend(["-pkeyopt", opt]);
        }
        args.extend(["-in", msg_path, "-sigfile", sig_path]);
        o.run(&args, b"")
    } else {
        let mut args = vec!["dgst", "-sm3", "-verify", pub_path];
        if let Some(opt) = &opt {
            args.extend(["-sigopt", opt]);
        }
        args.extend(["-signature", sig_path, msg_path]);
        o.run(&args, b"")
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let ok = out.status.success();
    // The exit status and the message must agree.
    assert_eq!(ok, stdout.contains("Verified OK") || stdout.contains("Signature Verified Successfully"), "{stdout}");
    ok
}

fn openssl_sm2_sign(o: &OpenSsl, key_path: &str, id: &[u8], msg_path: &str, via_pkeyutl: bool) -> Vec<u8> {
    let opt = distid(id);
    if via_pkeyutl {
        let mut args = vec!["pkeyutl", "-sign", "-rawin", "-digest", "sm3", "-inkey", key_path];
        if let Some(opt) = &opt {
            args.extend(["-pkeyopt", opt]);
        }
        args.extend(["-in", msg_path]);
        o.ok(&args)
    } else {
        let mut args = vec!["dgst", "-sm3", "-sign", key_path];
        if let Some(opt) = &opt {
            args.extend(["-sigopt", opt]);
        }
        args.push(msg_path);
        o.ok(&args)
    }
}

// ------------------------------------------------------------------ SM2 signatures

#[test]
fn sm2_openssl_verifies_our_signatures() {
    let Some(o) = openssl() else { return };
    let dir = tempdir();
    let key = Sm2PrivateKey::generate().unwrap();
    let pub_path = pub_pem(dir.path(), "pub.pem", &PublicKey::Sm2(*key.public_key()));
    let msg = random_message(4096);
    let msg_path = write(dir.path(), "msg", &msg);
    let other_msg = write(dir.path(), "other", flip(&msg, msg.len() - 1, 0));

    for (name, id) in sm2_ids() {
        // Through the SM2 API and the generic one; both DER.
        let sig = key.sign(&id, &msg).unwrap();
        let generic = PrivateKey::Sm2(key.clone()).sign(&SignatureScheme::Sm2Sm3 { id: id.clone() }, &msg).unwrap();
        for (how, der) in [("Sm2PrivateKey::sign", sig.to_der()), ("PrivateKey::sign", generic)] {
            let sig_path = write(dir.path(), "sig", &der);
            for via_pkeyutl in [false, true] {
                let ctx = format!("{name} ID, {how}, pkeyutl={via_pkeyutl}");
                assert!(openssl_sm2_verify(&o, &pub_path, &id, &msg_path, &sig_path, via_pkeyutl), "{ctx}");
                assert!(!openssl_sm2_verify(&o, &pub_path, &id, &other_msg, &sig_path, via_pkeyutl), "{ctx}: other message");
                // A different ID must fail: proves OpenSSL really hashes our ZA.
                let wrong_id = if id == DEFAULT_ID { b"1234567812345679".to_vec() } else { DEFAULT_ID.to_vec() };
                assert!(!openssl_sm2_verify(&o, &pub_path, &wrong_id, &msg_path, &sig_path, via_pkeyutl), "{ctx}: wrong ID");
            }
        }
    }
}

#[test]
fn sm2_we_verify_openssl_signatures() {
    let Some(o) = openssl() else { return };
    let dir = tempdir();
    let key_path = path_in(dir.path(), "key.pem");
    o.ok(&["genpkey", "-algorithm", "SM2", "-out", &key_path]);
    let spki = o.ok(&["pkey", "-in", &key_path, "-pubout", "-outform", "DER"]);
    let PublicKey::Sm2(pk) = PublicKey::from_spki_der(&spki).unwrap() else { panic!("not an SM2 SPKI") };
    let msg = random_message(4096);
    let msg_path = write(dir.path(), "msg", &msg);

    for (name, id) in sm2_ids() {
        for via_pkeyutl in [false, true] {
            let ctx = format!("{name} ID, pkeyutl={via_pkeyutl}");
            let der = openssl_sm2_sign(&o, &key_path, &id, &msg_path, via_pkeyutl);
            let sig = Sm2Signature::from_der(&der).unwrap_or_else(|e| panic!("{ctx}: {e}: {}", hex::encode(&der)));
            pk.verify(&id, &msg, &sig).unwrap_or_else(|e| panic!("{ctx}: {e}"));
            let scheme = SignatureScheme::Sm2Sm3 { id: id.clone() };
            PublicKey::Sm2(pk).verify(&scheme, &msg, &der).unwrap_or_else(|e| panic!("{ctx} (generic): {e}"));
            PublicKey::Sm2(pk).verify(&scheme, &msg, &sig.to_raw()).unwrap_or_else(|e| panic!("{ctx} (raw): {e}"));

            assert_eq!(pk.verify(&id, &flip(&msg, 0, 0), &sig), Err(CryptoError::BadSignature), "{ctx}");
            let wrong_id = if id.is_empty() { DEFAULT_ID.to_vec() } else { Vec::new() };
            assert_eq!(pk.verify(&wrong_id, &msg, &sig), Err(CryptoError::BadSignature), "{ctx}");
        }
    }
}

// ------------------------------------------------------------------ SM2 keys

#[test]
fn sm2_openssl_keys_load_here() {
    let Some(o) = openssl() else { return };
    let dir = tempdir();
    for (i, args) in
        [&["-algorithm", "SM2"][..], &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:SM2"][..]].iter().enumerate()
    {
        let key_path = path_in(dir.path(), &format!("key{i}.pem"));
        let mut cmd = vec!["genpkey"];
        cmd.extend_from_slice(args);
        cmd.extend(["-out", &key_path]);
        o.ok(&cmd);
        let pem_text = String::from_utf8(read(&key_path)).unwrap();
        let key = PrivateKey::from_pkcs8_pem(&pem_text).unwrap_or_else(|e| panic!("genpkey {args:?}: {e}"));
        assert_eq!(key.public_key().algorithm(), Algorithm::Sm2);

        // Same public key as OpenSSL derives, and our SPKI encoding is byte-identical to its.
        let spki = o.ok(&["pkey", "-in", &key_path, "-pubout", "-outform", "DER"]);
        assert_eq!(PublicKey::from_spki_der(&spki).unwrap(), key.public_key(), "genpkey {args:?}");
        assert_eq!(hex::encode(key.public_key().to_spki_der().unwrap()), hex::encode(&spki), "genpkey {args:?}");
        // OpenSSL's PKCS#8 DER (`pkey -outform DER` would write SEC1 in 3.0) is the same
        // key, and so is ours written back.
        let their_p8 = o.ok(&["pkcs8", "-topk8", "-nocrypt", "-in", &key_path, "-outform", "DER"]);
        let PrivateKey::Sm2(sm2k) = &key else { unreachable!() };
        assert_eq!(Sm2PrivateKey::from_pkcs8_der(&their_p8).unwrap().to_bytes(), sm2k.to_bytes());
        let our_p8 = key.to_pkcs8_der().unwrap();
        assert_eq!(hex::encode(&our_p8[..]), hex::encode(&their_p8), "genpkey {args:?}: PKCS#8 DER");

        // The loaded key works against OpenSSL's own public key file.
        let msg = random_message(512);
        let msg_path = write(dir.path(), "msg", &msg);
        let pub_path = write(dir.path(), "pub.der", &spki);
        let sig_path = write(dir.path(), "sig", key.sign(&SignatureScheme::sm2_default(), &msg).unwrap());
        o.ok(&[
            "dgst",
            "-sm3",
            "-verify",
            &pub_path,
            "-keyform",
            "DER",
            "-sigopt",
            "distid:1234567812345678",
            "-signature",
            &sig_path,
            &msg_path,
        ]);
    }
}

#[test]
fn sm2_our_keys_load_in_openssl() {
    let Some(o) = openssl() else { return };
    let dir = tempdir();
    let key = PrivateKey::generate(Algorithm::Sm2).unwrap();
    let key_path = priv_pem(dir.path(), "key.pem", &key);
    let pub_path = pub_pem(dir.path(), "pub.pem", &key.public_key());
    let spki = key.public_key().to_spki_der().unwrap();

    let check = String::from_utf8(o.ok(&["pkey", "-in", &key_path, "-check", "-noout"])).unwrap();
    assert!(check.contains("Key is valid"), "{check}");
    assert_eq!(hex::encode(o.ok(&["pkey", "-in", &key_path, "-pubout", "-outform", "DER"])), hex::encode(&spki));
    assert_eq!(hex::encode(o.ok(&["pkey", "-pubin", "-in", &pub_path, "-outform", "DER"])), hex::encode(&spki));
    let text = String::from_utf8(o.ok(&["pkey", "-in", &key_path, "-text", "-noout"])).unwrap();
    assert!(text.contains("ASN1 OID: SM2"), "{text}");

    // OpenSSL signs with our private key file; we verify with our public key.
    let msg = random_message(512);
    let msg_path = write(dir.path(), "msg", &msg);
    let der = openssl_sm2_sign(&o, &key_path, DEFAULT_ID, &msg_path, false);
    key.public_key().verify(&SignatureScheme::sm2_default(), &msg, &der).unwrap();
}

// ------------------------------------------------------------------ SM2 encryption

fn sm2_lengths() -> Vec<usize> {
    vec![1, 31, 32, 33, 64, random_len(2, 300), random_len(1000, 5000)]
}

#[test]
fn sm2_openssl_encrypts_we_decrypt() {
    let Some(o) = openssl() else { return };
    let dir = tempdir();
    let key = Sm2PrivateKey::generate().unwrap();
    let pub_path = pub_pem(dir.path(), "pub.pem", &PublicKey::Sm2(*key.public_key()));
    for len in sm2_lengths() {
        let msg = random_bytes(len);
        let msg_path = write(dir.path(), "msg", &msg);
        let ct = o.ok(&["pkeyutl", "-encrypt", "-pubin", "-inkey", &pub_path, "-in", &msg_path]);
        // GM/T 0009 DER, exactly what we parse and re-encode.
        let parsed = Sm2Ciphertext::from_der(&ct).unwrap_or_else(|e| panic!("len {len}: {e}: {}", hex::encode(&ct)));
        assert_eq!(parsed.c2.len(), len);
        assert_eq!(hex::encode(parsed.to_der().unwrap()), hex::encode(&ct), "len {len}: DER re-encoding");
        assert_eq!(&key.decrypt(&ct).unwrap()[..], &msg[..], "len {len}");
        assert_eq!(&PrivateKey::Sm2(key.clone()).decrypt(&ct, RsaPadding::Pkcs1v15).unwrap()[..], &msg[..], "len {len}");
        // Tampered C2 (the last byte of the DER) must fail.
        assert_eq!(key.decrypt(&flip(&ct, ct.len() - 1, 0)).err(), Some(CryptoError::DecryptFailed), "len {len}");
    }
}

#[test]
fn sm2_we_encrypt_openssl_decrypts() {
    let Some(o) = openssl() else { return };
    let dir = tempdir();
    let key_path = path_in(dir.path(), "key.pem");
    o.ok(&["genpkey", "-algorithm", "SM2", "-out", &key_path]);
    let key = PrivateKey::from_pkcs8_pem(&String::from_utf8(read(&key_path)).unwrap()).unwrap();
    let PublicKey::Sm2(pk) = key.public_key() else { panic!("not SM2") };
    for len in sm2_lengths() {
        let msg = random_bytes(len);
        for (how, ct) in [
            ("Sm2PublicKey::encrypt().to_der()", pk.encrypt(&msg).unwrap().to_der().unwrap()),
            ("PublicKey::encrypt", key.public_key().encrypt(&msg, RsaPadding::Pkcs1v15).unwrap()),
        ] {
            let ct_path = write(dir.path(), "ct", &ct);
            let pt = o.ok(&["pkeyutl", "-decrypt", "-inkey", &key_path, "-in", &ct_path]);
            assert_eq!(hex::encode(pt), hex::encode(&msg), "len {len}, {how}");
            let bad_path = write(dir.path(), "bad", flip(&ct, ct.len() - 1, 0));
            o.fails(&["pkeyutl", "-decrypt", "-inkey", &key_path, "-in", &bad_path]);
        }
    }
}

#[test]
fn sm2_key_from_openssl_text_matches() {
    // OpenSSL prints the private scalar and the point; ours must be the same numbers.
    let Some(o) = openssl() else { return };
    let dir = tempdir();
    let key_path = path_in(dir.path(), "key.pem");
    o.ok(&["genpkey", "-algorithm", "SM2", "-out", &key_path]);
    let text = String::from_utf8(o.ok(&["pkey", "-in", &key_path, "-text", "-noout"])).unwrap();
    let field = |name: &str| -> Vec<u8> {
        let start = text.find(name).unwrap_or_else(|| panic!("no {name} in {text}")) + name.len();
        let hexdigits: String = text[start..]
            .lines()
            .skip(1)
            .take_while(|l| l.starts_with("    "))
            .flat_map(|l| l.trim().split(':').map(str::to_string).collect::<Vec<_>>())
            .collect();
        hex::decode(hexdigits).unwrap()
    };
    let priv_bytes = field("priv:");
    let pub_bytes = field("pub:");
    let d: Vec<u8> = if priv_bytes.len() == 33 { priv_bytes[1..].to_vec() } else { priv_bytes };
    let mut d32 = [0u8; 32];
    d32[32 - d.len()..].copy_from_slice(&d);
    let ours = Sm2PrivateKey::from_bytes(&d32).unwrap();
    assert_eq!(ours.public_key().to_uncompressed().to_vec(), pub_bytes);
    assert_eq!(Sm2PublicKey::from_sec1(&pub_bytes).unwrap(), *ours.public_key());
    let loaded = PrivateKey::from_pkcs8_pem(&String::from_utf8(read(&key_path)).unwrap()).unwrap();
    assert_eq!(loaded.public_key(), PublicKey::Sm2(*ours.public_key()));
}

// ------------------------------------------------------------------ SM3

#[test]
fn sm3_matches_openssl_on_random_data() {
    let Some(o) = openssl() else { return };
    let dir = tempdir();
    // A random 1 MiB file, hashed by OpenSSL from the file and by us in one shot and streaming.
    let data = random_bytes(1 << 20);
    let path = write(dir.path(), "big", &data);
    let theirs = o.ok(&["dgst", "-sm3", "-binary", &path]);
    assert_eq!(theirs.len(), 32);
    assert_eq!(hex::encode(kb_crypto::digest(HashAlgorithm::Sm3, &data)), hex::encode(&theirs));
    let streamed = kb_crypto::hash::digest_reader(HashAlgorithm::Sm3, std::fs::File::open(&path).unwrap()).unwrap();
    assert_eq!(hex::encode(streamed), hex::encode(&theirs));
    // Padding boundaries, through stdin.
    for len in [0usize, 1, 55, 56, 63, 64, 65, 119, 120, 128, random_len(129, 10_000)] {
        let d = random_bytes(len);
        let theirs = o.ok_stdin(&["dgst", "-sm3", "-binary"], &d);
        assert_eq!(hex::encode(kb_crypto::sm3::sm3(&d)), hex::encode(theirs), "len {len}");
    }
}

// ------------------------------------------------------------------ SM4

fn sm4_lengths() -> Vec<usize> {
    vec![0, 1, 15, 16, 17, 32, random_len(33, 1000), random_len(60_000, 70_000)]
}

fn enc_args<'a>(cipher: &'a str, key: &'a str, iv: Option<&'a str>, decrypt: bool, nopad: bool) -> Vec<&'a str> {
    let mut a = vec!["enc", cipher, "-K", key];
    if let Some(iv) = iv {
        a.extend(["-iv", iv]);
    }
    if decrypt {
        a.push("-d");
    }
    if nopad {
        a.push("-nopad");
    }
    a
}

#[test]
fn sm4_cbc_matches_openssl_both_ways() {
    let Some(o) = openssl() else { return };
    let (key, iv) = (kb_interop::random16(), kb_interop::random16());
    let (k, i) = (hex::encode(key), hex::encode(iv));
    for len in sm4_lengths() {
        let pt = random_bytes(len);
        let ours = sm4::transform_all(&mut CbcEncryptor::new(&key, &iv, Padding::Pkcs7), &pt).unwrap();
        let theirs = o.ok_stdin(&enc_args("-sm4-cbc", &k, Some(&i), false, false), &pt);
        assert_eq!(hex::encode(&ours), hex::encode(&theirs), "len {len}");
        assert_eq!(o.ok_stdin(&enc_args("-sm4-cbc", &k, Some(&i), true, false), &ours), pt, "len {len}");
        assert_eq!(sm4::transform_all(&mut CbcDecryptor::new(&key, &iv, Padding::Pkcs7), &theirs).unwrap(), pt, "len {len}");
        // Whole blocks without padding.
        let whole = &pt[..len / 16 * 16];
        let ours = sm4::transform_all(&mut CbcEncryptor::new(&key, &iv, Padding::None), whole).unwrap();
        assert_eq!(ours, o.ok_stdin(&enc_args("-sm4-cbc", &k, Some(&i), false, true), whole), "len {len} nopad");
        assert_eq!(o.ok_stdin(&enc_args("-sm4-cbc", &k, Some(&i), true, true), &ours), whole, "len {len} nopad");
    }
}

#[test]
fn sm4_ecb_matches_openssl_both_ways() {
    let Some(o) = openssl() else { return };
    let key = kb_interop::random16();
    let k = hex::encode(key);
    for len in sm4_lengths() {
        let pt = random_bytes(len);
        let ours = sm4::transform_all(&mut EcbEncryptor::new(&key, Padding::Pkcs7), &pt).unwrap();
        let theirs = o.ok_stdin(&enc_args("-sm4-ecb", &k, None, false, false), &pt);
        assert_eq!(hex::encode(&ours), hex::encode(&theirs), "len {len}");
        assert_eq!(o.ok_stdin(&enc_args("-sm4-ecb", &k, None, true, false), &ours), pt, "len {len}");
        assert_eq!(sm4::transform_all(&mut EcbDecryptor::new(&key, Padding::Pkcs7), &theirs).unwrap(), pt, "len {len}");
        let whole = &pt[..len / 16 * 16];
        let ours = sm4::transform_all(&mut EcbEncryptor::new(&key, Padding::None), whole).unwrap();
        assert_eq!(ours, o.ok_stdin(&enc_args("-sm4-ecb", &k, None, false, true), whole), "len {len} nopad");
        assert_eq!(o.ok_stdin(&enc_args("-sm4-ecb", &k, None, true, true), &ours), whole, "len {len} nopad");
    }
}

#[test]
fn sm4_ctr_matches_openssl_both_ways() {
    let Some(o) = openssl() else { return };
    let key = kb_interop::random16();
    let k = hex::encode(key);
    // A random counter, one that carries out of the low 64 bits within a few blocks, and
    // one that wraps all 128 bits.
    let mut carry64 = kb_interop::random16();
    carry64[8..].copy_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfd]);
    for iv in [kb_interop::random16(), carry64, [0xffu8; 16]] {
        let i = hex::encode(iv);
        for len in sm4_lengths() {
            let pt = random_bytes(len);
            let ours = sm4::transform_all(&mut Ctr::new(&key, &iv), &pt).unwrap();
            let theirs = o.ok_stdin(&enc_args("-sm4-ctr", &k, Some(&i), false, false), &pt);
            assert_eq!(hex::encode(&ours), hex::encode(&theirs), "iv {i} len {len}");
            assert_eq!(o.ok_stdin(&enc_args("-sm4-ctr", &k, Some(&i), true, false), &ours), pt, "iv {i} len {len}");
            assert_eq!(sm4::transform_all(&mut Ctr::new(&key, &iv), &theirs).unwrap(), pt, "iv {i} len {len}");
        }
    }
}

// ------------------------------------------------------------------ RSA

fn openssl_rsa_key(o: &OpenSsl, dir: &Path) -> (String, PrivateKey) {
    let key_path = path_in(dir, "rsa.pem");
    o.ok(&["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", &key_path]);
    let key = PrivateKey::from_pkcs8_pem(&String::from_utf8(read(&key_path)).unwrap()).unwrap();
    assert_eq!(key.public_key().algorithm(), Algorithm::Rsa { bits: 2048 });
    (key_path, key)
}

fn dgst_name(h: HashAlgorithm) -> &'static str {
    match h {
        HashAlgorithm::Sha1 => "-sha1",
        HashAlgorithm::Sha256 => "-sha256",
        HashAlgorithm::Sha384 => "-sha384",
        HashAlgorithm::Sha512 => "-sha512",
        other => panic!("no dgst name for {other}"),
    }
}

#[test]
fn rsa_pkcs1_signatures_both_ways() {
    let Some(o) = openssl() else { return };
    let dir = tempdir();
    let msg = random_message(4096);
    let msg_path = write(dir.path(), "msg", &msg);
    let other_path = write(dir.path(), "other", flip(&msg, 0, 0));

    // OpenSSL's key: OpenSSL signs, we verify; we sign with the same key and, PKCS#1 v1.5
    // being deterministic, must produce the very same bytes.
    let (key_path, key) = openssl_rsa_key(&o, dir.path());
    let theirs_pub = pub_pem(dir.path(), "rsa_pub.pem", &key.public_key());
    for h in [HashAlgorithm::Sha256, HashAlgorithm::Sha384, HashAlgorithm::Sha1] {
        let scheme = SignatureScheme::RsaPkcs1(h);
        let sig = o.ok(&["dgst", dgst_name(h), "-sign", &key_path, &msg_path]);
        assert_eq!(sig.len(), 256);
        key.public_key().verify(&scheme, &msg, &sig).unwrap_or_else(|e| panic!("{h}: {e}"));
        assert_eq!(key.public_key().verify(&scheme, &flip(&msg, 0, 0), &sig), Err(CryptoError::BadSignature), "{h}");
        assert_eq!(hex::encode(key.sign(&scheme, &msg).unwrap()), hex::encode(&sig), "{h}: deterministic PKCS#1 v1.5");
        // Our SPKI PEM of OpenSSL's key is accepted by OpenSSL.
        let sig_path = write(dir.path(), "sig", &sig);
        o.ok(&["dgst", dgst_name(h), "-verify", &theirs_pub, "-signature", &sig_path, &msg_path]);
    }

    // Our key: OpenSSL loads our PKCS#8 and SPKI and verifies our signatures.
    let ours = PrivateKey::generate(Algorithm::Rsa { bits: 2048 }).unwrap();
    let our_key_path = priv_pem(dir.path(), "our_rsa.pem", &ours);
    let our_pub_path = pub_pem(dir.path(), "our_rsa_pub.pem", &ours.public_key());
    assert_eq!(
        hex::encode(o.ok(&["pkey", "-in", &our_key_path, "-pubout", "-outform", "DER"])),
        hex::encode(ours.public_key().to_spki_der().unwrap())
    );
    for h in [HashAlgorithm::Sha256, HashAlgorithm::Sha512] {
        let sig = ours.sign(&SignatureScheme::RsaPkcs1(h), &msg).unwrap();
        let sig_path = write(dir.path(), "oursig", &sig);
        let out = String::from_utf8(o.ok(&["dgst", dgst_name(h), "-verify", &our_pub_path, "-signature", &sig_path, &msg_path]))
            .unwrap();
        assert!(out.contains("Verified OK"), "{h}: {out}");
        o.fails(&["dgst", dgst_name(h), "-verify", &our_pub_path, "-signature", &sig_path, &other_path]);
        // And OpenSSL signing with our private key file gives the same bytes.
        assert_eq!(hex::encode(o.ok(&["dgst", dgst_name(h), "-sign", &our_key_path, &msg_path])), hex::encode(&sig), "{h}");
    }
}

fn oaep_opts(h: HashAlgorithm) -> Vec<String> {
    let md = dgst_name(h).trim_start_matches('-');
    vec![
        "-pkeyopt".into(),
        "rsa_padding_mode:oaep".into(),
        "-pkeyopt".into(),
        format!("rsa_oaep_md:{md}"),
        "-pkeyopt".into(),
        format!("rsa_mgf1_md:{md}"),
    ]
}

#[test]
fn rsa_oaep_both_ways() {
    let Some(o) = openssl() else { return };
    let dir = tempdir();
    let (key_path, key) = openssl_rsa_key(&o, dir.path());
    let pub_path = pub_pem(dir.path(), "rsa_pub.pem", &key.public_key());
    for h in [HashAlgorithm::Sha256, HashAlgorithm::Sha1] {
        let opts = oaep_opts(h);
        let opts: Vec<&str> = opts.iter().map(String::as_str).collect();
        for len in [1usize, 16, 32, random_len(2, 150)] {
            let msg = random_bytes(len);
            let msg_path = write(dir.path(), "msg", &msg);
            // OpenSSL encrypts, we decrypt.
            let mut args = vec!["pkeyutl", "-encrypt", "-pubin", "-inkey", &pub_path];
            args.extend(&opts);
            args.extend(["-in", &msg_path]);
            let ct = o.ok(&args);
            assert_eq!(ct.len(), 256);
            assert_eq!(&key.decrypt(&ct, RsaPadding::Oaep(h)).unwrap()[..], &msg[..], "{h} len {len}");
            assert_eq!(key.decrypt(&flip(&ct, 100, 0), RsaPadding::Oaep(h)).err(), Some(CryptoError::DecryptFailed));
            // We encrypt, OpenSSL decrypts.
            let ours = key.public_key().encrypt(&msg, RsaPadding::Oaep(h)).unwrap();
            let ct_path = write(dir.path(), "ct", &ours);
            let mut args = vec!["pkeyutl", "-decrypt", "-inkey", &key_path];
            args.extend(&opts);
            args.extend(["-in", &ct_path]);
            assert_eq!(hex::encode(o.ok(&args)), hex::encode(&msg), "{h} len {len}");
        }
    }
}

// ------------------------------------------------------------------ ECDSA P-256

#[test]
fn ecdsa_p256_signatures_both_ways() {
    let Some(o) = openssl() else { return };
    let dir = tempdir();
    let msg = random_message(4096);
    let msg_path = write(dir.path(), "msg", &msg);
    let other_path = write(dir.path(), "other", flip(&msg, msg.len() - 1, 7));

    // OpenSSL's key and signatures; we load and verify.
    let key_path = path_in(dir.path(), "ec.pem");
    o.ok(&["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", &key_path]);
    let theirs = PrivateKey::from_pkcs8_pem(&String::from_utf8(read(&key_path)).unwrap()).unwrap();
    assert_eq!(theirs.public_key().algorithm(), Algorithm::EcdsaP256);
    let spki = o.ok(&["pkey", "-in", &key_path, "-pubout", "-outform", "DER"]);
    assert_eq!(PublicKey::from_spki_der(&spki).unwrap(), theirs.public_key());
    assert_eq!(hex::encode(theirs.public_key().to_spki_der().unwrap()), hex::encode(&spki));
    for h in [HashAlgorithm::Sha256, HashAlgorithm::Sha384] {
        let scheme = SignatureScheme::Ecdsa(h);
        let sig = o.ok(&["dgst", dgst_name(h), "-sign", &key_path, &msg_path]);
        theirs.public_key().verify(&scheme, &msg, &sig).unwrap_or_else(|e| panic!("{h}: {e}"));
        assert_eq!(theirs.public_key().verify(&scheme, &flip(&msg, 0, 0), &sig), Err(CryptoError::BadSignature), "{h}");
        // Our signature with OpenSSL's key verifies in OpenSSL.
        let ours = theirs.sign(&scheme, &msg).unwrap();
        let sig_path = write(dir.path(), "sig", &ours);
        let pub_path = write(dir.path(), "pub.der", &spki);
        o.ok(&["dgst", dgst_name(h), "-verify", &pub_path, "-keyform", "DER", "-signature", &sig_path, &msg_path]);
    }

    // Our key and signatures; OpenSSL loads and verifies.
    let ours = PrivateKey::generate(Algorithm::EcdsaP256).unwrap();
    let our_key_path = priv_pem(dir.path(), "our_ec.pem", &ours);
    let our_pub_path = pub_pem(dir.path(), "our_ec_pub.pem", &ours.public_key());
    let check = String::from_utf8(o.ok(&["pkey", "-in", &our_key_path, "-check", "-noout"])).unwrap();
    assert!(check.contains("Key is valid"), "{check}");
    for h in [HashAlgorithm::Sha256, HashAlgorithm::Sha384] {
        let sig = ours.sign(&SignatureScheme::Ecdsa(h), &msg).unwrap();
        let sig_path = write(dir.path(), "oursig", &sig);
        let out = String::from_utf8(o.ok(&["dgst", dgst_name(h), "-verify", &our_pub_path, "-signature", &sig_path, &msg_path]))
            .unwrap();
        assert!(out.contains("Verified OK"), "{h}: {out}");
        o.fails(&["dgst", dgst_name(h), "-verify", &our_pub_path, "-signature", &sig_path, &other_path]);
        // OpenSSL signing with our key file verifies here.
        let theirs_sig = o.ok(&["dgst", dgst_name(h), "-sign", &our_key_path, &msg_path]);
        ours.public_key().verify(&SignatureScheme::Ecdsa(h), &msg, &theirs_sig).unwrap();
    }
}

// ------------------------------------------------------------------ DER edge cases

/// Sample until `pred` holds (each try succeeds with probability ~1/512; 20,000 tries fail
/// to find one with probability ~e^-39).
fn search<T>(what: &str, mut make: impl FnMut() -> T, pred: impl Fn(&T) -> bool) -> T {
    for _ in 0..20_000 {
        let x = make();
        if pred(&x) {
            return x;
        }
    }
    panic!("no {what} in 20,000 tries");
}

#[test]
fn sm2_short_der_integers_interoperate() {
    // About 1 signature in 512 has r (or s) < 2^247 and 1 ciphertext in 512 has C1.x (or y)
    // < 2^247: their minimal DER INTEGERs are 31 bytes instead of 33 (or 32). Find such
    // cases and hand them to OpenSSL.
    let Some(o) = openssl() else { return };
    let dir = tempdir();
    let key = Sm2PrivateKey::generate().unwrap();
    let pub_path = pub_pem(dir.path(), "pub.pem", &PublicKey::Sm2(*key.public_key()));
    let key_path = priv_pem(dir.path(), "key.pem", &PrivateKey::Sm2(key.clone()));
    let msg = random_message(100);
    let msg_path = write(dir.path(), "msg", &msg);

    let short = |b: &[u8; 32]| b[0] == 0 && b[1] < 0x80;
    let short_r = search("short r", || key.sign(DEFAULT_ID, &msg).unwrap(), |s| short(&s.r));
    let short_s = search("short s", || key.sign(DEFAULT_ID, &msg).unwrap(), |s| short(&s.s));
    for (what, sig) in [("r", short_r), ("s", short_s)] {
        let der = sig.to_der();
        // SEQUENCE of two INTEGERs, one of them 31 bytes: at most 2 + 33 + 35 = 70 bytes.
        assert!(der.len() <= 70, "short {what}: {}", hex::encode(&der));
        assert_eq!(Sm2Signature::from_der(&der).unwrap(), sig);
        let sig_path = write(dir.path(), "sig", &der);
        assert!(openssl_sm2_verify(&o, &pub_path, DEFAULT_ID, &msg_path, &sig_path, false), "short {what}");
    }

    let short_x = search("short C1.x", || key.public_key().encrypt(&msg).unwrap(), |c| short(&c.x));
    let short_y = search("short C1.y", || key.public_key().encrypt(&msg).unwrap(), |c| short(&c.y));
    for (what, ct) in [("x", short_x), ("y", short_y)] {
        let der = ct.to_der().unwrap();
        // The INTEGER in question really is 31 bytes long.
        let body = if der[1] & 0x80 != 0 { &der[2 + usize::from(der[1] & 0x7f)..] } else { &der[2..] };
        let y_at = 2 + usize::from(body[1]);
        let (header, value) = if what == "x" { (&body[..2], &ct.x) } else { (&body[y_at..y_at + 2], &ct.y) };
        // Minimal DER: leading zero bytes dropped (1 in 128 short values has two of them, so
        // usually 30 bytes, not 31), a zero sign byte back if the first kept byte's top bit is set.
        let kept = &value[value.iter().take_while(|&&b| b == 0).count()..];
        let minimal = u8::try_from(kept.len() + usize::from(kept[0] >= 0x80)).unwrap();
        assert!(minimal <= 0x1f, "short C1.{what} is short");
        assert_eq!(header, [0x02, minimal], "short C1.{what}: {}", hex::encode(&der));
        assert_eq!(Sm2Ciphertext::from_der(&der).unwrap(), ct, "short C1.{what}");
        let ct_path = write(dir.path(), "ct", &der);
        let pt = o.ok(&["pkeyutl", "-decrypt", "-inkey", &key_path, "-in", &ct_path]);
        assert_eq!(hex::encode(pt), hex::encode(&msg), "short C1.{what}");
    }
}
