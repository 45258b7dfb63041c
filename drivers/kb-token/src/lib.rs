//! The Token model: one trait every key medium implements — file-type keys (kb-filekey),
//! PC/SC cards, PKCS#11 and SKF modules, HID keys; BLE keys and phones next.
//!
//! - [`Token`]: what anyone may read without a PIN (device info, PIN state, containers
//!   and certificates, seals) plus PIN change/unblock, and [`Token::login`], the only way
//!   to a [`Session`].
//! - [`Session`]: private-key operations (sign, decrypt, key generation, certificate
//!   import/delete, seal writes). Holding one proves the user was verified — by the PIN
//!   the PC presented, or by the medium itself ([`kb_types::UserVerification`]) — so "signing is
//!   reachable only from an unlocked session" is a fact of the types.
//! - [`OpContext`]: every session is opened with the operation's context (cancellation,
//!   deadline, status), so a cancelled request reaches a medium that waits.
//! - [`Transport`]: finds media and reports them coming and going as a stream of
//!   [`TransportEvent`]s (`Added` / `Removed` / `Offline` / `Online` /
//!   `EnumerationComplete`).
//!
//! Tokens are synchronous: the device service gives each medium its own actor thread,
//! so a medium never sees two commands at once and blocking I/O blocks nobody else.

#![cfg_attr(test, allow(clippy::panic, clippy::unwrap_used, clippy::expect_used))]

pub mod apdu;
mod context;
pub mod enveloped;
mod error;
#[cfg(any(test, feature = "test-support"))]
pub mod memory;

pub use context::{OpContext, OpStatus, Purpose, StopReason, WakerGuard};
pub use enveloped::Sm2EnvelopedKey;
pub use error::{Result, TokenError};

use kb_crypto::rsa::RsaPadding;
use kb_crypto::{PublicKey, SignatureScheme};
use kb_types::{Algorithm, ContainerInfo, DeviceId, DeviceInfo, KeyUsage, Pin, PinInfo, PinKind, SealInfo, TransportKind};
use std::sync::mpsc::Receiver;
use zeroize::Zeroizing;

/// A medium's PIN length rule, in characters. Media differ (a file key allows 6–32, many
/// USB keys 6–16), so each declares its own; checking is the same everywhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PinPolicy {
    /// Fewest characters.
    pub min_chars: usize,
    /// Most characters.
    pub max_chars: usize,
}

impl PinPolicy {
    /// `Ok` if `pin` fits, else [`TokenError::PinPolicy`].
    pub fn check(&self, pin: &Pin) -> Result<()> {
        let n = pin.char_len();
        if n < self.min_chars {
            return Err(TokenError::PinPolicy("the PIN is too short"));
        }
        if n > self.max_chars {
            return Err(TokenError::PinPolicy("the PIN is too long"));
        }
        Ok(())
    }
}

/// A key medium, as seen before any PIN is entered.
pub trait Token: Send {
    /// Identity and capabilities.
    fn info(&self) -> DeviceInfo;

    /// PIN state (tries left, locked, still the default).
    fn pin_info(&mut self, kind: PinKind) -> Result<PinInfo>;

    /// Change the user or SO PIN. A wrong `old` PIN costs a try.
    fn change_pin(&mut self, kind: PinKind, old: &Pin, new: &Pin) -> Result<()>;

    /// Unblock (and reset) the user PIN with the SO PIN. A wrong SO PIN costs an SO try.
    fn unblock_pin(&mut self, so_pin: &Pin, new_user_pin: &Pin) -> Result<()>;

    /// Containers with their key slots and certificates (public data).
    fn containers(&mut self) -> Result<Vec<ContainerInfo>>;

    /// The public key of a slot.
    fn public_key(&mut self, container: &str, usage: KeyUsage) -> Result<PublicKey>;

    /// Seal images on the medium.
    fn seals(&mut self) -> Result<Vec<SealInfo>>;

    /// One seal image's bytes.
    fn read_seal(&mut self, id: &str) -> Result<Vec<u8>>;

    /// Verify the user and open a session for one operation.
    ///
    /// - [`UserAuth::Pin`] on a medium whose capabilities say
    ///   [`kb_types::UserVerification::HostPin`]: a wrong PIN costs a try and returns
    ///   [`TokenError::WrongPin`] with the tries left, or [`TokenError::PinLocked`].
    /// - [`UserAuth::OnMedium`] on a medium that verifies the user itself
    ///   ([`kb_types::UserVerification::OnMedium`]: phone, PIN pad, BLE key with a keypad): the
    ///   medium asks the user and reports its own wrong-PIN counts and lockouts the same
    ///   way. A medium that cannot do it answers [`TokenError::NotSupported`].
    ///
    /// `ctx` is the operation's context: a medium that waits (for the user on the medium,
    /// for a remote link) watches it for cancellation and the deadline and reports its
    /// status there; the session it returns keeps it for the operation it runs.
    fn open_session<'a>(&'a mut self, auth: UserAuth<'_>, ctx: &OpContext) -> Result<Box<dyn Session + 'a>>;

    /// Verify the user PIN and open a session: [`Token::open_session`] with a PIN and a
    /// context nobody cancels (tools and tests).
    fn login<'a>(&'a mut self, pin: &Pin) -> Result<Box<dyn Session + 'a>> {
        self.open_session(UserAuth::Pin(pin), &OpContext::new())
    }

    /// Whether the medium is software in this process (a file key): its calls are
    /// bounded work on this machine's CPU and disk, and never wait for a device, a link
    /// or the user. The device service may then run a command on the caller's thread
    /// while the medium is idle, instead of handing it to the medium's own thread.
    /// Default: `false` (a card, a module, a remote medium).
    fn in_process(&self) -> bool {
        false
    }
}

/// How the user is verified for a session.
#[derive(Clone, Copy)]
pub enum UserAuth<'a> {
    /// The user PIN, typed on the PC (or taken from the PIN cache).
    Pin(&'a Pin),
    /// The medium verifies the user itself.
    OnMedium,
}

impl std::fmt::Debug for UserAuth<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            UserAuth::Pin(_) => "Pin(REDACTED)",
            UserAuth::OnMedium => "OnMedium",
        })
    }
}

impl<'a> UserAuth<'a> {
    /// The PIN, or [`TokenError::NotSupported`] for a medium that only takes PINs.
    pub fn pin(self) -> Result<&'a Pin> {
        match self {
            UserAuth::Pin(p) => Ok(p),
            UserAuth::OnMedium => {
                Err(TokenError::NotSupported("this medium does not verify the user itself; KeyBridge asks for its PIN".into()))
            }
        }
    }
}

/// Private-key operations, reachable only through [`Token::login`].
pub trait Session {
    /// Create an empty container.
    fn create_container(&mut self, name: &str) -> Result<()>;

    /// Delete a container with its keys and certificates.
    fn delete_container(&mut self, name: &str) -> Result<()>;

    /// Generate a key pair in a slot on the medium, replacing any key (and certificate)
    /// there; returns the public key (for a CSR). The private key never leaves.
    fn generate_key_pair(&mut self, container: &str, usage: KeyUsage, algorithm: Algorithm) -> Result<PublicKey>;

    /// Install a certificate (DER) for a slot; it must match the slot's key pair.
    fn import_certificate(&mut self, container: &str, usage: KeyUsage, der: &[u8]) -> Result<()>;

    /// Remove a slot's certificate (the key pair stays).
    fn delete_certificate(&mut self, container: &str, usage: KeyUsage) -> Result<()>;

    /// Import an SM2 encryption key pair a CA's key-management centre delivered in an
    /// envelope (GM/T 0009 `SM2EnvelopedKey`, [`enveloped`]) into `container`'s
    /// encryption slot, replacing the pair (and certificate) there, with `certificate`
    /// (DER) when given. The medium opens the envelope itself with the container's
    /// **signing** private key — the encryption private key is in the clear nowhere else —
    /// and checks, before anything is written, that the certificate holds the envelope's
    /// public key ([`TokenError::CertificateKeyMismatch`]) and that the envelope opens to a
    /// private key matching it ([`TokenError::EnvelopedKey`]); on a failure the slot keeps
    /// what it held. Media that cannot import keys answer [`TokenError::NotSupported`].
    fn import_enveloped_key(&mut self, container: &str, envelope: &Sm2EnvelopedKey, certificate: Option<&[u8]>) -> Result<()> {
        let _ = (container, envelope, certificate);
        Err(TokenError::NotSupported("importing an enveloped SM2 encryption key pair".into()))
    }

    /// Sign a digest made with `PublicKey::hasher(scheme)` (for SM2 `e = SM3(ZA ‖ M)`).
    fn sign_digest(&mut self, container: &str, usage: KeyUsage, scheme: &SignatureScheme, digest: &[u8]) -> Result<Vec<u8>>;

    /// Decrypt a short ciphertext (a content key; SM2 in any layout, or RSA).
    fn decrypt(&mut self, container: &str, usage: KeyUsage, ciphertext: &[u8], padding: RsaPadding)
    -> Result<Zeroizing<Vec<u8>>>;

    /// Store or replace a seal image.
    fn write_seal(&mut self, id: &str, name: &str, mime: &str, image: &[u8]) -> Result<()>;

    /// Delete a seal image.
    fn delete_seal(&mut self, id: &str) -> Result<()>;
}

/// Something that happened to a transport's media.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TransportEvent {
    /// A medium appeared (or was present at start).
    Added(DeviceInfo),
    /// A medium went away.
    Removed(DeviceId),
    /// A medium this transport knows is out of reach (its link dropped); it stays known
    /// and may come back with [`TransportEvent::Online`].
    Offline(DeviceId),
    /// A medium reported [`TransportEvent::Offline`] is reachable again (same medium:
    /// the token opened for it keeps working).
    Online(DeviceId),
    /// Everything present at start has been reported.
    EnumerationComplete,
    /// The transport itself failed (reported once; the transport keeps trying).
    Error(String),
}

/// What a polling transport knows about its media: turns each fresh listing into the
/// events since the previous one.
#[derive(Debug, Default)]
pub struct PolledMedia {
    present: std::collections::BTreeMap<DeviceId, DeviceInfo>,
    last_error: Option<String>,
}

impl PolledMedia {
    /// Events for one listing: `Removed` for media gone, `Added` for new ones. A failed
    /// listing is one `Error` starting with the error code's name (the same failure again
    /// is not repeated); what was present stays known until a listing succeeds.
    pub fn update(&mut self, listing: Result<Vec<DeviceInfo>>) -> Vec<TransportEvent> {
        use kb_types::HasErrorCode;
        match listing {
            Ok(media) => {
                self.last_error = None;
                let now: std::collections::BTreeMap<DeviceId, DeviceInfo> =
                    media.into_iter().map(|i| (i.id.clone(), i)).collect();
                let mut ev: Vec<TransportEvent> =
                    self.present.keys().filter(|id| !now.contains_key(*id)).cloned().map(TransportEvent::Removed).collect();
                ev.extend(now.values().filter(|i| !self.present.contains_key(&i.id)).cloned().map(TransportEvent::Added));
                self.present = now;
                ev
            }
            Err(e) => {
                let msg = format!("{}: {e}", e.code().name());
                if self.last_error.as_ref() == Some(&msg) {
                    Vec::new()
                } else {
                    self.last_error = Some(msg.clone());
                    vec![TransportEvent::Error(msg)]
                }
            }
        }
    }
}

/// Check a driver module path from the settings before loading it: it must be absolute
/// and an existing file, else [`TokenError::Module`] naming it.
pub fn check_module_path(path: &std::path::Path) -> Result<()> {
    if !path.is_absolute() {
        return Err(TokenError::Module(format!("{}: the module path must be absolute", path.display())));
    }
    if !path.is_file() {
        return Err(TokenError::Module(format!("{}: no such file", path.display())));
    }
    Ok(())
}

/// Finds media of one kind and opens them.
pub trait Transport: Send + Sync {
    /// Which kind.
    fn kind(&self) -> TransportKind;

    /// Start watching: every present medium is reported as `Added`, then
    /// `EnumerationComplete`, then changes as they happen. Dropping the receiver stops
    /// the watch.
    fn watch(&self) -> Result<Receiver<TransportEvent>>;

    /// Open a medium this transport reported.
    fn open(&self, id: &DeviceId) -> Result<Box<dyn Token>>;
}

#[cfg(test)]
mod polled_media_tests {
    use super::*;
    use kb_types::Capabilities;

    fn info(local: &str) -> DeviceInfo {
        DeviceInfo {
            id: DeviceId::new(TransportKind::Skf, local),
            label: local.into(),
            serial: local.into(),
            manufacturer: String::new(),
            model: String::new(),
            transport: TransportKind::Skf,
            capabilities: Capabilities::default(),
        }
    }

    #[test]
    fn listings_become_events() {
        let mut m = PolledMedia::default();
        assert_eq!(m.update(Ok(vec![info("a")])), [TransportEvent::Added(info("a"))]);
        assert_eq!(m.update(Ok(vec![info("a"), info("b")])), [TransportEvent::Added(info("b"))]);
        let failed = m.update(Err(TokenError::Module("x: no such file".into())));
        assert_eq!(failed, [TransportEvent::Error("module_load_failed: driver module: x: no such file".into())]);
        assert!(m.update(Err(TokenError::Module("x: no such file".into()))).is_empty());
        assert_eq!(m.update(Ok(vec![info("b")])), [TransportEvent::Removed(info("a").id)]);
        assert!(check_module_path(std::path::Path::new("rel.so")).is_err());
        assert!(check_module_path(std::path::Path::new("/nonexistent/x.so")).is_err());
    }
}
