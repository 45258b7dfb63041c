//! The bridge end to end over a real socket, against virtual media: every method,
//! streams, events, consent, cancellation, timeouts, audit, a medium pulled out.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use base64ct::{Base64, Encoding};
use common::*;
use kb_bridge::client::ClientError;
use kb_bridge::config::ConsentPolicy;
use kb_bridge::consent::Decision;
use kb_crypto::{PublicKey, SignatureScheme};
use kb_pki::cms::SignedMessage;
use kb_service::prompter::{
    Answer, ConfirmRequest, ConsentAnswer, ConsentRequest, PinRequest, Prompter, QrRequest, ScriptedPrompter, Seen,
};
use kb_types::Pin;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

fn b64(b: &[u8]) -> String {
    Base64::encode_string(b)
}

fn unb64(v: &Value) -> Vec<u8> {
    Base64::decode_vec(v.as_str().unwrap()).unwrap()
}

fn code(r: Result<Value, ClientError>) -> i32 {
    r.unwrap_err().code().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_lists_and_details() {
    let r = rig().await;
    let c = r.native().await;
    assert_eq!(c.hello().schema_version, 1);
    assert_eq!(c.hello().limits.max_in_flight, 16);
    let d = c.request(c.next_id(), "devices.list", json!({})).await.unwrap();
    assert_eq!(d["devices"][0]["id"], r.key.id.to_string());

    let all = c.request(c.next_id(), "certificates.list", json!({})).await.unwrap();
    assert_eq!(all["certificates"].as_array().unwrap().len(), 2);
    let sign = c.request(c.next_id(), "certificates.list", json!({"usage": "sign"})).await.unwrap();
    let list = sign["certificates"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["thumbprint"], r.key.sign_thumb());
    assert_eq!(list[0]["status"], "valid");
    for (filter, n) in [
        (json!({"issuer_contains": "test root"}), 2),
        (json!({"subject_contains": "张三"}), 2),
        (json!({"subject_contains": "李四"}), 0),
        (json!({"valid_at": 0}), 0),
        (json!({"device": r.key.id.to_string(), "usage": "encrypt"}), 1),
    ] {
        let got = c.request(c.next_id(), "certificates.list", filter.clone()).await.unwrap();
        assert_eq!(got["certificates"].as_array().unwrap().len(), n, "{filter}");
    }
    assert_eq!(code(c.request(c.next_id(), "certificates.list", json!({"device": "pcsc:nope"})).await), 4004);

    let det = c
        .request(c.next_id(), "certificates.get", json!({"certificate": {"thumbprint": r.key.sign_thumb().to_lowercase()}}))
        .await
        .unwrap();
    assert_eq!(unb64(&det["der"]), r.key.sign_cert.der());
    assert!(det["pem"].as_str().unwrap().starts_with("-----BEGIN CERTIFICATE-----"));
    assert_eq!(det["public_key_description"], "SM2 (256 bit)");
    assert!(det["extensions"].as_array().unwrap().iter().any(|e| e["name"] == "keyUsage"));
    let missing = json!({"certificate": {"thumbprint": "00".repeat(20)}});
    assert_eq!(code(c.request(c.next_id(), "certificates.get", missing).await), 4005);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_every_format_and_verify() {
    let r = rig().await;
    r.prompter.push_pin(PIN);
    let c = r.native().await;
    let msg = "投标文件 v1".as_bytes();
    let cert = json!({"thumbprint": r.key.sign_thumb()});

    // Raw over data: an SM2 signature with the default ID, checked with kb-crypto.
    let s =
        c.request(c.next_id(), "sign", json!({"certificate": cert, "input": {"data": b64(msg)}, "format": "raw"})).await.unwrap();
    assert_eq!((s["algorithm"].as_str(), s["hash"].as_str()), (Some("sm2"), Some("sm3")));
    let sig = unb64(&s["signature"]);
    let pk: PublicKey = r.key.sign_cert.public_key().unwrap();
    pk.verify(&SignatureScheme::sm2_default(), msg, &sig).unwrap();
    // Only one PIN prompt: the PIN cache holds it for the next signatures.

    // Raw with another ID, and over a precomputed e.
    let s = c
        .request(
            c.next_id(),
            "sign",
            json!({"certificate": cert, "input": {"data": b64(msg)}, "format": "raw", "sm2_id": "ALICE"}),
        )
        .await
        .unwrap();
    pk.verify(&SignatureScheme::Sm2Sm3 { id: b"ALICE".to_vec() }, msg, &unb64(&s["signature"])).unwrap();
    let e = pk.message_digest(&SignatureScheme::sm2_default(), msg).unwrap();
    let s = c
        .request(c.next_id(), "sign", json!({"certificate": cert, "input": {"digest": b64(&e)}, "format": "raw"}))
        .await
        .unwrap();
    pk.verify(&SignatureScheme::sm2_default(), msg, &unb64(&s["signature"])).unwrap();

    // CMS attached and detached; verified by kb-pki and by the bridge (chain trusted).
    for format in ["cms_attached", "cms_detached"] {
        let s = c
            .request(c.next_id(), "sign", json!({"certificate": cert, "input": {"data": b64(msg)}, "format": format}))
            .await
            .unwrap();
        let der = unb64(&s["signature"]);
        let m = SignedMessage::from_der(&der).unwrap();
        assert_eq!(m.is_detached(), format == "cms_detached");
        m.verify(if m.is_detached() { Some(msg) } else { None }, &[]).unwrap();
        let content = if format == "cms_detached" { json!({"data": b64(msg)}) } else { Value::Null };
        let mut p = json!({"signature": b64(&der), "format": format});
        if !content.is_null() {
            p["content"] = content;
        }
        let v = c.request(c.next_id(), "verify", p).await.unwrap();
        assert_eq!(v["valid"], true, "{v}");
        assert_eq!(v["chain"], "trusted", "{v}");
        assert_eq!(v["signer"]["thumbprint"], r.key.sign_thumb());
        assert!(v["signing_time"].as_i64().unwrap() > 1_700_000_000);
        if format == "cms_detached" {
            let bad = json!({"signature": b64(&der), "format": format, "content": {"data": b64(b"altered")}});
            let v = c.request(c.next_id(), "verify", bad).await.unwrap();
            assert_eq!((v["valid"].as_bool(), v["error"].as_i64()), (Some(false), Some(3021)));
            // The chain was still checked, as asked (check_chain defaults to true).
            assert_eq!(v["chain"], "trusted", "{v}");
            let none = json!({"signature": b64(&der), "format": format});
            assert_eq!(code(c.request(c.next_id(), "verify", none).await), 3023);
        }
    }

    // Raw verify, valid and tampered, with chain unchecked.
    let s =
        c.request(c.next_id(), "sign", json!({"certificate": cert, "input": {"data": b64(msg)}, "format": "raw"})).await.unwrap();
    let v = c
        .request(
            c.next_id(),
            "verify",
            json!({"signature": s["signature"], "format": "raw", "content": {"data": b64(msg)},
                   "certificate": {"der": b64(r.key.sign_cert.der())}, "check_chain": false}),
        )
        .await
        .unwrap();
    assert_eq!((v["valid"].as_bool(), v["chain"].as_str()), (Some(true), Some("not_checked")));
    let v = c
        .request(
            c.next_id(),
            "verify",
            json!({"signature": s["signature"], "format": "raw", "content": {"data": b64(b"other")}, "certificate": cert}),
        )
        .await
        .unwrap();
    assert_eq!((v["valid"].as_bool(), v["error"].as_i64()), (Some(false), Some(2001)));
    assert_eq!(r.prompter.pin_requests().len(), 1, "one PIN prompt, then the cache");
    let pin_req = &r.prompter.pin_requests()[0];
    assert_eq!(pin_req.client, "native:test-tool");

    // Refusals with their codes.
    let enc = json!({"thumbprint": r.key.enc_thumb()});
    let cases = [
        (json!({"certificate": enc, "input": {"data": b64(msg)}, "format": "raw"}), 3008),
        (json!({"certificate": cert, "input": {"data": b64(msg)}, "format": "raw", "hash": "sha256"}), 1002),
        (json!({"certificate": cert, "input": {"digest": b64(&[0; 31])}, "format": "raw"}), 1004),
        (json!({"certificate": cert, "input": {"digest": b64(&e)}, "format": "cms_attached"}), 1004),
        (json!({"certificate": cert, "input": {"data": b64(msg)}, "format": "cms_detached", "sm2_id": "ALICE"}), 1004),
        (json!({"certificate": cert, "input": {"stream": 9}, "format": "raw"}), 5010),
        (json!({"certificate": cert, "input": {"data": b64(msg)}, "format": "raw", "pin": "12345678"}), -32602),
    ];
    for (p, want) in cases {
        assert_eq!(code(c.request(c.next_id(), "sign", p.clone()).await), want, "{p}");
    }
    // Every key use is audited with the client's identity.
    let records = r.audit.records.lock().unwrap().clone();
    assert!(records.iter().any(|a| a.client == "native:test-tool" && a.operation == "sign" && a.ok));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_pin_reports_retries() {
    let r = rig().await;
    r.prompter.push_pin("00000000");
    r.prompter.push_cancel();
    let c = r.native().await;
    let e = c
        .request(
            c.next_id(),
            "sign",
            json!({"certificate": {"thumbprint": r.key.sign_thumb()}, "input": {"data": "AA=="}, "format": "raw"}),
        )
        .await
        .unwrap_err();
    let ClientError::Rpc(o) = e else { panic!("{e}") };
    assert_eq!(o.code, 4001, "{o:?}");
    assert!(o.data.retries_left.is_some());
    let asked = r.prompter.pin_requests();
    assert_eq!(asked.len(), 2);
    assert!(asked[1].previous_wrong);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypt_decrypt_raw_and_envelopes() {
    let r = rig().await;
    r.prompter.push_pin(PIN);
    let c = r.native().await;
    let enc = json!({"thumbprint": r.key.enc_thumb()});
    let price = b"12345678.90";
    for layout in ["asn1", "c1c3c2", "c1c2c3"] {
        let e = c
            .request(
                c.next_id(),
                "encrypt",
                json!({"format": "sm2_raw", "recipients": [{"der": b64(r.key.enc_cert.der())}],
                "input": {"data": b64(price)}, "sm2_layout": layout}),
            )
            .await
            .unwrap();
        let ct = unb64(&e["output"]["data"]);
        if layout != "asn1" {
            assert_eq!(ct[0], 0x04);
            assert_eq!(ct.len(), 1 + 64 + 32 + price.len());
        }
        let d = c
            .request(
                c.next_id(),
                "decrypt",
                json!({"format": "sm2_raw", "certificate": enc, "input": {"data": b64(&ct)}, "sm2_layout": layout}),
            )
            .await
            .unwrap();
        assert_eq!(unb64(&d["output"]["data"]), price);
        assert_eq!(d["certificate"], r.key.enc_thumb());
    }
    // Layout detected when not given (GM/T 0009 DER).
    let e = c
        .request(c.next_id(), "encrypt", json!({"format": "sm2_raw", "recipients": [enc], "input": {"data": b64(price)}}))
        .await
        .unwrap();
    let d = c
        .request(c.next_id(), "decrypt", json!({"format": "sm2_raw", "certificate": enc, "input": {"data": e["output"]["data"]}}))
        .await
        .unwrap();
    assert_eq!(unb64(&d["output"]["data"]), price);

    // Envelope inline, decrypted without naming the certificate; the local key opens it too.
    let bid = "投标报价：壹仟万元整".repeat(100).into_bytes();
    let e = c
        .request(c.next_id(), "encrypt", json!({"format": "cms_envelope", "recipients": [enc], "input": {"data": b64(&bid)}}))
        .await
        .unwrap();
    let env = unb64(&e["output"]["data"]);
    let local = kb_pki::cms::LocalDecrypter::new(r.key.enc_key.clone(), r.key.enc_cert.clone()).unwrap();
    assert_eq!(&kb_pki::cms::envelope::decrypt_bytes(&env, &local).unwrap()[..], &bid[..]);
    let d = c.request(c.next_id(), "decrypt", json!({"format": "cms_envelope", "input": {"data": b64(&env)}})).await.unwrap();
    assert_eq!(unb64(&d["output"]["data"]), bid);

    // Refusals.
    let mut tampered = r.key.enc_cert.public_key().unwrap().encrypt(price, kb_crypto::rsa::RsaPadding::Pkcs1v15).unwrap();
    tampered = kb_crypto::sm2::Sm2Ciphertext::from_der(&tampered).unwrap().encode(kb_crypto::sm2::CiphertextLayout::C1C3C2, true);
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    let sign = json!({"thumbprint": r.key.sign_thumb()});
    let cases = [
        ("encrypt", json!({"format": "sm2_raw", "recipients": [sign], "input": {"data": "AA=="}}), 3008),
        ("encrypt", json!({"format": "sm2_raw", "recipients": [enc, enc], "input": {"data": "AA=="}}), 1004),
        ("encrypt", json!({"format": "sm2_raw", "recipients": [enc], "input": {"data": b64(&[7; 1025])}}), 1005),
        ("encrypt", json!({"format": "cms_envelope", "recipients": [], "input": {"data": "AA=="}}), 1004),
        ("encrypt", json!({"format": "cms_envelope", "recipients": [{"der": "AAAA"}], "input": {"data": "AA=="}}), 3001),
        ("decrypt", json!({"format": "sm2_raw", "input": {"data": "AA=="}}), 1004),
        ("decrypt", json!({"format": "sm2_raw", "certificate": enc, "input": {"data": b64(&[4; 120])}}), 1001),
        (
            "decrypt",
            json!({"format": "sm2_raw", "certificate": enc, "input": {"data": b64(&tampered)}, "sm2_layout": "c1c3c2"}),
            2002,
        ),
        ("decrypt", json!({"format": "cms_envelope", "input": {"data": b64(b"not an envelope")}}), 3020),
    ];
    for (m, p, want) in cases {
        assert_eq!(code(c.request(c.next_id(), m, p.clone()).await), want, "{m} {p}");
    }
    // An envelope for someone else: no present certificate matches.
    let other_key = kb_crypto::PrivateKey::generate(kb_types::Algorithm::Sm2).unwrap();
    let other = r.ca.issue("CN=别人", &other_key, kb_types::KeyUsage::Encrypt);
    let env = kb_pki::cms::envelope::encrypt_bytes(b"x", &[other], &Default::default()).unwrap();
    assert_eq!(
        code(c.request(c.next_id(), "decrypt", json!({"format": "cms_envelope", "input": {"data": b64(&env)}})).await),
        3022
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_envelope_round_trip_with_progress() {
    let r = rig().await;
    r.prompter.push_pin(PIN);
    let c = Arc::new(r.native().await);
    let mut events = c.events();
    let data: Vec<u8> = (0..6 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    // Encrypt: upload → envelope → download.
    let up = c.open_upload(Some(data.len() as u64)).await.unwrap();
    let (down, mut rx) = c.open_download().await.unwrap();
    let id = c.next_id();
    let call = c
        .begin(id.clone(), "encrypt", json!({"format": "cms_envelope", "recipients": [{"thumbprint": r.key.enc_thumb()}], "input": {"stream": up.0}, "output": {"stream": down.0}}))
        .await
        .unwrap();
    let call = tokio::spawn(call.response());
    let sender = {
        let c = Arc::clone(&c);
        let data = data.clone();
        tokio::spawn(async move { c.upload(up, &data[..]).await })
    };
    let mut env = Vec::new();
    while let Some(chunk) = rx.recv().await {
        env.extend_from_slice(&chunk);
    }
    assert_eq!(sender.await.unwrap().unwrap(), data.len() as u64);
    let res = call.await.unwrap().unwrap();
    assert_eq!(res["output"]["stream"], down.0);
    assert_eq!(res["output"]["length"].as_u64(), Some(env.len() as u64));
    // Progress events come before the response (so they are all here now), and count
    // the upload stream only: one series, with the declared total.
    let mut progress = Vec::new();
    loop {
        match events.try_recv() {
            Ok(n) => {
                if let kb_bridge_protocol::Event::Progress { request, done, total } = n.event
                    && request == id
                {
                    progress.push((done, total));
                }
            }
            Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) => continue,
            Err(_) => break,
        }
    }
    assert!(!progress.is_empty(), "progress events for the encrypting request");
    assert!(progress.iter().all(|(_, t)| *t == Some(data.len() as u64)), "{progress:?}");
    assert!(progress.windows(2).all(|w| w[0].0 < w[1].0), "{progress:?}");
    // The DER envelope opens with the local key.
    let local = kb_pki::cms::LocalDecrypter::new(r.key.enc_key.clone(), r.key.enc_cert.clone()).unwrap();
    assert_eq!(&kb_pki::cms::envelope::decrypt_bytes(&env, &local).unwrap()[..], &data[..]);

    // Decrypt through the bridge, streamed both ways.
    let up = c.open_upload(Some(env.len() as u64)).await.unwrap();
    let (down, mut rx) = c.open_download().await.unwrap();
    let call = c
        .begin(c.next_id(), "decrypt", json!({"format": "cms_envelope", "input": {"stream": up.0}, "output": {"stream": down.0}}))
        .await
        .unwrap();
    let call = tokio::spawn(call.response());
    let sender = {
        let c = Arc::clone(&c);
        let env = env.clone();
        tokio::spawn(async move { c.upload(up, &env[..]).await })
    };
    let mut plain = Vec::new();
    while let Some(chunk) = rx.recv().await {
        plain.extend_from_slice(&chunk);
    }
    sender.await.unwrap().unwrap();
    let res = call.await.unwrap().unwrap();
    assert_eq!(res["certificate"], r.key.enc_thumb());
    assert_eq!(plain, data);

    // Sign a stream (detached): the signature verifies over the same bytes.
    let up = c.open_upload(None).await.unwrap();
    let call = c
        .begin(
            c.next_id(),
            "sign",
            json!({"certificate": {"thumbprint": r.key.sign_thumb()}, "input": {"stream": up.0}, "format": "cms_detached"}),
        )
        .await
        .unwrap();
    let call = tokio::spawn(call.response());
    c.upload(up, &data[..]).await.unwrap();
    let s = call.await.unwrap().unwrap();
    SignedMessage::from_der(&unb64(&s["signature"])).unwrap().verify(Some(&data), &[]).unwrap();
    // The streams were freed with their requests.
    assert_eq!(code(c.request(c.next_id(), "stream.close", json!({"stream": up.0})).await), 5010);
}

/// `encrypt` with a `signer`: the envelope and a detached signature over the same
/// content in one pass (the content is uploaded once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_envelope_in_one_pass() {
    let r = rig().await;
    r.prompter.push_pin(PIN);
    let c = Arc::new(r.native().await);
    let local = kb_pki::cms::LocalDecrypter::new(r.key.enc_key.clone(), r.key.enc_cert.clone()).unwrap();
    let signer = json!({"thumbprint": r.key.sign_thumb()});
    let enc = json!({"thumbprint": r.key.enc_thumb()});
    // Streamed, an odd size past several read chunks; no length announced (BER).
    let data: Vec<u8> = (0..(2 * 1024 * 1024 + 5u32)).map(|i| (i % 241) as u8).collect();
    let up = c.open_upload(None).await.unwrap();
    let (down, mut rx) = c.open_download().await.unwrap();
    let call = c
        .begin(
            c.next_id(),
            "encrypt",
            json!({"format": "cms_envelope", "recipients": [enc], "input": {"stream": up.0}, "output": {"stream": down.0}, "signer": signer}),
        )
        .await
        .unwrap();
    let call = tokio::spawn(call.response());
    let sender = {
        let (c, data) = (Arc::clone(&c), data.clone());
        tokio::spawn(async move { c.upload(up, &data[..]).await })
    };
    let mut env = Vec::new();
    while let Some(chunk) = rx.recv().await {
        env.extend_from_slice(&chunk);
    }
    sender.await.unwrap().unwrap();
    let res = call.await.unwrap().unwrap();
    assert_eq!(res["output"]["length"].as_u64(), Some(env.len() as u64));
    assert_eq!(&kb_pki::cms::envelope::decrypt_bytes(&env, &local).unwrap()[..], &data[..]);
    let sig = SignedMessage::from_der(&unb64(&res["signature"])).unwrap();
    assert!(sig.is_detached());
    let reports = sig.verify(Some(&data), &[]).unwrap();
    assert_eq!(reports[0].signer.der(), r.key.sign_cert.der());
    assert!(sig.verify(Some(&data[1..]), &[]).is_err(), "the signature covers exactly the content");

    // Inline, and without a signer there is no signature.
    let bid = b"price 100".to_vec();
    let e = c
        .request(
            c.next_id(),
            "encrypt",
            json!({"format": "cms_envelope", "recipients": [enc], "input": {"data": b64(&bid)}, "signer": signer}),
        )
        .await
        .unwrap();
    assert_eq!(&kb_pki::cms::envelope::decrypt_bytes(&unb64(&e["output"]["data"]), &local).unwrap()[..], &bid[..]);
    SignedMessage::from_der(&unb64(&e["signature"])).unwrap().verify(Some(&bid), &[]).unwrap();
    let e = c
        .request(c.next_id(), "encrypt", json!({"format": "cms_envelope", "recipients": [enc], "input": {"data": b64(&bid)}}))
        .await
        .unwrap();
    assert!(e.get("signature").is_none(), "{e}");

    // Refusals: a signer for sm2_raw; an encryption certificate as the signer.
    let cases = [
        (json!({"format": "sm2_raw", "recipients": [enc], "input": {"data": "AA=="}, "signer": signer}), 1004),
        (json!({"format": "cms_envelope", "recipients": [enc], "input": {"data": "AA=="}, "signer": enc}), 3008),
    ];
    for (p, want) in cases {
        assert_eq!(code(c.request(c.next_id(), "encrypt", p.clone()).await), want, "{p}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_rules() {
    let r = rig().await;
    let c = r.native().await;
    let up = c.open_upload(None).await.unwrap();
    // A frame out of sequence fails the stream; the request that reads it learns why.
    let f = kb_bridge_protocol::frame::Frame { stream: up, sequence: 3, flags: 0, payload: b"x" }.encode();
    // Messages on a connection are handled in order: the frame is seen before the request.
    c.send_binary(f).await.unwrap();
    let p = json!({"format": "cms_envelope", "recipients": [{"thumbprint": r.key.enc_thumb()}], "input": {"stream": up.0}});
    assert_eq!(code(c.request(c.next_id(), "encrypt", p).await), 5011);
    // An ABORT frame cancels the request reading the stream.
    let up = c.open_upload(None).await.unwrap();
    let p = json!({"format": "cms_envelope", "recipients": [{"thumbprint": r.key.enc_thumb()}], "input": {"stream": up.0}});
    let fut = c.request(c.next_id(), "encrypt", p);
    let abort = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let f = kb_bridge_protocol::frame::Frame {
            stream: up,
            sequence: 0,
            flags: kb_bridge_protocol::frame::FLAG_ABORT,
            payload: b"",
        };
        c.send_binary(f.encode()).await.unwrap();
    };
    let (res, ()) = tokio::join!(fut, abort);
    assert_eq!(code(res), 5009);
    // Download and upload directions are not interchangeable.
    let (down, _rx) = c.open_download().await.unwrap();
    let p = json!({"format": "cms_envelope", "recipients": [{"thumbprint": r.key.enc_thumb()}], "input": {"stream": down.0}});
    assert_eq!(code(c.request(c.next_id(), "encrypt", p).await), 1004);
    // Inline output larger than a message must use a stream.
    let up = c.open_upload(None).await.unwrap();
    let p = json!({"format": "cms_envelope", "recipients": [{"thumbprint": r.key.enc_thumb()}], "input": {"stream": up.0}});
    let big = vec![0u8; 2 << 20];
    let (res, sent) = tokio::join!(c.request(c.next_id(), "encrypt", p), c.upload(up, &big[..]));
    assert_eq!(code(res), 1005);
    let _ = sent;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_follow_the_media() {
    let r = rig().await;
    let c = r.native().await;
    let mut ev = c.events();
    let s = c.request(c.next_id(), "subscribe", json!({"events": ["device.added", "device.removed"]})).await.unwrap();
    assert_eq!(s["events"], json!(["device.added", "device.removed"]));
    let next = |ev: &mut tokio::sync::broadcast::Receiver<kb_bridge_protocol::Notification>| {
        let ev = ev.resubscribe();
        async move {
            let mut ev = ev;
            tokio::time::timeout(Duration::from_secs(60), ev.recv()).await.unwrap().unwrap().event
        }
    };
    // A new subscriber hears the media present first.
    let first = tokio::time::timeout(Duration::from_secs(60), ev.recv()).await.unwrap().unwrap();
    assert!(matches!(first.event, kb_bridge_protocol::Event::DeviceAdded { ref device } if device.id == r.key.id));
    let second = provision(&r.transport, &r.ca, "0002");
    let waiter = next(&mut ev);
    r.transport.insert(second.token.clone());
    assert!(matches!(waiter.await, kb_bridge_protocol::Event::DeviceAdded { device } if device.id == second.id));
    // The new medium's certificates are listed at once.
    let l = c.request(c.next_id(), "certificates.list", json!({"device": second.id.to_string()})).await.unwrap();
    assert_eq!(l["certificates"].as_array().unwrap().len(), 2);
    let waiter = next(&mut ev);
    second.token.set_pulled(true);
    r.transport.remove(&second.id);
    assert!(matches!(waiter.await, kb_bridge_protocol::Event::DeviceRemoved { device } if device == second.id));
    let u = c.request(c.next_id(), "unsubscribe", json!({"events": ["device.added"]})).await.unwrap();
    assert_eq!(u["events"], json!(["device.removed"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_and_idle_timeout() {
    let r = rig_with(|c| c.request_timeout = Duration::from_secs(2), None).await;
    r.prompter.push_pin(PIN);
    let c = r.native().await;
    let cert = json!({"thumbprint": r.key.sign_thumb()});
    // Warm the PIN cache.
    c.request(c.next_id(), "sign", json!({"certificate": cert, "input": {"data": "AA=="}, "format": "raw"})).await.unwrap();

    // A medium that does not answer: the request fails with 5008 after the idle timeout.
    let pause = r.key.token.pause_next("sign_digest");
    let res = c.request(c.next_id(), "sign", json!({"certificate": cert, "input": {"data": "AA=="}, "format": "raw"})).await;
    assert_eq!(code(res), 5008);
    let pause = tokio::task::spawn_blocking(move || {
        assert!(pause.wait_reached(Duration::from_secs(60)), "the timed-out request was stuck on the medium");
        pause
    })
    .await
    .unwrap();
    pause.release();

    // Cancel by id.
    let pause = r.key.token.pause_next("sign_digest");
    let id = kb_bridge_protocol::Id::String("slow-1".into());
    let fut = c.request(id.clone(), "sign", json!({"certificate": cert, "input": {"data": "AA=="}, "format": "raw"}));
    let cancel = async {
        // Keep the handle: dropping it would let the medium answer.
        let pause = tokio::task::spawn_blocking(move || {
            assert!(pause.wait_reached(Duration::from_secs(60)));
            pause
        })
        .await
        .unwrap();
        let r = c.request(c.next_id(), "cancel", json!({"id": "slow-1"})).await.unwrap();
        (r, pause)
    };
    let (res, (r, pause)) = tokio::join!(fut, cancel);
    assert_eq!(r["cancelled"], true);
    assert_eq!(code(res), 5009);
    pause.release();
    let r2 = c.request(c.next_id(), "cancel", json!({"id": "nothing"})).await.unwrap();
    assert_eq!(r2["cancelled"], false);
}

/// Takes its time to answer, like a user typing a PIN.
struct SlowUser(Arc<ScriptedPrompter>, Duration);

impl Prompter for SlowUser {
    fn ask_pin(&self, req: &PinRequest, ctx: &kb_token::OpContext) -> kb_service::Result<Pin> {
        std::thread::sleep(self.1);
        self.0.ask_pin(req, ctx)
    }
    fn confirm(&self, req: &ConfirmRequest) -> kb_service::Result<bool> {
        self.0.confirm(req)
    }
    fn show_qr(&self, req: &QrRequest) -> kb_service::Result<()> {
        self.0.show_qr(req)
    }
    fn notify(&self, m: &str) {
        self.0.notify(m)
    }
    fn consent(&self, req: &ConsentRequest) -> kb_service::Result<ConsentAnswer> {
        std::thread::sleep(self.1);
        self.0.consent(req)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_with_the_user_does_not_count() {
    let wrap: Wrap = Box::new(|p| Arc::new(SlowUser(p, Duration::from_secs(4))));
    let r = rig_with(|c| c.request_timeout = Duration::from_secs(1), Some(wrap)).await;
    r.prompter.push_pin(PIN);
    let c = r.native().await;
    let res = c
        .request(
            c.next_id(),
            "sign",
            json!({"certificate": {"thumbprint": r.key.sign_thumb()}, "input": {"data": "AA=="}, "format": "raw"}),
        )
        .await;
    assert!(res.is_ok(), "{res:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consent_for_web_origins() {
    let r = rig().await;
    let origin = "https://bid.example.cn";
    r.prompter.push(Answer::Consent(ConsentAnswer::AllowAlways));
    let c = r.web(origin).await.unwrap();
    c.request(c.next_id(), "devices.list", json!({})).await.unwrap();
    assert_eq!(r.grants.decision(origin), Some(Decision::Allow));
    // A second page load from the same origin is not asked again.
    let c2 = r.web(origin).await.unwrap();
    c2.request(c2.next_id(), "certificates.list", json!({})).await.unwrap();
    let consents: Vec<_> = r.prompter.seen().into_iter().filter(|s| matches!(s, Seen::Consent(_))).collect();
    assert_eq!(consents.len(), 1);
    // Signing still needs the PIN, and the audit names the origin.
    r.prompter.push_pin(PIN);
    c2.request(
        c2.next_id(),
        "sign",
        json!({"certificate": {"thumbprint": r.key.sign_thumb()}, "input": {"data": "AA=="}, "format": "raw"}),
    )
    .await
    .unwrap();
    assert!(r.audit.records.lock().unwrap().iter().any(|a| a.client == origin && a.operation == "sign"));

    // Another origin: denied → 5004, and the consent dialog named what it wanted.
    r.prompter.push(Answer::Consent(ConsentAnswer::Deny));
    let d = r.web("https://other.example").await.unwrap();
    let res = d
        .request(
            d.next_id(),
            "sign",
            json!({"certificate": {"thumbprint": r.key.sign_thumb()}, "input": {"data": "AA=="}, "format": "raw"}),
        )
        .await;
    assert_eq!(code(res), 5004);
    let last = r.prompter.seen().into_iter().rev().find_map(|s| match s {
        Seen::Consent(c) => Some(c),
        _ => None,
    });
    let last = last.unwrap();
    assert_eq!((last.client.as_str(), last.operation.as_str()), ("https://other.example", "sign"));
    assert!(last.certificate.unwrap().contains(&r.key.sign_thumb()));

    // Revoked → asked again; on the deny list → refused at the handshake.
    r.grants.revoke(origin).unwrap();
    r.grants.set("https://evil.example", Decision::Deny).unwrap();
    let e = r.web("https://evil.example").await.unwrap_err();
    assert_eq!(e.code(), Some(5002));
    r.prompter.push(Answer::Consent(ConsentAnswer::Deny));
    let c3 = r.web(origin).await.unwrap();
    assert_eq!(code(c3.request(c3.next_id(), "devices.list", json!({})).await), 5004);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_only_policy_never_prompts() {
    let r = rig_with(|c| c.consent = ConsentPolicy::GrantsOnly, None).await;
    // Nothing to ask: an origin without a grant is refused at the handshake.
    assert_eq!(r.web("http://localhost:5173").await.unwrap_err().code(), Some(5002));
    r.grants.set("http://localhost:5173", Decision::Allow).unwrap();
    let c = r.web("http://localhost:5173").await.unwrap();
    c.request(c.next_id(), "devices.list", json!({})).await.unwrap();
    assert!(r.prompter.seen().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn medium_pulled_mid_signature_and_service_goes_on() {
    let r = rig().await;
    r.prompter.push_pin(PIN);
    let c = r.native().await;
    let second = provision(&r.transport, &r.ca, "0002");
    r.transport.insert(second.token.clone());
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while r.manager.devices().len() != 2 {
        assert!(std::time::Instant::now() < deadline, "the second medium never appeared");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pause = r.key.token.pause_next("login");
    let cert = json!({"thumbprint": r.key.sign_thumb()});
    let fut = c.request(c.next_id(), "sign", json!({"certificate": cert, "input": {"data": "AA=="}, "format": "raw"}));
    let pull = async {
        let t = r.key.token.clone();
        tokio::task::spawn_blocking(move || {
            assert!(pause.wait_reached(Duration::from_secs(60)));
            t.set_pulled(true);
            pause.release();
        })
        .await
        .unwrap();
    };
    let (res, ()) = tokio::join!(fut, pull);
    assert_eq!(code(res), 4003);
    // The other medium still signs.
    r.prompter.push_pin(PIN);
    let t2 = second.sign_thumb();
    c.request(c.next_id(), "sign", json!({"certificate": {"thumbprint": t2}, "input": {"data": "AA=="}, "format": "raw"}))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_after_the_server_closed_fail_instead_of_hanging() {
    let r = rig().await;
    let origin = "https://bid.example.cn";
    r.grants.set(origin, Decision::Allow).unwrap();
    let c = r.web(origin).await.unwrap();
    c.request(c.next_id(), "devices.list", json!({})).await.unwrap();
    r.grants.revoke(origin).unwrap(); // the server drops the site's connection
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let res = tokio::time::timeout(Duration::from_secs(60), c.request(c.next_id(), "devices.list", json!({}))).await;
        match res.expect("a call on a closed connection hung") {
            Err(ClientError::Closed) => break,
            Ok(_) => assert!(std::time::Instant::now() < deadline, "the revoked site is still served"),
            Err(e) => panic!("{e}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // And every call after that, at once.
    let later = tokio::time::timeout(Duration::from_secs(60), c.request(c.next_id(), "devices.list", json!({}))).await;
    assert!(matches!(later.expect("a call on a closed connection hung"), Err(ClientError::Closed)));
}

/// Wait (off the async runtime) until the scripted prompter saw `n` withdrawn dialogs.
async fn withdrawn(p: &Arc<ScriptedPrompter>, n: usize) -> bool {
    let p = Arc::clone(p);
    tokio::task::spawn_blocking(move || {
        p.wait_seen(Duration::from_secs(30), |s| s.iter().filter(|x| matches!(x, Seen::Withdrawn(_))).count() >= n)
    })
    .await
    .unwrap()
}

async fn held_open(p: &Arc<ScriptedPrompter>) -> bool {
    let p = Arc::clone(p);
    tokio::task::spawn_blocking(move || p.wait_held_open(Duration::from_secs(30))).await.unwrap()
}

/// Wait until the audit log holds `n` records of a cancelled signature.
async fn cancelled_signatures(r: &Rig, n: usize, code: kb_types::ErrorCode) -> Vec<kb_service::audit::AuditRecord> {
    for _ in 0..3000 {
        let recs: Vec<_> =
            r.audit.records.lock().unwrap().iter().filter(|x| x.operation == "sign" && x.error == Some(code)).cloned().collect();
        if recs.len() >= n {
            return recs;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no {n} audit records of {code:?}");
}

/// Issue 11 (a) and (b): a bridge client cancelling, or closing its connection, while
/// KeyBridge's PIN dialog is open withdraws the dialog; a PIN typed afterwards goes
/// nowhere; nothing reaches the medium; the audit records the cancellation. The client
/// heard `operation.status` `waiting_for_pin` meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_and_closed_connection_withdraw_the_pin_dialog() {
    let r = rig().await;
    let sign = json!({"certificate": {"thumbprint": r.key.sign_thumb()}, "input": {"data": "AA=="}, "format": "raw"});

    // 1. cancel
    r.prompter.push(Answer::Hold);
    let c = r.native().await;
    let mut events = c.events();
    let call = c.begin(kb_bridge_protocol::Id::String("held-1".into()), "sign", sign.clone()).await.unwrap();
    assert!(held_open(&r.prompter).await, "the PIN dialog never opened");
    let status = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if let Ok(n) = events.recv().await
                && let kb_bridge_protocol::Event::OperationStatus { request, status, .. } = n.event
            {
                return (request, status);
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(status, (kb_bridge_protocol::Id::String("held-1".into()), kb_bridge_protocol::OperationState::WaitingForPin));
    let cancelled = c.request(c.next_id(), "cancel", json!({"id": "held-1"})).await.unwrap();
    assert_eq!(cancelled["cancelled"], true);
    assert_eq!(code(call.response().await), 5009);
    assert!(withdrawn(&r.prompter, 1).await, "the PIN dialog was not withdrawn");
    assert!(!r.prompter.answer_open(Answer::Pin(Pin::new(PIN))), "a PIN typed after the cancel must go nowhere");
    let recs = cancelled_signatures(&r, 1, kb_types::ErrorCode::Cancelled).await;
    assert_eq!(recs[0].client, "native:test-tool");

    // 2. the connection closes
    r.prompter.push(Answer::Hold);
    let c2 = r.native().await;
    let call = c2.begin(c2.next_id(), "sign", sign.clone()).await.unwrap();
    assert!(held_open(&r.prompter).await);
    drop(call);
    drop(c2);
    assert!(withdrawn(&r.prompter, 2).await, "closing the connection did not withdraw the dialog");
    assert!(!r.prompter.answer_open(Answer::Pin(Pin::new(PIN))));
    cancelled_signatures(&r, 2, kb_types::ErrorCode::Cancelled).await;

    assert_eq!(r.key.token.calls("login"), 0, "no PIN reached the medium");
    assert_eq!(r.key.token.calls("sign_digest"), 0, "nothing was signed");
    // The bridge still serves: a PIN typed in time signs.
    r.prompter.push_pin(PIN);
    c.request(c.next_id(), "sign", sign).await.unwrap();
}

/// Issue 11 (b), the deadline: a request's operation deadline withdraws the open PIN
/// dialog and fails it with `4016 operation_timed_out`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operation_deadline_withdraws_the_pin_dialog() {
    let r = rig_with(|c| c.operation_deadline = Duration::from_millis(500), None).await;
    r.prompter.push(Answer::Hold);
    let c = r.native().await;
    let sign = json!({"certificate": {"thumbprint": r.key.sign_thumb()}, "input": {"data": "AA=="}, "format": "raw"});
    assert_eq!(code(c.request(c.next_id(), "sign", sign).await), 4016);
    assert!(withdrawn(&r.prompter, 1).await);
    assert!(!r.prompter.answer_open(Answer::Pin(Pin::new(PIN))));
    assert_eq!(r.key.token.calls("sign_digest"), 0);
    cancelled_signatures(&r, 1, kb_types::ErrorCode::OperationTimedOut).await;
}

/// Link state over the bridge: `device.offline` / `device.online` reach subscribers,
/// `devices.list` names the offline medium, and a signature on it fails at once with
/// `4015 medium_offline`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_media_are_listed_and_refused() {
    let r = rig().await;
    let c = r.native().await;
    let mut events = c.events();
    c.request(c.next_id(), "subscribe", json!({"events": ["device.offline", "device.online"]})).await.unwrap();
    // The bridge knows the medium's certificates from before it went out of reach.
    let before = c.request(c.next_id(), "certificates.list", json!({})).await.unwrap();
    r.transport.go_offline(&r.key.id);
    // Read from the receiver subscribed before the change (a fresh `resubscribe()` here
    // would miss an event that had already arrived).
    async fn next(events: &mut tokio::sync::broadcast::Receiver<kb_bridge_protocol::Notification>) -> kb_bridge_protocol::Event {
        tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                if let Ok(n) = events.recv().await
                    && matches!(
                        n.event,
                        kb_bridge_protocol::Event::DeviceOffline { .. } | kb_bridge_protocol::Event::DeviceOnline { .. }
                    )
                {
                    return n.event;
                }
            }
        })
        .await
        .unwrap()
    }
    let ev = next(&mut events).await;
    assert_eq!(ev, kb_bridge_protocol::Event::DeviceOffline { device: r.key.id.clone() });
    let list = c.request(c.next_id(), "devices.list", json!({})).await.unwrap();
    assert_eq!(list["offline"], json!([r.key.id.to_string()]));
    let during = c.request(c.next_id(), "certificates.list", json!({})).await.unwrap();
    assert_eq!(during, before, "an offline medium's known certificates stay listed");
    let sign = json!({"certificate": {"thumbprint": r.key.sign_thumb()}, "input": {"data": "AA=="}, "format": "raw"});
    assert_eq!(code(c.request(c.next_id(), "sign", sign.clone()).await), 4015);
    let mut events = c.events();
    r.transport.go_online(&r.key.id);
    assert_eq!(next(&mut events).await, kb_bridge_protocol::Event::DeviceOnline { device: r.key.id.clone() });
    r.prompter.push_pin(PIN);
    c.request(c.next_id(), "sign", sign).await.unwrap();
}

/// `operation.status` `working` ends a wait (for the PIN, for the medium): after the
/// PIN dialog the client hears it; a signature with the PIN cached waited for nothing
/// and is simply answered, without a status message per request (issue 18: one
/// message, not two, per signature).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn working_is_sent_only_after_a_wait() {
    let r = rig().await;
    r.prompter.push_pin(PIN);
    let c = r.native().await;
    let mut events = c.events();
    let sign = json!({"certificate": {"thumbprint": r.key.sign_thumb()}, "input": {"data": "AA=="}, "format": "raw"});
    let statuses = |events: &mut tokio::sync::broadcast::Receiver<kb_bridge_protocol::Notification>| {
        let mut v = Vec::new();
        while let Ok(n) = events.try_recv() {
            if let kb_bridge_protocol::Event::OperationStatus { request, status, .. } = n.event {
                v.push((request, status));
            }
        }
        v
    };
    // Statuses are queued before the response on the same connection, and the client
    // reads in order: they have all arrived once the response has.
    let first = c.next_id();
    c.request(first.clone(), "sign", sign.clone()).await.unwrap();
    use kb_bridge_protocol::OperationState::{WaitingForPin, Working};
    assert_eq!(statuses(&mut events), vec![(first.clone(), WaitingForPin), (first, Working)]);
    c.request(c.next_id(), "sign", sign).await.unwrap();
    assert_eq!(statuses(&mut events), vec![], "a signature with the PIN cached waited for nothing");
}

/// A Rust client whose application stops reading a download: the client holds a bounded
/// queue (it stops reading the socket instead of buffering), the bridge lets the
/// connection go at its send timeout, the stream then ends for the client instead of
/// hanging, and everyone else is still served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_a_download_is_let_go() {
    let r = rig_with(|c| c.send_timeout = Duration::from_secs(2), None).await;
    let c = Arc::new(r.native().await);
    let total = 256u64 << 20; // far more than every queue and socket buffer on the way
    let up = c.open_upload(Some(total)).await.unwrap();
    let (down, mut rx) = c.open_download().await.unwrap();
    let call = c
        .begin(
            c.next_id(),
            "encrypt",
            json!({"format": "cms_envelope", "recipients": [{"thumbprint": r.key.enc_thumb()}], "input": {"stream": up.0}, "output": {"stream": down.0}}),
        )
        .await
        .unwrap();
    let sender = {
        let c = Arc::clone(&c);
        tokio::spawn(async move { c.upload(up, tokio::io::AsyncReadExt::take(tokio::io::repeat(7), total)).await })
    };
    // Nobody reads `rx`. The upload stops moving once every queue is full and fails
    // when the bridge hangs up.
    let sent = tokio::time::timeout(Duration::from_secs(120), sender).await.expect("the upload hung").unwrap();
    assert!(sent.is_err(), "the bridge let the connection go");
    // Now the application reads again: what was queued arrives, then the stream ends.
    let mut got = 0u64;
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(60), rx.recv()).await.expect("the stream hung") {
        got += chunk.len() as u64;
    }
    assert!(got < total, "the envelope was cut short ({got} bytes)");
    assert!(call.response().await.is_err());
    assert!(matches!(c.request(c.next_id(), "devices.list", json!({})).await, Err(ClientError::Closed)));
    let other = r.native().await;
    other.request(other.next_id(), "devices.list", json!({})).await.unwrap();
}
