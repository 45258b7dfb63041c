//! A bridge over virtual media for the tests: an in-memory token with an SM2 signing
//! and encryption pair issued by a test CA, a scripted prompter, and the real server
//! on 127.0.0.1 with an ephemeral port.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kb_bridge::activity::{PromptWatch, WatchedPrompter};
use kb_bridge::client::{BridgeClient, ClientError, ClientOptions};
use kb_bridge::consent::{Consent, GrantStore};
use kb_bridge::methods::Service;
use kb_bridge::secret::ClientSecret;
use kb_bridge::{Bridge, BridgeConfig, RunningBridge};
use kb_crypto::PrivateKey;
use kb_pki::Certificate;
use kb_pki::chain::TrustStore;
use kb_service::audit::{AuditRecord, AuditSink};
use kb_service::devices::{DeviceEvent, DeviceManager};
use kb_service::pin_cache::PinCachePolicy;
use kb_service::prompter::{Prompter, ScriptedPrompter};
use kb_token::memory::{MemoryToken, MemoryTransport};
use kb_types::{Algorithm, DeviceId, KeyUsage, TransportKind};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const PIN: &str = "12345678";
pub const SO: &str = "admin-pin-0";
pub const C: &str = "bid";

#[derive(Default)]
pub struct MemAudit {
    pub records: Mutex<Vec<AuditRecord>>,
}

impl AuditSink for MemAudit {
    fn record(&self, rec: &AuditRecord) -> kb_service::Result<()> {
        self.records.lock().unwrap().push(rec.clone());
        Ok(())
    }
}

pub struct Ca(pub kb_pki::issue::TestCa);

impl Ca {
    pub fn new() -> Self {
        Ca(kb_pki::issue::TestCa::new(Algorithm::Sm2, "C=CN,O=Test CA,CN=Test Root").unwrap())
    }

    pub fn issue(&self, subject: &str, key: &PrivateKey, usage: KeyUsage) -> Certificate {
        self.0.leaf(subject, &key.public_key(), usage).unwrap()
    }

    pub fn cert(&self) -> &Certificate {
        &self.0.cert
    }
}

pub struct Provisioned {
    pub token: MemoryToken,
    pub id: DeviceId,
    pub sign_key: PrivateKey,
    pub enc_key: PrivateKey,
    pub sign_cert: Certificate,
    pub enc_cert: Certificate,
}

impl Provisioned {
    pub fn sign_thumb(&self) -> String {
        self.sign_cert.thumbprint(kb_types::HashAlgorithm::Sha1).to_uppercase()
    }
    pub fn enc_thumb(&self) -> String {
        self.enc_cert.thumbprint(kb_types::HashAlgorithm::Sha1).to_uppercase()
    }
}

pub struct Rig {
    pub bridge: RunningBridge,
    pub prompter: Arc<ScriptedPrompter>,
    pub manager: DeviceManager,
    pub transport: MemoryTransport,
    pub events: std::sync::mpsc::Receiver<DeviceEvent>,
    pub ca: Ca,
    pub key: Provisioned,
    pub secret: ClientSecret,
    pub audit: Arc<MemAudit>,
    pub grants: Arc<GrantStore>,
}

pub fn provision(tr: &MemoryTransport, ca: &Ca, local: &str) -> Provisioned {
    let token = tr.new_token(local, PIN, SO).with_label(&format!("Key {local}")).with_model("VK-1");
    let sign_key = PrivateKey::generate(Algorithm::Sm2).unwrap();
    let enc_key = PrivateKey::generate(Algorithm::Sm2).unwrap();
    let subject = format!("C=CN,O=某某建设有限公司,CN=张三 {local}");
    let sign_cert = ca.issue(&subject, &sign_key, KeyUsage::Sign);
    let enc_cert = ca.issue(&subject, &enc_key, KeyUsage::Encrypt);
    token.put_key(C, KeyUsage::Sign, sign_key.clone());
    token.put_key(C, KeyUsage::Encrypt, enc_key.clone());
    token.put_certificate(C, KeyUsage::Sign, sign_cert.der()).unwrap();
    token.put_certificate(C, KeyUsage::Encrypt, enc_cert.der()).unwrap();
    let id = token.id();
    Provisioned { token, id, sign_key, enc_key, sign_cert, enc_cert }
}

/// The prompter the manager asks through; tests may wrap the scripted one.
pub type Wrap = Box<dyn FnOnce(Arc<ScriptedPrompter>) -> Arc<dyn Prompter>>;

pub async fn rig_with(tweak: impl FnOnce(&mut BridgeConfig), wrap: Option<Wrap>) -> Rig {
    rig_full(tweak, wrap, Arc::new(GrantStore::in_memory())).await
}

/// A rig over the given grant store (e.g. one backed by a file).
pub async fn rig_full(tweak: impl FnOnce(&mut BridgeConfig), wrap: Option<Wrap>, grants: Arc<GrantStore>) -> Rig {
    rig_checking(tweak, wrap, grants, None).await
}

/// A rig whose service checks revocation with this checker.
pub async fn rig_checking(
    tweak: impl FnOnce(&mut BridgeConfig),
    wrap: Option<Wrap>,
    grants: Arc<GrantStore>,
    revocation: Option<Arc<kb_service::revocation::RevocationChecker>>,
) -> Rig {
    let prompter = Arc::new(ScriptedPrompter::new());
    let inner: Arc<dyn Prompter> = match wrap {
        Some(w) => w(Arc::clone(&prompter)),
        None => prompter.clone(),
    };
    let watch = Arc::new(PromptWatch::default());
    let watched: Arc<dyn Prompter> = Arc::new(WatchedPrompter::new(inner, Arc::clone(&watch)));
    let audit = Arc::new(MemAudit::default());
    let manager = DeviceManager::new(Arc::clone(&watched), audit.clone(), PinCachePolicy::default());
    let events = manager.subscribe();
    let transport = MemoryTransport::new(TransportKind::Pcsc);
    let ca = Ca::new();
    let key = provision(&transport, &ca, "0001");
    transport.insert(key.token.clone());
    manager.add_transport(Arc::new(transport.clone())).unwrap();
    assert!(manager.wait_enumerated(Duration::from_secs(10)));
    let mut config = BridgeConfig { port: 0, ..BridgeConfig::default() };
    tweak(&mut config);
    let consent = Consent::new(Arc::clone(&grants), config.consent, watched);
    let trust = TrustStore::from_certs([ca.cert().clone()]);
    let mut service = Service::new(manager.clone(), trust, consent, config);
    if let Some(checker) = revocation {
        service = service.with_revocation(checker);
    }
    let service = Arc::new(service);
    let secret = ClientSecret::generate().unwrap();
    let bridge = Bridge::new(service, secret.clone(), watch).start().await.unwrap();
    Rig { bridge, prompter, manager, transport, events, ca, key, secret, audit, grants }
}

pub async fn rig() -> Rig {
    rig_with(|_| {}, None).await
}

impl Rig {
    pub async fn native(&self) -> BridgeClient {
        BridgeClient::connect(ClientOptions {
            url: self.bridge.url(),
            origin: None,
            secret: Some(self.secret.clone()),
            sdk: "test-tool".into(),
        })
        .await
        .unwrap()
    }

    pub async fn web(&self, origin: &str) -> Result<BridgeClient, ClientError> {
        BridgeClient::connect(ClientOptions {
            url: self.bridge.url(),
            origin: Some(origin.into()),
            secret: None,
            sdk: "keybridge-js".into(),
        })
        .await
    }

    pub fn port(&self) -> u16 {
        self.bridge.local_addr().port()
    }
}
