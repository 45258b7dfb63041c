//! APDU transcripts stored as data (`tests/vectors/apdu/*.json`), replayed against a
//! [`VirtualCard`] and checked byte for byte.
//!
//! Each file is one card session: `calls` in order, each with the command to build (a
//! constructor name and its arguments), the logical APDU it must encode to, the `wire`
//! exchanges the card sees and answers (after chaining / GET RESPONSE / 6Cxx handling),
//! and the expected final status, data, token error (by stable code name) and TLV content.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kb_apdu::tlv::{self, Tag, Tlv};
use kb_apdu::{ApduError, CardBackend, CardStatus, Command, SendOptions, VirtualCard, send_with};
use kb_types::{HasErrorCode, Pin};
use serde_json::Value;
use std::path::PathBuf;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/vectors/apdu")
}

fn hx(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().unwrap_or_else(|| panic!("not a hex string: {v}"))).unwrap()
}

fn byte(v: &Value) -> u8 {
    let b = hx(v);
    assert_eq!(b.len(), 1, "{v}");
    b[0]
}

fn word(v: &Value) -> u16 {
    let b = hx(v);
    assert_eq!(b.len(), 2, "{v}");
    u16::from_be_bytes([b[0], b[1]])
}

fn pin(v: &Value) -> Pin {
    Pin::new(v.as_str().unwrap())
}

fn build(c: &Value) -> Command {
    let a = |k: &str| &c[k];
    match c["build"].as_str().unwrap() {
        "select_aid" => Command::select_aid(&hx(a("aid"))),
        "get_data" => Command::get_data(word(a("tag"))),
        "get_response" => Command::get_response(a("ne").as_u64().unwrap() as usize),
        "verify" => Command::verify(byte(a("p2")), &pin(a("pin"))),
        "verify_status" => Command::verify_status(byte(a("p2"))),
        "change_reference_data" => Command::change_reference_data(byte(a("p2")), &pin(a("old")), &pin(a("new"))),
        "reset_retry_counter" => Command::reset_retry_counter(byte(a("p2")), &pin(a("code")), &pin(a("new"))),
        "compute_digital_signature" => Command::compute_digital_signature(&hx(a("data"))),
        "decipher" => Command::decipher(&hx(a("data"))),
        "generate_asymmetric_key_pair" => Command::generate_asymmetric_key_pair(byte(a("p1")), &hx(a("crt"))),
        "put_data" => Command::put_data(word(a("tag")), &hx(a("data"))),
        "read_binary" => Command::read_binary(a("offset").as_u64().unwrap() as u16, a("ne").as_u64().unwrap() as usize).unwrap(),
        "update_binary" => Command::update_binary(a("offset").as_u64().unwrap() as u16, &hx(a("data"))).unwrap(),
        other => panic!("unknown builder {other}"),
    }
}

fn replay(name: &str, doc: &Value) -> usize {
    let opts =
        SendOptions { extended_length: doc["options"]["extended_length"].as_bool().unwrap_or(false), ..SendOptions::default() };
    let calls = doc["calls"].as_array().unwrap();
    let mut steps = Vec::new();
    for call in calls {
        for w in call["wire"].as_array().unwrap() {
            steps.push((hx(&w["c"]), hx(&w["r"])));
        }
    }
    let mut card = VirtualCard::from_transcript(steps.clone());
    {
        let mut tx = card.transaction().unwrap();
        for (i, call) in calls.iter().enumerate() {
            let at = format!("{name} call {i}");
            let cmd = build(&call["command"]);
            assert_eq!(hex::encode_upper(cmd.to_bytes().unwrap()), call["apdu"].as_str().unwrap(), "{at}: logical APDU");
            let resp = send_with(tx.as_mut(), &cmd, &opts).unwrap_or_else(|e| panic!("{at}: {e}"));
            let expect = &call["expect"];
            assert_eq!(resp.status().0, word(&expect["sw"]), "{at}: status");
            assert_eq!(hex::encode_upper(resp.data()), expect["data"].as_str().unwrap(), "{at}: data");
            match expect["token_error"].as_str() {
                None => assert!(resp.status().is_ok(), "{at}: an error status needs token_error"),
                Some(code) => {
                    let e = resp.clone().into_data().unwrap_err();
                    assert_eq!(e.code().name(), code, "{at}: {e}");
                    if let Some(n) = expect["retries_left"].as_u64() {
                        let tries = match e {
                            ApduError::Status(sw) => sw.status(),
                            _ => CardStatus::Other,
                        };
                        assert_eq!(tries, CardStatus::WrongPin { retries_left: n as u8 }, "{at}");
                    }
                }
            }
            if let Some(finds) = expect["find"].as_array() {
                let tlvs = Tlv::parse_all(resp.data()).unwrap();
                assert_eq!(tlv::encode_all(&tlvs).unwrap(), resp.data(), "{at}: TLV re-encoding");
                for f in finds {
                    let tag = Tag(u32::from_str_radix(f["tag"].as_str().unwrap(), 16).unwrap());
                    let found = tlv::find(&tlvs, tag).unwrap_or_else(|| panic!("{at}: no tag {tag:?}"));
                    assert_eq!(hex::encode_upper(found.value()), f["value"].as_str().unwrap(), "{at}: {tag:?}");
                }
            }
        }
    }
    // Byte for byte: the card saw exactly the wire commands, all of them.
    let seen: Vec<String> = card.received().iter().map(hex::encode_upper).collect();
    let want: Vec<String> = steps.iter().map(|(c, _)| hex::encode_upper(c)).collect();
    assert_eq!(seen, want, "{name}: wire commands");
    calls.len()
}

#[test]
fn transcripts_replay_byte_for_byte() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 4, "expected the committed transcripts in {}", dir().display());
    let mut calls = 0;
    for f in &files {
        let doc: Value = serde_json::from_str(&std::fs::read_to_string(f).unwrap()).unwrap();
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        assert!(doc["description"].is_string() && doc["source"].is_string(), "{name}");
        calls += replay(&name, &doc);
    }
    assert!(calls >= 12, "{calls}");
}

/// A transcript that diverges is reported at the first differing APDU.
#[test]
fn divergence_is_reported() {
    let mut card = VirtualCard::from_transcript(vec![(hex::decode("00CA006E00").unwrap(), hex::decode("9000").unwrap())]);
    let mut tx = card.transaction().unwrap();
    let e = send_with(tx.as_mut(), &Command::get_data(0x5F50), &SendOptions::default()).unwrap_err();
    assert!(e.to_string().contains("expected 00CA006E00, got 00CA5F5000"), "{e}");
}
