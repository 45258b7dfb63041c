//! [`BleToken`]: the OpenPGP application over a [`BleCard`] as a [`Token`], with the
//! operation's context reaching the key: a cancelled or expired operation sends CANCEL
//! to the key and fails at once instead of waiting for its answer.

use crate::card::BleCard;
use kb_crypto::PublicKey;
use kb_crypto::rsa::RsaPadding;
use kb_openpgp::OpenPgpCard;
use kb_token::{OpContext, Result, Session, Token, UserAuth, WakerGuard};
use kb_types::{Algorithm, ContainerInfo, DeviceInfo, KeyUsage, Pin, PinInfo, PinKind, SealInfo};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use zeroize::Zeroizing;

/// A BLE key running the OpenPGP card application.
pub struct BleToken {
    card: OpenPgpCard<BleCard>,
    cancel: Arc<AtomicBool>,
}

impl std::fmt::Debug for BleToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BleToken").field("id", &self.card.info().id).finish()
    }
}

impl BleToken {
    /// Wrap an opened card.
    pub fn new(card: OpenPgpCard<BleCard>) -> Self {
        let cancel = card.backend().cancel_flag();
        BleToken { card, cancel }
    }

    /// The card itself (admin operations: `login_admin`).
    pub fn card_mut(&mut self) -> &mut OpenPgpCard<BleCard> {
        &mut self.card
    }
}

impl Token for BleToken {
    fn info(&self) -> DeviceInfo {
        self.card.info()
    }
    fn pin_info(&mut self, kind: PinKind) -> Result<PinInfo> {
        self.card.pin_info(kind)
    }
    fn change_pin(&mut self, kind: PinKind, old: &Pin, new: &Pin) -> Result<()> {
        self.card.change_pin(kind, old, new)
    }
    fn unblock_pin(&mut self, so_pin: &Pin, new_user_pin: &Pin) -> Result<()> {
        self.card.unblock_pin(so_pin, new_user_pin)
    }
    fn containers(&mut self) -> Result<Vec<ContainerInfo>> {
        self.card.containers()
    }
    fn public_key(&mut self, container: &str, usage: KeyUsage) -> Result<PublicKey> {
        self.card.public_key(container, usage)
    }
    fn seals(&mut self) -> Result<Vec<SealInfo>> {
        self.card.seals()
    }
    fn read_seal(&mut self, id: &str) -> Result<Vec<u8>> {
        self.card.read_seal(id)
    }

    fn open_session<'a>(&'a mut self, auth: UserAuth<'_>, ctx: &OpContext) -> Result<Box<dyn Session + 'a>> {
        ctx.check()?;
        self.cancel.store(false, Ordering::SeqCst);
        let flag = Arc::clone(&self.cancel);
        let guard = ctx.on_stop(move |_| flag.store(true, Ordering::SeqCst));
        let cancel = Arc::clone(&self.cancel);
        match self.card.open_session(auth, ctx) {
            Ok(inner) => Ok(Box::new(BleSession { inner, ctx: ctx.clone(), guard: Some(guard), cancel })),
            Err(e) => {
                // The context's cancel must not outlive its operation.
                drop(guard);
                cancel.store(false, Ordering::SeqCst);
                Err(stopped_or(ctx, e))
            }
        }
    }
}

/// An error from an operation the context stopped is the context's error (cancelled,
/// timed out), not the link's.
fn stopped_or(ctx: &OpContext, e: kb_token::TokenError) -> kb_token::TokenError {
    ctx.check().err().unwrap_or(e)
}

struct BleSession<'a> {
    inner: Box<dyn Session + 'a>,
    ctx: OpContext,
    guard: Option<WakerGuard>,
    cancel: Arc<AtomicBool>,
}

impl Drop for BleSession<'_> {
    fn drop(&mut self) {
        // Unregister first, so the context cannot set the flag again, then clear it for
        // the token's next operation.
        self.guard.take();
        self.cancel.store(false, Ordering::SeqCst);
    }
}

impl BleSession<'_> {
    fn run<T>(&mut self, f: impl FnOnce(&mut dyn Session) -> Result<T>) -> Result<T> {
        self.ctx.check()?;
        f(self.inner.as_mut()).map_err(|e| stopped_or(&self.ctx, e))
    }
}

impl Session for BleSession<'_> {
    fn create_container(&mut self, name: &str) -> Result<()> {
        self.run(|s| s.create_container(name))
    }
    fn delete_container(&mut self, name: &str) -> Result<()> {
        self.run(|s| s.delete_container(name))
    }
    fn generate_key_pair(&mut self, container: &str, usage: KeyUsage, algorithm: Algorithm) -> Result<PublicKey> {
        self.run(|s| s.generate_key_pair(container, usage, algorithm))
    }
    fn import_certificate(&mut self, container: &str, usage: KeyUsage, der: &[u8]) -> Result<()> {
        self.run(|s| s.import_certificate(container, usage, der))
    }
    fn delete_certificate(&mut self, container: &str, usage: KeyUsage) -> Result<()> {
        self.run(|s| s.delete_certificate(container, usage))
    }
    fn sign_digest(
        &mut self,
        container: &str,
        usage: KeyUsage,
        scheme: &kb_crypto::SignatureScheme,
        digest: &[u8],
    ) -> Result<Vec<u8>> {
        self.run(|s| s.sign_digest(container, usage, scheme, digest))
    }
    fn decrypt(
        &mut self,
        container: &str,
        usage: KeyUsage,
        ciphertext: &[u8],
        padding: RsaPadding,
    ) -> Result<Zeroizing<Vec<u8>>> {
        self.run(|s| s.decrypt(container, usage, ciphertext, padding))
    }
    fn write_seal(&mut self, id: &str, name: &str, mime: &str, image: &[u8]) -> Result<()> {
        self.run(|s| s.write_seal(id, name, mime, image))
    }
    fn delete_seal(&mut self, id: &str) -> Result<()> {
        self.run(|s| s.delete_seal(id))
    }
}
