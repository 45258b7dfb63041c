//! Harness body for the phone link's application-message decoder (uses nothing but
//! `kb_phone` and `std`, so `drivers/kb-phone/tests/no_panic.rs` can include this file).

use kb_phone::msg::{self, Message};

/// One message from a peer: decode it with every cap checked; a decoded message must
/// pass its own checks, encode, and decode back to the same message; a refusal carries
/// one of the phone link's message codes. Returns whether the message decoded.
pub fn phone_message(data: &[u8]) -> bool {
    match msg::decode(data) {
        Ok(m) => {
            m.validate().expect("a decoded message passes its own checks");
            let wire = msg::encode(&m).expect("a decoded message encodes");
            let again: Message = msg::decode(&wire).expect("an encoded message decodes");
            assert_eq!(again, m, "message round trip");
            let _ = m.request_id();
            true
        }
        Err(e) => {
            let n = e.code.number();
            assert!(n == 6050 || n == 6051, "unexpected code {n}");
            assert!(!e.detail.is_empty());
            false
        }
    }
}
