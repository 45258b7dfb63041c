//! One OpenPGP card session, run the same way against the real emulator over PC/SC (in
//! kb-pcsc's tests, which record it) and against its recorded transcript (in
//! kb-openpgp's tests, which replay it byte for byte).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kb_apdu::{ApduError, CardBackend, CardTransaction};
use kb_crypto::rsa::RsaPadding;
use kb_crypto::{HashAlgorithm, SignatureScheme};
use kb_openpgp::{CONTAINER, OpenPgpCard};
use kb_token::{Token, TokenError};
use kb_types::{ContainerInfo, KeyUsage, Pin, TransportKind};
use std::sync::{Arc, Mutex};

/// What the session is given.
pub(crate) struct Inputs {
    pub(crate) user_pin: String,
    pub(crate) wrong_pin: String,
    pub(crate) digest: Vec<u8>,
    pub(crate) ciphertext: Vec<u8>,
}

/// What it observed.
pub(crate) struct Outputs {
    pub(crate) containers: Vec<ContainerInfo>,
    pub(crate) wrong_pin: TokenError,
    pub(crate) retries_after_right_pin: u8,
    pub(crate) signature: Vec<u8>,
    pub(crate) plaintext: Vec<u8>,
}

pub(crate) fn run<B: CardBackend>(backend: B, i: &Inputs) -> Outputs {
    let mut card = OpenPgpCard::open(backend, TransportKind::Pcsc).unwrap();
    let containers = card.containers().unwrap();
    let wrong_pin = card.login(&Pin::new(i.wrong_pin.as_str())).err().unwrap();
    let mut s = card.login(&Pin::new(i.user_pin.as_str())).unwrap();
    let signature = s.sign_digest(CONTAINER, KeyUsage::Sign, &SignatureScheme::Ecdsa(HashAlgorithm::Sha256), &i.digest).unwrap();
    let plaintext = s.decrypt(CONTAINER, KeyUsage::Encrypt, &i.ciphertext, RsaPadding::Pkcs1v15).unwrap().to_vec();
    drop(s);
    let retries_after_right_pin = card.pin_info(kb_types::PinKind::User).unwrap().retries_left;
    Outputs { containers, wrong_pin, retries_after_right_pin, signature, plaintext }
}

/// Every (command, response) a backend saw.
pub(crate) type Log = Arc<Mutex<Vec<(Vec<u8>, Vec<u8>)>>>;

/// A backend that records what passes through it.
pub(crate) struct Recorder<B> {
    pub(crate) inner: B,
    pub(crate) log: Log,
}

struct RecTx<'a> {
    inner: Box<dyn CardTransaction + 'a>,
    log: Log,
}

impl<B: CardBackend> CardBackend for Recorder<B> {
    fn transaction(&mut self) -> Result<Box<dyn CardTransaction + '_>, ApduError> {
        Ok(Box::new(RecTx { inner: self.inner.transaction()?, log: Arc::clone(&self.log) }))
    }
}

impl CardTransaction for RecTx<'_> {
    fn transmit(&mut self, apdu: &[u8], buf_size: usize) -> Result<Vec<u8>, ApduError> {
        let r = self.inner.transmit(apdu, buf_size)?;
        self.log.lock().unwrap().push((apdu.to_vec(), r.clone()));
        Ok(r)
    }
}
