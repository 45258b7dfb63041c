//! Private-key operations: user verification, the PIN cache and prompt, the medium call,
//! verification of what the medium returned, and the audit record — with the operation's
//! context (cancellation, deadline, status) reaching the prompt and the medium.
//!
//! The flow runs on the caller's thread; only the medium calls go to the device's actor:
//!
//! 1. A medium that verifies the user itself ([`UserVerification::OnMedium`]) gets the
//!    session request directly — the PC never asks for its PIN or caches it.
//! 2. Otherwise a PIN remembered for this client is used, else the PIN dialog is opened
//!    (with the tries left, the client, the operation and the certificate) — on this
//!    thread, so the medium keeps answering reads while the user types.
//! 3. The context is checked after the dialog: a PIN typed after a cancel or past the
//!    deadline is dropped and never reaches a medium.
//! 4. On the actor: the context is checked again, the session opened, the operation run,
//!    and what the medium returned checked (every signature verified against the slot's
//!    public key) before it leaves the service. The actor writes the audit record.
//!    The context's [`Purpose`](kb_token::Purpose) — a scene and summary the requester
//!    may have declared — is completed with the client, the operation and the
//!    certificate first, so a medium that shows the user what it does (a phone) can.
//! 5. A wrong PIN asks again (at most [`MAX_PIN_PROMPTS`](super::MAX_PIN_PROMPTS) times);
//!    a remembered PIN the medium rejects is forgotten and the user asked.

use super::actor::{Actor, record};
use super::{DeviceManager, MAX_PIN_PROMPTS};
use crate::audit::AuthType;
use crate::pin_cache::PinCache;
use crate::prompter::PinRequest;
use crate::{Result, ServiceError};
use kb_token::{OpContext, OpStatus, Session, TokenError, UserAuth};
use kb_types::{DeviceId, DeviceInfo, HasErrorCode, KeyUsage, Pin, PinKind, TransportKind, UserVerification};
use std::sync::Arc;

/// Which certificate an operation concerns, for the audit record and the PIN dialog.
#[derive(Clone, Debug)]
pub(crate) enum Describe {
    /// A key slot's certificate.
    Slot(String, KeyUsage),
    /// Given by the caller (a certificate being imported).
    Given(String),
    /// None (containers, seals).
    Nothing,
}

type Prepare<P> = Box<dyn Fn(&mut Actor) -> Result<P> + Send + Sync>;
type Run<P, T> = Box<dyn Fn(&mut dyn Session, &P) -> kb_token::Result<T> + Send + Sync>;
type Check<P, T> = Box<dyn Fn(&P, &T, &DeviceInfo) -> Result<()> + Send + Sync>;

/// One private-key operation, runnable again after a wrong PIN.
pub(crate) struct PrivateOp<P, T> {
    /// Its name in the audit log and the PIN dialog (`sign`, `decrypt`, `keygen`, …).
    pub(crate) operation: &'static str,
    pub(crate) describe: Describe,
    /// Public data it needs from the medium, read on the actor before the session (the
    /// slot's public key, a message digest).
    pub(crate) prepare: Prepare<P>,
    /// The medium call, in the session.
    pub(crate) run: Run<P, T>,
    /// Checks what the medium returned before it leaves the service.
    pub(crate) check: Check<P, T>,
    /// `Some(certificates)` for an operation that writes to the medium: the slot cache is
    /// dropped afterwards, and `CertificatesChanged` goes out on success when true.
    pub(crate) writes: Option<bool>,
}

impl<P, T> PrivateOp<P, T> {
    pub(crate) fn new(
        operation: &'static str,
        describe: Describe,
        prepare: impl Fn(&mut Actor) -> Result<P> + Send + Sync + 'static,
        run: impl Fn(&mut dyn Session, &P) -> kb_token::Result<T> + Send + Sync + 'static,
    ) -> Self {
        PrivateOp {
            operation,
            describe,
            prepare: Box::new(prepare),
            run: Box::new(run),
            check: Box::new(|_, _, _| Ok(())),
            writes: None,
        }
    }

    pub(crate) fn checked(mut self, check: impl Fn(&P, &T, &DeviceInfo) -> Result<()> + Send + Sync + 'static) -> Self {
        self.check = Box::new(check);
        self
    }

    pub(crate) fn writing(mut self, certificates: bool) -> Self {
        self.writes = Some(certificates);
        self
    }
}

/// How the user is verified on `info`'s medium, as the audit records it.
fn on_medium_auth(info: &DeviceInfo) -> AuthType {
    if info.transport == TransportKind::Phone { AuthType::Phone } else { AuthType::OnMedium }
}

/// `label (model, id)`: how errors name a medium.
pub(crate) fn medium_name(info: &DeviceInfo) -> String {
    if info.model.is_empty() {
        format!("{} ({})", info.label, info.id)
    } else {
        format!("{} ({}, {})", info.label, info.model, info.id)
    }
}

fn is_wrong_pin(e: &ServiceError) -> bool {
    matches!(e, ServiceError::Token(TokenError::WrongPin { .. } | TokenError::WrongPinRetriesUnknown))
}

/// What the actor reports before a PIN prompt: the certificate and the tries left.
struct BeforePrompt {
    description: String,
    retries_left: Option<u8>,
    locked: bool,
}

impl Actor {
    fn describe(&mut self, d: &Describe) -> String {
        match d {
            Describe::Slot(c, u) => self.describe_slot(c, *u),
            Describe::Given(s) => s.clone(),
            Describe::Nothing => String::new(),
        }
    }

    fn before_prompt(&mut self, d: &Describe, need_retries: bool) -> Result<BeforePrompt> {
        let description = self.describe(d);
        let (retries_left, locked) = if need_retries {
            match self.token()?.pin_info(PinKind::User) {
                Ok(i) => (Some(i.retries_left), i.locked),
                Err(TokenError::NotSupported(_)) => (None, false),
                Err(e) => return Err(e.into()),
            }
        } else {
            (None, false)
        };
        Ok(BeforePrompt { description, retries_left, locked })
    }

    /// Step 4: session, operation, check, audit. A wrong PIN is left to the caller to
    /// audit (it may ask again) unless the operation was stopped meanwhile.
    fn run_private<P, T>(
        &mut self,
        op: &PrivateOp<P, T>,
        pin: Option<&Pin>,
        auth: AuthType,
        client: &str,
        ctx: &OpContext,
        remember: Option<&PinCache>,
    ) -> Result<T> {
        let description = self.describe(&op.describe);
        // Who asks and why, for a medium that shows it (a phone's screen): what the
        // requester declared (a scene, a summary), completed with what the service knows.
        let mut purpose = ctx.purpose().unwrap_or_default();
        purpose.fill_in(client, op.operation, &description);
        ctx.set_purpose(purpose);
        let r = self.session_run(op, pin, ctx, remember.map(|c| (c, client)));
        if let Some(certificates) = op.writes {
            self.forget_slots();
            if r.is_ok() && certificates {
                self.emit(super::DeviceEvent::CertificatesChanged(self.info.id.clone()));
            }
        }
        match &r {
            Err(e) if is_wrong_pin(e) && pin.is_some() && ctx.stopped().is_none() => r,
            _ => self.audited(op.operation, client, description, r, auth),
        }
    }

    fn session_run<P, T>(
        &mut self,
        op: &PrivateOp<P, T>,
        pin: Option<&Pin>,
        ctx: &OpContext,
        remember: Option<(&PinCache, &str)>,
    ) -> Result<T> {
        // Queued behind other work: still wanted? (A PIN typed for a cancelled request
        // never reaches the medium.)
        ctx.check()?;
        let prepared = (op.prepare)(self)?;
        let user = match pin {
            Some(p) => UserAuth::Pin(p),
            None => UserAuth::OnMedium,
        };
        let id = self.info.id.clone();
        let value = {
            let token = self.token()?;
            let mut session = token.open_session(user, ctx)?;
            if let (Some((cache, client)), Some(pin)) = (remember, pin) {
                // Accepted by the medium: now it may be remembered (never a wrong PIN).
                cache.insert(&id, client, pin.clone());
            }
            // The user may have been verified on the medium for a while: still wanted?
            ctx.check()?;
            ctx.status(OpStatus::Working);
            (op.run)(session.as_mut(), &prepared)?
        };
        (op.check)(&prepared, &value, &self.info)?;
        Ok(value)
    }
}

impl DeviceManager {
    /// Run a private-key operation for `caller` (see the module documentation).
    pub(crate) fn private_op<P: 'static, T: Send + 'static>(
        &self,
        device: &DeviceId,
        caller: super::Caller,
        op: PrivateOp<P, T>,
    ) -> Result<T> {
        let info = self.device(device)?;
        let op = Arc::new(op);
        let ctx = caller.operation_context();
        let client = caller.client().to_string();
        let audit_here = |description: &str, e: ServiceError, auth: AuthType| -> ServiceError {
            // The audit error matters less than the operation's own.
            let _ = record(&*self.shared.audit, &info, op.operation, &client, description.to_string(), Some(e.code()), auth);
            e
        };
        if info.capabilities.user_verification == UserVerification::OnMedium {
            let auth = on_medium_auth(&info);
            if let Err(e) = ctx.check() {
                return Err(audit_here("", e.into(), auth));
            }
            if let Err(e) = self.reachable(device) {
                return Err(audit_here("", e.into(), auth));
            }
            let (op2, client2, ctx2) = (Arc::clone(&op), client.clone(), ctx.clone());
            return self.call_in(device, &ctx, move |a| a.run_private(&op2, None, auth, &client2, &ctx2, None));
        }
        let mut retries: Option<u8> = None;
        let mut previous_wrong = false;
        let mut cached_pin_rejected = false;
        let mut prompts = 0;
        let mut description = String::new();
        // One PIN dialog per medium at a time: concurrent requests wait here, then find
        // the PIN the first one typed in the cache (or ask in turn).
        let mut gate: Option<GateGuard<'_>> = None;
        loop {
            let mut cached = self.shared.cache.get(device, &client);
            if cached.is_none() && gate.is_none() {
                match self.shared.prompt_gate.enter(device, &ctx) {
                    Ok(g) => gate = Some(g),
                    Err(e) => return Err(audit_here(&description, e.into(), AuthType::None)),
                }
                cached = self.shared.cache.get(device, &client);
            }
            let auth = if cached.is_some() { AuthType::PinCached } else { AuthType::PinEntered };
            // Failures before a PIN was obtained are audited with no auth type.
            let none = AuthType::None;
            if let Err(e) = ctx.check() {
                return Err(audit_here(&description, e.into(), none));
            }
            if let Err(e) = self.reachable(device) {
                return Err(audit_here(&description, e.into(), none));
            }
            let pin = match cached {
                Some(p) => p,
                None => {
                    let d = op.describe.clone();
                    let need = retries.is_none();
                    let before = match self.call_in(device, &ctx, move |a| a.before_prompt(&d, need)) {
                        Ok(b) => b,
                        Err(e) => return Err(audit_here(&description, e, none)),
                    };
                    description = before.description;
                    if before.locked {
                        return Err(audit_here(&description, TokenError::PinLocked.into(), none));
                    }
                    let retries_left = retries.or(before.retries_left);
                    if prompts == MAX_PIN_PROMPTS {
                        let e = TokenError::WrongPin { retries_left: retries_left.unwrap_or(0) };
                        return Err(audit_here(&description, e.into(), AuthType::PinEntered));
                    }
                    prompts += 1;
                    let req = PinRequest {
                        device_id: info.id.clone(),
                        device_label: info.label.clone(),
                        kind: PinKind::User,
                        retries_left,
                        operation: op.operation.to_string(),
                        client: client.clone(),
                        certificate: description.clone(),
                        previous_wrong,
                        cached_pin_rejected,
                    };
                    ctx.status(OpStatus::WaitingForPin);
                    let asked = self.shared.prompter.ask_pin(&req, &ctx);
                    // A PIN typed after a cancel, or past the deadline, is dropped here.
                    let asked = match (asked, ctx.check()) {
                        (_, Err(stop)) => Err(stop.into()),
                        (a, Ok(())) => a,
                    };
                    match asked {
                        Ok(pin) => pin,
                        // Giving up after a wrong PIN: the outcome is that wrong PIN, with
                        // the tries left — what a bridge client or script needs to know —
                        // not a mere cancellation.
                        Err(ServiceError::Cancelled) if previous_wrong => {
                            let e = match retries_left {
                                Some(n) => TokenError::WrongPin { retries_left: n },
                                None => TokenError::WrongPinRetriesUnknown,
                            };
                            return Err(audit_here(&description, e.into(), AuthType::PinEntered));
                        }
                        Err(e) => return Err(audit_here(&description, e, none)),
                    }
                }
            };
            let from_cache = auth == AuthType::PinCached;
            // A typed PIN is remembered, for this client, once the medium accepted it.
            let remember = (!from_cache).then(|| Arc::clone(&self.shared.cache));
            let (op2, client2, ctx2) = (Arc::clone(&op), client.clone(), ctx.clone());
            let r =
                self.call_in(device, &ctx, move |a| a.run_private(&op2, Some(&pin), auth, &client2, &ctx2, remember.as_deref()));
            match r {
                Ok(v) => return Ok(v),
                Err(e) if is_wrong_pin(&e) => {
                    if from_cache {
                        self.shared.cache.clear_device(device);
                        cached_pin_rejected = true;
                    } else {
                        previous_wrong = true;
                    }
                    if let ServiceError::Token(TokenError::WrongPin { retries_left }) = e {
                        if retries_left == 0 {
                            // That was the last try: the PIN is locked now. Asking again would
                            // only show the user a prompt that cannot succeed.
                            self.shared.cache.clear_device(device);
                            return Err(audit_here(&description, TokenError::PinLocked.into(), auth));
                        }
                        retries = Some(retries_left);
                    }
                    // A medium that does not count out loud (PKCS#11): ask again, showing
                    // no count; its own flags lock it when it must.
                }
                Err(e) => {
                    if matches!(e, ServiceError::Token(TokenError::PinLocked)) {
                        self.shared.cache.clear_device(device);
                    }
                    return Err(e);
                }
            }
        }
    }
}

/// A signature the medium returned must verify with the slot's public key.
pub(crate) fn check_signature(
    public: &kb_crypto::PublicKey,
    scheme: &kb_crypto::SignatureScheme,
    digest: &[u8],
    signature: &[u8],
    info: &DeviceInfo,
) -> Result<()> {
    public
        .verify_digest(scheme, digest, signature)
        .map_err(|_| ServiceError::MediumSignatureInvalid { medium: medium_name(info) })
}

/// One PIN dialog per medium at a time (see [`DeviceManager::private_op`]).
#[derive(Default)]
pub(crate) struct PromptGate {
    busy: std::sync::Mutex<std::collections::HashSet<DeviceId>>,
    freed: std::sync::Condvar,
}

/// Holds a medium's PIN dialog turn; frees it when dropped.
pub(crate) struct GateGuard<'a> {
    gate: &'a PromptGate,
    device: DeviceId,
}

impl PromptGate {
    /// Wait for `device`'s turn, or until `ctx` is stopped.
    fn enter(&self, device: &DeviceId, ctx: &OpContext) -> std::result::Result<GateGuard<'_>, TokenError> {
        let mut busy = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            ctx.check()?;
            if busy.insert(device.clone()) {
                return Ok(GateGuard { gate: self, device: device.clone() });
            }
            // Re-checked at least every 100 ms so a stopped context is noticed.
            let wait =
                ctx.remaining().map_or(std::time::Duration::from_millis(100), |r| r.min(std::time::Duration::from_millis(100)));
            busy = self.freed.wait_timeout(busy, wait).unwrap_or_else(|e| e.into_inner()).0;
        }
    }
}

impl Drop for GateGuard<'_> {
    fn drop(&mut self) {
        self.gate.busy.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.device);
        self.gate.freed.notify_all();
    }
}
