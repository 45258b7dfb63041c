//! PINs as a secret type: zeroized on drop, never printed.

use zeroize::Zeroizing;

/// A PIN. `Debug` prints `Pin(REDACTED)`; there is no `Display` and no `Serialize`, so a
/// PIN cannot end up in a log line, an error or a JSON message by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Pin(Zeroizing<String>);

impl Pin {
    /// Wrap a PIN typed by the user.
    pub fn new(pin: impl Into<String>) -> Self {
        Pin(Zeroizing::new(pin.into()))
    }

    /// The PIN bytes, for the medium or a KDF.
    pub fn expose(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// Length in characters (for policy checks without exposing it).
    pub fn char_len(&self) -> usize {
        self.0.chars().count()
    }
}

impl std::fmt::Debug for Pin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pin(REDACTED)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_printed() {
        let p = Pin::new("123456-marker");
        assert_eq!(format!("{p:?}"), "Pin(REDACTED)");
        assert_eq!(format!("{:?}", Some(&p)), "Some(Pin(REDACTED))");
        assert_eq!(p.expose(), b"123456-marker");
        assert_eq!(p.char_len(), 13);
    }
}
