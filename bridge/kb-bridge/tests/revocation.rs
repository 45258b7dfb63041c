//! Revocation through the bridge: the certificate list marks and filters revoked
//! certificates, `verify` fails a revoked signer (CRLs carried in the signature count, its
//! signing time does not), and a revoked certificate is not chosen for decryption unless
//! the caller asks to open old data.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use base64ct::{Base64, Encoding};
use common::*;
use kb_bridge::client::ClientError;
use kb_pki::revocation::{Crl, CrlEntry, RevocationReason, issue_crl};
use kb_pki::time::UnixTime;
use kb_service::revocation::{RevocationChecker, RevocationConfig};
use kb_service::settings::RevocationCheck;
use kb_types::ErrorCode;
use serde_json::{Value, json};
use std::sync::Arc;

fn b64(b: &[u8]) -> String {
    Base64::encode_string(b)
}

fn code(r: Result<Value, ClientError>) -> i32 {
    r.unwrap_err().code().unwrap()
}

/// A CRL from the rig's CA listing these certificates.
fn crl(r: &Rig, revoked: &[&kb_pki::Certificate]) -> Crl {
    let now = UnixTime::now();
    let entries: Vec<CrlEntry> = revoked
        .iter()
        .map(|c| CrlEntry {
            serial: c.serial_bytes().to_vec(),
            at: UnixTime(now.0 - 60),
            reason: Some(RevocationReason::KeyCompromise),
        })
        .collect();
    issue_crl(r.ca.cert(), &r.ca.0.signer, &entries, UnixTime(now.0 - 120), UnixTime(now.0 + 86_400), 1).unwrap()
}

async fn rig_with_folder(folder: &std::path::Path) -> Rig {
    let checker = RevocationChecker::new(RevocationConfig {
        mode: RevocationCheck::Offline,
        crl_dir: Some(folder.to_path_buf()),
        ..RevocationConfig::none()
    });
    rig_checking(|_| {}, None, Arc::new(kb_bridge::consent::GrantStore::in_memory()), Some(Arc::new(checker))).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_certificates_are_marked_filtered_fail_verification_and_are_not_chosen_to_decrypt() {
    let folder = tempfile::tempdir().unwrap();
    let r = rig_with_folder(folder.path()).await;
    r.prompter.push_pin(PIN);
    let c = r.native().await;
    let (sign, enc) = (r.key.sign_thumb(), r.key.enc_thumb());

    // No CRL yet: unknown, never good; nothing is filtered out.
    let l = c.request(c.next_id(), "certificates.list", json!({})).await.unwrap();
    let certs = l["certificates"].as_array().unwrap();
    assert_eq!(certs.len(), 2);
    for s in certs {
        assert_eq!(s["revocation"]["status"], "unknown", "{s}");
        assert_eq!(s["revocation"]["code"], ErrorCode::RevocationUnknown.number(), "{s}");
    }
    // A signature and an envelope made while nothing is revoked.
    let msg = "投标文件".as_bytes();
    let s = c
        .request(
            c.next_id(),
            "sign",
            json!({"certificate": {"thumbprint": sign}, "input": {"data": b64(msg)}, "format": "cms_attached"}),
        )
        .await
        .unwrap();
    let sig = s["signature"].clone();
    let verify = json!({"signature": sig, "format": "cms_attached"});
    let v = c.request(c.next_id(), "verify", verify.clone()).await.unwrap();
    assert_eq!((v["valid"].clone(), v["revocation"]["status"].clone()), (json!(true), json!("unknown")), "{v}");
    let e = c
        .request(
            c.next_id(),
            "encrypt",
            json!({"format": "cms_envelope", "recipients": [{"thumbprint": enc}], "input": {"data": b64(b"price 100")}}),
        )
        .await
        .unwrap();
    let envelope = e["output"]["data"].clone();

    // The CA revokes both; IT drops its CRL into the folder.
    std::fs::write(folder.path().join("ca.crl"), crl(&r, &[&r.key.sign_cert, &r.key.enc_cert]).der()).unwrap();
    let l = c.request(c.next_id(), "certificates.list", json!({})).await.unwrap();
    for s in l["certificates"].as_array().unwrap() {
        assert_eq!(s["revocation"]["status"], "revoked", "{s}");
        assert_eq!(s["revocation"]["reason"], "keyCompromise", "{s}");
        assert!(s["revocation"]["revoked_at"].as_i64().unwrap() > 1_700_000_000);
    }
    let kept = c.request(c.next_id(), "certificates.list", json!({"revoked": false})).await.unwrap();
    assert!(kept["certificates"].as_array().unwrap().is_empty(), "a page asking for usable certificates gets none: {kept}");
    let only = c.request(c.next_id(), "certificates.list", json!({"revoked": true})).await.unwrap();
    assert_eq!(only["certificates"].as_array().unwrap().len(), 2);
    let details = c.request(c.next_id(), "certificates.get", json!({"certificate": {"thumbprint": enc}})).await.unwrap();
    assert_eq!(details["revocation"]["status"], "revoked");

    // The signature now fails with the code; its signing time does not save it.
    let v = c.request(c.next_id(), "verify", verify.clone()).await.unwrap();
    assert_eq!(v["valid"], false, "{v}");
    assert_eq!(v["error"], ErrorCode::CertificateRevoked.number());
    assert_eq!(v["chain"], "trusted");
    assert_eq!(v["revocation"]["status"], "revoked");
    assert!(v["signing_time"].as_i64().is_some());
    // Not asked: the signature itself is valid and revocation says so.
    let mut unchecked = verify.clone();
    unchecked["check_revocation"] = json!(false);
    let v = c.request(c.next_id(), "verify", unchecked).await.unwrap();
    assert_eq!((v["valid"].clone(), v["revocation"]["status"].clone()), (json!(true), json!("not_checked")), "{v}");

    // Decryption: not chosen by default, refused when named; opened when asked to.
    let dec = json!({"format": "cms_envelope", "input": {"data": envelope}});
    assert_eq!(code(c.request(c.next_id(), "decrypt", dec.clone()).await), ErrorCode::CertificateRevoked.number() as i32);
    let mut named = dec.clone();
    named["certificate"] = json!({"thumbprint": enc});
    assert_eq!(code(c.request(c.next_id(), "decrypt", named.clone()).await), ErrorCode::CertificateRevoked.number() as i32);
    let mut old = dec.clone();
    old["allow_revoked"] = json!(true);
    let d = c.request(c.next_id(), "decrypt", old).await.unwrap();
    assert_eq!(Base64::decode_vec(d["output"]["data"].as_str().unwrap()).unwrap(), b"price 100");
    let mut raw = json!({"format": "sm2_raw", "certificate": {"thumbprint": enc}, "input": {"data": b64(&[0u8; 120])}});
    assert_eq!(code(c.request(c.next_id(), "decrypt", raw.clone()).await), ErrorCode::CertificateRevoked.number() as i32);
    raw["allow_revoked"] = json!(true);
    // Past the revocation check, the garbage ciphertext fails on its own terms.
    assert_ne!(code(c.request(c.next_id(), "decrypt", raw).await), ErrorCode::CertificateRevoked.number() as i32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crl_carried_in_the_signature_counts_without_any_other_source() {
    // No CRL folder, no network: only what the signature carries.
    let empty = tempfile::tempdir().unwrap();
    let r = rig_with_folder(empty.path()).await;
    let c = r.native().await;
    let signer = kb_pki::LocalSigner::new(r.key.sign_key.clone());
    let opts = kb_pki::cms::SignOptions { crls: vec![crl(&r, &[&r.key.sign_cert])], ..Default::default() };
    let der = kb_pki::cms::sign(b"bid", &signer, &r.key.sign_cert, &opts).unwrap();
    assert_eq!(kb_pki::cms::SignedMessage::from_der(&der).unwrap().crls().len(), 1);
    let v = c.request(c.next_id(), "verify", json!({"signature": b64(&der), "format": "cms_attached"})).await.unwrap();
    assert_eq!((v["valid"].clone(), v["error"].clone()), (json!(false), json!(ErrorCode::CertificateRevoked.number())), "{v}");
    // Carrying an empty CRL from the CA proves "good" at that CRL's time.
    let opts = kb_pki::cms::SignOptions { crls: vec![crl(&r, &[])], ..Default::default() };
    let der = kb_pki::cms::sign(b"bid", &signer, &r.key.sign_cert, &opts).unwrap();
    let v = c.request(c.next_id(), "verify", json!({"signature": b64(&der), "format": "cms_attached"})).await.unwrap();
    assert_eq!((v["valid"].clone(), v["revocation"]["status"].clone()), (json!(true), json!("good")), "{v}");
}
