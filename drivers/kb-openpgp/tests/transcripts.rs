//! Replays the sessions recorded against the real OpenPGP card emulator over PC/SC
//! (`tests/vectors/apdu/openpgp-emulator/*.json`, written by kb-pcsc's rig tests) through
//! a [`VirtualCard`] that accepts exactly the recorded commands in order: the driver
//! must send byte for byte what it sent to the real card, and the card's recorded
//! answers must still verify (signature with the recorded public key, deciphered
//! plaintext).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod scenario;

use kb_apdu::VirtualCard;
use kb_crypto::{HashAlgorithm, SignatureScheme};
use kb_token::TokenError;
use kb_types::{Algorithm, KeyUsage};
use serde_json::Value;
use std::path::PathBuf;

fn hx(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().unwrap()).unwrap()
}

#[test]
fn emulator_sessions_replay_byte_for_byte() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/vectors/apdu/openpgp-emulator");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no recorded sessions in {}", dir.display());
    for f in files {
        let doc: Value = serde_json::from_str(&std::fs::read_to_string(&f).unwrap()).unwrap();
        assert!(doc["source"].as_str().unwrap().contains("smartcard-app-openpgp"), "{}", f.display());
        let i = &doc["inputs"];
        let inputs = scenario::Inputs {
            user_pin: i["user_pin"].as_str().unwrap().into(),
            wrong_pin: i["wrong_pin"].as_str().unwrap().into(),
            digest: hx(&i["digest"]),
            ciphertext: hx(&i["ciphertext"]),
        };
        let steps: Vec<(Vec<u8>, Vec<u8>)> =
            doc["exchanges"].as_array().unwrap().iter().map(|x| (hx(&x["c"]), hx(&x["r"]))).collect();
        let n = steps.len();
        let card = VirtualCard::from_transcript(steps);
        let out = scenario::run(card, &inputs);
        assert_eq!(out.wrong_pin, TokenError::WrongPin { retries_left: 2 });
        assert_eq!(out.retries_after_right_pin, 3);
        assert_eq!(out.plaintext, hx(&i["plaintext"]));
        let c = &out.containers[0];
        assert_eq!(c.slot(KeyUsage::Sign).unwrap().algorithm, Algorithm::EcdsaP256);
        assert_eq!(c.slot(KeyUsage::Encrypt).unwrap().algorithm, Algorithm::Rsa { bits: 2048 });
        // The public key the card reported verifies the signature it made.
        let pk = kb_crypto::PublicKey::from_spki_der(&hx(&doc["sign_public_key_spki"])).unwrap();
        pk.verify_digest(&SignatureScheme::Ecdsa(HashAlgorithm::Sha256), &inputs.digest, &out.signature).unwrap();
        assert!(n > 10, "{n} exchanges");
    }
}
