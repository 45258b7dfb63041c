//! The TypeScript SDK's generated constants (`bridge/sdk-js/src/generated.ts`) are what
//! `examples/typescript.rs` prints from this crate today.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(dead_code)] // the example's `main`
#[path = "../examples/typescript.rs"]
mod typescript;

#[test]
fn generated_ts_is_current() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../sdk-js/src/generated.ts");
    let want = typescript::generate().unwrap();
    let have = std::fs::read_to_string(path).unwrap_or_default();
    if have != want {
        let line = have.lines().zip(want.lines()).position(|(a, b)| a != b).map_or_else(
            || format!("lengths differ ({} vs {} lines)", have.lines().count(), want.lines().count()),
            |i| format!("first difference at line {}", i + 1),
        );
        panic!(
            "bridge/sdk-js/src/generated.ts is stale ({line}); regenerate it with\n  \
             cargo run -q -p kb-bridge-protocol --example typescript > bridge/sdk-js/src/generated.ts"
        );
    }
}

#[test]
fn generated_ts_has_every_code_and_method() {
    let text = typescript::generate().unwrap();
    for c in kb_types::ErrorCode::ALL {
        assert!(text.contains(&format!("\n  {}: {{ code: {},", c.name(), c.number())), "{c} missing");
    }
    for p in kb_bridge_protocol::ProtocolError::ALL {
        assert!(text.contains(&format!("\n  {}: {{ code: {},", p.name(), p.code())), "{p:?} missing");
    }
    for m in kb_bridge_protocol::Method::ALL {
        assert!(text.contains(&format!("\n  \"{}\",\n", m.name())), "{} missing", m.name());
    }
    assert!(text.contains("\n  \"certificates.changed\",\n  \"device.offline\",\n  \"device.online\",\n] as const;\n/** One of {@link SUBSCRIBABLE_EVENTS}. */"));
}
