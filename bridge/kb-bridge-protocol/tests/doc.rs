//! docs/bridge-protocol.md is tested against the code: every ```json block in it is
//! parsed with this crate's types and must round-trip, and every method, event and
//! error code must appear in it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kb_bridge_protocol::{
    DEFAULT_MAX_MESSAGE_BYTES, Event, Id, Method, Notification, ProtocolError, Request, Response, RpcCode, parse_request,
};
use kb_types::{ErrorCode, Lang};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

fn doc() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/bridge-protocol.md");
    std::fs::read_to_string(path).expect("docs/bridge-protocol.md")
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

/// Every object key path of `a` exists in `b` (values may be normalised, e.g. case).
fn keys_subset(a: &Value, b: &Value, path: &str) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (k, v) in x {
                let p = format!("{path}.{k}");
                let w = y.get(k).unwrap_or_else(|| panic!("{p} is lost in the round trip"));
                keys_subset(v, w, &p);
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            assert_eq!(x.len(), y.len(), "{path}: array length");
            for (i, (v, w)) in x.iter().zip(y).enumerate() {
                keys_subset(v, w, &format!("{path}[{i}]"));
            }
        }
        _ => {}
    }
}

/// `a` is contained in `b` exactly (defaults may add members to `b`).
fn value_subset(a: &Value, b: &Value, path: &str) {
    keys_subset(a, b, path);
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (k, v) in x {
                value_subset(v, &y[k], &format!("{path}.{k}"));
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            for (i, (v, w)) in x.iter().zip(y).enumerate() {
                value_subset(v, w, &format!("{path}[{i}]"));
            }
        }
        _ => assert_eq!(a, b, "{path}"),
    }
}

#[derive(Default)]
struct Seen {
    requests: BTreeSet<&'static str>,
    results: BTreeSet<&'static str>,
    events: BTreeSet<&'static str>,
    errors: usize,
}

fn check_examples() -> Seen {
    let doc = doc();
    let mut seen = Seen::default();
    let mut pending: BTreeMap<Id, Method> = BTreeMap::new();
    let blocks = json_blocks(&doc);
    assert!(blocks.len() >= 30, "only {} JSON examples found", blocks.len());
    for (line, text) in blocks {
        let at = format!("docs/bridge-protocol.md:{line}");
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{at}: not JSON: {e}"));
        let is_request = v.get("method").is_some() && v.get("id").is_some();
        let is_notification = v.get("method").is_some() && v.get("id").is_none();
        if is_request {
            let req = parse_request(text.as_bytes(), DEFAULT_MAX_MESSAGE_BYTES)
                .unwrap_or_else(|e| panic!("{at}: request refused: {:?}", e.error));
            assert_eq!(serde_json::to_value(&req.id).unwrap(), v["id"], "{at}: id");
            let wire: Value = serde_json::from_str(&req.to_json().unwrap()).unwrap();
            keys_subset(&v, &wire, &at);
            let again = parse_request(req.to_json().unwrap().as_bytes(), DEFAULT_MAX_MESSAGE_BYTES).unwrap();
            assert_eq!(again, req, "{at}: request round trip");
            seen.requests.insert(req.call.method().name());
            pending.insert(req.id, req.call.method());
        } else if is_notification {
            let n: Notification = serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{at}: notification: {e}"));
            value_subset(&v, &serde_json::to_value(&n).unwrap(), &at);
            seen.events.insert(n.event.name());
        } else {
            let resp: Response = serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{at}: response: {e}"));
            value_subset(&v, &serde_json::to_value(&resp).unwrap(), &at);
            match resp.outcome {
                Ok(result) => {
                    let id = resp.id.unwrap_or_else(|| panic!("{at}: a result needs an id"));
                    let method = *pending.get(&id).unwrap_or_else(|| panic!("{at}: no request with id {id} before it"));
                    let reply =
                        method.parse_result(result.clone()).unwrap_or_else(|e| panic!("{at}: {} result: {e}", method.name()));
                    let back = reply.to_value().unwrap();
                    value_subset(&result, &back, &at);
                    assert_eq!(method.parse_result(back).unwrap(), reply, "{at}: result round trip");
                    seen.results.insert(method.name());
                }
                Err(e) => {
                    let code = e.rpc_code().unwrap_or_else(|| panic!("{at}: unknown code {}", e.code));
                    assert_eq!(e.data.name, code.name(), "{at}: name");
                    assert_eq!(e.message, code.message(Lang::En), "{at}: message");
                    assert_eq!(e.data.messages.zh_cn, code.message(Lang::ZhCn), "{at}: zh-CN");
                    assert_eq!(e.data.messages.en, code.message(Lang::En), "{at}: en");
                    seen.errors += 1;
                }
            }
        }
    }
    seen
}

#[test]
fn every_example_round_trips() {
    let seen = check_examples();
    let all: BTreeSet<&str> = Method::ALL.iter().map(|m| m.name()).collect();
    assert_eq!(seen.requests, all, "methods without an example request");
    assert_eq!(seen.results, all, "methods without an example result");
    assert_eq!(seen.events, Event::NAMES.into_iter().collect(), "events without an example");
    assert!(seen.errors >= 3);
}

#[test]
fn every_method_has_a_section() {
    let doc = doc();
    for m in Method::ALL {
        assert!(doc.contains(&format!("### `{}`\n", m.name())), "no section for {}", m.name());
    }
}

#[test]
fn every_error_code_is_in_the_table() {
    let doc = doc();
    let mut missing = Vec::new();
    for c in ErrorCode::ALL {
        if !doc.contains(&format!("\n| {} | `{}` |", c.number(), c.name())) {
            missing.push(format!("{} {}", c.number(), c.name()));
        }
    }
    assert!(
        missing.is_empty(),
        "docs/bridge-protocol.md lacks {missing:?}; paste the rows of `cargo run -p kb-types --example error_table` into its \"KeyBridge codes\" table"
    );
    for p in ProtocolError::ALL {
        assert!(doc.contains(&format!("| {} | `{}` |", p.code(), p.name())), "{p:?} not in the protocol error table");
        assert!(RpcCode::from_code(p.code()).is_some());
    }
}

#[test]
fn documented_constants_match() {
    let doc = doc();
    assert!(doc.contains(&format!("schema version {}", kb_bridge_protocol::SCHEMA_VERSION)));
    assert!(doc.contains(&format!("default port **{}**", kb_bridge_protocol::DEFAULT_PORT)));
    assert!(doc.contains(&format!("\"max_message_bytes\": {}", kb_bridge_protocol::DEFAULT_MAX_MESSAGE_BYTES)));
    assert!(doc.contains(&format!("\"max_chunk_bytes\": {}", kb_bridge_protocol::DEFAULT_MAX_CHUNK_BYTES)));
    for c in kb_bridge_protocol::capability::ALL {
        assert!(doc.contains(&format!("\"{c}\"")), "capability {c} not documented");
    }
    // The frame example in the text is what the code encodes.
    let f = kb_bridge_protocol::frame::Frame {
        stream: kb_bridge_protocol::StreamId(1),
        sequence: 2,
        flags: kb_bridge_protocol::frame::FLAG_FIN,
        payload: b"12345",
    };
    let hex: Vec<String> = f.header().iter().map(|b| format!("{b:02x}")).collect();
    assert!(doc.contains(&format!("`{}`", hex.join(" "))), "frame example {}", hex.join(" "));
}

/// The fuzz seeds are the doc's request examples (so they parse and stay current).
#[test]
fn fuzz_seeds_are_the_doc_requests() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fuzz/seeds/bridge_request");
    let mut seeds: Vec<Request> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| parse_request(&std::fs::read(e.unwrap().path()).unwrap(), DEFAULT_MAX_MESSAGE_BYTES).unwrap())
        .collect();
    let doc = doc();
    let mut examples: Vec<Request> =
        json_blocks(&doc).into_iter().filter_map(|(_, t)| parse_request(t.as_bytes(), DEFAULT_MAX_MESSAGE_BYTES).ok()).collect();
    let key = |r: &Request| r.to_json().unwrap();
    seeds.sort_by_key(key);
    examples.sort_by_key(key);
    assert_eq!(seeds, examples, "regenerate tests/fuzz/seeds/bridge_request/ from the doc's request examples");
}
