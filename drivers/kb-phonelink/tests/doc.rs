//! docs/phone-link.md is tested against the code: its protocol names are the code's, its
//! QR example parses and re-encodes to itself, its frames are the test vector's and parse
//! as the type they are labelled with, its records decode and re-encode to themselves, and
//! every phone-link error code is in its table.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kb_phonelink::qr::{Endpoint, Offer};
use kb_phonelink::suite::{PAIRING_PROTOCOL, RECONNECT_PROTOCOL};
use kb_phonelink::wire::{FrameType, Record, parse_frame, parse_refusal};
use kb_phonelink::{MAX_FRAME, StaticKey};
use kb_types::{Category, ErrorCode};
use serde_json::Value;

fn doc() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/phone-link.md")).unwrap()
}

fn vector() -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/handshake-v1.json")).unwrap(),
    )
    .unwrap()
}

/// The lines of every ```<info> block.
fn blocks(doc: &str, info: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut cur: Option<Vec<String>> = None;
    for line in doc.lines() {
        match (&mut cur, line.trim_end()) {
            (None, l) if l == format!("```{info}") => cur = Some(Vec::new()),
            (Some(_), "```") => out.push(cur.take().unwrap()),
            (Some(v), l) => v.push(l.to_owned()),
            _ => {}
        }
    }
    assert!(cur.is_none(), "unterminated {info} block");
    assert!(!out.is_empty(), "no ```{info} block in docs/phone-link.md");
    out
}

#[test]
fn protocol_names() {
    let lines: Vec<String> = blocks(&doc(), "phone-link-protocols").concat();
    assert_eq!(lines, [PAIRING_PROTOCOL, RECONNECT_PROTOCOL]);
    let v = vector();
    assert_eq!(v["pairing"]["protocol"], PAIRING_PROTOCOL);
    assert_eq!(v["reconnect"]["protocol"], RECONNECT_PROTOCOL);
}

#[test]
fn qr_example() {
    let doc = doc();
    for b in blocks(&doc, "phone-link-offer") {
        let text = b.join("");
        let o = Offer::parse(&text).unwrap();
        assert_eq!(o.encode().unwrap(), text, "the example is canonical");
        // The fields the prose names.
        assert_eq!(&o.pc_key, StaticKey::from_private(&[0x11; 32]).unwrap().public());
        assert_eq!(&o.offer_id, b"offer-01");
        assert_eq!(&o.secret[..], b"0123456789abcdef");
        assert_eq!(o.expires, 1_800_000_000);
        assert_eq!(o.endpoints, [Endpoint::Direct("192.168.1.20:48213".parse().unwrap())]);
        let flat = doc.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(flat.contains(&format!("the string is {} characters", text.len())), "the stated length");
        assert_eq!(vector()["pairing"]["offer"], text.as_str());
    }
}

#[test]
fn frame_examples() {
    let v = vector();
    let mut seen = 0;
    for line in blocks(&doc(), "phone-link-frames").concat() {
        let mut it = line.split_whitespace();
        let (label, hex) = (it.next().unwrap(), it.next().unwrap());
        let bytes = hex::decode(hex).unwrap();
        let (t, body) = parse_frame(&bytes, MAX_FRAME).unwrap();
        let want = match label {
            "pair.1" => FrameType::PairInit,
            "pair.2" => FrameType::PairResponse,
            "pair.3" => FrameType::PairFinish,
            "reconnect.1" => FrameType::ReconnectInit,
            "reconnect.2" => FrameType::ReconnectResponse,
            "refused" => FrameType::Refused,
            other => panic!("unknown label {other}"),
        };
        assert_eq!(t, want, "{label}");
        if let Some((flow, n)) = label.split_once('.') {
            let key = if flow == "pair" { "pairing" } else { "reconnect" };
            assert_eq!(v[key][format!("frame_{n}")], hex, "{label} is the test vector's");
        } else {
            assert_eq!(parse_refusal(body), ErrorCode::PairingOfferUsed);
        }
        seen += 1;
    }
    assert_eq!(seen, 6);
    assert!(doc().contains(&format!("confirmation code is `{}`", v["pairing"]["confirmation_code"].as_str().unwrap())));
}

#[test]
fn record_examples() {
    let mut kinds = std::collections::BTreeSet::new();
    for line in blocks(&doc(), "phone-link-records").concat() {
        let hex = line.split_whitespace().next().unwrap();
        let bytes = hex::decode(hex).unwrap();
        let r = Record::decode(&bytes).unwrap_or_else(|e| panic!("{line}: {e}"));
        assert_eq!(&r.encode()[..], &bytes[..], "{line}");
        kinds.insert(bytes[0]);
    }
    assert_eq!(kinds.len(), 6, "every record type has an example");
}

#[test]
fn every_phone_link_code_is_in_the_table() {
    let doc = doc();
    for c in ErrorCode::ALL.iter().filter(|c| c.category() == Category::PhoneLink) {
        let row = format!("| {} | `{}` |", c.number(), c.name());
        assert!(doc.contains(&row), "docs/phone-link.md lacks {row}");
    }
}
