//! Harness body for `kb_ble::frame` (uses nothing but `kb_ble` and `std`, so
//! `drivers/kb-ble/tests/no_panic.rs` can include this file).

use kb_ble::frame::{self, FrameCommand, Reassembler, Step};

/// The input: one byte choosing the control-point length (20..=512), then fragments as
/// `[len][len bytes]` pieces, fed to the host's reassembler as a key's notifications.
/// Every fragment must give a clean answer (more, keep-alive, response or error), never a
/// panic; a completed response must re-fragment and reassemble to itself. Returns whether
/// a response or keep-alive came out.
pub fn ble_frame(data: &[u8]) -> bool {
    let Some((&sel, mut rest)) = data.split_first() else { return false };
    let size = frame::MIN_FRAGMENT + (sel as usize * 7) % (frame::MAX_FRAGMENT - frame::MIN_FRAGMENT + 1);
    let Ok(mut r) = Reassembler::new(size, frame::MAX_MESSAGE) else { return false };
    let mut ok = false;
    while let Some((&n, tail)) = rest.split_first() {
        let n = (n as usize).min(tail.len());
        let (frag, next) = tail.split_at(n);
        rest = next;
        match frame::response_step(&mut r, frag) {
            Ok(Step::Response(msg)) => {
                ok = true;
                let again = frame::fragment(FrameCommand::Msg, &msg, size).unwrap_or_default();
                let mut r2 = Reassembler::new(size, frame::MAX_MESSAGE).ok();
                let mut out = None;
                for f in &again {
                    assert!(f.len() <= size, "fragment longer than the control-point length");
                    out = r2.as_mut().and_then(|r2| r2.push(f).ok().flatten());
                }
                assert!(out.is_some_and(|o| o.data.as_slice() == msg.as_slice()), "response does not round-trip");
            }
            Ok(Step::KeepAlive(_)) => ok = true,
            Ok(Step::More) => assert!(r.in_progress(), "More without a message in progress"),
            Err(_) => assert!(!r.in_progress(), "an error leaves the reassembler empty"),
        }
    }
    ok
}
