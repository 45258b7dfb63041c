//! The one status-word table. Every driver turns SW1SW2 into errors here and nowhere else.

use kb_types::ErrorCode;
use std::fmt;

/// An ISO 7816-4 status word, SW1 in the high byte.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct StatusWord(pub u16);

/// What a status word means, as a value a driver can match on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CardStatus {
    /// `9000`: success.
    Ok,
    /// `61xx`: success, this many more bytes wait for GET RESPONSE (`xx = 00` means 256).
    MoreData(u16),
    /// `6Cxx`: wrong Le; resend with exactly this Ne (`xx = 00` means 256).
    WrongLe(u16),
    /// `63Cx`: verification failed, `x` tries left.
    WrongPin {
        /// Tries left before the reference data blocks.
        retries_left: u8,
    },
    /// `6983`: the PIN (authentication method) is blocked.
    PinBlocked,
    /// `6982`: security status not satisfied (a PIN must be verified first).
    SecurityStatusNotSatisfied,
    /// `6985`: conditions of use not satisfied.
    ConditionsNotSatisfied,
    /// `6A82` file or application not found, `6A88` referenced data not found.
    NotFound,
    /// `6A80`: incorrect data field.
    WrongData,
    /// `6A86` incorrect P1-P2, `6B00` wrong parameters.
    WrongParameters,
    /// `6700`: wrong length (Lc or Le).
    WrongLength,
    /// `6D00` instruction not supported, `6A81` function not supported, `6884` chaining not supported.
    InsNotSupported,
    /// `6E00`: class not supported.
    ClaNotSupported,
    /// `6581`: memory failure.
    MemoryFailure,
    /// `6A84`: not enough memory space in the file.
    NotEnoughMemory,
    /// Anything else: reported as a card error carrying the word.
    Other,
}

impl CardStatus {
    /// A fixed English description (no card data), used in error messages.
    pub const fn reason(self) -> &'static str {
        match self {
            CardStatus::Ok => "success",
            CardStatus::MoreData(_) => "more data available",
            CardStatus::WrongLe(_) => "wrong Le",
            CardStatus::WrongPin { .. } => "wrong PIN",
            CardStatus::PinBlocked => "PIN blocked",
            CardStatus::SecurityStatusNotSatisfied => "security status not satisfied",
            CardStatus::ConditionsNotSatisfied => "conditions of use not satisfied",
            CardStatus::NotFound => "file, application or data not found",
            CardStatus::WrongData => "incorrect data",
            CardStatus::WrongParameters => "incorrect parameters P1-P2",
            CardStatus::WrongLength => "wrong length",
            CardStatus::InsNotSupported => "instruction not supported",
            CardStatus::ClaNotSupported => "class not supported",
            CardStatus::MemoryFailure => "memory failure",
            CardStatus::NotEnoughMemory => "not enough memory",
            CardStatus::Other => "card error",
        }
    }
}

impl StatusWord {
    /// `9000`.
    pub const OK: StatusWord = StatusWord(0x9000);

    /// From SW1 and SW2.
    pub const fn new(sw1: u8, sw2: u8) -> Self {
        StatusWord(((sw1 as u16) << 8) | sw2 as u16)
    }

    /// SW1.
    pub const fn sw1(self) -> u8 {
        (self.0 >> 8) as u8
    }

    /// SW2.
    pub const fn sw2(self) -> u8 {
        self.0 as u8
    }

    /// Whether this is `9000`.
    pub const fn is_ok(self) -> bool {
        self.0 == 0x9000
    }

    /// THE table: what this status word means.
    pub const fn status(self) -> CardStatus {
        const fn n(b: u8) -> u16 {
            if b == 0 { 256 } else { b as u16 }
        }
        match (self.sw1(), self.sw2()) {
            (0x90, 0x00) => CardStatus::Ok,
            (0x61, x) => CardStatus::MoreData(n(x)),
            (0x6C, x) => CardStatus::WrongLe(n(x)),
            (0x63, x) if x & 0xF0 == 0xC0 => CardStatus::WrongPin { retries_left: x & 0x0F },
            (0x69, 0x83) => CardStatus::PinBlocked,
            (0x69, 0x82) => CardStatus::SecurityStatusNotSatisfied,
            (0x69, 0x85) => CardStatus::ConditionsNotSatisfied,
            (0x6A, 0x82) | (0x6A, 0x88) => CardStatus::NotFound,
            (0x6A, 0x80) => CardStatus::WrongData,
            (0x6A, 0x86) | (0x6B, 0x00) => CardStatus::WrongParameters,
            (0x67, 0x00) => CardStatus::WrongLength,
            (0x6D, 0x00) | (0x6A, 0x81) | (0x68, 0x84) => CardStatus::InsNotSupported,
            (0x6E, 0x00) => CardStatus::ClaNotSupported,
            (0x65, 0x81) => CardStatus::MemoryFailure,
            (0x6A, 0x84) => CardStatus::NotEnoughMemory,
            _ => CardStatus::Other,
        }
    }

    /// `Ok(())` for `9000`, else [`ApduError::Status`](crate::ApduError::Status).
    pub fn check(self) -> crate::Result<()> {
        if self.is_ok() { Ok(()) } else { Err(crate::ApduError::Status(self)) }
    }

    /// The stable error code this word means. Meant for error words: a final `9000`,
    /// `61xx` or `6Cxx` (which [`send`](crate::send) never leaves behind) is a card error
    /// too. `63C0` (no tries left) means locked, as the file-type key reports the locking
    /// attempt. (kb-token turns the word into a `TokenError` carrying the same meaning.)
    pub const fn error_code(self) -> ErrorCode {
        match self.status() {
            CardStatus::WrongPin { retries_left: 0 } | CardStatus::PinBlocked => ErrorCode::PinLocked,
            CardStatus::WrongPin { .. } => ErrorCode::WrongPin,
            CardStatus::NotFound => ErrorCode::NotFound,
            CardStatus::InsNotSupported | CardStatus::ClaNotSupported => ErrorCode::NotSupported,
            _ => ErrorCode::CardError,
        }
    }
}

impl fmt::Display for StatusWord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04X}", self.0)
    }
}

impl fmt::Debug for StatusWord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StatusWord({:04X})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kb_types::HasErrorCode;

    /// Every status word named in the table, with its typed meaning and the token error
    /// (by stable code) it becomes.
    #[test]
    fn every_mapping() {
        let table: &[(u16, CardStatus, ErrorCode)] = &[
            (0x9000, CardStatus::Ok, ErrorCode::CardError),
            (0x6110, CardStatus::MoreData(0x10), ErrorCode::CardError),
            (0x6100, CardStatus::MoreData(256), ErrorCode::CardError),
            (0x6C08, CardStatus::WrongLe(8), ErrorCode::CardError),
            (0x6C00, CardStatus::WrongLe(256), ErrorCode::CardError),
            (0x63C2, CardStatus::WrongPin { retries_left: 2 }, ErrorCode::WrongPin),
            (0x63CF, CardStatus::WrongPin { retries_left: 15 }, ErrorCode::WrongPin),
            (0x63C0, CardStatus::WrongPin { retries_left: 0 }, ErrorCode::PinLocked),
            (0x6983, CardStatus::PinBlocked, ErrorCode::PinLocked),
            (0x6982, CardStatus::SecurityStatusNotSatisfied, ErrorCode::CardError),
            (0x6985, CardStatus::ConditionsNotSatisfied, ErrorCode::CardError),
            (0x6A82, CardStatus::NotFound, ErrorCode::NotFound),
            (0x6A88, CardStatus::NotFound, ErrorCode::NotFound),
            (0x6A80, CardStatus::WrongData, ErrorCode::CardError),
            (0x6A86, CardStatus::WrongParameters, ErrorCode::CardError),
            (0x6B00, CardStatus::WrongParameters, ErrorCode::CardError),
            (0x6700, CardStatus::WrongLength, ErrorCode::CardError),
            (0x6D00, CardStatus::InsNotSupported, ErrorCode::NotSupported),
            (0x6A81, CardStatus::InsNotSupported, ErrorCode::NotSupported),
            (0x6884, CardStatus::InsNotSupported, ErrorCode::NotSupported),
            (0x6E00, CardStatus::ClaNotSupported, ErrorCode::NotSupported),
            (0x6581, CardStatus::MemoryFailure, ErrorCode::CardError),
            (0x6A84, CardStatus::NotEnoughMemory, ErrorCode::CardError),
            (0x6F00, CardStatus::Other, ErrorCode::CardError),
            (0x6300, CardStatus::Other, ErrorCode::CardError),
            (0x6283, CardStatus::Other, ErrorCode::CardError),
        ];
        for &(sw, status, code) in table {
            let w = StatusWord(sw);
            assert_eq!(w.status(), status, "{w}");
            assert_eq!(w.error_code(), code, "{w}");
            assert_eq!(w.check().is_ok(), sw == 0x9000, "{w}");
        }
    }

    #[test]
    fn words_and_apdu_errors() {
        use crate::ApduError;
        assert_eq!(StatusWord::new(0x61, 0x3B), StatusWord(0x613B));
        assert_eq!((StatusWord(0x613B).sw1(), StatusWord(0x613B).sw2()), (0x61, 0x3B));
        assert_eq!(format!("{:?}", StatusWord(0x9000)), "StatusWord(9000)");
        assert_eq!(ApduError::Status(StatusWord(0x63C1)).code(), ErrorCode::WrongPin);
        assert_eq!(ApduError::Removed.code(), ErrorCode::DeviceRemoved);
        assert_eq!(ApduError::Busy.code(), ErrorCode::DeviceBusy);
        assert_eq!(ApduError::Reset.code(), ErrorCode::Io);
        assert_eq!(ApduError::TooManyRounds(3).code(), ErrorCode::Io);
        assert_eq!(ApduError::Encoding("x").code(), ErrorCode::NotSupported);
        assert_eq!(ApduError::Tlv(crate::tlv::TlvError::Truncated).code(), ErrorCode::TokenCorrupt);
        assert_eq!(ApduError::Status(StatusWord(0x6982)).code(), ErrorCode::CardError);
        assert_eq!(ApduError::Status(StatusWord(0x6982)).to_string(), "card status 6982: security status not satisfied");
    }
}
