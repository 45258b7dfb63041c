//! docs/ca-api.md is the contract: every JSON example in it parses into the type its
//! `<!-- example: Type -->` marker names and serialises back to the same JSON value, and
//! every API type has at least one example.
#![allow(clippy::unwrap_used, clippy::panic, clippy::expect_used)]

use kb_ca::api::*;
use serde::Serialize;
use serde::de::DeserializeOwned;

fn round_trip<T: DeserializeOwned + Serialize>(json: &str) -> Result<(), String> {
    let value: serde_json::Value = serde_json::from_str(json).map_err(|e| format!("not JSON: {e}"))?;
    let typed: T = serde_json::from_value(value.clone()).map_err(|e| e.to_string())?;
    let back = serde_json::to_value(&typed).map_err(|e| e.to_string())?;
    if back != value { Err(format!("round trip changed it: {back}")) } else { Ok(()) }
}

fn examples() -> Vec<(String, String)> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/ca-api.md")).unwrap();
    let mut out = Vec::new();
    let mut lines = doc.lines();
    while let Some(line) = lines.next() {
        let Some(ty) = line.trim().strip_prefix("<!-- example: ").and_then(|r| r.strip_suffix(" -->")) else { continue };
        assert_eq!(lines.next().map(str::trim), Some("```json"), "an example marker must precede a json block ({ty})");
        let body: Vec<&str> = lines.by_ref().take_while(|l| l.trim() != "```").collect();
        out.push((ty.to_string(), body.join("\n")));
    }
    out
}

#[test]
fn every_example_round_trips_through_its_type() {
    let ex = examples();
    let mut seen = std::collections::BTreeSet::new();
    for (ty, json) in &ex {
        let r = match ty.as_str() {
            "ServerInfo" => round_trip::<ServerInfo>(json),
            "Challenge" => round_trip::<Challenge>(json),
            "BindingRequest" => round_trip::<BindingRequest>(json),
            "Binding" => round_trip::<Binding>(json),
            "BindingStatus" => round_trip::<BindingStatus>(json),
            "RenewalStatus" => round_trip::<RenewalStatus>(json),
            "Delivery" => round_trip::<Delivery>(json),
            "ErrorBody" => round_trip::<ErrorBody>(json),
            other => Err(format!("unknown type {other}")),
        };
        if let Err(e) = r {
            panic!("docs/ca-api.md example {ty}: {e}\n{json}");
        }
        seen.insert(ty.as_str());
    }
    let all = ["ServerInfo", "Challenge", "BindingRequest", "Binding", "BindingStatus", "RenewalStatus", "Delivery", "ErrorBody"];
    for t in all {
        assert!(seen.contains(t), "docs/ca-api.md has no example of {t}");
    }
}

#[test]
fn the_documented_error_codes_are_the_tables() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/ca-api.md")).unwrap();
    for (_, json) in examples().iter().filter(|(t, _)| t == "ErrorBody") {
        let b: ErrorBody = serde_json::from_str(json).unwrap();
        let code = kb_types::ErrorCode::from_number(b.error.code).unwrap();
        assert_eq!(code.name(), b.error.name);
    }
    // Every "NNNN `name`" the document cites is that code's name in kb-types.
    let mut cited = 0;
    for w in doc.split('|').map(str::trim) {
        let mut parts = w.split_whitespace();
        if let (Some(num), Some(name)) = (parts.next(), parts.next())
            && let Ok(n) = num.parse::<u32>()
            && let Some(code) = kb_types::ErrorCode::from_number(n)
        {
            assert_eq!(format!("`{}`", code.name()), name, "docs/ca-api.md cites {n} as {name}");
            cited += 1;
        }
    }
    assert!(cited >= 7);
    // The binding proof is written down exactly as the code builds it.
    let m = String::from_utf8(kb_ca::proof::binding_message("C", "M", b"x")).unwrap();
    let doc_form = "KeyBridge CA binding v1\\nchallenge=<challenge>\\nmedium=<medium_serial>\\ncertificate=";
    assert!(doc.contains(doc_form));
    assert!(m.starts_with("KeyBridge CA binding v1\nchallenge=C\nmedium=M\ncertificate="));
    let e = String::from_utf8(kb_ca::proof::enrol_message("A", b"x")).unwrap();
    assert!(doc.contains("KeyBridge EST enrol v1\\napplication=<application id>\\nspki="));
    assert!(e.starts_with("KeyBridge EST enrol v1\napplication=A\nspki="));
    assert_eq!(BINDING_TTL_SECS, 1800);
}
