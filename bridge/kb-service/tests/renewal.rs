//! Renewal against the dev CA over loopback HTTP, on a file-type key wrapped in a token
//! that fails at a chosen call (before or after the call reaches the key; once, or for
//! good as if pulled out): whatever step fails, the key holds a working certificate —
//! the old one or the new one — and after re-plugging, recovery leaves no journal.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kb_ca::api::{self, RenewalKind, RenewalState};
use kb_ca::{CaClient, HttpCaClient};
use kb_crypto::PublicKey;
use kb_crypto::rsa::RsaPadding;
use kb_devca::{Config, DevCa, Server, SystemClock};
use kb_filekey::{CreateOptions, FileToken};
use kb_pki::chain::TrustStore;
use kb_pki::issue::{CertKind, CertificateParams, issue, self_signed};
use kb_pki::time::UnixTime;
use kb_pki::{Certificate, LocalSigner};
use kb_service::audit::{AuditRecord, AuditSink};
use kb_service::devices::{DeviceEvent, DeviceManager};
use kb_service::pin_cache::PinCachePolicy;
use kb_service::prompter::{ConfirmRequest, PinRequest, Prompter, QrRequest};
use kb_service::renewal::Renewal;
use kb_token::{OpContext, Session, Token, TokenError, Transport, TransportEvent, UserAuth};
use kb_types::{
    Algorithm, ContainerInfo, DeviceInfo, ErrorCode, HasErrorCode, KeyUsage, Pin, PinInfo, PinKind, SealInfo, TransportKind,
};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const PIN: &str = "11112222";
const C: &str = "c1";
const SUBJECT: &str = "C=CN,O=某某建设集团有限公司,CN=张三";
const WAIT: Duration = Duration::from_secs(30);

struct NoAudit;
impl AuditSink for NoAudit {
    fn record(&self, _: &AuditRecord) -> kb_service::Result<()> {
        Ok(())
    }
}

/// Answers every PIN prompt with the key's PIN.
struct KnowsPin;
impl Prompter for KnowsPin {
    fn ask_pin(&self, _: &PinRequest, _: &OpContext) -> kb_service::Result<Pin> {
        Ok(Pin::new(PIN))
    }
    fn confirm(&self, _: &ConfirmRequest) -> kb_service::Result<bool> {
        Ok(true)
    }
    fn show_qr(&self, _: &QrRequest) -> kb_service::Result<()> {
        Ok(())
    }
    fn notify(&self, _: &str) {}
}

// ---- a token that fails on cue ------------------------------------------------------

/// When the chosen call fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum When {
    /// Before it reaches the key (nothing happens on the key).
    Before,
    /// After the key carried it out (the answer is lost).
    After,
}

#[derive(Default)]
struct Faults {
    /// Calls left before the failing one (≤ 0: disarmed).
    countdown: AtomicI64,
    after: AtomicBool,
    /// Pull the key out at the failure (every later call fails too).
    pull: AtomicBool,
    pulled: AtomicBool,
    fired: AtomicBool,
}

impl Faults {
    fn arm(&self, n: i64, when: When, pull: bool) {
        self.after.store(when == When::After, Ordering::SeqCst);
        self.pull.store(pull, Ordering::SeqCst);
        self.pulled.store(false, Ordering::SeqCst);
        self.fired.store(false, Ordering::SeqCst);
        self.countdown.store(n, Ordering::SeqCst);
    }

    fn disarm(&self) {
        self.countdown.store(0, Ordering::SeqCst);
        self.pulled.store(false, Ordering::SeqCst);
    }

    /// Run one call of the key through the faults.
    fn call<T>(&self, f: impl FnOnce() -> kb_token::Result<T>) -> kb_token::Result<T> {
        if self.pulled.load(Ordering::SeqCst) {
            return Err(TokenError::Removed);
        }
        let fire = self.countdown.load(Ordering::SeqCst) > 0 && self.countdown.fetch_sub(1, Ordering::SeqCst) == 1;
        if !fire {
            return f();
        }
        self.fired.store(true, Ordering::SeqCst);
        if self.pull.load(Ordering::SeqCst) {
            self.pulled.store(true, Ordering::SeqCst);
        }
        if self.after.load(Ordering::SeqCst) {
            let _ = f();
        }
        Err(if self.pull.load(Ordering::SeqCst) { TokenError::Removed } else { TokenError::OutcomeUnknown })
    }
}

struct FaultyToken {
    inner: FileToken,
    faults: Arc<Faults>,
}

impl Token for FaultyToken {
    fn info(&self) -> DeviceInfo {
        self.inner.info()
    }
    fn pin_info(&mut self, kind: PinKind) -> kb_token::Result<PinInfo> {
        let (f, t) = (self.faults.clone(), &mut self.inner);
        f.call(|| t.pin_info(kind))
    }
    fn change_pin(&mut self, kind: PinKind, old: &Pin, new: &Pin) -> kb_token::Result<()> {
        self.inner.change_pin(kind, old, new)
    }
    fn unblock_pin(&mut self, so: &Pin, new: &Pin) -> kb_token::Result<()> {
        self.inner.unblock_pin(so, new)
    }
    fn containers(&mut self) -> kb_token::Result<Vec<ContainerInfo>> {
        let (f, t) = (self.faults.clone(), &mut self.inner);
        f.call(|| t.containers())
    }
    fn public_key(&mut self, container: &str, usage: KeyUsage) -> kb_token::Result<PublicKey> {
        let (f, t) = (self.faults.clone(), &mut self.inner);
        f.call(|| t.public_key(container, usage))
    }
    fn seals(&mut self) -> kb_token::Result<Vec<SealInfo>> {
        self.inner.seals()
    }
    fn read_seal(&mut self, id: &str) -> kb_token::Result<Vec<u8>> {
        self.inner.read_seal(id)
    }
    fn open_session<'a>(&'a mut self, auth: UserAuth<'_>, ctx: &OpContext) -> kb_token::Result<Box<dyn Session + 'a>> {
        let faults = self.faults.clone();
        let inner = &mut self.inner;
        let session = faults.call(|| inner.open_session(auth, ctx))?;
        Ok(Box::new(FaultySession { inner: session, faults }))
    }
}

struct FaultySession<'a> {
    inner: Box<dyn Session + 'a>,
    faults: Arc<Faults>,
}

impl Session for FaultySession<'_> {
    fn create_container(&mut self, name: &str) -> kb_token::Result<()> {
        let s = &mut self.inner;
        self.faults.call(|| s.create_container(name))
    }
    fn delete_container(&mut self, name: &str) -> kb_token::Result<()> {
        let s = &mut self.inner;
        self.faults.call(|| s.delete_container(name))
    }
    fn generate_key_pair(&mut self, c: &str, u: KeyUsage, a: Algorithm) -> kb_token::Result<PublicKey> {
        let s = &mut self.inner;
        self.faults.call(|| s.generate_key_pair(c, u, a))
    }
    fn import_certificate(&mut self, c: &str, u: KeyUsage, der: &[u8]) -> kb_token::Result<()> {
        let s = &mut self.inner;
        self.faults.call(|| s.import_certificate(c, u, der))
    }
    fn delete_certificate(&mut self, c: &str, u: KeyUsage) -> kb_token::Result<()> {
        let s = &mut self.inner;
        self.faults.call(|| s.delete_certificate(c, u))
    }
    fn import_enveloped_key(&mut self, c: &str, e: &kb_token::Sm2EnvelopedKey, der: Option<&[u8]>) -> kb_token::Result<()> {
        let s = &mut self.inner;
        self.faults.call(|| s.import_enveloped_key(c, e, der))
    }
    fn sign_digest(&mut self, c: &str, u: KeyUsage, sch: &kb_crypto::SignatureScheme, d: &[u8]) -> kb_token::Result<Vec<u8>> {
        let s = &mut self.inner;
        self.faults.call(|| s.sign_digest(c, u, sch, d))
    }
    fn decrypt(&mut self, c: &str, u: KeyUsage, ct: &[u8], p: RsaPadding) -> kb_token::Result<zeroize::Zeroizing<Vec<u8>>> {
        self.inner.decrypt(c, u, ct, p)
    }
    fn write_seal(&mut self, id: &str, n: &str, m: &str, i: &[u8]) -> kb_token::Result<()> {
        self.inner.write_seal(id, n, m, i)
    }
    fn delete_seal(&mut self, id: &str) -> kb_token::Result<()> {
        self.inner.delete_seal(id)
    }
}

/// One file key behind the faults; the test plugs it in again with [`Self::replug`].
struct FaultyTransport {
    path: PathBuf,
    faults: Arc<Faults>,
    tx: Mutex<Option<Sender<TransportEvent>>>,
}

impl FaultyTransport {
    fn info(&self) -> DeviceInfo {
        FileToken::open(&self.path).unwrap().info()
    }
    fn replug(&self) {
        if let Some(tx) = self.tx.lock().unwrap().as_ref() {
            let _ = tx.send(TransportEvent::Removed(self.info().id));
            let _ = tx.send(TransportEvent::Added(self.info()));
        }
    }
}

impl Transport for FaultyTransport {
    fn kind(&self) -> TransportKind {
        TransportKind::File
    }
    fn watch(&self) -> kb_token::Result<Receiver<TransportEvent>> {
        let (tx, rx) = std::sync::mpsc::channel();
        tx.send(TransportEvent::Added(self.info())).unwrap();
        tx.send(TransportEvent::EnumerationComplete).unwrap();
        *self.tx.lock().unwrap() = Some(tx);
        Ok(rx)
    }
    fn open(&self, _: &kb_types::DeviceId) -> kb_token::Result<Box<dyn Token>> {
        Ok(Box::new(FaultyToken { inner: FileToken::open(&self.path)?, faults: self.faults.clone() }))
    }
}

// ---- the rig ------------------------------------------------------------------------

struct Rig {
    dir: tempfile::TempDir,
    ca: Arc<DevCa>,
    _server: Server,
    client: Arc<HttpCaClient>,
    root: Certificate,
    root_signer: LocalSigner,
    faults: Arc<Faults>,
    transport: Arc<FaultyTransport>,
    mgr: DeviceManager,
    events: Receiver<DeviceEvent>,
    renewal: Renewal,
    old: Certificate,
}

fn rig(days_left: i64) -> Rig {
    rig_with(days_left, false)
}

/// With `dual`: SM2 dual certificates — the key's container also holds an encryption pair
/// with its certificate, and the dev CA issues dual certificates.
fn rig_with(days_left: i64, dual: bool) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let root_signer = LocalSigner::new(kb_crypto::PrivateKey::generate(Algorithm::Sm2).unwrap());
    let root = self_signed(
        &CertificateParams::new(
            "CN=Renewal Test Root",
            CertKind::Root { path_len: Some(0) },
            UnixTime::now().plus_days(-400),
            3650,
        ),
        &root_signer,
    )
    .unwrap();
    let config = Config { name: "测试 CA".into(), public_url: String::new(), operator_key: "k".into() };
    let ca = Arc::new(
        DevCa::open(&dir.path().join("ca.sqlite"), root.clone(), root_signer.clone(), Arc::new(SystemClock), config).unwrap(),
    );
    ca.set_dual_certificates(dual);
    let server = Server::start(Arc::clone(&ca), "127.0.0.1:0".parse().unwrap(), false).unwrap();
    let client = Arc::new(HttpCaClient::new(&server.url()).unwrap());

    // The key: container c1 with an SM2 signing pair and a certificate from the dev CA.
    let path = dir.path().join("keys").join("k.kbkey");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let opts = CreateOptions { serial: Some("KBF-TEST-0001".into()), ..CreateOptions::weak_for_tests() };
    let mut t = FileToken::create(&path, "Test key", &Pin::new(PIN), &Pin::new("33334444"), opts).unwrap();
    let old = {
        let mut s = t.login(&Pin::new(PIN)).unwrap();
        s.create_container(C).unwrap();
        let public = s.generate_key_pair(C, KeyUsage::Sign, Algorithm::Sm2).unwrap();
        let now = UnixTime::now();
        let mut p = CertificateParams::leaf(SUBJECT, KeyUsage::Sign, now.plus_days(-300), 1);
        p.not_after = now.plus_days(days_left);
        let cert = issue(&p, &public, Some(&root), &root_signer).unwrap();
        s.import_certificate(C, KeyUsage::Sign, cert.der()).unwrap();
        if dual {
            let enc = s.generate_key_pair(C, KeyUsage::Encrypt, Algorithm::Sm2).unwrap();
            p.kind = CertKind::Leaf { usage: KeyUsage::Encrypt };
            s.import_certificate(C, KeyUsage::Encrypt, issue(&p, &enc, Some(&root), &root_signer).unwrap().der()).unwrap();
        }
        cert
    };
    drop(t);

    let faults = Arc::new(Faults::default());
    let transport = Arc::new(FaultyTransport { path, faults: faults.clone(), tx: Mutex::new(None) });
    let mgr = DeviceManager::new(Arc::new(KnowsPin), Arc::new(NoAudit), PinCachePolicy::default());
    let events = mgr.subscribe();
    mgr.add_transport(transport.clone()).unwrap();
    assert!(mgr.wait_enumerated(WAIT));
    let renewal = Renewal::new(mgr.clone(), client.clone(), TrustStore::from_certs([root.clone()]), dir.path().join("journal"));
    Rig { dir, ca, _server: server, client, root, root_signer, faults, transport, mgr, events, renewal, old }
}

impl Rig {
    fn device(&self) -> kb_types::DeviceId {
        self.transport.info().id
    }

    /// Bind (proof signed on the key), confirm on the "phone", apply, pay, approve.
    fn approve(&self, kind: RenewalKind) -> String {
        let b = self.renewal.bind(&self.device(), "test").unwrap();
        let phone = self.ca.answer_binding(&b.token, true).unwrap().unwrap();
        let attachment = Some(("营业执照.pdf".to_string(), b"%PDF-1.4".to_vec()));
        let app = self.ca.apply(&phone, &api::serial_of(&self.old), kind, 2, attachment).unwrap();
        self.ca.pay(&phone, &app).unwrap();
        self.ca.decide(&app, true, "").unwrap();
        app
    }

    /// The signing slots with certificates, read straight from the key file (not through
    /// the service): (container, certificate, the slot's public key).
    fn on_the_key(&self) -> Vec<(String, Certificate, PublicKey)> {
        self.slots_on_the_key(KeyUsage::Sign)
    }

    /// The encryption slots with certificates, likewise.
    fn encryption_on_the_key(&self) -> Vec<(String, Certificate, PublicKey)> {
        self.slots_on_the_key(KeyUsage::Encrypt)
    }

    fn slots_on_the_key(&self, usage: KeyUsage) -> Vec<(String, Certificate, PublicKey)> {
        let mut t = FileToken::open(&self.transport.path).unwrap();
        let mut out = Vec::new();
        for c in t.containers().unwrap() {
            if let Some(der) = c.slot(usage).and_then(|s| s.certificate.clone()) {
                let key = t.public_key(&c.name, usage).unwrap();
                out.push((c.name.clone(), Certificate::from_der(&der).unwrap(), key));
            }
        }
        out
    }

    /// The dual invariant: every encryption certificate on the key is for its slot's key
    /// pair, and at least one chains to the root and is valid now.
    fn assert_encryption_working(&self, when: &str) {
        let certs = self.encryption_on_the_key();
        let trust = TrustStore::from_certs([self.root.clone()]);
        for (name, c, k) in &certs {
            assert_eq!(
                c.public_key().ok().as_ref(),
                Some(k),
                "{when}: container {name}'s encryption certificate is not for its key"
            );
        }
        assert!(
            certs.iter().any(|(_, c, _)| kb_pki::chain::verify_chain(c, &[], &trust, UnixTime::now()).is_ok()),
            "{when}: no working encryption certificate: {certs:?}"
        );
    }

    /// After a dual install: the container holding the new signing certificate `new`
    /// holds the CA's new encryption pair, and the key decrypts with it.
    fn assert_new_encryption_pair(&self, new: &Certificate, when: &str) {
        let (name, _, _) = self.on_the_key().into_iter().find(|(_, c, _)| c == new).unwrap();
        let (_, enc, key) = self
            .encryption_on_the_key()
            .into_iter()
            .find(|(n, _, _)| *n == name)
            .unwrap_or_else(|| panic!("{when}: no encryption pair next to the new signing certificate"));
        assert!(enc.not_after() > self.old.not_after(), "{when}: the encryption certificate is not the new one");
        assert_eq!(enc.subject(), new.subject());
        let PublicKey::Sm2(k) = &key else { panic!() };
        let ct = k.encrypt(b"0123456789abcdef").unwrap().to_der().unwrap();
        let mut t = FileToken::open(&self.transport.path).unwrap();
        let mut s = t.login(&Pin::new(PIN)).unwrap();
        assert_eq!(&s.decrypt(&name, KeyUsage::Encrypt, &ct, RsaPadding::Pkcs1v15).unwrap()[..], b"0123456789abcdef");
    }

    /// The invariant: a working certificate (its key on the key, chaining to the root,
    /// valid now) — the old one or one newer for the same subject.
    fn assert_working(&self, when: &str) -> Certificate {
        let certs = self.on_the_key();
        let trust = TrustStore::from_certs([self.root.clone()]);
        let working: Vec<_> = certs
            .iter()
            .filter(|(_, c, k)| {
                c.public_key().ok().as_ref() == Some(k)
                    && kb_pki::chain::verify_chain(c, &[], &trust, UnixTime::now()).is_ok()
                    && c.subject() == self.old.subject()
            })
            .collect();
        assert!(!working.is_empty(), "{when}: no working certificate on the key: {certs:?}");
        working.iter().max_by_key(|(_, c, _)| c.not_after()).unwrap().1.clone()
    }

    /// Pull the key out and plug it back in, and wait until the service has seen it come
    /// back. (Checking only that the device is known raced: the service might not have
    /// processed the Removed yet, and then dropped the key right after the check.)
    fn replug_and_wait(&self) {
        while self.events.try_recv().is_ok() {}
        self.transport.replug();
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.events.recv_timeout(left) {
                Ok(DeviceEvent::Added(info)) if info.id == self.device() => break,
                Ok(_) => {}
                Err(e) => panic!("the key did not come back: {e}"),
            }
        }
        assert!(self.mgr.device(&self.device()).is_ok());
    }
}

#[test]
fn renew_installs_a_later_certificate_for_the_same_key() {
    let r = rig(20);
    let st = r.renewal.status(&r.device(), "test").unwrap();
    assert_eq!(st.len(), 1);
    assert_eq!((st[0].validity, st[0].medium_serial.as_str()), (kb_types::ValidityStatus::ExpiringSoon, "KBF-TEST-0001"));
    assert_eq!(st[0].renewal.as_ref().map(|s| s.state), Some(RenewalState::None));
    // Not approved: nothing is written.
    let e = r.renewal.install(&r.device(), C, KeyUsage::Sign, "test").unwrap_err();
    assert_eq!(e.code(), ErrorCode::RenewalNotApproved);
    r.approve(RenewalKind::Renew);
    let st = r.renewal.status(&r.device(), "test").unwrap();
    assert!(st[0].renewal.as_ref().is_some_and(|s| s.bound && s.state == RenewalState::Approved));
    let report = r.renewal.install(&r.device(), C, KeyUsage::Sign, "test").unwrap();
    assert_eq!(report.kind, RenewalKind::Renew);
    let now_on_key = r.assert_working("after install");
    assert_eq!(now_on_key.der(), report.certificate.as_slice());
    assert_eq!(now_on_key.public_key().unwrap(), r.old.public_key().unwrap());
    assert!(now_on_key.not_after() > r.old.not_after());
    assert_ne!(now_on_key.serial_hex(), r.old.serial_hex());
    assert_eq!(r.client.renewal_status(&api::serial_of(&r.old)).unwrap().state, RenewalState::Issued);
    assert!(std::fs::read_dir(r.renewal.journal_dir()).map(|d| d.count()).unwrap_or(0) == 0, "journal left behind");
}

/// Makes a certificate for a CSR.
type Issuer = Box<dyn Fn(&[u8]) -> Certificate + Send + Sync>;

/// Changes what the CA delivers.
type DeliveryChange = Box<dyn Fn(api::Delivery) -> api::Delivery + Send + Sync>;

/// A CA client that hands out a crafted certificate instead of the real one, or changes
/// the delivery (the encryption pair of dual certificates).
struct Tampering {
    real: Arc<HttpCaClient>,
    issue: Option<Issuer>,
    delivery: Option<DeliveryChange>,
}

impl CaClient for Tampering {
    fn server_info(&self) -> kb_ca::Result<api::ServerInfo> {
        self.real.server_info()
    }
    fn challenge(&self) -> kb_ca::Result<api::Challenge> {
        self.real.challenge()
    }
    fn request_binding(&self, r: &api::BindingRequest) -> kb_ca::Result<api::Binding> {
        self.real.request_binding(r)
    }
    fn binding_status(&self, id: &str, w: Option<(api::BindingState, Duration)>) -> kb_ca::Result<api::BindingStatus> {
        self.real.binding_status(id, w)
    }
    fn renewal_status(&self, s: &str) -> kb_ca::Result<api::RenewalStatus> {
        self.real.renewal_status(s)
    }
    fn delivery(&self, id: &str) -> kb_ca::Result<api::Delivery> {
        let d = self.real.delivery(id)?;
        Ok(match &self.delivery {
            Some(change) => change(d),
            None => d,
        })
    }
    fn est_cacerts(&self) -> kb_ca::Result<Vec<Certificate>> {
        self.real.est_cacerts()
    }
    fn est_simpleenroll(&self, csr: &[u8], auth: Option<(&str, &str)>) -> kb_ca::Result<Vec<Certificate>> {
        match &self.issue {
            Some(issue) => Ok(vec![issue(csr)]),
            None => self.real.est_simpleenroll(csr, auth),
        }
    }
    fn est_simplereenroll(&self, csr: &[u8]) -> kb_ca::Result<Vec<Certificate>> {
        match &self.issue {
            Some(issue) => Ok(vec![issue(csr)]),
            None => self.real.est_simplereenroll(csr),
        }
    }
}

/// A run killed while writing its first journal leaves only `write_atomic`'s temp file:
/// recovery has nothing to finish, and removes it (it was left behind, and the CLI's kill
/// test found the journal directory not empty).
#[test]
fn recovery_removes_the_temp_file_of_a_killed_first_journal_write() {
    let r = rig(20);
    let dir = r.renewal.journal_dir().to_path_buf();
    std::fs::create_dir_all(&dir).unwrap();
    let name: String =
        r.device().to_string().chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
    let tmp = dir.join(format!(".install-{name}.json.Ab12Cd.tmp"));
    std::fs::write(&tmp, b"{\"kind\": \"ren").unwrap();
    let recovered = r.renewal.recover(&r.device(), "test").unwrap();
    assert!(matches!(recovered, kb_service::renewal::Recovery::Nothing), "{recovered:?}");
    assert!(!tmp.exists(), "the temp file is left");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    r.assert_working("after recovery");
}

#[test]
fn a_new_certificate_that_fails_a_check_is_never_written() {
    let r = rig(20);
    r.approve(RenewalKind::Renew);
    let now = UnixTime::now();
    let other_root = kb_pki::issue::TestCa::new(Algorithm::Sm2, "CN=Some Other Root").unwrap();
    let (root, rs) = (r.root.clone(), r.root_signer.clone());
    let csr_key = |csr: &[u8]| kb_pki::csr::CertificationRequest::from_der(csr).unwrap().public_key().unwrap();
    let cases: Vec<(&str, Issuer)> = vec![
        ("another key", {
            let (root, rs) = (root.clone(), rs.clone());
            Box::new(move |_| {
                let k = kb_crypto::PrivateKey::generate(Algorithm::Sm2).unwrap().public_key();
                issue(&CertificateParams::leaf(SUBJECT, KeyUsage::Sign, now, 800), &k, Some(&root), &rs).unwrap()
            })
        }),
        ("another root", Box::new(move |csr| other_root.leaf(SUBJECT, &csr_key(csr), KeyUsage::Sign).unwrap())),
        ("ends before the old one", {
            let (root, rs) = (root.clone(), rs.clone());
            Box::new(move |csr| {
                issue(&CertificateParams::leaf(SUBJECT, KeyUsage::Sign, now, 5), &csr_key(csr), Some(&root), &rs).unwrap()
            })
        }),
        ("another subject", {
            let (root, rs) = (root.clone(), rs.clone());
            Box::new(move |csr| {
                issue(&CertificateParams::leaf("C=CN,CN=李四", KeyUsage::Sign, now, 800), &csr_key(csr), Some(&root), &rs)
                    .unwrap()
            })
        }),
        ("not valid yet", {
            let (root, rs) = (root.clone(), rs.clone());
            Box::new(move |csr| {
                issue(&CertificateParams::leaf(SUBJECT, KeyUsage::Sign, now.plus_days(30), 800), &csr_key(csr), Some(&root), &rs)
                    .unwrap()
            })
        }),
    ];
    for (what, issue) in cases {
        let tampering = Arc::new(Tampering { real: r.client.clone(), issue: Some(issue), delivery: None });
        let renewal = Renewal::new(r.mgr.clone(), tampering, TrustStore::from_certs([r.root.clone()]), r.dir.path().join("j2"));
        let e = renewal.install(&r.device(), C, KeyUsage::Sign, "test").unwrap_err();
        assert_eq!(e.code(), ErrorCode::NewCertificateInvalid, "{what}: {e}");
        let on_key = r.on_the_key();
        assert_eq!(on_key.len(), 1, "{what}");
        assert_eq!(on_key[0].1, r.old, "{what}: the old certificate must stay");
    }
}

/// Run `kind`'s install failing at call 1, 2, … (each way) until an install goes through
/// without reaching the failure; after each, the key holds a working certificate, and
/// after re-plugging and recovery, the latest certificate is in and no journal is left.
fn fault_sweep(kind: RenewalKind, when: When, pull: bool) -> usize {
    fault_sweep_with(kind, when, pull, false)
}

fn fault_sweep_with(kind: RenewalKind, when: When, pull: bool, dual: bool) -> usize {
    let mut n = 1;
    loop {
        let r = rig_with(20, dual);
        r.approve(kind);
        r.faults.arm(n, when, pull);
        let result = r.renewal.install(&r.device(), C, KeyUsage::Sign, "test");
        let fired = r.faults.fired.load(Ordering::SeqCst);
        r.faults.disarm();
        let ctx = format!("{kind:?}, failing {when:?} call {n}, pull={pull}");
        let before = r.assert_working(&format!("{ctx}, right after"));
        if dual {
            r.assert_encryption_working(&format!("{ctx}, right after"));
        }
        if !fired {
            let report = result.unwrap_or_else(|e| panic!("{ctx}: {e}"));
            assert!(before.not_after() > r.old.not_after());
            assert_eq!(before.der(), report.certificate.as_slice());
            if dual {
                r.assert_new_encryption_pair(&before, &ctx);
            }
            return n as usize - 1;
        }
        if let Err(e) = &result {
            let code = e.code();
            assert!(
                matches!(
                    code,
                    ErrorCode::InstallRolledBack
                        | ErrorCode::InstallIncomplete
                        | ErrorCode::DeviceRemoved
                        | ErrorCode::OutcomeUnknown
                        | ErrorCode::UnknownDevice
                ),
                "{ctx}: {e} ({code:?})"
            );
        }
        if pull {
            r.replug_and_wait();
        }
        let recovered = r.renewal.recover(&r.device(), "test").unwrap_or_else(|e| panic!("{ctx}: recovery: {e}"));
        let after = r.assert_working(&format!("{ctx}, after recovery ({recovered:?})"));
        if dual {
            r.assert_encryption_working(&format!("{ctx}, after recovery"));
        }
        assert!(!journal_left(r.renewal.journal_dir()), "{ctx}: journal left after recovery");
        // A rekey that went through leaves one pair; a rolled-back one keeps the old.
        if kind == RenewalKind::Rekey {
            let certs = r.on_the_key();
            if after == r.old {
                assert!(certs.iter().any(|(name, c, _)| name == C && *c == r.old), "{ctx}");
            } else {
                assert!(!certs.iter().any(|(name, _, _)| name == C), "{ctx}: the old pair was not removed");
            }
        }
        // The install can always be finished afterwards.
        if after == r.old {
            r.renewal.install(&r.device(), C, KeyUsage::Sign, "test").unwrap_or_else(|e| panic!("{ctx}: retry: {e}"));
            assert!(r.assert_working(&format!("{ctx}, after retry")).not_after() > r.old.not_after());
        } else if dual && r.encryption_on_the_key().iter().all(|(_, c, _)| c.not_after() <= r.old.not_after()) {
            // The signing certificate went in but the encryption pair not yet: the next
            // install brings it.
            r.renewal.install(&r.device(), C, KeyUsage::Sign, "test").unwrap_or_else(|e| panic!("{ctx}: retry: {e}"));
        }
        if dual {
            let new = r.assert_working(&format!("{ctx}, finished"));
            if new != r.old {
                r.assert_new_encryption_pair(&new, &format!("{ctx}, finished"));
            }
        }
        n += 1;
        assert!(n < 80, "{ctx}: the sweep does not end");
    }
}

fn journal_left(dir: &Path) -> bool {
    std::fs::read_dir(dir).map(|d| d.count() > 0).unwrap_or(false)
}

#[test]
fn renew_survives_a_failure_at_every_step() {
    for (when, pull) in [(When::Before, false), (When::After, false), (When::Before, true), (When::After, true)] {
        let steps = fault_sweep(RenewalKind::Renew, when, pull);
        eprintln!("renew: failing {when:?} (pull={pull}) each of {steps} calls");
        assert!(steps >= 5, "only {steps} calls were swept");
    }
}

#[test]
fn rekey_survives_a_failure_at_every_step() {
    for (when, pull) in [(When::Before, false), (When::After, false), (When::Before, true), (When::After, true)] {
        let steps = fault_sweep(RenewalKind::Rekey, when, pull);
        eprintln!("rekey: failing {when:?} (pull={pull}) each of {steps} calls");
        assert!(steps >= 8, "only {steps} calls were swept");
    }
}

#[test]
fn rekey_makes_a_new_pair_and_removes_the_old_one_after() {
    let r = rig(-5);
    r.approve(RenewalKind::Rekey);
    let report = r.renewal.install(&r.device(), C, KeyUsage::Sign, "test").unwrap();
    assert_eq!((report.kind, report.container.as_str()), (RenewalKind::Rekey, "c1-1"));
    let certs = r.on_the_key();
    assert_eq!(certs.len(), 1);
    let (name, new, key) = &certs[0];
    assert_eq!(name, "c1-1");
    assert_eq!(&new.public_key().unwrap(), key);
    assert_ne!(key, &r.old.public_key().unwrap());
    assert_eq!(new.subject(), r.old.subject());
}

#[test]
fn renewal_needs_exactly_one_key_plugged_in() {
    let r = rig(20);
    assert_eq!(r.renewal.single_medium().unwrap().serial, "KBF-TEST-0001");
    // A second medium.
    let tr = kb_token::memory::MemoryTransport::new(TransportKind::Pcsc);
    tr.insert(tr.new_token("second", PIN, "33334444"));
    r.mgr.add_transport(Arc::new(tr)).unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    while r.mgr.devices().len() < 2 {
        assert!(std::time::Instant::now() < deadline);
        let _ = r.events.recv_timeout(Duration::from_millis(50));
    }
    assert_eq!(r.renewal.single_medium().unwrap_err().code(), ErrorCode::MultipleMediaPresent);
}

#[test]
fn dual_renew_and_rekey_deliver_the_encryption_pair_enveloped() {
    for kind in [RenewalKind::Renew, RenewalKind::Rekey] {
        let r = rig_with(20, true);
        let old_enc = r.encryption_on_the_key();
        r.approve(kind);
        let status = r.client.renewal_status(&api::serial_of(&r.old)).unwrap();
        assert!(status.application.as_ref().is_some_and(|a| a.dual), "{kind:?}: the application is not dual");
        let report = r.renewal.install(&r.device(), C, KeyUsage::Sign, "test").unwrap();
        let new = r.assert_working(&format!("{kind:?}"));
        assert_eq!(new.der(), report.certificate.as_slice());
        r.assert_new_encryption_pair(&new, &format!("{kind:?}"));
        let app = status.application.unwrap();
        let delivery = r.client.delivery(&app.id).unwrap();
        assert_eq!(delivery.certificates.len(), 2);
        assert!(delivery.encryption_key.is_some());
        if kind == RenewalKind::Rekey {
            // The old container keeps its encryption pair (old documents still open);
            // only its signing certificate went.
            let encs = r.encryption_on_the_key();
            assert!(encs.iter().any(|e| e == &old_enc[0]), "the old encryption pair was removed");
            assert!(!r.on_the_key().iter().any(|(n, _, _)| n == C));
        }
        // Installing again changes nothing (the slot already holds the delivered pair).
        let before = r.encryption_on_the_key();
        r.renewal.install(&r.device(), C, KeyUsage::Sign, "test").unwrap_err();
        assert_eq!(r.encryption_on_the_key(), before);
    }
}

#[test]
fn dual_renew_survives_a_failure_at_every_step() {
    for (when, pull) in [(When::Before, false), (When::After, false), (When::Before, true), (When::After, true)] {
        let steps = fault_sweep_with(RenewalKind::Renew, when, pull, true);
        eprintln!("dual renew: failing {when:?} (pull={pull}) each of {steps} calls");
        assert!(steps >= 7, "only {steps} calls were swept");
    }
}

#[test]
fn dual_rekey_survives_a_failure_at_every_step() {
    for (when, pull) in [(When::Before, false), (When::After, false), (When::Before, true), (When::After, true)] {
        let steps = fault_sweep_with(RenewalKind::Rekey, when, pull, true);
        eprintln!("dual rekey: failing {when:?} (pull={pull}) each of {steps} calls");
        assert!(steps >= 10, "only {steps} calls were swept");
    }
}

/// Dual certificates: an encryption pair that fails a check (or a delivery that is not
/// one) is never imported, and the signing certificate is not written either.
#[test]
fn a_dual_delivery_that_fails_a_check_changes_nothing() {
    let r = rig_with(20, true);
    r.approve(RenewalKind::Renew);
    let (root, rs) = (r.root.clone(), r.root_signer.clone());
    let now = UnixTime::now();
    let stranger = kb_crypto::sm2::Sm2PrivateKey::generate().unwrap();
    let stranger_pub = PublicKey::Sm2(*stranger.public_key());
    let envelope_of = |d: &api::Delivery| {
        kb_token::Sm2EnvelopedKey::from_der(&api::unb64(d.encryption_key.as_deref().unwrap()).unwrap()).unwrap()
    };
    let enc_cert = move |subject: &str, key: &PublicKey, usage: KeyUsage, days: i64| {
        api::b64(issue(&CertificateParams::leaf(subject, usage, now, days), key, Some(&root), &rs).unwrap().der())
    };
    let cases: Vec<(&str, ErrorCode, DeliveryChange)> = vec![
        (
            "no envelope",
            ErrorCode::CaResponseInvalid,
            Box::new(|mut d| {
                d.encryption_key = None;
                d
            }),
        ),
        (
            "no encryption certificate",
            ErrorCode::CaResponseInvalid,
            Box::new(|mut d| {
                d.certificates.truncate(1);
                d
            }),
        ),
        (
            "an envelope that is not DER",
            ErrorCode::CaResponseInvalid,
            Box::new(|mut d| {
                d.encryption_key = Some(api::b64(b"not an envelope"));
                d
            }),
        ),
        ("a certificate for another key", ErrorCode::NewCertificateInvalid, {
            let c = enc_cert.clone();
            let k = stranger_pub.clone();
            Box::new(move |mut d| {
                d.certificates[1] = c(SUBJECT, &k, KeyUsage::Encrypt, 800);
                d
            })
        }),
        ("a certificate for another subject", ErrorCode::NewCertificateInvalid, {
            let c = enc_cert.clone();
            Box::new(move |mut d| {
                let k = PublicKey::Sm2(envelope_of(&d).public_key);
                d.certificates[1] = c("C=CN,CN=李四", &k, KeyUsage::Encrypt, 800);
                d
            })
        }),
        ("a signing certificate", ErrorCode::NewCertificateInvalid, {
            let c = enc_cert.clone();
            Box::new(move |mut d| {
                let k = PublicKey::Sm2(envelope_of(&d).public_key);
                d.certificates[1] = c(SUBJECT, &k, KeyUsage::Sign, 800);
                d
            })
        }),
        ("an envelope sealed to another key", ErrorCode::EnvelopedKeyInvalid, {
            let c = enc_cert.clone();
            Box::new(move |mut d| {
                let pair = kb_crypto::sm2::Sm2PrivateKey::generate().unwrap();
                let k = PublicKey::Sm2(*pair.public_key());
                let env = kb_token::Sm2EnvelopedKey::seal(&pair, stranger.public_key()).unwrap();
                d.encryption_key = Some(api::b64(&env.to_der().unwrap()));
                d.certificates[1] = c(SUBJECT, &k, KeyUsage::Encrypt, 800);
                d
            })
        }),
    ];
    let before_enc = r.encryption_on_the_key();
    for (what, code, change) in cases {
        let tampering = Arc::new(Tampering { real: r.client.clone(), issue: None, delivery: Some(change) });
        let renewal = Renewal::new(r.mgr.clone(), tampering, TrustStore::from_certs([r.root.clone()]), r.dir.path().join("j2"));
        let e = renewal.install(&r.device(), C, KeyUsage::Sign, "test").unwrap_err();
        assert_eq!(e.code(), code, "{what}: {e}");
        assert_eq!(r.on_the_key()[0].1, r.old, "{what}: the old signing certificate must stay");
        assert_eq!(r.encryption_on_the_key(), before_enc, "{what}: the encryption slot changed");
    }
    // The real delivery then goes through.
    r.renewal.install(&r.device(), C, KeyUsage::Sign, "test").unwrap();
    let new = r.assert_working("after the real delivery");
    r.assert_new_encryption_pair(&new, "after the real delivery");
}
