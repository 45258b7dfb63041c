//! The one place where PKCS#11 return values (`CKR_*`) and cryptoki failures become
//! [`TokenError`]s. Nothing else in this crate inspects an `RvError`.

use cryptoki::context::Function;
use cryptoki::error::{Error, RvError};
use cryptoki::slot::TokenInfo;
use kb_crypto::CryptoError;
use kb_token::TokenError;

/// What a `CKR_*` value means to a KeyBridge user. The PIN outcomes that need the token's
/// flags to be honest ([`RvError::PinIncorrect`]) are refined by [`wrong_pin`].
pub(crate) fn token_error(e: Error) -> TokenError {
    let rv = match e {
        Error::Pkcs11(rv, f) => (rv, f),
        Error::LibraryLoading(e) => return TokenError::Module(format!("cannot load the library: {e}")),
        Error::MissingSymbol(name) => return TokenError::Module(format!("not a PKCS#11 module: {name} is missing")),
        Error::NullFunctionPointer => {
            return TokenError::Module("the module does not implement a function KeyBridge needs".into());
        }
        Error::NotSupported => return TokenError::NotSupported("not supported by the PKCS#11 layer".into()),
        // Attribute conversions failing means the module returned something malformed.
        other => return TokenError::Corrupt(format!("PKCS#11 module returned an unexpected value: {other}")),
    };
    let (rv, f): (RvError, Function) = rv;
    let what = || format!("PKCS#11 {f}: {rv:?}");
    match rv {
        RvError::PinIncorrect => TokenError::WrongPinRetriesUnknown,
        RvError::PinLocked => TokenError::PinLocked,
        RvError::PinLenRange | RvError::PinInvalid => TokenError::PinPolicy("the token rejects this PIN (length or characters)"),
        RvError::PinExpired => TokenError::PinPolicy("the PIN has expired and must be changed"),
        // The token is gone. A session handle only becomes invalid under us when the token
        // was removed (sessions are opened per operation and owned by one thread).
        RvError::TokenNotPresent
        | RvError::DeviceRemoved
        | RvError::SessionHandleInvalid
        | RvError::SessionClosed
        | RvError::SlotIdInvalid
        | RvError::TokenNotRecognized => TokenError::Removed,
        // A token whose info can no longer be read is gone: SoftHSM2 answers so for a
        // deleted token, and a USB token pulled out mid-call may too.
        RvError::GeneralError | RvError::DeviceError if matches!(f, Function::GetTokenInfo) => TokenError::Removed,
        RvError::SessionCount | RvError::OperationActive | RvError::SessionReadOnlyExists => TokenError::Busy,
        RvError::UserPinNotInitialized => TokenError::NotSupported("the token's user PIN is not initialised".into()),
        RvError::MechanismInvalid
        | RvError::MechanismParamInvalid
        | RvError::KeyTypeInconsistent
        | RvError::KeyFunctionNotPermitted
        | RvError::KeySizeRange
        | RvError::FunctionNotSupported
        | RvError::TemplateIncomplete
        | RvError::TemplateInconsistent
        | RvError::AttributeValueInvalid
        | RvError::AttributeTypeInvalid
        | RvError::DomainParamsInvalid
        | RvError::CurveNotSupported => TokenError::NotSupported(what()),
        RvError::TokenWriteProtected | RvError::SessionReadOnly => {
            TokenError::NotSupported("the token is write-protected".into())
        }
        RvError::EncryptedDataInvalid | RvError::EncryptedDataLenRange => TokenError::Crypto(CryptoError::DecryptFailed),
        // Modules (SoftHSM2 among them) report a failed padding check as a general failure.
        RvError::GeneralError | RvError::FunctionFailed if matches!(f, Function::Decrypt) => {
            TokenError::Crypto(CryptoError::DecryptFailed)
        }
        RvError::DataInvalid | RvError::DataLenRange => {
            TokenError::Crypto(CryptoError::InvalidParameter("the token rejects the input length or value"))
        }
        RvError::DeviceMemory => TokenError::Io("the token's memory is full".into()),
        RvError::CryptokiNotInitialized => TokenError::Module("the module is not initialised".into()),
        _ => TokenError::Io(what()),
    }
}

/// A wrong PIN, made as honest as the token's flags allow: PKCS#11 never reports a count,
/// only "locked", "final try" and "count low". Read the flags *after* the failed try.
pub(crate) fn wrong_pin(flags: PinFlags) -> TokenError {
    if flags.locked {
        TokenError::PinLocked
    } else if flags.final_try {
        TokenError::WrongPin { retries_left: 1 }
    } else {
        TokenError::WrongPinRetriesUnknown
    }
}

/// The PIN-state flags of one PIN (user or SO) from `CK_TOKEN_INFO.flags`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct PinFlags {
    pub(crate) count_low: bool,
    pub(crate) final_try: bool,
    pub(crate) locked: bool,
    pub(crate) to_be_changed: bool,
}

impl PinFlags {
    /// The flags of `kind`'s PIN.
    pub(crate) fn of(kind: kb_types::PinKind, t: &TokenInfo) -> Self {
        match kind {
            kb_types::PinKind::User => Self::user(t),
            kb_types::PinKind::So => Self::so(t),
        }
    }

    fn user(t: &TokenInfo) -> Self {
        PinFlags {
            count_low: t.user_pin_count_low(),
            final_try: t.user_pin_final_try(),
            locked: t.user_pin_locked(),
            to_be_changed: t.user_pin_to_be_changed(),
        }
    }

    fn so(t: &TokenInfo) -> Self {
        PinFlags {
            count_low: t.so_pin_count_low(),
            final_try: t.so_pin_final_try(),
            locked: t.so_pin_locked(),
            to_be_changed: t.so_pin_to_be_changed(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kb_types::{ErrorCode, HasErrorCode};

    fn code(rv: RvError) -> ErrorCode {
        token_error(Error::Pkcs11(rv, Function::Login)).code()
    }

    #[test]
    fn table() {
        assert_eq!(code(RvError::PinIncorrect), ErrorCode::WrongPin);
        assert_eq!(code(RvError::PinLocked), ErrorCode::PinLocked);
        assert_eq!(code(RvError::PinLenRange), ErrorCode::PinPolicy);
        assert_eq!(code(RvError::TokenNotPresent), ErrorCode::DeviceRemoved);
        assert_eq!(code(RvError::DeviceRemoved), ErrorCode::DeviceRemoved);
        assert_eq!(code(RvError::SessionHandleInvalid), ErrorCode::DeviceRemoved);
        assert_eq!(code(RvError::MechanismInvalid), ErrorCode::NotSupported);
        assert_eq!(code(RvError::EncryptedDataInvalid), ErrorCode::DecryptionFailed);
        assert_eq!(code(RvError::SessionCount), ErrorCode::DeviceBusy);
        assert_eq!(code(RvError::GeneralError), ErrorCode::Io);
        let in_fn = |rv, f| token_error(Error::Pkcs11(rv, f)).code();
        assert_eq!(in_fn(RvError::GeneralError, Function::GetTokenInfo), ErrorCode::DeviceRemoved);
        assert_eq!(in_fn(RvError::GeneralError, Function::Decrypt), ErrorCode::DecryptionFailed);
        assert_eq!(token_error(Error::MissingSymbol("C_GetFunctionList")).code(), ErrorCode::ModuleLoadFailed);
    }

    #[test]
    fn wrong_pin_is_never_a_guess() {
        let f = PinFlags::default();
        assert_eq!(wrong_pin(f), TokenError::WrongPinRetriesUnknown);
        assert_eq!(wrong_pin(PinFlags { count_low: true, ..f }), TokenError::WrongPinRetriesUnknown);
        assert_eq!(wrong_pin(PinFlags { final_try: true, ..f }), TokenError::WrongPin { retries_left: 1 });
        assert_eq!(wrong_pin(PinFlags { locked: true, ..f }), TokenError::PinLocked);
    }
}
