//! The phone side: pair from a scanned offer string, then reconnect with the stored
//! [`Pairing`]. Async functions over any [`FramePipe`] (`pair_over`, `reconnect_over`),
//! and a blocking [`Phone`] that dials the offer's endpoints itself.

use crate::channel::{Channel, LinkConfig};
use crate::conn::{LinkError, MessageConn, PeerId};
use crate::frame::FramePipe;
use crate::handshake::{Options, PhonePairing, PhoneReconnect, StaticKey, peer_id};
use crate::qr::{Endpoint, Offer};
use crate::rt::LinkRuntime;
use crate::wire::{Record, err};
use kb_types::ErrorCode;
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use zeroize::Zeroizing;

/// What a phone keeps of one pairing (store it encrypted: it holds the link secret).
#[derive(Clone, PartialEq, Eq)]
pub struct Pairing {
    /// The PC's static public key.
    pub pc_key: [u8; 33],
    /// The link secret the PC gave at pairing.
    pub link_secret: Zeroizing<[u8; 32]>,
    /// Where the PC was reachable (update when the PC shows new ones).
    pub endpoints: Vec<Endpoint>,
}

impl std::fmt::Debug for Pairing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pairing({}, {:?}, link secret REDACTED)", self.pc_id(), self.endpoints)
    }
}

#[derive(Serialize, Deserialize)]
struct PairingJson {
    pc_key: String,
    link_secret: String,
    direct: Vec<String>,
    relays: Vec<(String, String)>,
}

impl Pairing {
    /// The PC's id.
    pub fn pc_id(&self) -> PeerId {
        peer_id(&self.pc_key)
    }

    /// JSON for the phone app's own (encrypted) storage. Contains the link secret.
    pub fn to_json(&self) -> Zeroizing<String> {
        let mut j = PairingJson {
            pc_key: hex::encode(self.pc_key),
            link_secret: hex::encode(&self.link_secret[..]),
            direct: vec![],
            relays: vec![],
        };
        for e in &self.endpoints {
            match e {
                Endpoint::Direct(a) => j.direct.push(a.to_string()),
                Endpoint::Relay { url, tunnel } => j.relays.push((url.clone(), tunnel.clone())),
            }
        }
        let s = Zeroizing::new(serde_json::to_string(&j).unwrap_or_default());
        zeroize::Zeroize::zeroize(&mut j.link_secret);
        s
    }

    /// Read [`Pairing::to_json`]'s output.
    pub fn from_json(s: &str) -> Result<Self, LinkError> {
        let bad = || err(ErrorCode::PairingStoreFailed, "not a stored pairing");
        let mut j: PairingJson = serde_json::from_str(s).map_err(|_| bad())?;
        let pc_key: [u8; 33] = hex::decode(&j.pc_key).ok().and_then(|k| k.try_into().ok()).ok_or_else(bad)?;
        let secret = Zeroizing::new(hex::decode(&j.link_secret).map_err(|_| bad())?);
        zeroize::Zeroize::zeroize(&mut j.link_secret);
        let link_secret: [u8; 32] = secret[..].try_into().map_err(|_| bad())?;
        let mut endpoints: Vec<Endpoint> =
            j.direct.iter().map(|a| a.parse().map(Endpoint::Direct).map_err(|_| bad())).collect::<Result<_, _>>()?;
        endpoints.extend(j.relays.into_iter().map(|(url, tunnel)| Endpoint::Relay { url, tunnel }));
        Ok(Self { pc_key, link_secret: Zeroizing::new(link_secret), endpoints })
    }
}

/// A pairing that finished its handshake and waits for the user's confirmation on the PC.
/// Show [`PendingPairing::code`] on the phone meanwhile.
pub struct PendingPairing {
    /// The 6-digit confirmation code (the PC shows the same).
    pub code: String,
    /// The name the PC gave.
    pub pc_name: String,
    channel: Arc<Channel>,
    pc_key: [u8; 33],
    endpoints: Vec<Endpoint>,
    cfg: LinkConfig,
}

impl std::fmt::Debug for PendingPairing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PendingPairing(code {})", self.code)
    }
}

impl PendingPairing {
    /// Wait for the PC's decision: the pairing to store and the link, or the PC's reason
    /// (`pairing_rejected`, `pairing_not_confirmed`, …).
    pub async fn confirmed_async(self) -> Result<(Pairing, Arc<Channel>), LinkError> {
        // The PC's own timer decides; ours only catches a PC that vanished silently
        // (the keep-alive catches that too).
        let deadline = tokio::time::Instant::now() + self.cfg.confirm_timeout + self.cfg.peer_timeout;
        match self.channel.next_record(deadline).await {
            Ok(Record::Paired { link_secret }) => {
                self.channel.set_ready();
                let pairing = Pairing { pc_key: self.pc_key, link_secret, endpoints: self.endpoints };
                Ok((pairing, self.channel))
            }
            Ok(other) => {
                self.channel.close_with(ErrorCode::LinkProtocol, "expected the PC's confirmation");
                Err(err(ErrorCode::LinkProtocol, format!("expected the PC's confirmation, got {other:?}")))
            }
            Err(LinkError::TimedOut) => Err(err(ErrorCode::PairingNotConfirmed, "the PC did not confirm in time")),
            Err(e) => Err(e),
        }
    }
}

/// Pair over `pipe` with a parsed offer, as `key` named `name`.
pub async fn pair_over(
    mut pipe: FramePipe,
    offer: &Offer,
    key: &StaticKey,
    name: &str,
    cfg: &LinkConfig,
    opts: &Options,
) -> Result<PendingPairing, LinkError> {
    let run = async {
        let (hs, f1) = PhonePairing::start(offer, key, opts)?;
        send(&pipe, f1).await?;
        let f2 = next(&mut pipe).await?;
        let (f3, est) = hs.finish(&f2)?;
        send(&pipe, f3).await?;
        Ok::<_, LinkError>(est)
    };
    let est = tokio::time::timeout(cfg.handshake_timeout, run)
        .await
        .map_err(|_| err(ErrorCode::LinkHandshakeTimeout, "the PC did not answer in time"))??;
    let code = est.code.clone();
    let channel = Channel::start(est, pipe, cfg.clone(), peer_id(&offer.pc_key), &tokio::runtime::Handle::current());
    channel.send_record(Record::Hello { name: name.to_owned() })?;
    let pc_name = pc_hello(&channel, cfg).await?;
    Ok(PendingPairing { code, pc_name, channel, pc_key: offer.pc_key, endpoints: offer.endpoints.clone(), cfg: cfg.clone() })
}

/// Reconnect over `pipe` with a stored pairing.
pub async fn reconnect_over(
    mut pipe: FramePipe,
    pairing: &Pairing,
    key: &StaticKey,
    name: &str,
    cfg: &LinkConfig,
) -> Result<Arc<Channel>, LinkError> {
    let run = async {
        let (hs, f1) = PhoneReconnect::start(&pairing.pc_key, key, &pairing.link_secret, &Options::default())?;
        send(&pipe, f1).await?;
        let f2 = next(&mut pipe).await?;
        hs.finish(&f2)
    };
    let est = tokio::time::timeout(cfg.handshake_timeout, run)
        .await
        .map_err(|_| err(ErrorCode::LinkHandshakeTimeout, "the PC did not answer in time"))??;
    let channel = Channel::start(est, pipe, cfg.clone(), pairing.pc_id(), &tokio::runtime::Handle::current());
    channel.send_record(Record::Hello { name: name.to_owned() })?;
    pc_hello(&channel, cfg).await?;
    channel.set_ready();
    Ok(channel)
}

/// The PC's hello: it accepted the phone's proof (a refusal arrives as its code).
async fn pc_hello(channel: &Channel, cfg: &LinkConfig) -> Result<String, LinkError> {
    match channel.next_record(tokio::time::Instant::now() + cfg.handshake_timeout).await {
        Ok(Record::Hello { name }) => Ok(crate::wire::clean_name(&name)),
        Ok(other) => {
            channel.close_with(ErrorCode::LinkProtocol, "expected the PC's hello");
            Err(err(ErrorCode::LinkProtocol, format!("expected the PC's hello, got {other:?}")))
        }
        Err(LinkError::TimedOut) => Err(err(ErrorCode::LinkHandshakeTimeout, "no hello from the PC")),
        Err(e) => Err(e),
    }
}

async fn next(pipe: &mut FramePipe) -> Result<Vec<u8>, LinkError> {
    pipe.rx.recv().await.ok_or_else(|| err(ErrorCode::LinkLost, "the PC closed the connection during the handshake"))
}

async fn send(pipe: &FramePipe, f: Vec<u8>) -> Result<(), LinkError> {
    pipe.tx.send(f).await.map_err(|_| err(ErrorCode::LinkLost, "the PC closed the connection during the handshake"))
}

/// A boxed future of a dialled pipe.
pub type DialFuture = Pin<Box<dyn Future<Output = Result<FramePipe, LinkError>> + Send>>;

/// Opens a transport to one endpoint. The default dials direct endpoints; the relay
/// transport supplies one that also dials relays.
pub trait Dialer: Send + Sync {
    /// Connect to `endpoint`.
    fn dial(&self, endpoint: &Endpoint, cfg: &LinkConfig) -> DialFuture;
}

/// Dials direct endpoints only.
#[derive(Debug, Default)]
pub struct DirectDialer;

impl Dialer for DirectDialer {
    fn dial(&self, endpoint: &Endpoint, cfg: &LinkConfig) -> DialFuture {
        let cfg = cfg.clone();
        let ep = endpoint.clone();
        Box::pin(async move {
            match ep {
                Endpoint::Direct(a) => crate::direct::connect(a, &cfg).await,
                Endpoint::Relay { url, .. } => Err(err(ErrorCode::LinkUnreachable, format!("no relay dialer for {url}"))),
            }
        })
    }
}

/// Try each endpoint in order; the first that connects wins.
async fn dial_any(dialer: &dyn Dialer, endpoints: &[Endpoint], cfg: &LinkConfig) -> Result<FramePipe, LinkError> {
    let mut why = Vec::new();
    for e in endpoints {
        match dialer.dial(e, cfg).await {
            Ok(p) => return Ok(p),
            Err(err) => why.push(format!("{}: {err}", e.url())),
        }
    }
    Err(err(ErrorCode::LinkUnreachable, why.join("; ")))
}

/// A phone: its static key, its name, how it dials. Blocking methods for phone apps'
/// worker threads; `_async` ones for async code.
pub struct Phone {
    key: StaticKey,
    name: String,
    cfg: LinkConfig,
    rt: LinkRuntime,
    dialer: Arc<dyn Dialer>,
}

impl std::fmt::Debug for Phone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Phone({}, {:?})", self.key.peer_id(), self.name)
    }
}

impl Phone {
    /// A phone with `key` (keep it in the phone's secure storage) named `name`.
    pub fn new(key: StaticKey, name: &str, cfg: LinkConfig, rt: LinkRuntime) -> Self {
        Self { key, name: name.to_owned(), cfg, rt, dialer: Arc::new(DirectDialer) }
    }

    /// Use another dialer (e.g. one that also reaches relays).
    pub fn with_dialer(mut self, dialer: Arc<dyn Dialer>) -> Self {
        self.dialer = dialer;
        self
    }

    /// This phone's id (what the PC sees).
    pub fn id(&self) -> PeerId {
        self.key.peer_id()
    }

    /// Pair from a scanned offer string.
    pub async fn pair_async(&self, offer: &str) -> Result<PendingPairing, LinkError> {
        let offer = Offer::parse(offer)?;
        let pipe = dial_any(&*self.dialer, &offer.endpoints, &self.cfg).await?;
        pair_over(pipe, &offer, &self.key, &self.name, &self.cfg, &Options::default()).await
    }

    /// Reconnect with a stored pairing.
    pub async fn reconnect_async(&self, pairing: &Pairing) -> Result<Arc<Channel>, LinkError> {
        let pipe = dial_any(&*self.dialer, &pairing.endpoints, &self.cfg).await?;
        reconnect_over(pipe, pairing, &self.key, &self.name, &self.cfg).await
    }

    /// Pair (blocking): returns the code to show; then call
    /// [`Phone::wait_confirmed`].
    pub fn pair(&self, offer: &str) -> Result<PendingPairing, LinkError> {
        let (key, name, cfg, dialer, offer) =
            (self.key.clone(), self.name.clone(), self.cfg.clone(), self.dialer.clone(), offer.to_owned());
        self.rt.block_on(async move {
            let offer = Offer::parse(&offer)?;
            let pipe = dial_any(&*dialer, &offer.endpoints, &cfg).await?;
            pair_over(pipe, &offer, &key, &name, &cfg, &Options::default()).await
        })?
    }

    /// Wait (blocking) for the PC's confirmation of a pending pairing.
    pub fn wait_confirmed(&self, pending: PendingPairing) -> Result<(Pairing, Arc<dyn MessageConn>), LinkError> {
        let (p, c) = self.rt.block_on(pending.confirmed_async())??;
        Ok((p, c as Arc<dyn MessageConn>))
    }

    /// Reconnect (blocking).
    pub fn reconnect(&self, pairing: &Pairing) -> Result<Arc<dyn MessageConn>, LinkError> {
        let (key, name, cfg, dialer, pairing) =
            (self.key.clone(), self.name.clone(), self.cfg.clone(), self.dialer.clone(), pairing.clone());
        let c = self.rt.block_on(async move {
            let pipe = dial_any(&*dialer, &pairing.endpoints, &cfg).await?;
            reconnect_over(pipe, &pairing, &key, &name, &cfg).await
        })??;
        Ok(c as Arc<dyn MessageConn>)
    }
}
