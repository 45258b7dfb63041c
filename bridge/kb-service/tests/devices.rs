//! The device manager against virtual media: enumeration and hot-plug events, the PIN
//! cache and prompts, audit records, serialisation per medium, media pulled out
//! mid-operation, and CMS through device keys.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kb_crypto::PublicKey;
use kb_crypto::rsa::RsaPadding;
use kb_crypto::{PrivateKey, SignatureScheme};
use kb_pki::cms::{self, SignOptions, SignedMessage};
use kb_pki::{Certificate, Signer};
use kb_service::audit::{AuditRecord, AuditSink, AuthType};
use kb_service::devices::{DeviceEvent, DeviceManager, MAX_PIN_PROMPTS};
use kb_service::pin_cache::{FakeClock, PinCachePolicy};
use kb_service::prompter::ScriptedPrompter;
use kb_service::{Result, ServiceError};
use kb_token::memory::{MemoryToken, MemoryTransport};
use kb_token::{OpContext, Session, Token, TokenError, Transport, TransportEvent, UserAuth};
use kb_types::{
    Algorithm, ContainerInfo, DeviceId, DeviceInfo, ErrorCode, HasErrorCode, KeyUsage, Pin, PinInfo, PinKind, SealInfo,
    TransportKind,
};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const PIN: &str = "12345678";
const SO: &str = "admin-pin-0";
const C: &str = "c1";
const WAIT: Duration = Duration::from_secs(10);

/// An audit sink in memory; can be told to fail.
#[derive(Default)]
struct MemAudit {
    records: Mutex<Vec<AuditRecord>>,
    fail: Mutex<bool>,
}

impl MemAudit {
    fn records(&self) -> Vec<AuditRecord> {
        self.records.lock().unwrap().clone()
    }
    fn for_device(&self, id: &DeviceId) -> Vec<AuditRecord> {
        self.records().into_iter().filter(|r| &r.device_id == id).collect()
    }
}

impl AuditSink for MemAudit {
    fn record(&self, rec: &AuditRecord) -> Result<()> {
        if *self.fail.lock().unwrap() {
            return Err(ServiceError::Audit("disk full".into()));
        }
        self.records.lock().unwrap().push(rec.clone());
        Ok(())
    }
}

/// A test CA issuing SM2 dual certificates.
struct Ca(kb_pki::issue::TestCa);

impl Ca {
    fn new() -> Self {
        Ca(kb_pki::issue::TestCa::new(Algorithm::Sm2, "C=CN,O=Test CA,CN=Test Root").unwrap())
    }

    fn issue(&self, subject: &str, key: &PrivateKey, usage: KeyUsage) -> Certificate {
        self.0.leaf(subject, &key.public_key(), usage).unwrap()
    }
}

/// A token with container `c1` holding an SM2 signing and encryption pair, each with
/// a certificate.
struct Provisioned {
    token: MemoryToken,
    sign_key: PrivateKey,
    sign_cert: Certificate,
    enc_cert: Certificate,
}

fn provision(tr: &MemoryTransport, ca: &Ca, local: &str, pin: &str) -> Provisioned {
    let token = tr.new_token(local, pin, SO).with_label(&format!("Key {local}")).with_model("VK-1");
    let sign_key = PrivateKey::generate(Algorithm::Sm2).unwrap();
    let enc_key = PrivateKey::generate(Algorithm::Sm2).unwrap();
    let subject = format!("C=CN,O=某某建设有限公司,CN=张三 {local}");
    let sign_cert = ca.issue(&subject, &sign_key, KeyUsage::Sign);
    let enc_cert = ca.issue(&subject, &enc_key, KeyUsage::Encrypt);
    token.put_key(C, KeyUsage::Sign, sign_key.clone());
    token.put_key(C, KeyUsage::Encrypt, enc_key);
    token.put_certificate(C, KeyUsage::Sign, sign_cert.der()).unwrap();
    token.put_certificate(C, KeyUsage::Encrypt, enc_cert.der()).unwrap();
    Provisioned { token, sign_key, sign_cert, enc_cert }
}

struct Rig {
    mgr: DeviceManager,
    prompter: Arc<ScriptedPrompter>,
    audit: Arc<MemAudit>,
    clock: Arc<FakeClock>,
    tr: MemoryTransport,
    events: Receiver<DeviceEvent>,
    ca: Ca,
}

impl Rig {
    fn new(policy: PinCachePolicy) -> Self {
        let prompter = Arc::new(ScriptedPrompter::new());
        let audit = Arc::new(MemAudit::default());
        let clock = Arc::new(FakeClock::new());
        let mgr = DeviceManager::with_clock(prompter.clone(), audit.clone(), policy, clock.clone());
        let events = mgr.subscribe();
        let tr = MemoryTransport::new(TransportKind::Pcsc);
        mgr.add_transport(Arc::new(tr.clone())).unwrap();
        let rig = Rig { mgr, prompter, audit, clock, tr, events, ca: Ca::new() };
        rig.expect(|e| *e == DeviceEvent::EnumerationComplete);
        rig
    }

    /// Insert a provisioned token and wait until the manager has it.
    fn plug(&self, local: &str, pin: &str) -> (DeviceId, Provisioned) {
        let p = provision(&self.tr, &self.ca, local, pin);
        let id = self.tr.insert(p.token.clone());
        self.expect(|e| matches!(e, DeviceEvent::Added(i) if i.id == id));
        (id, p)
    }

    fn expect(&self, pred: impl Fn(&DeviceEvent) -> bool) -> DeviceEvent {
        expect_event(&self.events, pred)
    }

    fn sign(&self, id: &DeviceId, client: &str) -> Result<Vec<u8>> {
        self.mgr.sign_message(id, C, KeyUsage::Sign, &SignatureScheme::sm2_default(), b"bid file", client)
    }
}

fn expect_event(rx: &Receiver<DeviceEvent>, pred: impl Fn(&DeviceEvent) -> bool) -> DeviceEvent {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(e) if pred(&e) => return e,
            Ok(_) => {}
            Err(_) => panic!("expected event did not come"),
        }
    }
}

fn code<T: std::fmt::Debug>(r: Result<T>) -> ErrorCode {
    r.expect_err("expected an error").code()
}

#[test]
fn enumeration_completes_once_every_transport_has() {
    let prompter = Arc::new(ScriptedPrompter::new());
    let mgr = DeviceManager::new(prompter, Arc::new(MemAudit::default()), PinCachePolicy::default());
    let events = mgr.subscribe();
    let ca = Ca::new();
    let pcsc = MemoryTransport::new(TransportKind::Pcsc);
    let p11 = MemoryTransport::new(TransportKind::Pkcs11);
    pcsc.insert(provision(&pcsc, &ca, "A", PIN).token);
    p11.insert(provision(&p11, &ca, "B", PIN).token);
    p11.insert(provision(&p11, &ca, "C", PIN).token);
    pcsc.hold_enumeration(); // a slow bus scan
    mgr.add_transport(Arc::new(pcsc.clone())).unwrap();
    mgr.add_transport(Arc::new(p11.clone())).unwrap();

    let mut added = Vec::new();
    while added.len() < 3 {
        match events.recv_timeout(WAIT).unwrap() {
            DeviceEvent::Added(i) => added.push(i.id),
            DeviceEvent::EnumerationComplete => panic!("EnumerationComplete before every transport completed"),
            _ => {}
        }
    }
    // p11 completed, pcsc not yet: nothing more.
    assert!(events.recv_timeout(Duration::from_millis(300)).is_err());
    assert!(!mgr.wait_enumerated(Duration::from_millis(50)));
    pcsc.complete_enumeration();
    assert_eq!(events.recv_timeout(WAIT).unwrap(), DeviceEvent::EnumerationComplete);
    assert!(mgr.wait_enumerated(Duration::from_millis(50)));
    added.sort();
    let ids: Vec<_> = mgr.devices().into_iter().map(|d| d.id).collect();
    assert_eq!(ids, added);
    assert_eq!(ids, vec![DeviceId("pcsc:A".into()), DeviceId("pkcs11:B".into()), DeviceId("pkcs11:C".into())]);
    assert_eq!(mgr.device(&ids[1]).unwrap().transport, TransportKind::Pkcs11);

    // A late subscriber hears the present state first.
    let late = mgr.subscribe();
    let replay: Vec<_> = std::iter::from_fn(|| late.recv_timeout(Duration::from_millis(100)).ok()).collect();
    assert_eq!(replay.len(), 4);
    assert_eq!(replay[3], DeviceEvent::EnumerationComplete);
}

#[test]
fn hot_add_and_remove() {
    let rig = Rig::new(PinCachePolicy::default());
    assert!(rig.mgr.devices().is_empty());
    let (a, _) = rig.plug("A", PIN);
    let (b, _) = rig.plug("B", PIN);
    assert_eq!(rig.mgr.devices().len(), 2);
    assert_eq!(rig.mgr.containers(&a, "cli").unwrap()[0].name, C);
    rig.tr.remove(&a);
    rig.expect(|e| *e == DeviceEvent::Removed(a.clone()));
    assert_eq!(rig.mgr.devices().len(), 1);
    assert_eq!(code(rig.mgr.containers(&a, "cli")), ErrorCode::UnknownDevice);
    assert_eq!(rig.mgr.pin_info(&b, PinKind::User, "cli").unwrap().retries_left, 6);
    // Transport errors reach callers.
    rig.tr.fail("reader unplugged");
    let e = rig.expect(|e| matches!(e, DeviceEvent::TransportError { .. }));
    assert_eq!(e, DeviceEvent::TransportError { transport: TransportKind::Pcsc, message: "reader unplugged".into() });
}

#[test]
fn pin_prompted_once_then_cached() {
    let rig = Rig::new(PinCachePolicy::default());
    let (id, p) = rig.plug("A", PIN);
    rig.prompter.push_pin(PIN);
    // The same client twice (a remembered PIN serves only the client that typed it:
    // see a_cached_pin_serves_only_the_client_that_typed_it).
    let sig1 = rig.sign(&id, "https://bid.example.cn").unwrap();
    let sig2 = rig.sign(&id, "https://bid.example.cn").unwrap();
    let pk = p.sign_cert.public_key().unwrap();
    for s in [&sig1, &sig2] {
        assert!(pk.verify(&SignatureScheme::sm2_default(), b"bid file", s).is_ok());
    }
    let reqs = rig.prompter.pin_requests();
    assert_eq!(reqs.len(), 1, "second signature must not prompt");
    let r = &reqs[0];
    assert_eq!(r.device_id, id);
    assert_eq!(r.device_label, "Key A");
    assert_eq!(r.kind, PinKind::User);
    assert_eq!(r.retries_left, Some(6));
    assert_eq!(r.operation, "sign");
    assert_eq!(r.client, "https://bid.example.cn");
    assert!(!r.previous_wrong && !r.cached_pin_rejected);
    assert_eq!(p.token.calls("login"), 2);

    let recs = rig.audit.records();
    assert_eq!(recs.len(), 2);
    assert_eq!(recs.iter().map(|r| r.auth).collect::<Vec<_>>(), [AuthType::PinEntered, AuthType::PinCached]);
    assert_eq!(recs[0].client, "https://bid.example.cn");
    assert_eq!(recs[1].client, "https://bid.example.cn");
    for r in &recs {
        assert!(r.ok && r.error.is_none());
        assert_eq!(r.operation, "sign");
        assert_eq!(r.device_id, id);
        assert_eq!(r.device_type, TransportKind::Pcsc);
        assert_eq!(r.device_model, "VK-1");
        assert!(r.certificate.contains("张三 A"), "{}", r.certificate);
        assert!(r.certificate.contains(&p.sign_cert.serial_hex()), "{}", r.certificate);
        assert!(r.time_ms > 1_600_000_000_000);
    }
}

#[test]
fn policy_off_always_prompts_and_new_policy_applies_next_time() {
    let rig = Rig::new(PinCachePolicy::Off);
    let (id, _) = rig.plug("A", PIN);
    for _ in 0..3 {
        rig.prompter.push_pin(PIN);
        rig.sign(&id, "cli").unwrap();
    }
    assert_eq!(rig.prompter.pin_requests().len(), 3);
    assert!(rig.audit.records().iter().all(|r| r.auth == AuthType::PinEntered));
    assert!(rig.mgr.pin_cache().is_empty());

    rig.mgr.pin_cache().set_policy(PinCachePolicy::Minutes(5));
    rig.prompter.push_pin(PIN);
    rig.sign(&id, "cli").unwrap();
    rig.sign(&id, "cli").unwrap();
    assert_eq!(rig.prompter.pin_requests().len(), 4);
    // Off again: forgotten at once.
    rig.mgr.pin_cache().set_policy(PinCachePolicy::Off);
    rig.prompter.push_pin(PIN);
    rig.sign(&id, "cli").unwrap();
    assert_eq!(rig.prompter.pin_requests().len(), 5);
}

#[test]
fn cached_pin_expires_on_the_clock() {
    let rig = Rig::new(PinCachePolicy::Minutes(1));
    let (id, _) = rig.plug("A", PIN);
    rig.prompter.push_pin(PIN);
    rig.sign(&id, "cli").unwrap();
    rig.clock.advance(Duration::from_secs(59));
    rig.sign(&id, "cli").unwrap();
    assert_eq!(rig.prompter.pin_requests().len(), 1);
    rig.clock.advance(Duration::from_secs(2));
    rig.prompter.push_pin(PIN);
    rig.sign(&id, "cli").unwrap();
    assert_eq!(rig.prompter.pin_requests().len(), 2);
    let auths: Vec<_> = rig.audit.records().iter().map(|r| r.auth).collect();
    assert_eq!(auths, [AuthType::PinEntered, AuthType::PinCached, AuthType::PinEntered]);
}

#[test]
fn wrong_pin_is_never_cached_and_retries_count_down() {
    let rig = Rig::new(PinCachePolicy::default());
    let (id, p) = rig.plug("A", PIN);
    rig.prompter.push_pin("00000000");
    rig.prompter.push_pin("11111111");
    rig.prompter.push_pin(PIN);
    rig.sign(&id, "cli").unwrap();
    let reqs = rig.prompter.pin_requests();
    assert_eq!(reqs.iter().map(|r| r.retries_left).collect::<Vec<_>>(), [Some(6), Some(5), Some(4)]);
    assert_eq!(reqs.iter().map(|r| r.previous_wrong).collect::<Vec<_>>(), [false, true, true]);
    // The right PIN reset the medium's counter, and only it was cached.
    assert_eq!(rig.mgr.pin_info(&id, PinKind::User, "cli").unwrap().retries_left, 6);
    rig.sign(&id, "cli").unwrap();
    assert_eq!(rig.prompter.pin_requests().len(), 3);

    // A wrong PIN followed by cancel leaves nothing cached, and the outcome is that
    // wrong PIN with the tries left (what a script or a bridge client must learn), not
    // a bare cancellation.
    rig.mgr.pin_cache().clear();
    rig.prompter.clear_seen();
    rig.prompter.push_pin("00000000");
    rig.prompter.push_cancel();
    match rig.sign(&id, "cli") {
        Err(ServiceError::Token(TokenError::WrongPin { retries_left })) => assert_eq!(retries_left, 5),
        other => panic!("{other:?}"),
    }
    assert!(rig.mgr.pin_cache().is_empty());
    // Cancelling the first prompt is a cancellation.
    rig.prompter.push_cancel();
    assert_eq!(code(rig.sign(&id, "cli")), ErrorCode::Cancelled);

    // A cached PIN the medium rejects (changed elsewhere) is dropped and the user asked.
    rig.prompter.push_pin(PIN);
    rig.sign(&id, "cli").unwrap();
    let mut elsewhere = p.token.clone();
    elsewhere.change_pin(PinKind::User, &Pin::new(PIN), &Pin::new("87654321")).unwrap();
    rig.prompter.clear_seen();
    rig.prompter.push_pin("87654321");
    rig.sign(&id, "cli").unwrap();
    let reqs = rig.prompter.pin_requests();
    assert_eq!(reqs.len(), 1);
    assert!(reqs[0].cached_pin_rejected && !reqs[0].previous_wrong);
    assert_eq!(reqs[0].retries_left, Some(5));
    assert_eq!(rig.audit.records().last().unwrap().auth, AuthType::PinEntered);
    rig.sign(&id, "cli").unwrap();
    assert_eq!(rig.prompter.pin_requests().len(), 1);
}

#[test]
fn prompts_stop_after_the_maximum() {
    let rig = Rig::new(PinCachePolicy::default());
    let (id, _) = rig.plug("A", PIN);
    for _ in 0..MAX_PIN_PROMPTS + 1 {
        rig.prompter.push_pin("00000000");
    }
    assert_eq!(code(rig.sign(&id, "cli")), ErrorCode::WrongPin);
    assert_eq!(rig.prompter.pin_requests().len(), MAX_PIN_PROMPTS);
    assert_eq!(rig.prompter.remaining(), 1);
    assert_eq!(rig.audit.records()[0].error, Some(ErrorCode::WrongPin));
}

#[test]
fn locked_pin_then_unblock() {
    let rig = Rig::new(PinCachePolicy::default());
    let p = provision(&rig.tr, &rig.ca, "L", PIN);
    let token = p.token.with_max_retries(3);
    let id = rig.tr.insert(token.clone());
    rig.expect(|e| matches!(e, DeviceEvent::Added(i) if i.id == id));
    for _ in 0..3 {
        rig.prompter.push_pin("00000000");
    }
    assert_eq!(code(rig.sign(&id, "cli")), ErrorCode::PinLocked);
    assert_eq!(rig.prompter.pin_requests().iter().map(|r| r.retries_left).collect::<Vec<_>>(), [Some(3), Some(2), Some(1)]);
    let rec = rig.audit.records().pop().unwrap();
    assert!(!rec.ok);
    assert_eq!(rec.error, Some(ErrorCode::PinLocked));
    // Locked: no prompt at all.
    assert_eq!(code(rig.sign(&id, "cli")), ErrorCode::PinLocked);
    assert_eq!(rig.prompter.pin_requests().len(), 3);
    assert!(rig.mgr.pin_info(&id, PinKind::User, "cli").unwrap().locked);
    // Unblock with the SO PIN (wrong one first).
    assert_eq!(code(rig.mgr.unblock_pin(&id, Pin::new("wrong-so"), Pin::new("55556666"), "cli")), ErrorCode::WrongPin);
    rig.mgr.unblock_pin(&id, Pin::new(SO), Pin::new("55556666"), "cli").unwrap();
    rig.prompter.push_pin("55556666");
    rig.sign(&id, "cli").unwrap();
    let ops: Vec<_> = rig.audit.records().iter().map(|r| (r.operation.clone(), r.ok)).collect();
    assert_eq!(ops[ops.len() - 3..], [("unblock_pin".into(), false), ("unblock_pin".into(), true), ("sign".into(), true)]);
}

#[test]
fn cancel_is_reported_and_audited() {
    let rig = Rig::new(PinCachePolicy::default());
    let (id, _) = rig.plug("A", PIN);
    rig.prompter.push_cancel();
    let e = rig.sign(&id, "cli").unwrap_err();
    assert_eq!(e, ServiceError::Cancelled);
    assert_eq!(e.code(), ErrorCode::Cancelled);
    let rec = rig.audit.records().pop().unwrap();
    assert_eq!((rec.ok, rec.error, rec.auth), (false, Some(ErrorCode::Cancelled), AuthType::None));
}

/// One medium never sees two commands at once: a card, whose commands all go through
/// its actor, and (issue 18) a medium in this process, whose commands run on the
/// callers' threads while it is idle. Every signature is audited; the PIN cache serves
/// every signature after the first.
#[test]
fn one_medium_never_sees_two_commands_at_once() {
    for in_process in [false, true] {
        let rig = Rig::new(PinCachePolicy::default());
        let (id, p) = rig.plug_with("A", |t| if in_process { t.with_in_process() } else { t });
        p.token.set_op_delay(Duration::from_millis(1));
        rig.prompter.push_pin(PIN);
        rig.sign(&id, "cli").unwrap();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let mgr = rig.mgr.clone();
                let id = id.clone();
                std::thread::spawn(move || {
                    for i in 0..15 {
                        if (i + t) % 3 == 0 {
                            mgr.pin_info(&id, PinKind::User, "cli").unwrap();
                        } else {
                            mgr.sign_message(&id, C, KeyUsage::Sign, &SignatureScheme::sm2_default(), b"x", "cli").unwrap();
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(p.token.reentries(), 0, "in process: {in_process}");
        assert!(p.token.calls("sign_digest") >= 40);
        assert_eq!(rig.audit.records().len() as u64, p.token.calls("sign_digest"));
        assert_eq!(rig.prompter.pin_requests().len(), 1);
    }
}

#[test]
fn medium_pulled_out_mid_operation() {
    let rig = Rig::new(PinCachePolicy::default());
    let (a, pa) = rig.plug("A", PIN);
    let (b, _) = rig.plug("B", PIN);
    rig.prompter.push_pin(PIN);
    rig.prompter.push_pin(PIN);
    rig.sign(&a, "cli").unwrap();
    rig.sign(&b, "cli").unwrap();

    // The medium goes silent half-way through a signature, before its transport notices.
    let pause = pa.token.pause_next("sign_digest");
    let mgr = rig.mgr.clone();
    let a2 = a.clone();
    let th = std::thread::spawn(move || mgr.sign_message(&a2, C, KeyUsage::Sign, &SignatureScheme::sm2_default(), b"x", "cli"));
    assert!(pause.wait_reached(WAIT));
    pa.token.set_pulled(true);
    pause.release();
    assert_eq!(code(th.join().unwrap()), ErrorCode::DeviceRemoved);
    rig.expect(|e| *e == DeviceEvent::Removed(a.clone()));
    // The transport's own report afterwards makes no second event.
    rig.tr.remove(&a);
    assert!(rig.events.recv_timeout(Duration::from_millis(300)).is_err());
    let rec = rig.audit.for_device(&a).pop().unwrap();
    assert_eq!((rec.ok, rec.error), (false, Some(ErrorCode::DeviceRemoved)));
    assert_eq!(code(rig.sign(&a, "cli")), ErrorCode::UnknownDevice);

    // Everyone else keeps working, with the cache intact.
    rig.sign(&b, "cli").unwrap();
    assert_eq!(rig.prompter.pin_requests().len(), 2);
    assert_eq!(rig.mgr.devices().len(), 1);

    // Re-inserted: a fresh actor, and its PIN was forgotten.
    rig.tr.insert(pa.token.clone());
    rig.expect(|e| matches!(e, DeviceEvent::Added(i) if i.id == a));
    rig.prompter.push_pin(PIN);
    rig.sign(&a, "cli").unwrap();
    assert_eq!(rig.prompter.pin_requests().len(), 3);

    // Pulled out by the transport while logging in, with more commands queued behind.
    let pause = pa.token.pause_next("login");
    let queued: Vec<_> = (0..3)
        .map(|_| {
            let (mgr, a) = (rig.mgr.clone(), a.clone());
            std::thread::spawn(move || mgr.sign_message(&a, C, KeyUsage::Sign, &SignatureScheme::sm2_default(), b"x", "cli"))
        })
        .collect();
    assert!(pause.wait_reached(WAIT));
    rig.tr.remove(&a);
    pause.release();
    for t in queued {
        let c = code(t.join().unwrap());
        assert!(matches!(c, ErrorCode::DeviceRemoved | ErrorCode::UnknownDevice), "{c}");
    }
    rig.expect(|e| *e == DeviceEvent::Removed(a.clone()));
    rig.sign(&b, "cli").unwrap();
}

#[test]
fn cms_signed_and_opened_with_device_keys() {
    let rig = Rig::new(PinCachePolicy::default());
    let (id, p) = rig.plug("A", PIN);
    rig.prompter.push_pin(PIN);
    let signer = rig.mgr.signer(&id, C, KeyUsage::Sign, "https://bid.example.cn").unwrap();
    assert_eq!(signer.public_key(), &p.sign_key.public_key());
    let cert = signer.certificate().unwrap().clone();
    assert_eq!(cert, p.sign_cert);
    let content = "投标文件 bid file".as_bytes();
    let der = cms::sign(content, &signer, &cert, &SignOptions::default()).map_err(|e| signer.service_error(e)).unwrap();
    let msg = SignedMessage::from_der(&der).unwrap();
    let reports = msg.verify(None, &[]).unwrap();
    assert_eq!(reports.len(), 1);
    assert_eq!(msg.content(), Some(content));
    // Detached, and a CSR-style raw signature, through the same signer (PIN cached).
    let det = cms::sign(content, &signer, &cert, &SignOptions { detached: true, ..Default::default() }).unwrap();
    assert!(SignedMessage::from_der(&det).unwrap().verify(Some(content), &[]).is_ok());
    assert_eq!(rig.prompter.pin_requests().len(), 1);

    // An envelope to the encryption certificate, opened with the device key.
    let env = cms::envelope::encrypt_bytes(b"sealed price", std::slice::from_ref(&p.enc_cert), &Default::default()).unwrap();
    let dec = rig.mgr.decrypter(&id, C, KeyUsage::Encrypt, "https://bid.example.cn").unwrap();
    assert_eq!(&cms::envelope::decrypt_bytes(&env, &dec).unwrap()[..], b"sealed price");
    let ops: Vec<_> = rig.audit.records().iter().map(|r| r.operation.clone()).collect();
    assert_eq!(ops, ["sign", "sign", "decrypt"]);
    assert!(rig.audit.records()[2].certificate.contains(&p.enc_cert.serial_hex()));

    // Raw SM2 decryption of a content key, too.
    let ct = p.enc_cert.public_key().unwrap().encrypt(b"0123456789abcdef", RsaPadding::Pkcs1v15).unwrap();
    assert_eq!(
        &rig.mgr.decrypt(&id, C, KeyUsage::Encrypt, &ct, RsaPadding::Pkcs1v15, "https://bid.example.cn").unwrap()[..],
        b"0123456789abcdef"
    );

    // A device failure surfaces with its own code through kb-pki.
    p.token.set_pulled(true);
    let e = cms::sign(content, &signer, &cert, &SignOptions::default()).map_err(|e| signer.service_error(e)).unwrap_err();
    assert_eq!(e.code(), ErrorCode::DeviceRemoved);
    // The manager drops the medium when its actor reports it gone; wait for that (on a
    // busy machine the next call could otherwise still reach the actor's queue).
    rig.expect(|e| *e == DeviceEvent::Removed(id.clone()));
    // Even a caller that only sees the PkiError keeps the device's code (the medium is
    // gone from the manager by now, so it is UnknownDevice, not a generic I/O error).
    let pki = cms::sign(content, &signer, &cert, &SignOptions::default()).unwrap_err();
    assert!(matches!(pki, kb_pki::PkiError::Device { .. }), "{pki:?}");
    assert_eq!(pki.code(), ErrorCode::UnknownDevice);
}

#[test]
fn key_and_certificate_management() {
    let rig = Rig::new(PinCachePolicy::default());
    let (id, p) = rig.plug("A", PIN);
    rig.prompter.push_pin(PIN);
    rig.mgr.create_container(&id, "new", "cli").unwrap();
    assert_eq!(code(rig.mgr.create_container(&id, "new", "cli")), ErrorCode::AlreadyExists);
    let pk = rig.mgr.generate_key_pair(&id, "new", KeyUsage::Sign, Algorithm::Sm2, "cli").unwrap();
    rig.expect(|e| *e == DeviceEvent::CertificatesChanged(id.clone()));
    assert_eq!(rig.mgr.public_key(&id, "new", KeyUsage::Sign, "cli").unwrap(), pk);
    // A certificate for another key is refused; the right one installs.
    assert_eq!(
        code(rig.mgr.import_certificate(&id, "new", KeyUsage::Sign, p.sign_cert.der(), "cli")),
        ErrorCode::CertificateKeyMismatch
    );
    // Issue for the device key through a device signer (CSR-less, for the test).
    let cert = rig.ca.0.leaf("CN=New Holder", &pk, KeyUsage::Sign).unwrap();
    rig.mgr.import_certificate(&id, "new", KeyUsage::Sign, cert.der(), "cli").unwrap();
    rig.expect(|e| *e == DeviceEvent::CertificatesChanged(id.clone()));
    assert_eq!(rig.mgr.certificate(&id, "new", KeyUsage::Sign, "cli").unwrap(), Some(cert.clone()));
    let sig = rig.mgr.sign_message(&id, "new", KeyUsage::Sign, &SignatureScheme::sm2_default(), b"m", "cli").unwrap();
    assert!(pk.verify(&SignatureScheme::sm2_default(), b"m", &sig).is_ok());
    rig.mgr.delete_certificate(&id, "new", KeyUsage::Sign, "cli").unwrap();
    rig.expect(|e| *e == DeviceEvent::CertificatesChanged(id.clone()));
    assert_eq!(rig.mgr.certificate(&id, "new", KeyUsage::Sign, "cli").unwrap(), None);
    assert_eq!(code(rig.mgr.delete_certificate(&id, "new", KeyUsage::Sign, "cli")), ErrorCode::NotFound);
    // Seals.
    rig.mgr.write_seal(&id, "s1", "公章", "image/png", b"\x89PNG....", "cli").unwrap();
    assert_eq!(rig.mgr.seals(&id, "cli").unwrap()[0].name, "公章");
    assert_eq!(rig.mgr.read_seal(&id, "s1", "cli").unwrap(), b"\x89PNG....");
    rig.mgr.delete_seal(&id, "s1", "cli").unwrap();
    assert_eq!(code(rig.mgr.read_seal(&id, "s1", "cli")), ErrorCode::NotFound);
    rig.mgr.delete_container(&id, "new", "cli").unwrap();
    assert_eq!(rig.mgr.containers(&id, "cli").unwrap().len(), 1);
    assert_eq!(
        code(rig.mgr.sign_message(&id, "new", KeyUsage::Sign, &SignatureScheme::sm2_default(), b"m", "cli")),
        ErrorCode::NotFound
    );
    assert_eq!(rig.prompter.pin_requests().len(), 1);

    // Changing the PIN forgets the cached one.
    assert_eq!(code(rig.mgr.change_pin(&id, PinKind::User, Pin::new(PIN), Pin::new("123"), "cli")), ErrorCode::PinPolicy);
    rig.mgr.change_pin(&id, PinKind::User, Pin::new(PIN), Pin::new("24681357"), "cli").unwrap();
    assert!(rig.mgr.pin_cache().is_empty());
    rig.prompter.push_pin("24681357");
    rig.sign(&id, "cli").unwrap();
    assert_eq!(rig.prompter.pin_requests().len(), 2);

    let ops: Vec<_> = rig.audit.records().iter().map(|r| r.operation.clone()).collect();
    assert_eq!(
        ops,
        [
            "create_container",
            "create_container",
            "keygen",
            "import_certificate",
            "import_certificate",
            "sign",
            "delete_certificate",
            "delete_certificate",
            "write_seal",
            "delete_seal",
            "delete_container",
            "sign",
            "change_pin",
            "change_pin",
            "sign"
        ]
    );
    let imported = &rig.audit.records()[4];
    assert!(imported.ok && imported.certificate.contains("New Holder"));
}

#[test]
fn failing_audit_fails_the_operation() {
    let rig = Rig::new(PinCachePolicy::default());
    let (id, _) = rig.plug("A", PIN);
    rig.prompter.push_pin(PIN);
    *rig.audit.fail.lock().unwrap() = true;
    let e = rig.sign(&id, "cli").unwrap_err();
    assert!(matches!(e, ServiceError::Audit(_)), "{e:?}");
    *rig.audit.fail.lock().unwrap() = false;
    rig.sign(&id, "cli").unwrap();
}

#[test]
fn dropping_the_manager_stops_watching() {
    let rig = Rig::new(PinCachePolicy::default());
    let (_, p) = rig.plug("A", PIN);
    let Rig { mgr, tr, .. } = rig;
    drop(mgr);
    std::thread::sleep(Duration::from_millis(600));
    tr.fail("ping"); // forgets dead watchers
    assert_eq!(tr.watchers(), 0);
    assert_eq!(p.token.reentries(), 0);
}

/// A medium whose driver panics on `pin_info` (in this process or not, as the medium
/// it stands for says).
struct Panicky(DeviceInfo, bool);

impl Token for Panicky {
    fn info(&self) -> DeviceInfo {
        self.0.clone()
    }
    fn in_process(&self) -> bool {
        self.1
    }
    fn pin_info(&mut self, _: PinKind) -> kb_token::Result<PinInfo> {
        panic!("driver bug")
    }
    fn change_pin(&mut self, _: PinKind, _: &Pin, _: &Pin) -> kb_token::Result<()> {
        Err(TokenError::NotSupported("x".into()))
    }
    fn unblock_pin(&mut self, _: &Pin, _: &Pin) -> kb_token::Result<()> {
        Err(TokenError::NotSupported("x".into()))
    }
    fn containers(&mut self) -> kb_token::Result<Vec<ContainerInfo>> {
        Ok(Vec::new())
    }
    fn public_key(&mut self, c: &str, _: KeyUsage) -> kb_token::Result<PublicKey> {
        Err(TokenError::NotFound(c.into()))
    }
    fn seals(&mut self) -> kb_token::Result<Vec<SealInfo>> {
        Ok(Vec::new())
    }
    fn read_seal(&mut self, id: &str) -> kb_token::Result<Vec<u8>> {
        Err(TokenError::NotFound(id.into()))
    }
    fn open_session<'a>(&'a mut self, _: UserAuth<'_>, _: &OpContext) -> kb_token::Result<Box<dyn Session + 'a>> {
        Err(TokenError::PinLocked)
    }
}

struct PanickyTransport(MemoryTransport);

impl Transport for PanickyTransport {
    fn kind(&self) -> TransportKind {
        TransportKind::Hid
    }
    fn watch(&self) -> kb_token::Result<Receiver<TransportEvent>> {
        self.0.watch()
    }
    fn open(&self, id: &DeviceId) -> kb_token::Result<Box<dyn Token>> {
        let t = self.0.open(id)?;
        Ok(Box::new(Panicky(t.info(), t.in_process())))
    }
}

#[test]
fn a_panicking_driver_is_reported_and_isolated() {
    let rig = Rig::new(PinCachePolicy::default());
    let (good, _) = rig.plug("A", PIN);
    let hid = MemoryTransport::new(TransportKind::Hid);
    let bad = hid.insert(hid.new_token("X", PIN, SO));
    rig.mgr.add_transport(Arc::new(PanickyTransport(hid))).unwrap();
    rig.expect(|e| matches!(e, DeviceEvent::Added(i) if i.id == bad));
    assert_eq!(rig.mgr.containers(&bad, "cli").unwrap(), Vec::new());
    assert_eq!(code(rig.mgr.pin_info(&bad, PinKind::User, "cli")), ErrorCode::Internal);
    rig.expect(|e| *e == DeviceEvent::Removed(bad.clone()));
    assert_eq!(rig.mgr.pin_info(&good, PinKind::User, "cli").unwrap().retries_left, 6);
}

#[test]
fn marker_pin_never_leaks() {
    const MARKER: &str = "PIN-MARKER-7f3a";
    let rig = Rig::new(PinCachePolicy::default());
    let (id, p) = rig.plug("A", MARKER);
    let (other, _) = rig.plug("B", PIN);
    let mut texts = Vec::new();
    let mut errors: Vec<ServiceError> = Vec::new();

    rig.prompter.push_pin(MARKER);
    rig.sign(&id, "cli").unwrap();
    // The marker as a wrong PIN elsewhere, then cancel.
    rig.prompter.push_pin(MARKER);
    rig.prompter.push_cancel();
    errors.push(rig.sign(&other, "cli").unwrap_err());
    // PIN change and unblock with the marker, right and wrong.
    errors.push(rig.mgr.change_pin(&other, PinKind::User, Pin::new(MARKER), Pin::new("13572468"), "cli").unwrap_err());
    errors.push(rig.mgr.change_pin(&id, PinKind::User, Pin::new(MARKER), Pin::new("12"), "cli").unwrap_err());
    rig.mgr.change_pin(&id, PinKind::User, Pin::new(MARKER), Pin::new(MARKER), "cli").unwrap();
    errors.push(rig.mgr.unblock_pin(&id, Pin::new(MARKER), Pin::new(MARKER), "cli").unwrap_err());
    rig.prompter.push_pin(MARKER);
    rig.sign(&id, "cli").unwrap();
    // Through kb-pki.
    let signer = rig.mgr.signer(&id, C, KeyUsage::Sign, "cli").unwrap();
    p.token.set_pulled(true);
    let pki = signer.sign_message(b"x").unwrap_err();
    texts.push(format!("{pki} {pki:?} {signer:?}"));
    errors.push(signer.service_error(pki));

    for e in &errors {
        texts.push(format!("{e} / {e:?}"));
    }
    for r in rig.audit.records() {
        texts.push(format!("{r:?}"));
        texts.push(serde_json::to_string(&r).unwrap());
    }
    texts.push(format!("{:?}", rig.prompter.seen()));
    texts.push(format!("{:?} {:?}", rig.mgr, rig.mgr.pin_cache()));
    texts.extend(std::iter::from_fn(|| rig.events.try_recv().ok()).map(|e| format!("{e:?}")));
    assert!(errors.iter().any(|e| e.code() == ErrorCode::WrongPin));
    assert!(rig.audit.records().len() >= 6);
    for t in &texts {
        assert!(!t.contains(MARKER) && !t.contains("7f3a"), "PIN leaked: {t}");
    }
}

/// A file key reports the try that uses up the PIN as `WrongPin { retries_left: 0 }`;
/// the service must then say "locked" at once instead of asking for a PIN that can no
/// longer work.
#[test]
fn no_prompt_after_the_last_try_locks_a_file_key() {
    use kb_filekey::{CreateOptions, FileToken, FileTransport, KdfParams};
    let dir = tempfile::tempdir().unwrap();
    let opts = CreateOptions { kdf: KdfParams::weak_for_tests(), max_user_retries: 2, ..Default::default() };
    let mut t = FileToken::create(dir.path().join("k.kbkey"), "K", &Pin::new("11112222"), &Pin::new("33334444"), opts).unwrap();
    {
        let mut s = t.login(&Pin::new("11112222")).unwrap();
        s.create_container("c").unwrap();
        s.generate_key_pair("c", KeyUsage::Sign, kb_types::Algorithm::Sm2).unwrap();
    }
    drop(t);
    let prompter = Arc::new(ScriptedPrompter::new());
    let mgr = DeviceManager::new(prompter.clone(), Arc::new(MemAudit::default()), PinCachePolicy::default());
    mgr.add_transport(Arc::new(FileTransport::new(dir.path()))).unwrap();
    assert!(mgr.wait_enumerated(Duration::from_secs(5)));
    let id = mgr.devices()[0].id.clone();
    for _ in 0..3 {
        prompter.push_pin("00000000");
    }
    let r = mgr.sign_message(&id, "c", KeyUsage::Sign, &kb_crypto::SignatureScheme::sm2_default(), b"m", "cli");
    assert_eq!(code(r), ErrorCode::PinLocked);
    assert_eq!(prompter.pin_requests().len(), 2, "two tries, two prompts, no third");
    assert_eq!(prompter.remaining(), 1);
}

// ---- operation contexts, user verification on the medium, link state ----------------

use kb_service::devices::Caller;
use kb_service::prompter::{Answer, Seen};
use kb_token::{OpStatus, StopReason};
use kb_types::UserVerification;

impl Rig {
    /// Like `plug`, with the token changed by `f` before it is inserted.
    fn plug_with(&self, local: &str, f: impl FnOnce(MemoryToken) -> MemoryToken) -> (DeviceId, Provisioned) {
        let mut p = provision(&self.tr, &self.ca, local, PIN);
        // Builders apply to a token with no other handle: rebuild the provisioned one.
        let keys = (p.sign_key.clone(), p.sign_cert.clone(), p.enc_cert.clone());
        drop(p.token);
        let token = f(self.tr.new_token(local, PIN, SO).with_label(&format!("Key {local}")).with_model("VK-1"));
        token.put_key(C, KeyUsage::Sign, keys.0.clone());
        token.put_certificate(C, KeyUsage::Sign, keys.1.der()).unwrap();
        p.token = token;
        let id = self.tr.insert(p.token.clone());
        self.expect(|e| matches!(e, DeviceEvent::Added(i) if i.id == id));
        (id, p)
    }

    fn sign_as(&self, id: &DeviceId, caller: Caller) -> Result<Vec<u8>> {
        self.mgr.sign_message(id, C, KeyUsage::Sign, &SignatureScheme::sm2_default(), b"bid file", caller)
    }

    /// Wait until the audit log holds a record matching `pred` (written by another thread).
    fn wait_audit(&self, id: &DeviceId, pred: impl Fn(&AuditRecord) -> bool) -> AuditRecord {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            if let Some(r) = self.audit.for_device(id).into_iter().find(|r| pred(r)) {
                return r;
            }
            assert!(std::time::Instant::now() < deadline, "no such audit record; have {:?}", self.audit.for_device(id));
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Issue 11 (a), at the service: the operation is cancelled while the PIN dialog is
/// open → the dialog is withdrawn, a PIN typed afterwards goes nowhere, nothing reaches
/// the medium, and the audit records the cancellation.
#[test]
fn cancel_withdraws_the_pin_dialog_and_nothing_is_signed() {
    let rig = Rig::new(PinCachePolicy::default());
    let (id, p) = rig.plug("A", PIN);
    rig.prompter.push(Answer::Hold);
    let ctx = kb_token::OpContext::new();
    let signing = {
        let (mgr, id, ctx) = (rig.mgr.clone(), id.clone(), ctx.clone());
        std::thread::spawn(move || {
            mgr.sign_message(
                &id,
                C,
                KeyUsage::Sign,
                &SignatureScheme::sm2_default(),
                b"x",
                Caller::new("https://bid.example.cn", ctx),
            )
        })
    };
    assert!(rig.prompter.wait_held_open(WAIT), "the PIN dialog never opened");
    let logins = p.token.calls("login");
    ctx.cancel();
    let err = signing.join().unwrap().unwrap_err();
    assert_eq!(err.code(), ErrorCode::Cancelled, "{err}");
    assert!(rig.prompter.wait_seen(WAIT, |s| s.iter().any(|x| matches!(x, Seen::Withdrawn(_)))), "the dialog was not withdrawn");
    assert!(!rig.prompter.answer_open(Answer::Pin(Pin::new(PIN))), "a PIN typed after the cancel must go nowhere");
    assert_eq!(p.token.calls("login"), logins, "the medium saw a login after the cancel");
    assert_eq!(p.token.calls("sign_digest"), 0);
    let rec = rig.wait_audit(&id, |r| r.operation == "sign");
    assert_eq!((rec.ok, rec.error, rec.client.as_str()), (false, Some(ErrorCode::Cancelled), "https://bid.example.cn"));
    assert_eq!(rig.mgr.pin_cache().len(), 0);
}

/// A PIN the user had already typed when the operation was cancelled (a terminal read
/// cannot be withdrawn) never reaches the medium.
#[test]
fn a_pin_typed_after_the_cancel_never_reaches_the_medium() {
    struct LateTyper(kb_token::OpContext);
    impl kb_service::prompter::Prompter for LateTyper {
        fn ask_pin(&self, _: &kb_service::prompter::PinRequest, _: &kb_token::OpContext) -> Result<Pin> {
            self.0.cancel(); // the client gave up while the user was typing
            Ok(Pin::new(PIN))
        }
        fn confirm(&self, _: &kb_service::prompter::ConfirmRequest) -> Result<bool> {
            Ok(false)
        }
        fn show_qr(&self, _: &kb_service::prompter::QrRequest) -> Result<()> {
            Ok(())
        }
        fn notify(&self, _: &str) {}
    }
    let ctx = kb_token::OpContext::new();
    let audit = Arc::new(MemAudit::default());
    let mgr = DeviceManager::new(Arc::new(LateTyper(ctx.clone())), audit.clone(), PinCachePolicy::default());
    let tr = MemoryTransport::new(TransportKind::Pcsc);
    let p = provision(&tr, &Ca::new(), "A", PIN);
    let id = tr.insert(p.token.clone());
    mgr.add_transport(Arc::new(tr)).unwrap();
    assert!(mgr.wait_enumerated(WAIT));
    let err =
        mgr.sign_message(&id, C, KeyUsage::Sign, &SignatureScheme::sm2_default(), b"x", Caller::new("cli", ctx)).unwrap_err();
    assert_eq!(err.code(), ErrorCode::Cancelled);
    assert_eq!(p.token.calls("login"), 0);
    assert!(mgr.pin_cache().is_empty(), "a PIN for a cancelled operation must not be cached");
    assert_eq!(audit.for_device(&id).last().map(|r| r.error), Some(Some(ErrorCode::Cancelled)));
}

/// Issue 11 (b), the deadline: it withdraws the dialog the same way.
#[test]
fn the_deadline_withdraws_the_pin_dialog() {
    let rig = Rig::new(PinCachePolicy::default());
    let (id, p) = rig.plug("A", PIN);
    rig.prompter.push(Answer::Hold);
    let err = rig.sign_as(&id, Caller::new("cli", kb_token::OpContext::with_timeout(Duration::from_millis(200)))).unwrap_err();
    assert_eq!(err.code(), ErrorCode::OperationTimedOut, "{err}");
    assert!(rig.prompter.wait_seen(WAIT, |s| s.iter().any(|x| matches!(x, Seen::Withdrawn(_)))));
    assert_eq!(p.token.calls("sign_digest"), 0);
    let rec = rig.wait_audit(&id, |r| r.operation == "sign");
    assert_eq!(rec.error, Some(ErrorCode::OperationTimedOut));
}

/// Issue 11 (c): while a PIN dialog stays open on a medium, the media list, that
/// medium's certificates and its PIN state still answer. The dialog is held until they
/// have answered (no timing involved).
#[test]
fn reads_answer_while_a_pin_dialog_is_open_on_the_medium() {
    let rig = Rig::new(PinCachePolicy::Off);
    let (id, p) = rig.plug("A", PIN);
    rig.prompter.push(Answer::Hold);
    let signing = {
        let (mgr, id) = (rig.mgr.clone(), id.clone());
        std::thread::spawn(move || mgr.sign_message(&id, C, KeyUsage::Sign, &SignatureScheme::sm2_default(), b"x", "desktop"))
    };
    assert!(rig.prompter.wait_held_open(WAIT));
    assert!(rig.mgr.devices().iter().any(|d| d.id == id));
    let cert = rig.mgr.certificate(&id, C, KeyUsage::Sign, "desktop").unwrap().unwrap();
    assert_eq!(cert.der(), p.sign_cert.der());
    assert_eq!(rig.mgr.containers(&id, "desktop").unwrap().len(), 1);
    assert_eq!(rig.mgr.pin_info(&id, PinKind::User, "desktop").unwrap().retries_left, 6);
    assert_eq!(rig.prompter.held_open(), 1, "the dialog stayed open throughout");
    assert!(rig.prompter.answer_open(Answer::Pin(Pin::new(PIN))));
    let sig = signing.join().unwrap().unwrap();
    let pk = p.sign_key.public_key();
    let d = pk.message_digest(&SignatureScheme::sm2_default(), b"x").unwrap();
    pk.verify_digest(&SignatureScheme::sm2_default(), &d, &sig).unwrap();
}

/// Issue 11 (d): a medium that verifies the user itself never triggers the host's PIN
/// prompt; the PIN is typed on the medium; the audit names the real auth type; the
/// status says "waiting for the medium"; a wrong PIN on the medium reaches the caller
/// with the medium's own count.
#[test]
fn a_medium_that_verifies_the_user_never_triggers_the_host_prompt() {
    let rig = Rig::new(PinCachePolicy::default());
    let (id, p) = rig.plug_with("PAD", |t| t.with_user_verification(UserVerification::OnMedium));
    assert_eq!(rig.mgr.device(&id).unwrap().capabilities.user_verification, UserVerification::OnMedium);
    let statuses = Arc::new(Mutex::new(Vec::new()));
    let seen = statuses.clone();
    let ctx = kb_token::OpContext::with(Some(WAIT), move |s| seen.lock().unwrap().push(s.clone()));
    p.token.enter_pin_on_medium(PIN);
    let sig = rig.sign_as(&id, Caller::new("native:bidtool", ctx)).unwrap();
    let pk = p.sign_key.public_key();
    let d = pk.message_digest(&SignatureScheme::sm2_default(), b"bid file").unwrap();
    pk.verify_digest(&SignatureScheme::sm2_default(), &d, &sig).unwrap();
    assert!(rig.prompter.seen().is_empty(), "the host prompter was asked: {:?}", rig.prompter.seen());
    assert!(rig.mgr.pin_cache().is_empty(), "a PIN the PC never saw cannot be cached");
    let statuses = statuses.lock().unwrap().clone();
    assert!(statuses.iter().any(|s| matches!(s, OpStatus::WaitingForMedium { .. })), "{statuses:?}");
    assert!(!statuses.contains(&OpStatus::WaitingForPin));
    let rec = rig.audit.for_device(&id).pop().unwrap();
    assert_eq!((rec.ok, rec.auth), (true, AuthType::OnMedium));
    // A wrong PIN typed on the medium: the medium's count, unchanged.
    p.token.enter_pin_on_medium("99999999");
    let err = rig.sign(&id, "native:bidtool").unwrap_err();
    assert_eq!(err, ServiceError::Token(TokenError::WrongPin { retries_left: 5 }));
    assert!(rig.prompter.seen().is_empty());
    assert_eq!(rig.audit.for_device(&id).pop().map(|r| (r.error, r.auth)), Some((Some(ErrorCode::WrongPin), AuthType::OnMedium)));
    // Cancelled while the medium waits for its user: the medium is told, cleanly.
    let ctx = kb_token::OpContext::new();
    let waiting = {
        let (mgr, id, ctx) = (rig.mgr.clone(), id.clone(), ctx.clone());
        std::thread::spawn(move || {
            mgr.sign_message(&id, C, KeyUsage::Sign, &SignatureScheme::sm2_default(), b"x", Caller::new("cli", ctx))
        })
    };
    while p.token.calls("login") < 3 {
        std::thread::sleep(Duration::from_millis(5));
    }
    ctx.stop(StopReason::Cancelled);
    assert_eq!(waiting.join().unwrap().unwrap_err().code(), ErrorCode::Cancelled);
}

/// The same on a phone: the audit says "phone".
#[test]
fn a_phone_is_audited_as_phone() {
    let rig = Rig::new(PinCachePolicy::default());
    let phones = MemoryTransport::new(TransportKind::Phone);
    rig.mgr.add_transport(Arc::new(phones.clone())).unwrap();
    let t = phones.new_token("3f9a", PIN, SO).with_user_verification(UserVerification::OnMedium);
    t.put_key(C, KeyUsage::Sign, PrivateKey::generate(Algorithm::Sm2).unwrap());
    let id = phones.insert(t.clone());
    rig.expect(|e| matches!(e, DeviceEvent::Added(i) if i.id == id));
    t.enter_pin_on_medium(PIN);
    rig.sign(&id, "cli").unwrap();
    assert!(rig.prompter.seen().is_empty());
    assert_eq!(rig.audit.for_device(&id).pop().map(|r| r.auth), Some(AuthType::Phone));
}

/// Issue 11 (e): a medium whose link drops mid-operation → `outcome_unknown` (the request
/// had reached it) and an `Offline` event; while offline it stays listed and operations
/// fail at once with `medium_offline`; back `Online`, it signs again — no restart.
#[test]
fn a_medium_that_drops_mid_operation_comes_back_online() {
    let rig = Rig::new(PinCachePolicy::default());
    let (id, p) = rig.plug("BLE", PIN);
    let (other, _) = rig.plug("B", PIN);
    rig.prompter.push_pin(PIN);
    rig.sign(&id, "cli").unwrap();
    let pause = p.token.pause_next("sign_digest");
    let signing = {
        let (mgr, id) = (rig.mgr.clone(), id.clone());
        std::thread::spawn(move || mgr.sign_message(&id, C, KeyUsage::Sign, &SignatureScheme::sm2_default(), b"x", "cli"))
    };
    assert!(pause.wait_reached(WAIT));
    rig.tr.go_offline(&id);
    pause.release();
    let err = signing.join().unwrap().unwrap_err();
    assert_eq!(err.code(), ErrorCode::OutcomeUnknown, "{err}");
    rig.expect(|e| *e == DeviceEvent::Offline(id.clone()));
    let media = rig.mgr.media();
    assert!(media.iter().any(|m| m.info.id == id && !m.online), "an offline medium stays listed");
    assert!(!rig.mgr.is_online(&id));
    let err = rig.sign(&id, "cli").unwrap_err();
    assert_eq!(err.code(), ErrorCode::MediumOffline);
    assert_eq!(rig.audit.for_device(&id).pop().map(|r| r.error), Some(Some(ErrorCode::MediumOffline)));
    // Other media keep working meanwhile.
    rig.prompter.push_pin(PIN);
    rig.sign(&other, "cli").unwrap();
    rig.tr.go_online(&id);
    rig.expect(|e| *e == DeviceEvent::Online(id.clone()));
    assert!(rig.mgr.is_online(&id));
    // The cached PIN was forgotten when it went offline: asked again.
    rig.prompter.push_pin(PIN);
    rig.sign(&id, "cli").unwrap();
    assert_eq!(p.token.reentries(), 0);
}

/// A medium that never answers: the deadline bounds the wait (`outcome_unknown`, since
/// the request had reached it); the manager keeps serving.
#[test]
fn a_medium_that_never_answers_is_bounded_by_the_deadline() {
    let rig = Rig::new(PinCachePolicy::default());
    let (id, p) = rig.plug("A", PIN);
    rig.prompter.push_pin(PIN);
    rig.sign(&id, "cli").unwrap();
    let pause = p.token.pause_next("sign_digest");
    let err = rig.sign_as(&id, Caller::new("cli", kb_token::OpContext::with_timeout(Duration::from_millis(300)))).unwrap_err();
    assert_eq!(err.code(), ErrorCode::OutcomeUnknown, "{err}");
    assert!(pause.wait_reached(WAIT));
    pause.release();
    rig.sign(&id, "cli").unwrap();
}

/// Issue 13 (2): a signature the medium returns that does not verify is never handed
/// out: a stable code naming the medium, audited as failed — raw, and through CMS/CSR
/// signers alike.
#[test]
fn a_signature_that_does_not_verify_is_never_handed_out() {
    let rig = Rig::new(PinCachePolicy::default());
    let (id, p) = rig.plug("A", PIN);
    p.token.set_faulty_signatures(true);
    rig.prompter.push_pin(PIN);
    let err = rig.sign(&id, "cli").unwrap_err();
    assert_eq!(err.code(), ErrorCode::MediumSignatureInvalid, "{err}");
    assert!(err.to_string().contains("Key A") && err.to_string().contains(&id.to_string()), "{err}");
    let rec = rig.audit.for_device(&id).pop().unwrap();
    assert_eq!((rec.operation.as_str(), rec.ok, rec.error), ("sign", false, Some(ErrorCode::MediumSignatureInvalid)));
    let signer = rig.mgr.signer(&id, C, KeyUsage::Sign, "cli").unwrap();
    let e = cms::sign(b"bid", &signer, &p.sign_cert, &SignOptions::default()).unwrap_err();
    assert_eq!(signer.service_error(e).code(), ErrorCode::MediumSignatureInvalid);
    let csr = kb_pki::csr::build("CN=x", &signer, Vec::new());
    assert!(csr.is_err(), "a CSR with a bad signature was made");
    p.token.set_faulty_signatures(false);
    rig.sign(&id, "cli").unwrap();
}

/// Issue 12 (4): a PIN typed for one client does not let another sign silently.
#[test]
fn a_cached_pin_serves_only_the_client_that_typed_it() {
    let rig = Rig::new(PinCachePolicy::default());
    let (id, _) = rig.plug("A", PIN);
    rig.prompter.push_pin(PIN);
    rig.sign(&id, "native:bidtool").unwrap();
    rig.sign(&id, "native:bidtool").unwrap();
    assert_eq!(rig.prompter.pin_requests().len(), 1);
    rig.prompter.push_pin(PIN);
    rig.sign(&id, "https://bid.example.cn").unwrap();
    let asked = rig.prompter.pin_requests();
    assert_eq!(asked.len(), 2, "the web site must be asked for the PIN itself");
    assert_eq!(asked[1].client, "https://bid.example.cn");
    assert!(asked[1].certificate.contains("张三 A"), "the prompt names the certificate: {:?}", asked[1].certificate);
    assert_eq!(rig.audit.for_device(&id).pop().map(|r| r.auth), Some(AuthType::PinEntered));
}

/// The operation timeout counts from when the private-key operation starts, not from
/// when its caller was made: a CMS signer created before hashing a large file (or a bridge
/// request that first uploads it) still has its whole timeout for the PIN and the medium.
#[test]
fn the_operation_timeout_starts_with_the_operation() {
    let rig = Rig::new(PinCachePolicy::default());
    let (id, p) = rig.plug("A", PIN);
    let caller = Caller::new("cli", kb_token::OpContext::new()).with_timeout(Duration::from_millis(300));
    let signer = rig.mgr.signer(&id, C, KeyUsage::Sign, caller).unwrap();
    // Longer than the timeout passes before the signature (a big file being hashed).
    std::thread::sleep(Duration::from_millis(600));
    rig.prompter.push_pin(PIN);
    cms::sign(b"bid", &signer, &p.sign_cert, &SignOptions::default()).map_err(|e| signer.service_error(e)).unwrap();
    // The timeout still bounds each operation: a dialog left open is withdrawn.
    rig.prompter.push(Answer::Hold);
    let held = Caller::new("https://late.example", kb_token::OpContext::new()).with_timeout(Duration::from_millis(300));
    assert_eq!(rig.sign_as(&id, held).unwrap_err().code(), ErrorCode::OperationTimedOut);
}

/// A medium that records the name of the thread each session is opened on, and says
/// whether it is software in this process.
struct OnThread {
    inner: Box<dyn Token>,
    in_process: bool,
    threads: Arc<Mutex<Vec<String>>>,
}

impl Token for OnThread {
    fn info(&self) -> DeviceInfo {
        self.inner.info()
    }
    fn in_process(&self) -> bool {
        self.in_process
    }
    fn pin_info(&mut self, kind: PinKind) -> kb_token::Result<PinInfo> {
        self.inner.pin_info(kind)
    }
    fn change_pin(&mut self, kind: PinKind, old: &Pin, new: &Pin) -> kb_token::Result<()> {
        self.inner.change_pin(kind, old, new)
    }
    fn unblock_pin(&mut self, so: &Pin, new: &Pin) -> kb_token::Result<()> {
        self.inner.unblock_pin(so, new)
    }
    fn containers(&mut self) -> kb_token::Result<Vec<ContainerInfo>> {
        self.inner.containers()
    }
    fn public_key(&mut self, c: &str, u: KeyUsage) -> kb_token::Result<PublicKey> {
        self.inner.public_key(c, u)
    }
    fn seals(&mut self) -> kb_token::Result<Vec<SealInfo>> {
        self.inner.seals()
    }
    fn read_seal(&mut self, id: &str) -> kb_token::Result<Vec<u8>> {
        self.inner.read_seal(id)
    }
    fn open_session<'a>(&'a mut self, auth: UserAuth<'_>, ctx: &OpContext) -> kb_token::Result<Box<dyn Session + 'a>> {
        let name = std::thread::current().name().unwrap_or("").to_string();
        self.threads.lock().unwrap().push(name);
        self.inner.open_session(auth, ctx)
    }
}

struct OnThreadTransport {
    inner: MemoryTransport,
    in_process: bool,
    threads: Arc<Mutex<Vec<String>>>,
}

impl Transport for OnThreadTransport {
    fn kind(&self) -> TransportKind {
        self.inner.kind()
    }
    fn watch(&self) -> kb_token::Result<Receiver<TransportEvent>> {
        self.inner.watch()
    }
    fn open(&self, id: &DeviceId) -> kb_token::Result<Box<dyn Token>> {
        let inner = self.inner.open(id)?;
        Ok(Box::new(OnThread { inner, in_process: self.in_process, threads: Arc::clone(&self.threads) }))
    }
}

/// Issue 18: an idle medium that is software in this process (a file key) runs a
/// signature on the caller's own thread, with no round trip to its actor's thread; a
/// card still goes through its actor.
#[test]
fn an_idle_medium_in_this_process_signs_on_the_callers_thread() {
    let rig = Rig::new(PinCachePolicy::default());
    let here = std::thread::current().name().unwrap_or("").to_string();
    for (kind, in_process) in [(TransportKind::File, true), (TransportKind::Hid, false)] {
        let tr = MemoryTransport::new(kind);
        let threads = Arc::new(Mutex::new(Vec::new()));
        let p = provision(&tr, &rig.ca, "T", PIN);
        let id = tr.insert(p.token.clone());
        let wrapped = OnThreadTransport { inner: tr, in_process, threads: Arc::clone(&threads) };
        rig.mgr.add_transport(Arc::new(wrapped)).unwrap();
        rig.expect(|e| matches!(e, DeviceEvent::Added(i) if i.id == id));
        rig.prompter.push_pin(PIN);
        let sig = rig.sign(&id, "cli").unwrap();
        rig.sign(&id, "cli").unwrap();
        let digest = p.sign_key.public_key().message_digest(&SignatureScheme::sm2_default(), b"bid file").unwrap();
        p.sign_key.public_key().verify_digest(&SignatureScheme::sm2_default(), &digest, &sig).unwrap();
        let seen = threads.lock().unwrap().clone();
        assert_eq!(seen.len(), 2, "{seen:?}");
        for name in seen {
            if in_process {
                assert_eq!(name, here, "{kind:?}: the caller's thread");
            } else {
                assert!(name.starts_with("kb-device "), "{kind:?}: the actor's thread, not {name:?}");
            }
        }
        assert_eq!(rig.audit.for_device(&id).len(), 2);
        assert_eq!(p.token.reentries(), 0);
    }
}

/// Issue 18: a caller that finds a medium in this process busy waits in its actor's
/// queue, where its deadline still applies: it is answered `operation_timed_out` while
/// the other command runs, and the medium is never entered twice.
#[test]
fn a_busy_medium_in_this_process_queues_and_keeps_the_deadline() {
    let rig = Rig::new(PinCachePolicy::default());
    let (id, p) = rig.plug_with("A", MemoryToken::with_in_process);
    rig.prompter.push_pin(PIN);
    rig.sign(&id, "cli").unwrap();
    let pause = p.token.pause_next("sign_digest");
    let first = {
        let mgr = rig.mgr.clone();
        let id = id.clone();
        std::thread::spawn(move || mgr.sign_message(&id, C, KeyUsage::Sign, &SignatureScheme::sm2_default(), b"x", "cli"))
    };
    assert!(pause.wait_reached(WAIT));
    let late = Caller::new("cli", kb_token::OpContext::with_timeout(Duration::from_millis(200)));
    assert_eq!(rig.sign_as(&id, late).unwrap_err().code(), ErrorCode::OperationTimedOut);
    pause.release();
    first.join().unwrap().unwrap();
    rig.sign(&id, "cli").unwrap();
    assert_eq!(p.token.reentries(), 0);
    assert_eq!(p.token.calls("sign_digest"), 3, "the timed-out request never reached the medium");
}

/// A driver of a medium in this process that panics on the caller's thread: the caller
/// gets `internal`, the medium is dropped, the others keep working.
#[test]
fn a_panicking_driver_in_this_process_is_reported_and_isolated() {
    let rig = Rig::new(PinCachePolicy::default());
    let (good, _) = rig.plug("A", PIN);
    let file = MemoryTransport::new(TransportKind::File);
    let bad = file.insert(file.new_token("X", PIN, SO).with_in_process());
    rig.mgr.add_transport(Arc::new(PanickyTransport(file))).unwrap();
    rig.expect(|e| matches!(e, DeviceEvent::Added(i) if i.id == bad));
    assert_eq!(code(rig.mgr.pin_info(&bad, PinKind::User, "cli")), ErrorCode::Internal);
    rig.expect(|e| *e == DeviceEvent::Removed(bad.clone()));
    assert_eq!(rig.mgr.pin_info(&good, PinKind::User, "cli").unwrap().retries_left, 6);
}
