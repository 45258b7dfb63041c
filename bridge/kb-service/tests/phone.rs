//! A phone as a medium through the device service: the device manager with the phone
//! transport lists the phone's certificates, signs with a caller's context shown on the
//! phone, never asks the PC's prompter for the phone's PIN, audits auth type `phone`, and
//! handles cancellation and the phone's link going and coming back.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kb_crypto::{PrivateKey, SignatureScheme};
use kb_phone::PhoneTransport;
use kb_phone::agent::{PhoneAgent, ServeError};
use kb_phone::link::conn::MemoryConn;
use kb_phone::link::{MessageConn, PeerId, memory_pair};
use kb_phone::msg::PhoneInfo;
use kb_phone::testing::{Scripted, ScriptedPhone};
use kb_service::audit::{AuditRecord, AuditSink, AuthType};
use kb_service::devices::{Caller, DeviceEvent, DeviceManager};
use kb_service::pin_cache::PinCachePolicy;
use kb_service::prompter::ScriptedPrompter;
use kb_service::{Result, ServiceError};
use kb_token::memory::MemoryToken;
use kb_token::{OpContext, Purpose};
use kb_types::{Algorithm, DeviceId, ErrorCode, HasErrorCode, KeyUsage, TransportKind};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const PIN: &str = "12345678";
const C: &str = "c1";
const WAIT: Duration = Duration::from_secs(30);

#[derive(Default)]
struct MemAudit(Mutex<Vec<AuditRecord>>);

impl AuditSink for MemAudit {
    fn record(&self, rec: &AuditRecord) -> Result<()> {
        self.0.lock().unwrap().push(rec.clone());
        Ok(())
    }
}

struct Rig {
    mgr: DeviceManager,
    pc_prompter: Arc<ScriptedPrompter>,
    audit: Arc<MemAudit>,
    events: Receiver<DeviceEvent>,
    transport: PhoneTransport,
    agent: Arc<PhoneAgent>,
    screen: Arc<ScriptedPhone>,
    phone_end: Arc<MemoryConn>,
    serving: Option<JoinHandle<std::result::Result<(), ServeError>>>,
    id: DeviceId,
}

fn phone_token() -> MemoryToken {
    let ca = kb_pki::issue::TestCa::new(Algorithm::Sm2, "C=CN,O=Test CA,CN=Test Root").unwrap();
    let token = MemoryToken::new(TransportKind::File, "phone-key", PIN, "admin-pin-0");
    let key = PrivateKey::generate(Algorithm::Sm2).unwrap();
    let cert = ca.leaf("C=CN,O=某某建设有限公司,CN=张三", &key.public_key(), KeyUsage::Sign).unwrap();
    token.put_key(C, KeyUsage::Sign, key);
    token.put_certificate(C, KeyUsage::Sign, cert.der()).unwrap();
    token
}

impl Rig {
    fn new() -> Rig {
        let pc_prompter = Arc::new(ScriptedPrompter::new());
        let audit = Arc::new(MemAudit::default());
        let mgr = DeviceManager::new(pc_prompter.clone(), audit.clone(), PinCachePolicy::default());
        let events = mgr.subscribe();
        let transport = PhoneTransport::new();
        mgr.add_transport(Arc::new(transport.clone())).unwrap();
        expect(&events, |e| *e == DeviceEvent::EnumerationComplete);
        let screen = Arc::new(ScriptedPhone::new());
        let phone = PhoneInfo { name: "张三的手机".into(), model: "Test".into(), app_version: "tests".into() };
        let agent = Arc::new(PhoneAgent::new(Box::new(phone_token()), screen.clone(), Duration::from_secs(300), phone));
        let (pc_end, phone_end) = memory_pair(PeerId("pc".into()), PeerId("phone-1".into()), 1 << 20);
        let serving = Some(serve(&agent, phone_end.clone()));
        let id = transport.attach(pc_end).unwrap().remove(0);
        expect(&events, |e| matches!(e, DeviceEvent::Added(i) if i.id == id));
        Rig { mgr, pc_prompter, audit, events, transport, agent, screen, phone_end, serving, id }
    }

    fn sign(&self, caller: Caller) -> Result<Vec<u8>> {
        self.mgr.sign_message(&self.id, C, KeyUsage::Sign, &SignatureScheme::sm2_default(), b"bid file", caller)
    }

    fn last_audit(&self) -> AuditRecord {
        self.audit.0.lock().unwrap().last().cloned().expect("an audit record")
    }
}

fn serve(agent: &Arc<PhoneAgent>, conn: Arc<MemoryConn>) -> JoinHandle<std::result::Result<(), ServeError>> {
    let agent = Arc::clone(agent);
    std::thread::spawn(move || agent.serve(conn))
}

fn expect(rx: &Receiver<DeviceEvent>, pred: impl Fn(&DeviceEvent) -> bool) -> DeviceEvent {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(e) if pred(&e) => return e,
            Ok(_) => {}
            Err(e) => panic!("no such event: {e}"),
        }
    }
}

#[test]
fn the_service_lists_and_signs_with_the_phone_and_audits_auth_type_phone() {
    let rig = Rig::new();
    let info = rig.mgr.device(&rig.id).unwrap();
    assert_eq!(info.transport, TransportKind::Phone);
    let containers = rig.mgr.containers(&rig.id, "desktop").unwrap();
    let cert = rig.mgr.certificate(&rig.id, C, KeyUsage::Sign, "desktop").unwrap().expect("the phone's certificate");
    assert_eq!(containers.len(), 1);
    assert!(cert.subject().contains("张三"));

    // A bid tool declares the scene; the service completes client and certificate.
    rig.screen.push_pin(PIN);
    let declared = Purpose { operation: "file_signing".into(), summary: "Sign bid 2026-118".into(), ..Purpose::default() };
    let caller = Caller::new("https://bid.example.cn", OpContext::new().with_purpose(declared));
    let sig = rig.sign(caller).unwrap();
    cert.public_key().unwrap().verify(&SignatureScheme::sm2_default(), b"bid file", &sig).unwrap();

    let shown = &rig.screen.seen()[0].context;
    assert_eq!(shown.client, "https://bid.example.cn");
    assert_eq!(shown.operation, "file_signing");
    assert_eq!(shown.summary, "Sign bid 2026-118");
    assert!(shown.certificate.contains("张三"), "the certificate the service described: {shown:?}");
    assert!(rig.screen.seen()[0].pin.is_some(), "the PIN is asked on the phone");
    assert!(rig.pc_prompter.seen().is_empty(), "the PC never asks for the phone's PIN");

    let rec = rig.last_audit();
    assert_eq!((rec.auth, rec.ok, rec.device_type), (AuthType::Phone, true, TransportKind::Phone));
    assert_eq!(rec.client, "https://bid.example.cn");

    // Without a declared scene the phone sees the service's operation; the phone's PIN
    // cache (scoped to the client) spares the PIN.
    rig.screen.push(Scripted::Confirm(None));
    rig.sign(Caller::from("https://bid.example.cn")).unwrap();
    assert_eq!(rig.screen.seen()[1].context.operation, "sign");
    assert!(rig.screen.seen()[1].pin.is_none());
    assert!(rig.pc_prompter.seen().is_empty());

    // A refusal on the phone is audited with its code.
    rig.screen.push(Scripted::Refuse("not mine".into()));
    assert_eq!(rig.sign(Caller::from("cli")).unwrap_err().code(), ErrorCode::RefusedOnMedium);
    let rec = rig.last_audit();
    assert_eq!((rec.auth, rec.error), (AuthType::Phone, Some(ErrorCode::RefusedOnMedium)));
}

#[test]
fn cancelling_through_the_service_reaches_the_phone() {
    let rig = Rig::new();
    rig.screen.push(Scripted::Hold);
    let ctx = OpContext::new();
    let caller = Caller::new("https://bid.example.cn", ctx.clone());
    let (mgr, id) = (rig.mgr.clone(), rig.id.clone());
    let t = std::thread::spawn(move || mgr.sign_message(&id, C, KeyUsage::Sign, &SignatureScheme::sm2_default(), b"x", caller));
    assert!(rig.screen.wait_for(WAIT, |_, held, _| held == 1));
    ctx.cancel();
    let e = t.join().unwrap().unwrap_err();
    assert_eq!(e.code(), ErrorCode::Cancelled, "{e}");
    assert!(rig.screen.wait_for(WAIT, |_, held, withdrawn| held == 0 && withdrawn == 1), "the phone's prompt was withdrawn");
    assert_eq!(rig.last_audit().error, Some(ErrorCode::Cancelled));
}

#[test]
fn the_phone_going_offline_and_coming_back_through_the_service() {
    let mut rig = Rig::new();
    rig.screen.push(Scripted::Hold);
    let ctx = OpContext::new();
    let mgr_sign = {
        let caller = Caller::new("cli", ctx.clone());
        let (mgr, id) = (rig.mgr.clone(), rig.id.clone());
        std::thread::spawn(move || mgr.sign_message(&id, C, KeyUsage::Sign, &SignatureScheme::sm2_default(), b"x", caller))
    };
    assert!(rig.screen.wait_for(WAIT, |_, held, _| held == 1));
    // The phone's link drops mid-signature.
    rig.phone_end.close();
    rig.serving.take().unwrap().join().unwrap().unwrap();
    let e = mgr_sign.join().unwrap().unwrap_err();
    assert_eq!(e.code(), ErrorCode::OutcomeUnknown, "{e}");
    expect(&rig.events, |e| *e == DeviceEvent::Offline(rig.id.clone()));
    // Listed, offline; private-key operations fail at once.
    assert!(rig.mgr.media().iter().any(|m| m.info.id == rig.id && !m.online));
    assert!(matches!(rig.sign(Caller::from("cli")), Err(ServiceError::Token(kb_token::TokenError::Offline))));

    // Reconnect from the same phone: online again, no restart, signing works.
    let (pc_end, phone_end) = memory_pair(PeerId("pc".into()), PeerId("phone-1".into()), 1 << 20);
    rig.serving = Some(serve(&rig.agent, phone_end.clone()));
    rig.phone_end = phone_end;
    assert_eq!(rig.transport.attach(pc_end).unwrap(), vec![rig.id.clone()]);
    expect(&rig.events, |e| *e == DeviceEvent::Online(rig.id.clone()));
    rig.screen.push_pin(PIN);
    rig.sign(Caller::from("cli")).unwrap();
    assert!(rig.pc_prompter.seen().is_empty());
    assert!(rig.phone_end.is_open());
}
