//! Harness bodies for `kb_apdu` (uses nothing but `kb_apdu` and `std`, so
//! `drivers/kb-apdu/tests/no_panic.rs` can include this file).

use kb_apdu::tlv::{self, Tag, Tlv};
use kb_apdu::{ApduError, CardBackend, Command, Response, SendOptions, VirtualCard, send_with};

/// Everything in kb-apdu that reads card bytes: BER-TLV (parse, re-encode, find),
/// response and command APDU parsing, and `send` driven by a card whose answers are cut
/// from the input. Returns whether the input is a well-formed, non-empty TLV sequence.
pub fn apdu_tlv(data: &[u8]) -> bool {
    if let Ok(r) = Response::from_bytes(data) {
        assert!(r.to_bytes().as_slice() == data, "response does not round-trip");
        let _ = r.into_data();
    }
    if let Ok(c) = Command::parse(data) {
        let again = c.to_bytes().ok().and_then(|b| Command::parse(&b).ok());
        assert!(again.as_ref() == Some(&c), "command does not round-trip");
    }
    let tlv_ok = match Tlv::parse_all(data) {
        Ok(tlvs) => {
            let bytes = tlv::encode_all(&tlvs).unwrap_or_default();
            assert!(Tlv::parse_all(&bytes).ok().as_ref() == Some(&tlvs), "TLV does not round-trip");
            for t in [0x4F, 0x6E, 0x73, 0xC4, 0x5F50, 0x7F49, 0x86] {
                let _ = tlv::find(&tlvs, Tag(t)).map(|t| t.value().len());
            }
            !tlvs.is_empty()
        }
        Err(_) => false,
    };
    drive_send(data);
    tlv_ok
}

/// A card whose answers are the input cut into `[len][len bytes]` pieces; running out of
/// input is a removed card. Exercises chaining, GET RESPONSE and 6Cxx on hostile answers.
fn drive_send(data: &[u8]) {
    let mut rest = data.to_vec();
    let mut card = VirtualCard::new(move |_| {
        let Some((&n, tail)) = rest.split_first() else { return Err(ApduError::Removed) };
        let n = (n as usize).min(tail.len());
        let answer = tail[..n].to_vec();
        rest = tail[n..].to_vec();
        Ok(answer)
    });
    let cmd = if data.len().is_multiple_of(2) {
        Command::get_data(0x006E)
    } else {
        Command::put_data(0x00C1, &[0x5A; 300]).with_ne(256)
    };
    let opts = SendOptions { extended_length: data.first().is_some_and(|b| b & 1 == 1), max_rounds: 8 };
    if let Ok(mut tx) = card.transaction() {
        let _ = send_with(tx.as_mut(), &cmd, &opts).map(|r| r.into_data());
    }
}
