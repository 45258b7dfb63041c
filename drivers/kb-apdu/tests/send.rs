//! `send`: chaining, GET RESPONSE, 6Cxx, loop bounds and error mapping, against a
//! closure-driven [`VirtualCard`].
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kb_apdu::{ApduError, CardBackend, CardTransaction, Command, SendOptions, StatusWord, VirtualCard, send, send_with};
use kb_types::{ErrorCode, HasErrorCode};

fn h(s: &str) -> Vec<u8> {
    hex::decode(s.replace(' ', "")).unwrap()
}

fn seen(card: &VirtualCard) -> Vec<String> {
    card.received().iter().map(hex::encode_upper).collect()
}

#[test]
fn chaining_splits_at_255_and_marks_cla() {
    let data: Vec<u8> = (0..600u32).map(|i| i as u8).collect();
    let mut card = VirtualCard::new(|apdu| Ok(if apdu[0] & 0x10 != 0 { h("9000") } else { h("AABB 9000") }));
    let resp = send(card.transaction().unwrap().as_mut(), &Command::put_data(0x00C1, &data).with_ne(2)).unwrap();
    assert_eq!(resp.data(), &[0xAA, 0xBB]);
    let got = card.received();
    assert_eq!(got.len(), 3);
    assert_eq!(&got[0][..5], &h("10DA00C1FF")[..]);
    assert_eq!(&got[0][5..], &data[..255]);
    assert_eq!(got[0].len(), 5 + 255); // no Le on a link
    assert_eq!(&got[1][..5], &h("10DA00C1FF")[..]);
    assert_eq!(&got[2][..5], &h("00DA00C15A")[..]);
    assert_eq!(&got[2][5..95], &data[510..]);
    assert_eq!(got[2][95], 0x02); // Le on the last link only
}

#[test]
fn chaining_stops_at_the_first_error() {
    let mut card = VirtualCard::new(|_| Ok(h("6884")));
    let resp = send(card.transaction().unwrap().as_mut(), &Command::put_data(0x00C1, &[0; 300])).unwrap();
    assert_eq!(resp.status(), StatusWord(0x6884));
    assert_eq!(card.received().len(), 1);
    assert_eq!(resp.into_data().unwrap_err().code(), ErrorCode::NotSupported);
}

#[test]
fn get_response_concatenates_every_part() {
    // 3 × 256 bytes announced with 61 00, then 10 more with 61 0A.
    let mut round = 0u8;
    let mut card = VirtualCard::new(move |apdu| {
        round += 1;
        let (len, sw) = match round {
            1..=3 => (256, h("6100")),
            4 => (256, h("610A")),
            _ => (10, h("9000")),
        };
        if round > 1 {
            assert_eq!(apdu[..4], h("00C00000")[..]);
        }
        let mut r = vec![round; len];
        r.extend(sw);
        Ok(r)
    });
    let resp = send(card.transaction().unwrap().as_mut(), &Command::get_data(0x7F21)).unwrap();
    assert!(resp.status().is_ok());
    assert_eq!(resp.data().len(), 4 * 256 + 10);
    assert_eq!(resp.data()[1024], 5);
    assert_eq!(seen(&card), ["00CA7F2100", "00C0000000", "00C0000000", "00C0000000", "00C000000A"]);
}

#[test]
fn wrong_le_is_resent_once_per_answer() {
    let mut card = VirtualCard::new(|apdu| Ok(if apdu[4] == 0x00 { h("6C03") } else { h("010203 9000") }));
    let resp = send(card.transaction().unwrap().as_mut(), &Command::read_binary(0, 256).unwrap()).unwrap();
    assert_eq!(resp.data(), &[1, 2, 3]);
    assert_eq!(seen(&card), ["00B0000000", "00B0000003"]);
}

#[test]
fn endless_61xx_or_6cxx_is_an_error_not_a_hang() {
    for sw in ["6110", "6C10"] {
        let answer = h(sw);
        let mut card = VirtualCard::new(move |_| Ok(answer.clone()));
        let opts = SendOptions { max_rounds: 20, ..SendOptions::default() };
        let e = send_with(card.transaction().unwrap().as_mut(), &Command::get_data(0x6E), &opts).unwrap_err();
        assert_eq!(e, ApduError::TooManyRounds(20), "{sw}");
        assert_eq!(card.received().len(), 21, "{sw}");
        assert_eq!(e.code(), ErrorCode::Io);
    }
}

#[test]
fn short_mode_caps_ne_and_extended_mode_does_not() {
    let mut card = VirtualCard::new(|_| Ok(h("9000")));
    send(card.transaction().unwrap().as_mut(), &Command::get_data(0x7F21).with_ne(65_536)).unwrap();
    let ext = SendOptions { extended_length: true, ..SendOptions::default() };
    send_with(card.transaction().unwrap().as_mut(), &Command::get_data(0x7F21).with_ne(65_536), &ext).unwrap();
    send_with(card.transaction().unwrap().as_mut(), &Command::put_data(0x7F21, &[7; 256]), &ext).unwrap();
    let got = seen(&card);
    assert_eq!(got[0], "00CA7F2100");
    assert_eq!(got[1], "00CA7F21000000");
    assert_eq!(&got[2][..14], "00DA7F21000100");
    assert_eq!(got.len(), 3);
}

#[test]
fn get_response_keeps_the_logical_channel() {
    for (cla, gr) in [(0x01u8, "01C0000004"), (0x13, "03C0000004"), (0x80, "00C0000004"), (0x45, "45C0000004")] {
        let mut card = VirtualCard::new(|apdu| Ok(if apdu[1] == 0xC0 { h("01020304 9000") } else { h("6104") }));
        let resp = send(card.transaction().unwrap().as_mut(), &Command::get_data(0x6E).with_cla(cla)).unwrap();
        assert_eq!(resp.data(), &[1, 2, 3, 4]);
        assert_eq!(seen(&card)[1], gr, "CLA {cla:02X}");
    }
}

#[test]
fn transport_and_protocol_failures() {
    let mut gone = VirtualCard::new(|_| Err(ApduError::Removed));
    let e = send(gone.transaction().unwrap().as_mut(), &Command::get_data(0x6E)).unwrap_err();
    assert_eq!(e, ApduError::Removed);
    assert_eq!(e.code(), ErrorCode::DeviceRemoved);

    let mut short = VirtualCard::new(|_| Ok(vec![0x90]));
    let e = send(short.transaction().unwrap().as_mut(), &Command::get_data(0x6E)).unwrap_err();
    assert_eq!(e, ApduError::ResponseTooShort(1));

    // A card answering more than Ne + 2 bytes overflows the reader buffer.
    let mut long = VirtualCard::new(|_| Ok(vec![0; 20]));
    let e = send(long.transaction().unwrap().as_mut(), &Command::get_response(16)).unwrap_err();
    assert!(matches!(e, ApduError::Transport(_)), "{e}");

    // A command that cannot be encoded never reaches the card.
    let mut card = VirtualCard::new(|_| Ok(h("9000")));
    let ext = SendOptions { extended_length: true, ..SendOptions::default() };
    let e = send_with(card.transaction().unwrap().as_mut(), &Command::get_data(1).with_ne(70_000), &ext).unwrap_err();
    assert!(matches!(e, ApduError::Encoding(_)), "{e}");
    assert_eq!(e.code(), ErrorCode::NotSupported);
    assert!(card.received().is_empty());
}

#[test]
fn table_card_and_reset() {
    let mut card = VirtualCard::from_table(vec![(h("00A4040006D2760001240100"), h("9000"))]);
    {
        let mut tx = card.transaction().unwrap();
        assert!(send(tx.as_mut(), &Command::select_aid(&h("D27600012401"))).unwrap().status().is_ok());
        let r = send(tx.as_mut(), &Command::get_data(0x6E)).unwrap();
        assert_eq!(r.into_data().unwrap_err().code(), ErrorCode::NotSupported);
        tx.reset().unwrap();
    }
    assert_eq!(card.resets(), 1);
    assert_eq!(format!("{card:?}"), "VirtualCard { received: 2, resets: 0 }".replace("resets: 0", "resets: 1"));

    // A backend without a reset hook refuses.
    struct Plain;
    impl CardTransaction for Plain {
        fn transmit(&mut self, _: &[u8], _: usize) -> kb_apdu::Result<Vec<u8>> {
            Ok(vec![0x90, 0x00])
        }
    }
    assert!(Plain.reset().is_err());
    assert!(send(&mut Plain, &Command::verify_status(0x81)).unwrap().status().is_ok());
}
