//! The phone as a medium, end to end over an in-process link: the PC-side transport and
//! token against the phone-side agent wrapping the in-memory token or a real file-type
//! key; and against a hand-driven "phone" for the protocol's edges.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kb_crypto::rsa::RsaPadding;
use kb_crypto::{PrivateKey, PublicKey, SignatureScheme};
use kb_phone::PhoneTransport;
use kb_phone::agent::{PhoneAgent, RequestKind};
use kb_phone::msg::{self, Message, PhoneInfo};
use kb_phone::testing::{Scripted, ScriptedPhone};
use kb_phonelink::conn::MemoryConn;
use kb_phonelink::{MessageConn, PeerId, memory_pair};
use kb_token::memory::MemoryToken;
use kb_token::{OpContext, OpStatus, Purpose, Token, TokenError, Transport, TransportEvent, UserAuth};
use kb_types::{Algorithm, DeviceId, ErrorCode, HasErrorCode, KeyUsage, Pin, TransportKind, UserVerification};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

const PIN: &str = "12345678";
const C: &str = "c1";
const WAIT: Duration = Duration::from_secs(30);
const CAP: usize = 1 << 20;

fn ca() -> kb_pki::issue::TestCa {
    kb_pki::issue::TestCa::new(Algorithm::Sm2, "C=CN,O=Test CA,CN=Test Root").unwrap()
}

/// The phone's own key: an in-memory token with an SM2 signing and encryption pair.
fn memory_token() -> MemoryToken {
    let ca = ca();
    let token = MemoryToken::new(TransportKind::File, "phone-key", PIN, "admin-pin-0").with_label("张三的证书");
    for usage in [KeyUsage::Sign, KeyUsage::Encrypt] {
        let key = PrivateKey::generate(Algorithm::Sm2).unwrap();
        let cert = ca.leaf("C=CN,O=某某建设有限公司,CN=张三", &key.public_key(), usage).unwrap();
        token.put_key(C, usage, key);
        token.put_certificate(C, usage, cert.der()).unwrap();
    }
    token
}

fn phone_info() -> PhoneInfo {
    PhoneInfo { name: "张三的手机".into(), model: "Test Phone".into(), app_version: "kb-phone tests".into() }
}

struct Rig {
    transport: PhoneTransport,
    events: Receiver<TransportEvent>,
    screen: Arc<ScriptedPhone>,
    agent: Arc<PhoneAgent>,
    peer: PeerId,
    phone_end: Arc<MemoryConn>,
    serving: Option<JoinHandle<Result<(), kb_phone::agent::ServeError>>>,
    id: DeviceId,
}

impl Rig {
    fn new(token: Box<dyn Token>, ttl: Duration) -> Rig {
        let transport = PhoneTransport::new();
        let events = transport.watch().unwrap();
        assert_eq!(events.recv_timeout(WAIT).unwrap(), TransportEvent::EnumerationComplete);
        let screen = Arc::new(ScriptedPhone::new());
        let agent = Arc::new(PhoneAgent::new(token, screen.clone(), ttl, phone_info()));
        let peer = PeerId("phone-7f3a".into());
        let (pc_end, phone_end) = memory_pair(PeerId("pc".into()), peer.clone(), CAP);
        let serving = Some(serve(&agent, phone_end.clone()));
        let ids = transport.attach(pc_end).unwrap();
        assert_eq!(ids.len(), 1);
        let id = ids[0].clone();
        let mut rig = Rig { transport, events, screen, agent, peer, phone_end, serving, id };
        match rig.next_event() {
            TransportEvent::Added(info) => {
                assert_eq!(info.id, rig.id);
                assert_eq!(info.transport, TransportKind::Phone);
                assert_eq!(info.capabilities.user_verification, UserVerification::OnMedium);
            }
            other => panic!("expected Added, got {other:?}"),
        }
        rig
    }

    fn next_event(&mut self) -> TransportEvent {
        self.events.recv_timeout(WAIT).expect("a transport event")
    }

    fn token(&self) -> Box<dyn Token> {
        self.transport.open(&self.id).unwrap()
    }

    /// Close the link from the phone's side and wait for the agent to stop serving.
    fn drop_link(&mut self) {
        self.phone_end.close();
        self.serving.take().unwrap().join().unwrap().unwrap();
    }

    /// The same phone connects again.
    fn reconnect(&mut self) -> Vec<DeviceId> {
        let (pc_end, phone_end) = memory_pair(PeerId("pc".into()), self.peer.clone(), CAP);
        self.serving = Some(serve(&self.agent, phone_end.clone()));
        self.phone_end = phone_end;
        self.transport.attach(pc_end).unwrap()
    }
}

fn serve(agent: &Arc<PhoneAgent>, conn: Arc<MemoryConn>) -> JoinHandle<Result<(), kb_phone::agent::ServeError>> {
    let agent = Arc::clone(agent);
    std::thread::spawn(move || agent.serve(conn))
}

fn purpose() -> Purpose {
    Purpose {
        client: "https://bid.example.cn".into(),
        operation: "file_signing".into(),
        summary: "Sign bid file 2026-118.zip".into(),
        certificate: "CN=张三, serial 01".into(),
    }
}

/// Sign `message` through the PC-side token with `ctx`; the digest it signed.
fn sign(token: &mut dyn Token, ctx: &OpContext, message: &[u8]) -> (Vec<u8>, kb_token::Result<Vec<u8>>) {
    let scheme = SignatureScheme::sm2_default();
    let public = token.public_key(C, KeyUsage::Sign).unwrap();
    let digest = public.message_digest(&scheme, message).unwrap();
    let r = token.open_session(UserAuth::OnMedium, ctx).and_then(|mut s| s.sign_digest(C, KeyUsage::Sign, &scheme, &digest));
    (digest, r)
}

fn verify(token: &mut dyn Token, message: &[u8], signature: &[u8]) {
    let public: PublicKey = token.public_key(C, KeyUsage::Sign).unwrap();
    // The certificate the phone announced holds the same key.
    let cert = token.containers().unwrap()[0].sign.clone().unwrap().certificate.unwrap();
    assert_eq!(kb_pki::Certificate::from_der(&cert).unwrap().public_key().unwrap(), public);
    public.verify(&SignatureScheme::sm2_default(), message, signature).expect("the signature verifies");
}

#[test]
fn sm2_signature_through_the_phone_with_the_pin_asked_on_the_phone_and_cached_there() {
    let rig = Rig::new(Box::new(memory_token()), Duration::from_secs(300));
    let mut token = rig.token();
    assert!(matches!(token.pin_info(kb_types::PinKind::User), Err(TokenError::NotSupported(_))));
    assert!(matches!(
        token.open_session(UserAuth::Pin(&Pin::new(PIN)), &OpContext::new()).map(|_| ()),
        Err(TokenError::NotSupported(_))
    ));
    rig.screen.push_pin(PIN);
    let statuses = Arc::new(Mutex::new(Vec::new()));
    let s2 = statuses.clone();
    let ctx = OpContext::with(None, move |s| s2.lock().unwrap().push(s.clone())).with_purpose(purpose());
    let (digest, sig) = sign(token.as_mut(), &ctx, b"bid file contents");
    let sig = sig.unwrap();
    verify(token.as_mut(), b"bid file contents", &sig);
    assert!(statuses.lock().unwrap().contains(&OpStatus::WaitingForMedium { what: "张三的手机".into() }));

    // The phone's screen showed who asks, why, and the digest; the PIN was asked there.
    let seen = rig.screen.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].context, msg::RequestContext::from(purpose()));
    assert_eq!(seen[0].kind, RequestKind::Sign { scheme: "SM2/SM3".into(), digest: hex::encode(&digest) });
    assert_eq!(seen[0].pin.map(|p| p.retries_left), Some(Some(6)));
    assert!(rig.agent.pin_cache().holds_pin());

    // Second signature for the same client: the phone confirms without asking the PIN
    // (its cache).
    rig.screen.push(Scripted::Confirm(None));
    let (_, sig2) = sign(token.as_mut(), &OpContext::new().with_purpose(purpose()), b"second file");
    verify(token.as_mut(), b"second file", &sig2.unwrap());
    assert_eq!(rig.screen.seen().len(), 2);
    assert_eq!(rig.screen.pin_prompts(), 1);

    // The cache is scoped to the client that caused it: another client is asked.
    rig.screen.push_pin(PIN);
    let other = OpContext::new().with_purpose(Purpose { client: "https://other.example".into(), ..Purpose::default() });
    let (_, sig3) = sign(token.as_mut(), &other, b"third");
    verify(token.as_mut(), b"third", &sig3.unwrap());
    assert_eq!(rig.screen.pin_prompts(), 2);
    assert!(rig.agent.pin_cache().holds_pin_for("https://other.example"));
}

#[test]
fn the_phone_pin_cache_expires() {
    let rig = Rig::new(Box::new(memory_token()), Duration::from_millis(200));
    let mut token = rig.token();
    rig.screen.push_pin(PIN);
    sign(token.as_mut(), &OpContext::new(), b"one").1.unwrap();
    // Wait for the condition (expiry), however slow the machine is.
    let until = std::time::Instant::now() + WAIT;
    while rig.agent.pin_cache().holds_pin() {
        assert!(std::time::Instant::now() < until, "the cached PIN never expired");
        std::thread::sleep(Duration::from_millis(20));
    }
    rig.screen.push_pin(PIN);
    sign(token.as_mut(), &OpContext::new(), b"two").1.unwrap();
    assert_eq!(rig.screen.pin_prompts(), 2, "asked again after expiry");
}

#[test]
fn sm2_decryption_through_the_phone() {
    let rig = Rig::new(Box::new(memory_token()), Duration::ZERO);
    let mut token = rig.token();
    let public = token.public_key(C, KeyUsage::Encrypt).unwrap();
    let ct = public.encrypt(b"content key 0123456789abcdef", RsaPadding::Pkcs1v15).unwrap();
    rig.screen.push_pin(PIN);
    let ctx = OpContext::new().with_purpose(Purpose { operation: "bid_opening".into(), ..purpose() });
    let pt =
        token.open_session(UserAuth::OnMedium, &ctx).unwrap().decrypt(C, KeyUsage::Encrypt, &ct, RsaPadding::Pkcs1v15).unwrap();
    assert_eq!(&pt[..], b"content key 0123456789abcdef");
    assert_eq!(rig.screen.seen()[0].kind, RequestKind::Decrypt);
    assert_eq!(rig.screen.seen()[0].context.operation, "bid_opening");
    assert!(!rig.agent.pin_cache().holds_pin(), "a zero TTL caches nothing");
}

#[test]
fn a_wrong_pin_is_asked_again_and_never_cached() {
    let rig = Rig::new(Box::new(memory_token()), Duration::from_secs(300));
    let mut token = rig.token();
    rig.screen.push_pin("00000000");
    rig.screen.push(Scripted::Refuse(String::new()));
    let (_, r) = sign(token.as_mut(), &OpContext::new(), b"m");
    assert_eq!(r.unwrap_err().code(), ErrorCode::RefusedOnMedium);
    let seen = rig.screen.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].pin.unwrap().retries_left, Some(5));
    assert!(seen[1].pin.unwrap().previous_wrong);
    assert!(!rig.agent.pin_cache().holds_pin(), "a wrong PIN is never cached");

    // Three wrong PINs: the request fails with wrong_pin and the tries left.
    for _ in 0..3 {
        rig.screen.push_pin("00000000");
    }
    let (_, r) = sign(token.as_mut(), &OpContext::new(), b"m");
    assert_eq!(r.unwrap_err(), TokenError::WrongPin { retries_left: 2 });
}

#[test]
fn refusal_and_leaving_the_screen_reach_the_pc_with_their_codes() {
    let rig = Rig::new(Box::new(memory_token()), Duration::from_secs(300));
    let mut token = rig.token();
    rig.screen.push(Scripted::Refuse("金额不对 / wrong amount".into()));
    let (_, r) = sign(token.as_mut(), &OpContext::new(), b"m");
    let e = r.unwrap_err();
    assert_eq!(e, TokenError::RefusedOnMedium { note: "金额不对 / wrong amount".into() });
    assert_eq!(e.code().number(), 4020);
    assert!(e.to_string().contains("wrong amount"));
    rig.screen.push(Scripted::LeftScreen);
    let (_, r) = sign(token.as_mut(), &OpContext::new(), b"m");
    assert_eq!(r.unwrap_err().code(), ErrorCode::AbortedOnMedium);
}

/// Start a signature on another thread; it holds on the phone's screen.
fn start_held_sign(rig: &Rig, ctx: OpContext) -> JoinHandle<kb_token::Result<Vec<u8>>> {
    rig.screen.push(Scripted::Hold);
    let mut token = rig.token();
    let t = std::thread::spawn(move || sign(token.as_mut(), &ctx, b"held").1);
    assert!(rig.screen.wait_for(WAIT, |_, held, _| held == 1), "the prompt is shown");
    t
}

#[test]
fn cancel_on_the_pc_withdraws_the_phone_prompt() {
    let rig = Rig::new(Box::new(memory_token()), Duration::from_secs(300));
    let ctx = OpContext::new();
    let t = start_held_sign(&rig, ctx.clone());
    ctx.cancel();
    assert_eq!(t.join().unwrap(), Err(TokenError::Cancelled));
    assert!(rig.screen.wait_for(WAIT, |_, held, withdrawn| held == 0 && withdrawn == 1), "the cancel reached the phone");
    // The link stays up: the next request works.
    rig.screen.push_pin(PIN);
    let mut token = rig.token();
    let (_, r) = sign(token.as_mut(), &OpContext::new(), b"after");
    verify(token.as_mut(), b"after", &r.unwrap());
}

#[test]
fn a_deadline_times_out_and_withdraws_the_prompt() {
    let rig = Rig::new(Box::new(memory_token()), Duration::from_secs(300));
    rig.screen.push(Scripted::Hold);
    let mut token = rig.token();
    let (_, r) = sign(token.as_mut(), &OpContext::with_timeout(Duration::from_millis(300)), b"slow");
    assert_eq!(r, Err(TokenError::TimedOut));
    assert!(rig.screen.wait_for(WAIT, |_, _, withdrawn| withdrawn == 1), "the cancel reached the phone");
}

#[test]
fn the_link_closing_mid_signature_is_outcome_unknown_then_offline_and_reconnecting_is_online() {
    let mut rig = Rig::new(Box::new(memory_token()), Duration::from_secs(300));
    let t = start_held_sign(&rig, OpContext::new());
    rig.drop_link();
    assert_eq!(t.join().unwrap(), Err(TokenError::OutcomeUnknown));
    assert_eq!(rig.next_event(), TransportEvent::Offline(rig.id.clone()));
    // Offline: public reads still answer from what the phone announced; private ones fail.
    let mut token = rig.token();
    assert_eq!(token.containers().unwrap().len(), 1);
    assert_eq!(token.open_session(UserAuth::OnMedium, &OpContext::new()).map(|_| ()).unwrap_err(), TokenError::Offline);
    assert!(!rig.transport.phones()[0].online);
    assert_eq!(rig.transport.phones()[0].media, vec![rig.id.clone()]);

    // The same phone comes back: the same medium id, online, and signing works with the
    // token opened before.
    assert_eq!(rig.reconnect(), vec![rig.id.clone()]);
    assert_eq!(rig.next_event(), TransportEvent::Online(rig.id.clone()));
    rig.screen.push_pin(PIN);
    let (_, r) = sign(token.as_mut(), &OpContext::new(), b"again");
    verify(token.as_mut(), b"again", &r.unwrap());
}

#[test]
fn the_phone_announces_media_changes() {
    let rig = Rig::new(Box::new(memory_token()), Duration::from_secs(300));
    // Hold a handle on the same in-memory medium the agent serves.
    let token = memory_token();
    let mut rig2 = Rig::new(Box::new(token.clone()), Duration::from_secs(300));
    let key = PrivateKey::generate(Algorithm::Sm2).unwrap();
    token.put_key("c2", KeyUsage::Sign, key);
    rig2.agent.media_changed().unwrap();
    match rig2.next_event() {
        TransportEvent::Added(info) => assert_eq!(info.id, rig2.id),
        other => panic!("expected a re-insertion, got {other:?}"),
    }
    assert_eq!(rig2.token().containers().unwrap().len(), 2);
    // The other phone is untouched.
    assert_eq!(rig.token().containers().unwrap().len(), 1);
    assert!(rig.events.try_recv().is_err());
}

/// A real file-type key as the phone's token.
#[test]
fn a_file_type_key_on_the_phone_signs_for_the_pc() {
    let dir = tempfile::tempdir().unwrap();
    let mut file = kb_filekey::FileToken::create(
        dir.path().join("phone.kbkey"),
        "手机文件型密钥",
        &Pin::new(PIN),
        &Pin::new("admin-pin-0"),
        kb_filekey::CreateOptions::weak_for_tests(),
    )
    .unwrap();
    {
        let ca = ca();
        let mut s = file.login(&Pin::new(PIN)).unwrap();
        s.create_container(C).unwrap();
        let public = s.generate_key_pair(C, KeyUsage::Sign, Algorithm::Sm2).unwrap();
        let cert = ca.leaf("C=CN,CN=李四", &public, KeyUsage::Sign).unwrap();
        s.import_certificate(C, KeyUsage::Sign, cert.der()).unwrap();
    }
    let rig = Rig::new(Box::new(file), Duration::from_secs(300));
    assert_eq!(rig.id.0, "phone:phone-7f3a/file:phone");
    let mut token = rig.token();
    assert_eq!(token.info().label, "手机文件型密钥");
    rig.screen.push_pin(PIN);
    let (_, r) = sign(token.as_mut(), &OpContext::new(), b"signed by a file key on a phone");
    verify(token.as_mut(), b"signed by a file key on a phone", &r.unwrap());
    rig.screen.push(Scripted::Confirm(None));
    let (_, r) = sign(token.as_mut(), &OpContext::new(), b"cached");
    verify(token.as_mut(), b"cached", &r.unwrap());
    assert_eq!(rig.screen.pin_prompts(), 1);
}

// ---- against a hand-driven phone: the protocol's edges ----

/// A "phone" the test drives message by message.
struct FakePhone {
    conn: Arc<MemoryConn>,
}

impl FakePhone {
    fn send(&self, m: &Message) {
        self.conn.send(&msg::encode(m).unwrap()).unwrap();
    }

    fn recv(&self) -> Message {
        msg::decode(&self.conn.recv(Some(WAIT)).unwrap()).unwrap()
    }
}

/// A PC transport with one hand-driven phone attached (announcing what the agent over
/// `memory_token()` would).
fn fake_rig() -> (PhoneTransport, FakePhone, Box<dyn Token>) {
    let screen = Arc::new(ScriptedPhone::new());
    let medium = PhoneAgent::new(Box::new(memory_token()), screen, Duration::ZERO, phone_info()).medium().unwrap();
    let transport = PhoneTransport::new();
    let (pc_end, phone_end) = memory_pair(PeerId("pc".into()), PeerId("fake".into()), CAP);
    let phone = FakePhone { conn: phone_end };
    phone.send(&Message::Hello(msg::Hello { protocol: msg::PROTOCOL_VERSION, phone: phone_info(), media: vec![medium] }));
    let ids = transport.attach(pc_end).unwrap();
    let token = transport.open(&ids[0]).unwrap();
    (transport, phone, token)
}

fn spawn_sign(mut token: Box<dyn Token>, ctx: OpContext) -> JoinHandle<kb_token::Result<Vec<u8>>> {
    std::thread::spawn(move || {
        let r = sign(token.as_mut(), &ctx, b"m").1;
        drop(token);
        r
    })
}

#[test]
fn answers_for_other_ids_or_after_a_cancel_are_ignored() {
    let (transport, phone, token) = fake_rig();
    let id = transport.phones()[0].peer.clone();
    assert_eq!(id, PeerId("fake".into()));
    let ctx = OpContext::new();
    let t = spawn_sign(token, ctx.clone());
    let Message::Sign(first) = phone.recv() else { panic!("a sign request") };
    ctx.cancel();
    assert_eq!(phone.recv(), Message::Cancel { id: first.id });
    assert_eq!(t.join().unwrap(), Err(TokenError::Cancelled));
    // A late answer to the cancelled request, and one for an id never used: ignored.
    phone.send(&Message::Signature { id: first.id, signature: msg::B64(vec![1; 70]) });
    phone.send(&Message::Signature { id: 4242, signature: msg::B64(vec![2; 70]) });
    let token = transport.open(&transport_device(&transport)).unwrap();
    let t = spawn_sign(token, OpContext::new());
    let Message::Sign(second) = phone.recv() else { panic!("a sign request") };
    assert_ne!(second.id, first.id);
    phone.send(&Message::Signature { id: second.id, signature: msg::B64(vec![3; 70]) });
    assert_eq!(t.join().unwrap(), Ok(vec![3; 70]), "its own answer, not a stale one");
}

fn transport_device(t: &PhoneTransport) -> DeviceId {
    let rx = t.watch().unwrap();
    match rx.recv_timeout(WAIT).unwrap() {
        TransportEvent::Added(info) => info.id,
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_oversized_or_malformed_answer_fails_the_request_and_closes_the_link() {
    let (transport, phone, token) = fake_rig();
    let events = transport.watch().unwrap();
    let t = spawn_sign(token, OpContext::new());
    let Message::Sign(req) = phone.recv() else { panic!("a sign request") };
    // A signature over the cap.
    let big = format!(
        r#"{{"type":"signature","id":{},"signature":"{}"}}"#,
        req.id,
        base64_of(&vec![0u8; msg::MAX_SIGNATURE_BYTES + 1])
    );
    phone.conn.send(big.as_bytes()).unwrap();
    let e = t.join().unwrap().unwrap_err();
    assert_eq!(e.code(), ErrorCode::PhoneMessageInvalid);
    // The PC told the phone why, and closed the link.
    match phone.recv() {
        Message::Error(m) => assert_eq!((m.id, m.code), (None, 6050)),
        other => panic!("{other:?}"),
    }
    assert!(events.iter().any(|e| matches!(e, TransportEvent::Offline(_))));
    assert!(!phone.conn.is_open());
}

fn base64_of(b: &[u8]) -> String {
    use base64ct::Encoding;
    base64ct::Base64::encode_string(b)
}

#[test]
fn a_phone_of_another_protocol_version_or_without_hello_is_refused() {
    let transport = PhoneTransport::with_hello_timeout(Duration::from_millis(200));
    let (pc_end, phone_end) = memory_pair(PeerId("pc".into()), PeerId("v2".into()), CAP);
    phone_end.send(br#"{"type":"hello","protocol":2,"phone":{"name":"new phone"},"media":[]}"#).unwrap();
    assert_eq!(transport.attach(pc_end).unwrap_err().code(), ErrorCode::PhoneProtocolUnsupported);
    let refusal = msg::decode(&phone_end.recv(Some(WAIT)).unwrap()).unwrap();
    assert!(matches!(refusal, Message::Error(msg::ErrorMsg { id: None, code: 6051, .. })));
    assert!(!phone_end.is_open());

    let (pc_end, _silent) = memory_pair(PeerId("pc".into()), PeerId("silent".into()), CAP);
    assert_eq!(transport.attach(pc_end).unwrap_err(), TokenError::TimedOut);
    assert!(transport.phones().is_empty());
}

#[test]
fn a_request_is_offline_when_the_link_is_gone_before_sending() {
    let (_transport, phone, mut token) = fake_rig();
    let scheme = SignatureScheme::sm2_default();
    let mut s = token.open_session(UserAuth::OnMedium, &OpContext::new()).unwrap();
    // The link drops between the session and the request: nothing can be sent.
    phone.conn.close();
    let r = s.sign_digest(C, KeyUsage::Sign, &scheme, &[0u8; 32]);
    assert_eq!(r, Err(TokenError::Offline));
}

#[test]
fn the_phone_side_refuses_a_pc_that_breaks_the_protocol() {
    let screen = Arc::new(ScriptedPhone::new());
    let agent = Arc::new(PhoneAgent::new(Box::new(memory_token()), screen, Duration::ZERO, phone_info()));
    let (pc_end, phone_end) = memory_pair(PeerId("pc".into()), PeerId("p".into()), CAP);
    let serving = serve(&agent, phone_end);
    assert!(matches!(msg::decode(&pc_end.recv(Some(WAIT)).unwrap()).unwrap(), Message::Hello(_)));
    pc_end.send(b"{\"type\":\"sign\"}").unwrap();
    let e = serving.join().unwrap().unwrap_err();
    assert_eq!(e.code(), ErrorCode::PhoneMessageInvalid);
    assert!(matches!(msg::decode(&pc_end.recv(Some(WAIT)).unwrap()).unwrap(), Message::Error(_)));
    // Requests for a medium it does not have: not_found, the link stays up.
    let (pc_end, phone_end) = memory_pair(PeerId("pc".into()), PeerId("p".into()), CAP);
    let serving = serve(&agent, phone_end);
    let _hello = pc_end.recv(Some(WAIT)).unwrap();
    let req = Message::Sign(msg::SignRequest {
        id: 1,
        medium: "file:other".into(),
        container: C.into(),
        usage: KeyUsage::Sign,
        scheme: (&SignatureScheme::sm2_default()).into(),
        digest: msg::Hex(vec![0; 32]),
        context: Default::default(),
    });
    pc_end.send(&msg::encode(&req).unwrap()).unwrap();
    match msg::decode(&pc_end.recv(Some(WAIT)).unwrap()).unwrap() {
        Message::Error(m) => assert_eq!((m.id, m.code), (Some(1), ErrorCode::NotFound.number())),
        other => panic!("{other:?}"),
    }
    // Decrypting with the signing key: the phone does not allow it (as its hello said).
    let req = Message::Decrypt(msg::DecryptRequest {
        id: 2,
        medium: "file:phone-key".into(),
        container: C.into(),
        usage: KeyUsage::Sign,
        ciphertext: msg::B64(vec![1; 100]),
        padding: Default::default(),
        context: Default::default(),
    });
    pc_end.send(&msg::encode(&req).unwrap()).unwrap();
    match msg::decode(&pc_end.recv(Some(WAIT)).unwrap()).unwrap() {
        Message::Error(m) => assert_eq!((m.id, m.code), (Some(2), ErrorCode::NotSupported.number())),
        other => panic!("{other:?}"),
    }
    pc_end.close();
    serving.join().unwrap().unwrap();
}

#[test]
fn ecdsa_rsa_pss_and_a_non_default_sm2_id_go_through_the_phone() {
    let token = memory_token();
    let ecdsa = PrivateKey::generate(Algorithm::EcdsaP256).unwrap();
    let rsa = PrivateKey::generate(Algorithm::Rsa { bits: 2048 }).unwrap();
    token.put_key("ec", KeyUsage::Sign, ecdsa);
    token.put_key("rsa", KeyUsage::Both, rsa);
    let rig = Rig::new(Box::new(token), Duration::from_secs(300));
    let mut pc = rig.token();
    rig.screen.push_pin(PIN);
    let ctx = OpContext::new();
    for (container, usage, scheme, name) in [
        ("ec", KeyUsage::Sign, SignatureScheme::Ecdsa(kb_types::HashAlgorithm::Sha256), "ECDSA sha256"),
        ("rsa", KeyUsage::Both, SignatureScheme::RsaPss(kb_types::HashAlgorithm::Sha256), "RSA-PSS sha256"),
        ("rsa", KeyUsage::Both, SignatureScheme::RsaPkcs1(kb_types::HashAlgorithm::Sha384), "RSA PKCS#1 v1.5 sha384"),
        (C, KeyUsage::Sign, SignatureScheme::Sm2Sm3 { id: b"ALICE123@YAHOO.COM".to_vec() }, "SM2/SM3"),
    ] {
        rig.screen.push(Scripted::Confirm(None));
        let public = pc.public_key(container, usage).unwrap();
        let digest = public.message_digest(&scheme, b"message").unwrap();
        let sig = pc.open_session(UserAuth::OnMedium, &ctx).unwrap().sign_digest(container, usage, &scheme, &digest).unwrap();
        public.verify(&scheme, b"message", &sig).unwrap_or_else(|e| panic!("{name}: {e}"));
        let shown = rig.screen.seen().pop().unwrap();
        assert!(matches!(&shown.kind, RequestKind::Sign { scheme, .. } if scheme.as_str() == name), "{shown:?}");
    }
}

#[test]
fn a_locked_phone_pin_is_reported_as_pin_locked_without_a_prompt() {
    let token = memory_token().with_max_retries(1);
    let rig = Rig::new(Box::new(token), Duration::from_secs(300));
    let mut pc = rig.token();
    rig.screen.push_pin("00000000");
    assert_eq!(sign(pc.as_mut(), &OpContext::new(), b"m").1, Err(TokenError::PinLocked));
    let prompts = rig.screen.seen().len();
    assert_eq!(sign(pc.as_mut(), &OpContext::new(), b"m").1, Err(TokenError::PinLocked));
    assert_eq!(rig.screen.seen().len(), prompts, "no prompt for a locked PIN");
}

#[test]
fn disconnecting_on_the_pc_takes_the_phone_offline_and_ends_the_agent() {
    let mut rig = Rig::new(Box::new(memory_token()), Duration::from_secs(300));
    rig.transport.disconnect(&rig.peer);
    assert_eq!(rig.next_event(), TransportEvent::Offline(rig.id.clone()));
    rig.serving.take().unwrap().join().unwrap().unwrap();
    // A watcher that starts now hears the medium, and that it is offline.
    let late = rig.transport.watch().unwrap();
    assert!(matches!(late.recv_timeout(WAIT).unwrap(), TransportEvent::Added(_)));
    assert_eq!(late.recv_timeout(WAIT).unwrap(), TransportEvent::Offline(rig.id.clone()));
    assert_eq!(late.recv_timeout(WAIT).unwrap(), TransportEvent::EnumerationComplete);
    rig.reconnect();
    assert_eq!(rig.next_event(), TransportEvent::Online(rig.id.clone()));
}
