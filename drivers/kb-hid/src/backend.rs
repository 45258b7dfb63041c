//! The HID backend trait: what the transport needs from a HID stack, and the one place
//! HID failures become [`TokenError`]s.

use kb_token::TokenError;
use std::time::Duration;

/// One HID interface of a device, as enumeration sees it (a composite USB key may have
/// several, each with its own path).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HidDeviceInfo {
    /// Platform path to open it by (`/dev/hidraw3` on Linux).
    pub path: String,
    /// USB vendor id.
    pub vendor_id: u16,
    /// USB product id.
    pub product_id: u16,
    /// Serial number string; empty when the device reports none.
    pub serial: String,
    /// Manufacturer string; may be empty.
    pub manufacturer: String,
    /// Product string; may be empty.
    pub product: String,
    /// HID usage page of the top-level collection (`0xFF00`–`0xFFFF`: vendor-defined).
    pub usage_page: u16,
    /// HID usage of the top-level collection.
    pub usage: u16,
    /// USB interface number (-1 when unknown).
    pub interface_number: i32,
}

/// A HID failure. Converted to a [`TokenError`] (and so to a stable error code) by
/// `From`, here alone.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum HidError {
    /// Nothing at that path: the device was never there or has been pulled out.
    #[error("no HID device at {0}")]
    NotFound(String),
    /// The device is there but this user may not open it.
    #[error("no permission to open the HID device {0}: install KeyBridge's udev rules (installer/README.md)")]
    AccessDenied(String),
    /// An open device went away.
    #[error("the HID device was disconnected")]
    Disconnected,
    /// No input report arrived in time.
    #[error("the HID device sent no report within {0:?}")]
    Timeout(Duration),
    /// Anything else (the HID stack's message).
    #[error("HID: {0}")]
    Io(String),
}

impl From<HidError> for TokenError {
    fn from(e: HidError) -> Self {
        match e {
            HidError::NotFound(_) | HidError::Disconnected => TokenError::Removed,
            HidError::AccessDenied(_) | HidError::Timeout(_) | HidError::Io(_) => TokenError::Io(e.to_string()),
        }
    }
}

/// A HID stack: lists interfaces and opens them. Implementations must not block for long
/// in [`enumerate`](Self::enumerate): the transport calls it on every poll.
pub trait HidBackend: Send + Sync {
    /// Every HID interface present now.
    fn enumerate(&self) -> Result<Vec<HidDeviceInfo>, HidError>;

    /// Open the interface at `path` (from [`HidDeviceInfo::path`]).
    fn open(&self, path: &str) -> Result<Box<dyn HidConnection>, HidError>;
}

/// An open HID interface. Reports are passed with their report id as the first byte
/// (`0` for devices that use none), as hidapi does.
pub trait HidConnection: Send {
    /// Send one output report.
    fn write_report(&mut self, report: &[u8]) -> Result<(), HidError>;

    /// Receive one input report into `buf`, returning its length; [`HidError::Timeout`]
    /// when none arrives within `timeout`.
    fn read_report(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize, HidError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use kb_types::{ErrorCode, HasErrorCode};

    #[test]
    fn errors_map_to_stable_codes() {
        let code = |e: HidError| TokenError::from(e).code();
        assert_eq!(code(HidError::NotFound("/dev/hidraw9".into())), ErrorCode::DeviceRemoved);
        assert_eq!(code(HidError::Disconnected), ErrorCode::DeviceRemoved);
        assert_eq!(code(HidError::AccessDenied("/dev/hidraw9".into())), ErrorCode::Io);
        assert_eq!(code(HidError::Timeout(Duration::from_millis(5))), ErrorCode::Io);
        assert_eq!(code(HidError::Io("x".into())), ErrorCode::Io);
        let msg = TokenError::from(HidError::AccessDenied("/dev/hidraw9".into())).to_string();
        assert!(msg.contains("udev rules"), "{msg}");
    }
}
