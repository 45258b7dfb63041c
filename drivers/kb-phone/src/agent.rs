//! The phone's side: [`PhoneAgent`] serves any [`Token`] to the PC over a
//! [`MessageConn`].
//!
//! It announces the phone and its medium (`hello`: containers, certificates, public keys,
//! what each key may do), then answers the PC's `sign` and `decrypt` requests one at a
//! time: it shows each request's context through the app's [`PhonePrompter`] (who asks,
//! the scene, the summary, the certificate, the digest), asks the phone's own PIN unless
//! its own [`PinCache`] holds it (or the wrapped token verifies the user itself), lets the
//! user confirm or refuse with a reason, and runs the operation on the wrapped token. A
//! `cancel` from the PC, or the link closing, withdraws the prompt. Private keys never
//! leave the wrapped token: only signatures and decrypted content keys go out.
//!
//! The PIN cache is the phone's: time-limited, scoped to the client on the PC that
//! caused it (a PIN typed for a bid tool does not spare the PIN for a web page), holding
//! a PIN only after the token accepted it (a wrong PIN is never cached; a cached PIN the
//! token rejects is forgotten), zeroized when it expires or is cleared.

use crate::msg::{
    self, Container, DecryptRequest, ErrorMsg, Hello, Key, KeyCapabilities, Medium, Message, MsgError, PhoneInfo, RefuseReason,
    RequestContext, SignRequest,
};
use kb_crypto::SignatureScheme;
use kb_phonelink::{LinkError, MessageConn};
use kb_token::{OpContext, Session, Token, TokenError, UserAuth};
use kb_types::{ErrorCode, HasErrorCode, KeyUsage, Pin, PinKind, UserVerification};
use std::collections::HashMap;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// At most this many PIN prompts per request; after that the request fails with the last
/// `wrong_pin` (the token's own counter keeps counting).
pub const MAX_PIN_PROMPTS: usize = 3;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a request asks the phone to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestKind {
    /// Sign a digest.
    Sign {
        /// The scheme, for the screen (`SM2/SM3`, `RSA PKCS#1 v1.5 SHA-256`, …).
        scheme: String,
        /// The digest in hex, for the screen.
        digest: String,
    },
    /// Decrypt a content key.
    Decrypt,
}

/// What the phone's screen shows for one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prompt {
    /// The PC's request id.
    pub id: u64,
    /// Sign or decrypt.
    pub kind: RequestKind,
    /// The medium's label.
    pub medium: String,
    /// The container.
    pub container: String,
    /// Which key pair.
    pub usage: KeyUsage,
    /// Who asks and why, as the PC said.
    pub context: RequestContext,
    /// `Some`: ask the PIN too; `None`: only confirm (the PIN is cached, or the token
    /// verifies the user itself).
    pub pin: Option<PinPrompt>,
}

/// How to ask the PIN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PinPrompt {
    /// Tries left, when the token says.
    pub retries_left: Option<u8>,
    /// The PIN typed for this request before was wrong.
    pub previous_wrong: bool,
}

/// The user's answer to a [`Prompt`].
pub enum Answer {
    /// Go ahead; with the PIN when the prompt asked for one.
    Confirm(Option<Pin>),
    /// The user refused, with their own words (may be empty).
    Refuse(String),
    /// The user left the waiting screen: the request is aborted.
    LeftScreen,
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Answer::Confirm(p) => write!(f, "Confirm({})", if p.is_some() { "PIN" } else { "no PIN" }),
            Answer::Refuse(note) => write!(f, "Refuse({note:?})"),
            Answer::LeftScreen => f.write_str("LeftScreen"),
        }
    }
}

/// The phone app's screen.
pub trait PhonePrompter: Send + Sync {
    /// Show `prompt` and wait for the user. When `ctx` is stopped (the PC cancelled, the
    /// link closed) the screen must be withdrawn and the call return at once (register
    /// with [`OpContext::on_stop`] or wait with [`OpContext::wait_stopped`]); its answer
    /// is then ignored.
    fn ask(&self, prompt: &Prompt, ctx: &OpContext) -> Answer;
}

/// The phone's own PIN cache (see the module documentation), by client.
pub struct PinCache {
    ttl: Duration,
    entries: Mutex<HashMap<String, (Pin, Instant)>>,
}

impl std::fmt::Debug for PinCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PinCache").field("ttl", &self.ttl).field("clients", &lock(&self.entries).len()).finish()
    }
}

impl PinCache {
    /// A cache that keeps a PIN for `ttl` after it was accepted (`Duration::ZERO`: off).
    pub fn new(ttl: Duration) -> Self {
        PinCache { ttl, entries: Mutex::new(HashMap::new()) }
    }

    /// Drop expired PINs (zeroized as they drop).
    fn expire(entries: &mut HashMap<String, (Pin, Instant)>) {
        let now = Instant::now();
        entries.retain(|_, (_, until)| now < *until);
    }

    fn get(&self, client: &str) -> Option<Pin> {
        let mut e = lock(&self.entries);
        Self::expire(&mut e);
        e.get(client).map(|(pin, _)| pin.clone())
    }

    fn put(&self, client: &str, pin: Pin) {
        if self.ttl.is_zero() {
            return;
        }
        if let Some(until) = Instant::now().checked_add(self.ttl) {
            lock(&self.entries).insert(client.to_string(), (pin, until));
        }
    }

    /// Forget every PIN (the app went to the background, the user logged out, the PIN
    /// was rejected or locked).
    pub fn clear(&self) {
        lock(&self.entries).clear();
    }

    /// Whether a PIN is held, not expired, for `client`.
    pub fn holds_pin_for(&self, client: &str) -> bool {
        self.get(client).is_some()
    }

    /// Whether any PIN is held and not expired.
    pub fn holds_pin(&self) -> bool {
        let mut e = lock(&self.entries);
        Self::expire(&mut e);
        !e.is_empty()
    }
}

/// Why [`PhoneAgent::serve`] ended other than by the link closing.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The PC sent something malformed, or refused the phone (`phone_protocol_unsupported`…).
    #[error("phone link protocol: {0}")]
    Protocol(#[from] MsgError),
    /// Reading the medium for `hello` failed.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// The link failed other than by closing.
    #[error(transparent)]
    Link(#[from] LinkError),
}

impl HasErrorCode for ServeError {
    fn code(&self) -> ErrorCode {
        match self {
            ServeError::Protocol(e) => e.code,
            ServeError::Token(e) => e.code(),
            ServeError::Link(e) => e.code(),
        }
    }
}

enum Job {
    Sign(SignRequest),
    Decrypt(DecryptRequest),
}

impl Job {
    fn id(&self) -> u64 {
        match self {
            Job::Sign(r) => r.id,
            Job::Decrypt(r) => r.id,
        }
    }
}

/// Serves one [`Token`] to the PC (see the module documentation).
///
/// ```no_run
/// use kb_phone::agent::{Answer, PhoneAgent, PhonePrompter, Prompt};
/// use kb_phone::msg::PhoneInfo;
/// use kb_token::OpContext;
/// use std::time::Duration;
///
/// struct Screen;
/// impl PhonePrompter for Screen {
///     fn ask(&self, prompt: &Prompt, ctx: &OpContext) -> Answer {
///         // Show prompt.context (client, operation, summary, certificate) and the
///         // digest; read the PIN when prompt.pin is Some; withdraw when ctx stops.
///         # let _ = (prompt, ctx);
///         Answer::Refuse("not in this example".into())
///     }
/// }
///
/// // `links`: each connection to the PC as it (re)connects — after pairing, or a paired
/// // reconnect (kb_phonelink's `Phone::wait_confirmed` / `Phone::reconnect`).
/// fn run(links: impl Iterator<Item = std::sync::Arc<dyn kb_phonelink::MessageConn>>) {
///     let token = kb_filekey::FileToken::open("/data/keys/me.kbkey").expect("the key file");
///     let phone = PhoneInfo { name: "张三的手机".into(), model: "Pixel 8".into(), app_version: "ca-app 2.1".into() };
///     let agent = PhoneAgent::new(Box::new(token), std::sync::Arc::new(Screen), Duration::from_secs(300), phone);
///     for conn in links {
///         let _ = agent.serve(conn); // returns when the link closes; the PIN cache survives
///     }
/// }
/// ```
pub struct PhoneAgent {
    token: Mutex<Box<dyn Token>>,
    prompter: Arc<dyn PhonePrompter>,
    cache: PinCache,
    phone: PhoneInfo,
    /// The link being served, for [`PhoneAgent::media_changed`].
    current: Mutex<Option<Arc<dyn MessageConn>>>,
}

impl std::fmt::Debug for PhoneAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PhoneAgent").field("phone", &self.phone).field("cache", &self.cache).finish()
    }
}

fn send(conn: &dyn MessageConn, m: &Message) -> Result<(), ServeError> {
    let bytes = msg::encode(m)?;
    conn.send(&bytes)?;
    Ok(())
}

fn error_msg(id: u64, e: &TokenError) -> Message {
    let retries_left = match e {
        TokenError::WrongPin { retries_left } => Some(*retries_left),
        _ => None,
    };
    let message: String = e.to_string().chars().filter(|c| !c.is_control()).take(msg::MAX_TEXT_CHARS).collect();
    Message::Error(ErrorMsg { id: Some(id), code: e.code().number(), message, retries_left })
}

fn scheme_name(s: &SignatureScheme) -> String {
    match s {
        SignatureScheme::Sm2Sm3 { .. } => "SM2/SM3".into(),
        SignatureScheme::RsaPkcs1(h) => format!("RSA PKCS#1 v1.5 {}", h.name()),
        SignatureScheme::RsaPss(h) => format!("RSA-PSS {}", h.name()),
        SignatureScheme::Ecdsa(h) => format!("ECDSA {}", h.name()),
    }
}

impl PhoneAgent {
    /// Serve `token` (the phone's key medium: a file-type key, the app's key store…),
    /// asking the user through `prompter`, keeping an accepted PIN for `cache_ttl`
    /// (`Duration::ZERO`: never), introducing the phone as `phone`.
    pub fn new(token: Box<dyn Token>, prompter: Arc<dyn PhonePrompter>, cache_ttl: Duration, phone: PhoneInfo) -> Self {
        PhoneAgent { token: Mutex::new(token), prompter, cache: PinCache::new(cache_ttl), phone, current: Mutex::new(None) }
    }

    /// The phone's PIN cache.
    pub fn pin_cache(&self) -> &PinCache {
        &self.cache
    }

    /// The medium as announced to the PC (public data only).
    pub fn medium(&self) -> Result<Medium, TokenError> {
        let mut token = lock(&self.token);
        let info = token.info();
        let mut containers = Vec::new();
        for c in token.containers()? {
            let mut key = |slot: &Option<kb_types::KeySlot>| -> Result<Option<Key>, TokenError> {
                let Some(s) = slot else { return Ok(None) };
                let public = token.public_key(&c.name, s.usage)?;
                Ok(Some(Key {
                    usage: s.usage,
                    algorithm: s.algorithm,
                    public_key: msg::B64(public.to_spki_der()?),
                    certificate: s.certificate.clone().map(msg::B64),
                    capabilities: key_capabilities(s.usage),
                }))
            };
            let (sign, encrypt) = (key(&c.sign)?, key(&c.encrypt)?);
            containers.push(Container { name: c.name, sign, encrypt });
        }
        Ok(Medium {
            id: info.id.0,
            label: info.label,
            serial: info.serial,
            manufacturer: info.manufacturer,
            model: info.model,
            algorithms: info.capabilities.algorithms,
            containers,
        })
    }

    /// Tell the PC the medium changed (a certificate was installed on the phone). A no-op
    /// while no link is served.
    pub fn media_changed(&self) -> Result<(), ServeError> {
        let conn = lock(&self.current).clone();
        match conn {
            Some(conn) => send(conn.as_ref(), &Message::MediaChanged { media: vec![self.medium()?] }),
            None => Ok(()),
        }
    }

    /// Serve the PC over `conn` until the link closes (`Ok`) or the PC breaks the
    /// protocol or refuses the phone (`Err`; the link is closed). Call it again with the
    /// next link: the PIN cache carries over.
    pub fn serve(&self, conn: Arc<dyn MessageConn>) -> Result<(), ServeError> {
        *lock(&self.current) = Some(Arc::clone(&conn));
        let r = self.serve_link(conn.as_ref());
        conn.close();
        *lock(&self.current) = None;
        r
    }

    fn serve_link(&self, conn: &dyn MessageConn) -> Result<(), ServeError> {
        let hello =
            Message::Hello(Hello { protocol: msg::PROTOCOL_VERSION, phone: self.phone.clone(), media: vec![self.medium()?] });
        send(conn, &hello)?;
        // Requests queued or running, by id, with the context a `cancel` stops.
        let active: Mutex<HashMap<u64, OpContext>> = Mutex::new(HashMap::new());
        let (jobs, queue) = mpsc::channel::<(Job, OpContext)>();
        std::thread::scope(|s| {
            s.spawn(|| {
                for (job, ctx) in queue {
                    let id = job.id();
                    let answer = self.run(&job, &ctx);
                    lock(&active).remove(&id);
                    // A cancelled request's answer is not wanted; the PC ignores it anyway.
                    if ctx.stopped().is_none() {
                        let _ = send(conn, &answer);
                    }
                }
            });
            let end = self.read_requests(conn, &active, &jobs);
            // The link is gone or broken: withdraw every prompt, let the worker finish.
            for ctx in lock(&active).values() {
                ctx.cancel();
            }
            drop(jobs);
            end
        })
    }

    fn read_requests(
        &self,
        conn: &dyn MessageConn,
        active: &Mutex<HashMap<u64, OpContext>>,
        jobs: &mpsc::Sender<(Job, OpContext)>,
    ) -> Result<(), ServeError> {
        loop {
            let bytes = match conn.recv(None) {
                Ok(b) => Zeroizing::new(b),
                Err(LinkError::Closed) => return Ok(()),
                Err(LinkError::TimedOut) => continue,
                Err(e) => return Err(e.into()),
            };
            let m = match msg::decode(&bytes) {
                Ok(m) => m,
                Err(e) => {
                    let _ = send(
                        conn,
                        &Message::Error(ErrorMsg {
                            id: None,
                            code: e.code.number(),
                            message: e.detail.clone(),
                            retries_left: None,
                        }),
                    );
                    return Err(e.into());
                }
            };
            let job = match m {
                Message::Sign(r) => Job::Sign(r),
                Message::Decrypt(r) => Job::Decrypt(r),
                Message::Cancel { id } => {
                    if let Some(ctx) = lock(active).remove(&id) {
                        ctx.cancel();
                    }
                    continue;
                }
                Message::Error(ErrorMsg { id: None, code, message, .. }) => {
                    return Err(MsgError {
                        code: msg::code_from_number(code),
                        detail: format!("the PC closed the link: {message}"),
                    }
                    .into());
                }
                // A stray answer for a request of ours: the PC sends none.
                _ => {
                    let e =
                        MsgError { code: ErrorCode::PhoneMessageInvalid, detail: "a message the phone does not accept".into() };
                    let _ = send(
                        conn,
                        &Message::Error(ErrorMsg {
                            id: None,
                            code: e.code.number(),
                            message: e.detail.clone(),
                            retries_left: None,
                        }),
                    );
                    return Err(e.into());
                }
            };
            let ctx = OpContext::new();
            let duplicate = lock(active).insert(job.id(), ctx.clone()).is_some();
            if duplicate {
                let e = MsgError { code: ErrorCode::PhoneMessageInvalid, detail: "a request id already in use".into() };
                let _ = send(
                    conn,
                    &Message::Error(ErrorMsg { id: None, code: e.code.number(), message: e.detail.clone(), retries_left: None }),
                );
                return Err(e.into());
            }
            if jobs.send((job, ctx)).is_err() {
                return Ok(());
            }
        }
    }

    /// One request: prompt, PIN, operation; the answer to send.
    fn run(&self, job: &Job, ctx: &OpContext) -> Message {
        let (id, medium, container, usage, context) = match job {
            Job::Sign(r) => (r.id, &r.medium, &r.container, r.usage, &r.context),
            Job::Decrypt(r) => (r.id, &r.medium, &r.container, r.usage, &r.context),
        };
        let info = lock(&self.token).info();
        if *medium != info.id.0 {
            return error_msg(id, &TokenError::NotFound(format!("medium {medium}")));
        }
        // Only what the hello announced for the key (see `medium`).
        let slot_usage = lock(&self.token)
            .containers()
            .ok()
            .and_then(|cs| cs.into_iter().find(|c| c.name == *container))
            .and_then(|c| c.slot(usage).map(|k| k.usage));
        let Some(caps) = slot_usage.map(key_capabilities) else {
            return error_msg(id, &TokenError::NotFound(format!("{usage} key pair in container {container}")));
        };
        let allowed = match job {
            Job::Sign(_) => caps.sign,
            Job::Decrypt(_) => caps.decrypt,
        };
        if !allowed {
            return error_msg(id, &TokenError::NotSupported(format!("the phone does not allow this with the {usage} key")));
        }
        let kind = match job {
            Job::Sign(r) => RequestKind::Sign { scheme: scheme_name(&(&r.scheme).into()), digest: hex::encode(&r.digest.0) },
            Job::Decrypt(_) => RequestKind::Decrypt,
        };
        let host_pin = info.capabilities.user_verification == UserVerification::HostPin;
        let mut prompt = Prompt {
            id,
            kind,
            medium: info.label.clone(),
            container: container.clone(),
            usage,
            context: context.clone(),
            pin: None,
        };
        let mut retries_left: Option<u8> = None;
        let mut previous_wrong = false;
        let mut prompts = 0;
        loop {
            if let Err(e) = ctx.check() {
                return error_msg(id, &e);
            }
            let cached = if host_pin { self.cache.get(&context.client) } else { None };
            let from_cache = cached.is_some();
            prompt.pin = None;
            if host_pin && !from_cache {
                if prompts == MAX_PIN_PROMPTS {
                    let e = match retries_left {
                        Some(n) => TokenError::WrongPin { retries_left: n },
                        None => TokenError::WrongPinRetriesUnknown,
                    };
                    return error_msg(id, &e);
                }
                if retries_left.is_none() {
                    match lock(&self.token).pin_info(PinKind::User) {
                        Ok(p) if p.locked => return refused(id, RefuseReason::PinLocked),
                        Ok(p) => retries_left = Some(p.retries_left),
                        Err(_) => {}
                    }
                }
                prompts += 1;
                prompt.pin = Some(PinPrompt { retries_left, previous_wrong });
            }
            let answer = self.prompter.ask(&prompt, ctx);
            if let Err(e) = ctx.check() {
                return error_msg(id, &e);
            }
            let pin = match answer {
                Answer::Refuse(note) => {
                    let note = note.chars().filter(|c| !c.is_control()).take(msg::MAX_TEXT_CHARS).collect();
                    return Message::Refused { id, reason: RefuseReason::UserRefused, note };
                }
                Answer::LeftScreen => return refused(id, RefuseReason::Aborted),
                Answer::Confirm(typed) => match (host_pin, cached, typed) {
                    (false, _, _) => None,
                    (true, Some(c), _) => Some(c),
                    (true, None, Some(t)) => Some(t),
                    (true, None, None) => return refused(id, RefuseReason::UserRefused),
                },
            };
            match self.operate(job, pin.as_ref(), ctx) {
                Ok(answer) => {
                    if let (Some(p), false) = (pin, from_cache) {
                        // Accepted by the token: now it may be remembered.
                        self.cache.put(&context.client, p);
                    }
                    return answer;
                }
                Err(TokenError::WrongPin { retries_left: n }) => {
                    if from_cache {
                        self.cache.clear();
                    } else {
                        previous_wrong = true;
                    }
                    if n == 0 {
                        return refused(id, RefuseReason::PinLocked);
                    }
                    retries_left = Some(n);
                }
                Err(TokenError::WrongPinRetriesUnknown) => {
                    if from_cache {
                        self.cache.clear();
                    } else {
                        previous_wrong = true;
                    }
                }
                Err(TokenError::PinLocked) => {
                    self.cache.clear();
                    return refused(id, RefuseReason::PinLocked);
                }
                Err(e) => return error_msg(id, &e),
            }
        }
    }

    /// The token call itself: a session for this one operation.
    fn operate(&self, job: &Job, pin: Option<&Pin>, ctx: &OpContext) -> Result<Message, TokenError> {
        let mut token = lock(&self.token);
        let auth = match pin {
            Some(p) => UserAuth::Pin(p),
            None => UserAuth::OnMedium,
        };
        let mut session: Box<dyn Session + '_> = token.open_session(auth, ctx)?;
        ctx.check()?;
        match job {
            Job::Sign(r) => {
                let scheme: SignatureScheme = (&r.scheme).into();
                let signature = session.sign_digest(&r.container, r.usage, &scheme, &r.digest.0)?;
                Ok(Message::Signature { id: r.id, signature: msg::B64(signature) })
            }
            Job::Decrypt(r) => {
                let plaintext = session.decrypt(&r.container, r.usage, &r.ciphertext.0, r.padding.into())?;
                Ok(Message::Plaintext { id: r.id, plaintext: msg::SecretB64(plaintext) })
            }
        }
    }
}

/// What the PC may ask of a key pair of this usage.
fn key_capabilities(usage: KeyUsage) -> KeyCapabilities {
    KeyCapabilities { sign: usage != KeyUsage::Encrypt, decrypt: usage != KeyUsage::Sign }
}

fn refused(id: u64, reason: RefuseReason) -> Message {
    Message::Refused { id, reason, note: String::new() }
}
