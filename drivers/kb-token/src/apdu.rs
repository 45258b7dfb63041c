//! Card errors into token errors: the APDU layer (`kb-apdu`, below the Token trait, with
//! no idea of tokens) classifies status words once; this turns that classification into
//! [`TokenError`]s that keep their data (tries left, the status word).

use crate::TokenError;
use kb_apdu::{ApduError, CardStatus, StatusWord};

/// The token-layer error for a card's status word. Meant for error words: a final
/// `9000`, `61xx` or `6Cxx` (which `kb_apdu::send` never leaves behind) becomes a
/// [`TokenError::Card`] too. `63C0` (no tries left) is [`TokenError::PinLocked`], as the
/// file-type key reports the locking attempt.
pub fn status_error(sw: StatusWord) -> TokenError {
    let status = sw.status();
    match status {
        CardStatus::WrongPin { retries_left: 0 } | CardStatus::PinBlocked => TokenError::PinLocked,
        CardStatus::WrongPin { retries_left } => TokenError::WrongPin { retries_left },
        CardStatus::NotFound => TokenError::NotFound(format!("{} (SW {sw})", status.reason())),
        CardStatus::InsNotSupported | CardStatus::ClaNotSupported => {
            TokenError::NotSupported(format!("{} (SW {sw})", status.reason()))
        }
        _ => TokenError::Card { sw: sw.0, reason: status.reason() },
    }
}

impl From<ApduError> for TokenError {
    fn from(e: ApduError) -> Self {
        match e {
            ApduError::Status(sw) => status_error(sw),
            ApduError::Removed => TokenError::Removed,
            ApduError::Offline => TokenError::Offline,
            ApduError::OutcomeUnknown => TokenError::OutcomeUnknown,
            ApduError::Link { code, message } => TokenError::Link { code, message },
            ApduError::Busy => TokenError::Busy,
            e @ ApduError::Reset => TokenError::Io(e.to_string()),
            ApduError::Tlv(t) => TokenError::Corrupt(format!("card data: {t}")),
            ApduError::Encoding(what) => TokenError::NotSupported(format!("command cannot be encoded: {what}")),
            // ResponseTooShort, TooManyRounds, MalformedCommand, Transport, and any later
            // protocol failure: an I/O error with its message.
            e => TokenError::Io(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kb_types::HasErrorCode;

    #[test]
    fn token_errors_carry_data() {
        assert_eq!(status_error(StatusWord(0x63C2)), TokenError::WrongPin { retries_left: 2 });
        assert_eq!(status_error(StatusWord(0x6983)), TokenError::PinLocked);
        assert_eq!(status_error(StatusWord(0x6982)), TokenError::Card { sw: 0x6982, reason: "security status not satisfied" });
        let e = status_error(StatusWord(0x6F00));
        assert_eq!(e.to_string(), "the card reported an error: card error (SW 6F00)");
        assert!(matches!(status_error(StatusWord(0x6A82)), TokenError::NotFound(m) if m.contains("6A82")));
        assert_eq!(TokenError::from(ApduError::Status(StatusWord(0x63C1))), TokenError::WrongPin { retries_left: 1 });
    }

    /// The token error keeps exactly the code the APDU layer's one table gives, for
    /// every status word and every APDU error.
    #[test]
    fn same_codes_as_the_apdu_table() {
        for sw in [
            0x9000u16, 0x6110, 0x6C08, 0x63C2, 0x63C0, 0x6983, 0x6982, 0x6985, 0x6A82, 0x6A88, 0x6A80, 0x6A86, 0x6B00, 0x6700,
            0x6D00, 0x6A81, 0x6884, 0x6E00, 0x6581, 0x6A84, 0x6F00, 0x6300, 0x6283,
        ] {
            assert_eq!(status_error(StatusWord(sw)).code(), StatusWord(sw).error_code(), "{sw:04X}");
        }
        for e in [
            ApduError::Removed,
            ApduError::Busy,
            ApduError::Reset,
            ApduError::ResponseTooShort(1),
            ApduError::TooManyRounds(3),
            ApduError::Encoding("x"),
            ApduError::MalformedCommand("x"),
            ApduError::Transport("x".into()),
            ApduError::Tlv(kb_apdu::tlv::TlvError::Truncated),
            ApduError::Offline,
            ApduError::OutcomeUnknown,
            ApduError::Link { code: kb_types::ErrorCode::BleFrameInvalid, message: "x".into() },
        ] {
            assert_eq!(TokenError::from(e.clone()).code(), e.code(), "{e}");
        }
    }
}
