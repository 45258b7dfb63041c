//! Response APDUs: data ‖ SW1 SW2.

use crate::{ApduError, Result, StatusWord};
use std::fmt;
use zeroize::Zeroizing;

/// A response APDU. The data is zeroized on drop (it may be a deciphered key) and never
/// printed by `Debug` (only its length).
#[derive(Clone, PartialEq, Eq)]
pub struct Response {
    data: Zeroizing<Vec<u8>>,
    sw: StatusWord,
}

impl Response {
    /// A response from its parts.
    pub fn new(data: impl Into<Vec<u8>>, sw: StatusWord) -> Self {
        Response { data: Zeroizing::new(data.into()), sw }
    }

    /// Split raw response bytes into data and status word.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        match bytes {
            [data @ .., sw1, sw2] => Ok(Response::new(data, StatusWord::new(*sw1, *sw2))),
            _ => Err(ApduError::ResponseTooShort(bytes.len())),
        }
    }

    /// data ‖ SW1 SW2.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(self.data.len() + 2));
        out.extend_from_slice(&self.data);
        out.extend_from_slice(&self.sw.0.to_be_bytes());
        out
    }

    /// The status word.
    pub fn status(&self) -> StatusWord {
        self.sw
    }

    /// The data, whatever the status.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// The data if the status is `9000`, else the status as an error.
    pub fn into_data(self) -> Result<Zeroizing<Vec<u8>>> {
        self.sw.check()?;
        Ok(self.data)
    }

    pub(crate) fn into_parts(self) -> (Zeroizing<Vec<u8>>, StatusWord) {
        (self.data, self.sw)
    }
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Response").field("data_len", &self.data.len()).field("sw", &self.sw).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split() {
        let r = Response::from_bytes(&[0x01, 0x02, 0x90, 0x00]).unwrap();
        assert_eq!(r.data(), &[1, 2]);
        assert!(r.status().is_ok());
        assert_eq!(r.to_bytes().as_slice(), &[0x01, 0x02, 0x90, 0x00]);
        assert_eq!(format!("{r:?}"), "Response { data_len: 2, sw: StatusWord(9000) }");
        assert_eq!(r.into_data().unwrap().as_slice(), &[1, 2]);
        let e = Response::from_bytes(&[0x69, 0x82]).unwrap();
        assert!(e.data().is_empty());
        assert_eq!(e.into_data(), Err(ApduError::Status(StatusWord(0x6982))));
        assert_eq!(Response::from_bytes(&[0x90]), Err(ApduError::ResponseTooShort(1)));
        assert_eq!(Response::from_bytes(&[]), Err(ApduError::ResponseTooShort(0)));
    }
}
