//! Harness body for the bridge's request parser (uses nothing but `kb_bridge_protocol`
//! and `std`, so `bridge/kb-bridge-protocol/tests/no_panic.rs` can include this file).

use kb_bridge_protocol::{DEFAULT_MAX_MESSAGE_BYTES, parse_request};

/// One text frame from a client: parse it strictly; a parsed request must serialize
/// and parse back to the same request (what the Rust client sends is what the server
/// reads); a refusal must serialize as a response. Also read the bytes as a binary
/// stream frame. Returns whether the request parsed.
pub fn bridge_request(data: &[u8]) -> bool {
    let _ = kb_bridge_protocol::frame::Frame::decode(data, 64);
    match parse_request(data, DEFAULT_MAX_MESSAGE_BYTES) {
        Ok(req) => {
            let text = req.to_json().expect("a parsed request serializes");
            let again = parse_request(text.as_bytes(), usize::MAX).expect("a re-serialized request parses");
            assert_eq!(again, req, "request round trip");
            true
        }
        Err(e) => {
            assert!(e.code() < 0 || kb_bridge_protocol::RpcCode::from_code(e.code()).is_some(), "unknown code");
            let _ = e.into_response().to_json().expect("an error response serializes");
            false
        }
    }
}
