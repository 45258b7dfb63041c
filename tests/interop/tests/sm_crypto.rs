//! Interop with npm `sm-crypto` (pure JavaScript SM2/SM3/SM4), both directions, through
//! `node/sm_crypto_peer.js`.
//!
//! sm-crypto signs with `{hash: true}` (e = SM3(ZA ‖ M)), raw `r ‖ s` or DER, with any
//! UTF-8 user ID (default `1234567812345678`); its ciphertexts carry no `04`
//! (cipherMode 1 = C1C3C2, 0 = C1C2C3); its SM4 is ECB or CBC, PKCS#7 or no padding.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kb_crypto::sm2::{CiphertextLayout, DEFAULT_ID, Sm2Ciphertext, Sm2PrivateKey, Sm2PublicKey, Sm2Signature};
use kb_crypto::sm4::{self, CbcDecryptor, CbcEncryptor, EcbDecryptor, EcbEncryptor, Padding};
use kb_crypto::{CryptoError, PublicKey, SignatureScheme};
use kb_interop::{flip, random_ascii_id, random_bytes, random_len, random_message, sm_crypto};
use serde_json::{Value, json};

/// IDs as sm-crypto takes them (`None`: its default) and as we take them (bytes).
fn ids() -> Vec<(Option<String>, Vec<u8>)> {
    let custom = random_ascii_id();
    let unicode = format!("张三-{}@例子.中国", hex::encode(random_bytes(3)));
    vec![(None, DEFAULT_ID.to_vec()), (Some(custom.clone()), custom.into_bytes()), (Some(unicode.clone()), unicode.into_bytes())]
}

fn id_json(id: &Option<String>) -> Value {
    id.as_ref().map_or(Value::Null, |s| Value::String(s.clone()))
}

#[test]
fn sm_crypto_keys_match_ours() {
    let Some(js) = sm_crypto() else { return };
    // Their key pair: our public key from their private scalar is theirs.
    for _ in 0..3 {
        let kp = js.call(json!({"op": "keygen"}));
        let d = hex::decode(kp["d"].as_str().unwrap()).unwrap();
        let pub_hex = kp["pub"].as_str().unwrap();
        let ours = Sm2PrivateKey::from_bytes(&d).unwrap();
        assert_eq!(hex::encode(ours.public_key().to_uncompressed()), pub_hex);
        assert_eq!(Sm2PublicKey::from_sec1(&hex::decode(pub_hex).unwrap()).unwrap(), *ours.public_key());
    }
    // Our key pairs: their public key from our private scalar is ours; also for keys whose
    // x or y has a leading zero byte (fixed-width hex on both sides).
    let random = Sm2PrivateKey::generate().unwrap();
    let find = |pred: &dyn Fn(&[u8; 64]) -> bool| {
        (0..20_000).map(|_| Sm2PrivateKey::generate().unwrap()).find(|k| pred(&k.public_key().to_xy())).expect("20,000 tries")
    };
    let short_x = find(&|xy| xy[0] == 0);
    let short_y = find(&|xy| xy[32] == 0);
    for k in [random, short_x, short_y] {
        let theirs = js.call_str(json!({"op": "public_key", "d": hex::encode(*k.to_bytes())}), "pub");
        assert_eq!(theirs, hex::encode(k.public_key().to_uncompressed()));
        // And a signature with it verifies there.
        let msg = random_message(100);
        let sig = hex::encode(k.sign(DEFAULT_ID, &msg).unwrap().to_raw());
        assert!(js.call_bool(json!({"op": "sm2_verify", "pub": theirs, "msg": hex::encode(&msg), "sig": sig}), "valid"));
    }
}

#[test]
fn sm_crypto_signatures_verify_here() {
    let Some(js) = sm_crypto() else { return };
    let k = Sm2PrivateKey::generate().unwrap();
    let pk = *k.public_key();
    let d = hex::encode(*k.to_bytes());
    for (id_js, id) in ids() {
        for der in [false, true] {
            let ctx = format!("id {id_js:?} der {der}");
            let msg = random_message(2000);
            let sig_hex = js
                .call_str(json!({"op": "sm2_sign", "d": d, "msg": hex::encode(&msg), "der": der, "id": id_json(&id_js)}), "sig");
            let sig_bytes = hex::decode(&sig_hex).unwrap();
            let sig = if der { Sm2Signature::from_der(&sig_bytes) } else { Sm2Signature::from_raw(&sig_bytes) }
                .unwrap_or_else(|e| panic!("{ctx}: {e}: {sig_hex}"));
            pk.verify(&id, &msg, &sig).unwrap_or_else(|e| panic!("{ctx}: {e}"));
            PublicKey::Sm2(pk).verify(&SignatureScheme::Sm2Sm3 { id: id.clone() }, &msg, &sig_bytes).unwrap();
            assert_eq!(pk.verify(&id, &flip(&msg, 0, 1), &sig), Err(CryptoError::BadSignature), "{ctx}");
            let wrong = if id == DEFAULT_ID { b"".to_vec() } else { DEFAULT_ID.to_vec() };
            assert_eq!(pk.verify(&wrong, &msg, &sig), Err(CryptoError::BadSignature), "{ctx}");
        }
    }
}

#[test]
fn our_signatures_verify_in_sm_crypto() {
    let Some(js) = sm_crypto() else { return };
    let k = Sm2PrivateKey::generate().unwrap();
    let pub_hex = hex::encode(k.public_key().to_uncompressed());
    // (context, message, signature, ID given to sm-crypto, DER?, should verify)
    let mut cases = Vec::new();
    for (id_js, id) in ids() {
        let msg = random_message(2000);
        let sig = k.sign(&id, &msg).unwrap();
        let other_id = if id_js.is_none() { Some(random_ascii_id()) } else { None };
        for der in [false, true] {
            let ctx = format!("id {id_js:?} der {der}");
            cases.push((format!("{ctx}: our signature"), msg.clone(), sig, id_js.clone(), der, true));
            cases.push((format!("{ctx}: changed message"), flip(&msg, msg.len() - 1, 0), sig, id_js.clone(), der, false));
            cases.push((format!("{ctx}: another ID"), msg.clone(), sig, other_id.clone(), der, false));
        }
    }
    let requests = cases
        .iter()
        .map(|(_, msg, sig, id_js, der, _)| {
            let sig_hex = if *der { hex::encode(sig.to_der()) } else { hex::encode(sig.to_raw()) };
            json!({"op": "sm2_verify", "pub": pub_hex, "msg": hex::encode(msg), "sig": sig_hex, "der": der, "id": id_json(id_js)})
        })
        .collect();
    let replies = js.call_batch(requests);
    for ((ctx, .., expected), reply) in cases.iter().zip(&replies) {
        assert_eq!(reply["valid"].as_bool(), Some(*expected), "{ctx}: sm-crypto said {reply}");
    }
}

fn lengths() -> Vec<usize> {
    vec![1, 32, 33, random_len(2, 200), random_len(500, 5000)]
}

#[test]
fn sm_crypto_ciphertexts_decrypt_here() {
    let Some(js) = sm_crypto() else { return };
    let k = Sm2PrivateKey::generate().unwrap();
    let pub_hex = hex::encode(k.public_key().to_uncompressed());
    let mut cases = Vec::new(); // (cipherMode, our layout, plaintext)
    for (mode, layout) in [(1, CiphertextLayout::C1C3C2), (0, CiphertextLayout::C1C2C3)] {
        for len in lengths() {
            cases.push((mode, layout, random_bytes(len)));
        }
    }
    let replies = js.call_batch(
        cases
            .iter()
            .map(|(mode, _, msg)| json!({"op": "sm2_encrypt", "pub": pub_hex, "msg": hex::encode(msg), "mode": mode}))
            .collect(),
    );
    for ((mode, layout, msg), reply) in cases.iter().zip(&replies) {
        let ctx = format!("cipherMode {mode} len {}", msg.len());
        let ct = hex::decode(reply["ct"].as_str().unwrap()).unwrap();
        assert_eq!(ct.len(), 64 + 32 + msg.len(), "{ctx}: C1 without 04");
        assert_eq!(&k.decrypt(&ct).unwrap()[..], &msg[..], "{ctx}");
        let parsed = Sm2Ciphertext::from_raw(&ct, *layout).unwrap();
        assert_eq!(&k.decrypt_ciphertext(&parsed).unwrap()[..], &msg[..], "{ctx}");
        assert_eq!(parsed.encode(*layout, false), ct, "{ctx}");
        // And as GM/T 0009 DER, for a peer that wants that.
        assert_eq!(&k.decrypt(&parsed.to_der().unwrap()).unwrap()[..], &msg[..], "{ctx}");
    }
}

#[test]
fn our_ciphertexts_decrypt_in_sm_crypto() {
    let Some(js) = sm_crypto() else { return };
    let k = Sm2PrivateKey::generate().unwrap();
    let d = hex::encode(*k.to_bytes());
    let mut cases = Vec::new(); // (context, cipherMode, ciphertext, expected plaintext hex)
    for (mode, layout) in [(1, CiphertextLayout::C1C3C2), (0, CiphertextLayout::C1C2C3)] {
        for len in lengths() {
            let msg = random_bytes(len);
            let ct = k.public_key().encrypt(&msg).unwrap().encode(layout, false);
            // sm-crypto checks C3: a changed C2 byte must give its empty failure result.
            let c2_at = if mode == 1 { 96 } else { 64 };
            cases.push((format!("cipherMode {mode} len {len}"), mode, ct.clone(), hex::encode(&msg)));
            cases.push((format!("cipherMode {mode} len {len}, tampered C2"), mode, flip(&ct, c2_at, 0), String::new()));
        }
    }
    let replies = js.call_batch(
        cases.iter().map(|(_, mode, ct, _)| json!({"op": "sm2_decrypt", "d": d, "ct": hex::encode(ct), "mode": mode})).collect(),
    );
    for ((ctx, _, _, expected), reply) in cases.iter().zip(&replies) {
        assert_eq!(reply["pt"].as_str(), Some(expected.as_str()), "{ctx}");
    }
}

#[test]
fn sm3_matches_sm_crypto() {
    let Some(js) = sm_crypto() else { return };
    for len in [0usize, 1, 55, 56, 63, 64, 65, 119, 120, random_len(121, 1000), random_len(100_000, 300_000)] {
        let data = random_bytes(len);
        let theirs = js.call_str(json!({"op": "sm3", "data": hex::encode(&data)}), "digest");
        assert_eq!(hex::encode(kb_crypto::sm3::sm3(&data)), theirs, "len {len}");
    }
}

fn our_sm4(mode: &str, decrypt: bool, key: &[u8; 16], iv: &[u8; 16], p: Padding, data: &[u8]) -> Vec<u8> {
    let mut t: Box<dyn sm4::Transform> = match (mode, decrypt) {
        ("cbc", false) => Box::new(CbcEncryptor::new(key, iv, p)),
        ("cbc", true) => Box::new(CbcDecryptor::new(key, iv, p)),
        ("ecb", false) => Box::new(EcbEncryptor::new(key, p)),
        ("ecb", true) => Box::new(EcbDecryptor::new(key, p)),
        _ => unreachable!(),
    };
    sm4::transform_all(t.as_mut(), data).unwrap()
}

#[test]
fn sm4_ecb_and_cbc_match_sm_crypto() {
    let Some(js) = sm_crypto() else { return };
    let (key, iv) = (kb_interop::random16(), kb_interop::random16());
    let mut cases = Vec::new(); // (mode, sm-crypto padding, our padding, plaintext)
    for len in [0usize, 1, 15, 16, 17, random_len(18, 1000), random_len(10_000, 50_000)] {
        let pt = random_bytes(len);
        let whole = pt[..len / 16 * 16].to_vec();
        for mode in ["cbc", "ecb"] {
            cases.push((mode, "pkcs#7", Padding::Pkcs7, pt.clone()));
            cases.push((mode, "none", Padding::None, whole.clone()));
        }
    }
    let req = |mode: &str, padding: &str, data: &[u8], decrypt: bool| {
        json!({"op": "sm4", "mode": mode, "padding": padding, "key": hex::encode(key), "iv": hex::encode(iv),
               "data": hex::encode(data), "decrypt": decrypt})
    };
    let ours: Vec<Vec<u8>> = cases.iter().map(|(mode, _, p, pt)| our_sm4(mode, false, &key, &iv, *p, pt)).collect();
    // One sm-crypto process encrypts every plaintext, another decrypts every one of ours.
    let theirs = js.call_batch(cases.iter().map(|(mode, padding, _, pt)| req(mode, padding, pt, false)).collect());
    let back = js.call_batch(cases.iter().zip(&ours).map(|((mode, padding, _, _), ct)| req(mode, padding, ct, true)).collect());
    for (i, (mode, padding, p, pt)) in cases.iter().enumerate() {
        let ctx = format!("{mode} padding {padding} len {}", pt.len());
        let theirs = hex::decode(theirs[i]["out"].as_str().unwrap()).unwrap();
        assert_eq!(hex::encode(&ours[i]), hex::encode(&theirs), "{ctx}: ciphertexts differ");
        assert_eq!(back[i]["out"].as_str().unwrap(), hex::encode(pt), "{ctx}: sm-crypto decrypting ours");
        assert_eq!(&our_sm4(mode, true, &key, &iv, *p, &theirs), pt, "{ctx}: decrypting sm-crypto's");
    }
}
