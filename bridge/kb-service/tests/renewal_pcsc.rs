//! 安装证书 on a real PC/SC card — pcscd, vsmartcard's vpcd reader and the independent
//! PyPI OpenPGP card emulator (the rig of `drivers/kb-pcsc/tests/rig`) — with the card
//! process killed (SIGKILL: the card leaves the reader) at random moments of the install:
//! the card always holds a working certificate afterwards, and recovery leaves no journal.
//!
//! What this shows honestly: the OpenPGP card application writes its certificate data
//! object only under the admin PIN (PW3), and the device service's sessions carry the user
//! PIN, so an install on this card never gets to write — it ends `install_rolled_back`
//! (or `device_removed` when the card went first) with the old certificate in place. The
//! kills land in what the install does on the card: reading it, signing the PKCS#10,
//! reading back.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stdout)]

#[path = "../../../drivers/kb-pcsc/tests/rig/mod.rs"]
mod rig;

use kb_ca::HttpCaClient;
use kb_ca::api::{self, RenewalKind};
use kb_devca::{Config, DevCa, Server, SystemClock};
use kb_openpgp::CONTAINER;
use kb_pcsc::PcscTransport;
use kb_pki::chain::TrustStore;
use kb_pki::issue::{CertKind, CertificateParams, issue, self_signed};
use kb_pki::time::UnixTime;
use kb_pki::{Certificate, LocalSigner};
use kb_service::audit::{AuditRecord, AuditSink};
use kb_service::devices::{DeviceEvent, DeviceManager};
use kb_service::pin_cache::PinCachePolicy;
use kb_service::prompter::{ConfirmRequest, PinRequest, Prompter, QrRequest};
use kb_service::renewal::{Recovery, Renewal};
use kb_token::{OpContext, Token};
use kb_types::{Algorithm, DeviceId, ErrorCode, HasErrorCode, KeyUsage, Pin, TransportKind};
use rig::{ADMIN_PIN, Rig, USER_PIN};
use std::sync::Arc;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

const SERIAL: &str = "00000015";
const SUBJECT: &str = "C=CN,O=某某建设集团有限公司,CN=王五";
const WAIT: Duration = Duration::from_secs(30);

struct NoAudit;
impl AuditSink for NoAudit {
    fn record(&self, _: &AuditRecord) -> kb_service::Result<()> {
        Ok(())
    }
}

/// Answers every PIN prompt with the card's user PIN.
struct KnowsPin;
impl Prompter for KnowsPin {
    fn ask_pin(&self, _: &PinRequest, _: &OpContext) -> kb_service::Result<Pin> {
        Ok(Pin::new(USER_PIN))
    }
    fn confirm(&self, _: &ConfirmRequest) -> kb_service::Result<bool> {
        Ok(true)
    }
    fn show_qr(&self, _: &QrRequest) -> kb_service::Result<()> {
        Ok(())
    }
    fn notify(&self, _: &str) {}
}

/// The next PC/SC medium added.
fn wait_added(events: &Receiver<DeviceEvent>) -> DeviceId {
    let deadline = Instant::now() + WAIT;
    loop {
        match events.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(DeviceEvent::Added(i)) if i.transport == TransportKind::Pcsc => return i.id,
            Ok(_) => {}
            Err(e) => panic!("the card was not seen within {WAIT:?}: {e}"),
        }
    }
}

/// Until the medium `id` is reported gone.
fn wait_removed(events: &Receiver<DeviceEvent>, id: &DeviceId) {
    let deadline = Instant::now() + WAIT;
    loop {
        match events.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(DeviceEvent::Removed(r)) if &r == id => return,
            Ok(_) => {}
            Err(e) => panic!("the card's removal was not seen within {WAIT:?}: {e}"),
        }
    }
}

/// The card's signing certificate and key, read straight from the card (not through the
/// service).
fn on_the_card(rig: &Rig) -> (Option<Certificate>, kb_crypto::PublicKey) {
    let mut card = rig::open_direct(rig);
    let c = card.containers().unwrap().into_iter().find(|c| c.name == CONTAINER).unwrap();
    let cert = c.sign.and_then(|s| s.certificate).map(|der| Certificate::from_der(&der).unwrap());
    (cert, card.public_key(CONTAINER, KeyUsage::Sign).unwrap())
}

/// A small deterministic generator for the kill delays (the seed is printed).
fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

#[test]
fn card_killed_mid_install_keeps_a_working_certificate() {
    let Some(rig) = Rig::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    // The dev CA, and the card's old certificate from its root (临期: 20 days left).
    let root_signer = LocalSigner::new(kb_crypto::PrivateKey::generate(Algorithm::Sm2).unwrap());
    let now = UnixTime::now();
    let root = self_signed(
        &CertificateParams::new("CN=PC/SC Renewal Test Root", CertKind::Root { path_len: Some(0) }, now.plus_days(-400), 3650),
        &root_signer,
    )
    .unwrap();
    let config = Config { name: "测试 CA".into(), public_url: String::new(), operator_key: "k".into() };
    let ca = Arc::new(
        DevCa::open(&dir.path().join("ca.sqlite"), root.clone(), root_signer.clone(), Arc::new(SystemClock), config).unwrap(),
    );
    let server = Server::start(Arc::clone(&ca), "127.0.0.1:0".parse().unwrap(), false).unwrap();
    let client = Arc::new(HttpCaClient::new(&server.url()).unwrap());
    let mut card = rig.insert("renew", SERIAL, None);
    let old = {
        let mut direct = rig::open_direct(&rig);
        rig::personalize(&mut direct);
        let key = direct.public_key(CONTAINER, KeyUsage::Sign).unwrap();
        let mut p = CertificateParams::leaf(SUBJECT, KeyUsage::Sign, now.plus_days(-300), 1);
        p.not_after = now.plus_days(20);
        let cert = issue(&p, &key, Some(&root), &root_signer).unwrap();
        let mut admin = direct.login_admin(&Pin::new(USER_PIN), &Pin::new(ADMIN_PIN)).unwrap();
        admin.import_certificate(CONTAINER, KeyUsage::Sign, cert.der()).unwrap();
        cert
    };
    let trust = TrustStore::from_certs([root.clone()]);
    let working = |when: &str| {
        let (cert, key) = on_the_card(&rig);
        let cert = cert.unwrap_or_else(|| panic!("{when}: the card holds no certificate"));
        assert_eq!(cert.public_key().unwrap(), key, "{when}: the certificate is not for the card's key");
        kb_pki::chain::verify_chain(&cert, &[], &trust, UnixTime::now()).unwrap_or_else(|e| panic!("{when}: {e}"));
        assert_eq!(cert.subject(), old.subject(), "{when}");
        cert
    };

    let manager = DeviceManager::new(Arc::new(KnowsPin), Arc::new(NoAudit), PinCachePolicy::default());
    let events = manager.subscribe();
    manager.add_transport(Arc::new(PcscTransport::new())).unwrap();
    let mut id = wait_added(&events);
    let renewal = Renewal::new(manager.clone(), client.clone(), trust.clone(), dir.path().join("journal"));

    // Bound (proof signed on the card), applied for, paid, approved.
    let b = renewal.bind(&id, "test").unwrap();
    let phone = ca.answer_binding(&b.token, true).unwrap().unwrap();
    let app = ca.apply(&phone, &api::serial_of(&old), RenewalKind::Renew, 1, None).unwrap();
    ca.pay(&phone, &app).unwrap();
    ca.decide(&app, true, "").unwrap();

    // Undisturbed: the CA issues, the card refuses the write under the user PIN, and the
    // install is rolled back.
    let started = Instant::now();
    let e = renewal.install(&id, CONTAINER, KeyUsage::Sign, "test").unwrap_err();
    let undisturbed = started.elapsed();
    println!("undisturbed install on the OpenPGP card: {} ({e}) in {} ms", e.code().name(), undisturbed.as_millis());
    assert_eq!(e.code(), ErrorCode::InstallRolledBack, "{e}");
    assert_eq!(working("undisturbed"), old);
    assert_eq!(renewal.recover(&id, "test").unwrap(), Recovery::Nothing, "a journal was left");

    let mut seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1;
    println!("kill-delay seed {seed}");
    let span = undisturbed.as_millis().max(1) as u64;
    let mut killed_mid_way = 0;
    for round in 0..10 {
        let delay = Duration::from_millis(next(&mut seed) % (span + span / 2));
        let (r, i) = (renewal.clone(), id.clone());
        let install = std::thread::spawn(move || r.install(&i, CONTAINER, KeyUsage::Sign, "test"));
        std::thread::sleep(delay); // where the kill lands, not a wait for a condition
        let finished_first = install.is_finished();
        card.pull();
        let result = install.join().unwrap();
        let ctx = format!("round {round}, card killed after {delay:?}");
        if !finished_first {
            killed_mid_way += 1;
        }
        match &result {
            Ok(_) => panic!("{ctx}: an install cannot succeed on this card"),
            Err(e) => assert!(
                matches!(
                    e.code(),
                    ErrorCode::InstallRolledBack
                        | ErrorCode::InstallIncomplete
                        | ErrorCode::DeviceRemoved
                        | ErrorCode::OutcomeUnknown
                        | ErrorCode::UnknownDevice
                ),
                "{ctx}: {e} ({:?})",
                e.code()
            ),
        }
        // The card back in the reader: it holds a working certificate, and recovery
        // finishes whatever the install left.
        wait_removed(&events, &id);
        card = rig.insert("renew", SERIAL, None);
        id = wait_added(&events);
        let recovered = renewal.recover(&id, "test").unwrap_or_else(|e| panic!("{ctx}: recovery: {e}"));
        assert_eq!(working(&format!("{ctx}, recovered {recovered:?}")), old, "{ctx}");
        assert_eq!(renewal.recover(&id, "test").unwrap(), Recovery::Nothing, "{ctx}: a journal was left");
    }
    println!("{killed_mid_way} of 10 installs had the card killed before they finished");
    drop(server);
}
