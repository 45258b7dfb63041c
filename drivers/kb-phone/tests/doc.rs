//! docs/phone-link-messages.md is tested against the code: every ```json block in it is
//! decoded (with every cap checked), encoded again and decoded to the same message, and
//! keeps every member it wrote; every message type has an example; the limits table
//! states the code's constants; and the fuzz seeds are exactly the examples.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kb_phone::msg::{self, Message};
use serde_json::Value;
use std::collections::BTreeSet;

fn doc() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/phone-link-messages.md"))
        .expect("docs/phone-link-messages.md")
}

/// The contents of every ```json code block, with its line number.
fn json_blocks(doc: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (i, line) in doc.lines().enumerate() {
        match (&mut current, line.trim_end()) {
            (None, "```json") => current = Some((i + 1, String::new())),
            (Some(_), "```") => out.push(current.take().unwrap()),
            (Some((_, text)), l) => {
                text.push_str(l);
                text.push('\n');
            }
            (None, _) => {}
        }
    }
    assert!(current.is_none(), "unterminated code block");
    out
}

/// `a` is contained in `b`: every member `a` has, `b` has with the same value (`b` may add
/// defaults).
fn value_subset(a: &Value, b: &Value, path: &str) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (k, v) in x {
                let w = y.get(k).unwrap_or_else(|| panic!("{path}.{k} is lost in the round trip"));
                value_subset(v, w, &format!("{path}.{k}"));
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            assert_eq!(x.len(), y.len(), "{path}: array length");
            for (i, (v, w)) in x.iter().zip(y).enumerate() {
                value_subset(v, w, &format!("{path}[{i}]"));
            }
        }
        _ => assert_eq!(a, b, "{path}"),
    }
}

fn type_name(m: &Message) -> &'static str {
    match m {
        Message::Hello(_) => "hello",
        Message::MediaChanged { .. } => "media_changed",
        Message::Sign(_) => "sign",
        Message::Decrypt(_) => "decrypt",
        Message::Cancel { .. } => "cancel",
        Message::Signature { .. } => "signature",
        Message::Plaintext { .. } => "plaintext",
        Message::Refused { .. } => "refused",
        Message::Error(_) => "error",
    }
}

const ALL_TYPES: [&str; 9] =
    ["hello", "media_changed", "sign", "decrypt", "cancel", "signature", "plaintext", "refused", "error"];

#[test]
fn every_example_decodes_and_round_trips() {
    let doc = doc();
    let mut seen = BTreeSet::new();
    let blocks = json_blocks(&doc);
    assert!(blocks.len() >= 12, "only {} examples", blocks.len());
    for (line, text) in blocks {
        let at = format!("docs/phone-link-messages.md:{line}");
        let m = msg::decode(text.as_bytes()).unwrap_or_else(|e| panic!("{at}: refused: {e}"));
        let wire = msg::encode(&m).unwrap();
        assert_eq!(msg::decode(&wire).unwrap(), m, "{at}: round trip");
        let written: Value = serde_json::from_str(&text).unwrap();
        value_subset(&written, &serde_json::from_slice(&wire).unwrap(), &at);
        seen.insert(type_name(&m));
    }
    assert_eq!(seen, ALL_TYPES.into_iter().collect(), "message types without an example");
    for t in ALL_TYPES {
        assert!(doc.contains(&format!("### `{t}`")), "no section for {t}");
    }
}

#[test]
fn the_limits_table_states_the_constants() {
    let doc = doc();
    for (name, value) in [
        ("MAX_MESSAGE_BYTES", msg::MAX_MESSAGE_BYTES),
        ("MAX_MEDIA", msg::MAX_MEDIA),
        ("MAX_CONTAINERS", msg::MAX_CONTAINERS),
        ("MAX_ALGORITHMS", msg::MAX_ALGORITHMS),
        ("MAX_NAME_CHARS", msg::MAX_NAME_CHARS),
        ("MAX_TEXT_CHARS", msg::MAX_TEXT_CHARS),
        ("MAX_CERTIFICATE_BYTES", msg::MAX_CERTIFICATE_BYTES),
        ("MAX_PUBLIC_KEY_BYTES", msg::MAX_PUBLIC_KEY_BYTES),
        ("MAX_SM2_ID_BYTES", msg::MAX_SM2_ID_BYTES),
        ("MAX_CIPHERTEXT_BYTES", msg::MAX_CIPHERTEXT_BYTES),
        ("MAX_PLAINTEXT_BYTES", msg::MAX_PLAINTEXT_BYTES),
        ("MAX_SIGNATURE_BYTES", msg::MAX_SIGNATURE_BYTES),
    ] {
        let row = doc.lines().find(|l| l.starts_with(&format!("| `{name}`"))).unwrap_or_else(|| panic!("no row for {name}"));
        assert!(row.ends_with(&format!("| {value} |")), "{name}: the doc says {row:?}, the code {value}");
    }
    assert!(doc.contains(&format!("`protocol` is this document's version, **{}**", msg::PROTOCOL_VERSION)));
    assert!(doc.contains(&format!("{}", msg::MAX_ID)));
}

/// The fuzz seeds (`tests/fuzz/seeds/phone_message/`) are the doc's examples.
#[test]
fn fuzz_seeds_are_the_doc_examples() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fuzz/seeds/phone_message");
    let key = |m: &Message| String::from_utf8(msg::encode(m).unwrap().to_vec()).unwrap();
    let mut seeds: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| key(&msg::decode(&std::fs::read(e.unwrap().path()).unwrap()).unwrap())).collect();
    let mut examples: Vec<String> = json_blocks(&doc()).iter().map(|(_, t)| key(&msg::decode(t.as_bytes()).unwrap())).collect();
    seeds.sort();
    examples.sort();
    assert_eq!(seeds, examples, "regenerate tests/fuzz/seeds/phone_message/ from the doc's examples");
}
