//! The dev CA over real loopback HTTP, driven by kb-ca's client: binding with proofs,
//! the phone pages, refusals (bad/replayed tokens, expired QR codes by an injected clock,
//! someone else's key), renewal applications, approval and EST enrolment.
#![allow(clippy::unwrap_used, clippy::panic, clippy::expect_used)]

mod common;

use kb_ca::api::{self, BindingRequest, BindingState, ProvenCertificate, RenewalKind, RenewalState};
use kb_ca::http::{Request, Response};
use kb_ca::{CaClient, CaError, HttpCaClient};
use kb_crypto::PrivateKey;
use kb_devca::{Config, DevCa, ManualClock, Server};
use kb_pki::issue::{CertKind, CertificateParams, issue, self_signed};
use kb_pki::time::UnixTime;
use kb_pki::{Certificate, LocalSigner, Signer};
use kb_types::{Algorithm, ErrorCode, HasErrorCode, KeyUsage};
use std::sync::Arc;
use std::time::Duration;

struct Rig {
    ca: Arc<DevCa>,
    clock: Arc<ManualClock>,
    _server: Server,
    client: HttpCaClient,
    root: Certificate,
    root_signer: LocalSigner,
    _dir: tempfile::TempDir,
}

fn rig() -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let root_signer = LocalSigner::new(PrivateKey::generate(Algorithm::Sm2).unwrap());
    let root = self_signed(
        &CertificateParams::new("CN=Test Dev Root", CertKind::Root { path_len: Some(0) }, UnixTime::now().plus_days(-400), 3650),
        &root_signer,
    )
    .unwrap();
    let clock = Arc::new(ManualClock::new(UnixTime::now().0));
    let config = Config { name: "测试 CA".into(), public_url: String::new(), operator_key: "op-key".into() };
    let ca =
        Arc::new(DevCa::open(&dir.path().join("ca.sqlite"), root.clone(), root_signer.clone(), clock.clone(), config).unwrap());
    let server = Server::start(Arc::clone(&ca), "127.0.0.1:0".parse().unwrap(), false).unwrap();
    let client = HttpCaClient::new(&server.url()).unwrap();
    Rig { ca, clock, _server: server, client, root, root_signer, _dir: dir }
}

impl Rig {
    /// A user certificate from the dev CA's root with `days_left` days to go.
    fn user(&self, days_left: i64) -> (LocalSigner, Certificate) {
        let key = LocalSigner::new(PrivateKey::generate(Algorithm::Sm2).unwrap());
        let now = UnixTime(self.clock_now());
        let mut p = CertificateParams::leaf("C=CN,O=某某建设集团,CN=张三", KeyUsage::Sign, now.plus_days(-300), 1);
        p.not_after = now.plus_days(days_left);
        let cert = issue(&p, key.public_key(), Some(&self.root), &self.root_signer).unwrap();
        (key, cert)
    }

    fn clock_now(&self) -> i64 {
        kb_devca::Clock::now(&*self.clock)
    }

    fn binding_request(&self, signer: &LocalSigner, cert: &Certificate, medium: &str) -> BindingRequest {
        let challenge = self.client.challenge().unwrap().challenge;
        let sig = signer.sign_message(&kb_ca::proof::binding_message(&challenge, medium, cert.der())).unwrap();
        BindingRequest {
            challenge,
            medium_serial: medium.into(),
            certificates: vec![ProvenCertificate { certificate: api::b64(cert.der()), signature: api::b64(&sig) }],
        }
    }

    fn get(&self, target: &str) -> Response {
        self.client
            .exchange(Request { method: "GET".into(), target: target.into(), ..Default::default() }, Duration::ZERO)
            .unwrap()
    }

    fn post_form(&self, target: &str, form: &str) -> Response {
        let req = Request {
            method: "POST".into(),
            target: target.into(),
            headers: vec![("Content-Type".into(), "application/x-www-form-urlencoded".into())],
            body: form.as_bytes().to_vec(),
        };
        self.client.exchange(req, Duration::ZERO).unwrap()
    }

    fn post_multipart(&self, target: &str, fields: &[(&str, Option<&str>, &[u8])]) -> Response {
        let boundary = "----kbboundary7MA4YWxk";
        let mut body = Vec::new();
        for (name, filename, data) in fields {
            body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
            match filename {
                Some(f) => body.extend_from_slice(
                    format!("Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes(),
                ),
                None => body.extend_from_slice(format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes()),
            }
            body.extend_from_slice(data);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        let req = Request {
            method: "POST".into(),
            target: target.into(),
            headers: vec![("Content-Type".into(), format!("multipart/form-data; boundary={boundary}"))],
            body,
        };
        self.client.exchange(req, Duration::ZERO).unwrap()
    }

    /// Bind and confirm on the "phone"; the phone's key for the renewal pages.
    fn bound(&self, signer: &LocalSigner, cert: &Certificate) -> String {
        let b = self.client.request_binding(&self.binding_request(signer, cert, "KBF-0001")).unwrap();
        let token = b.qr_url.split("token=").nth(1).unwrap().to_string();
        let resp = self.post_form("/m/bind", &format!("token={token}&action=confirm"));
        assert_eq!(resp.status, 200);
        let html = String::from_utf8(resp.body).unwrap();
        html.split("k=").nth(1).unwrap().split("&amp;").next().unwrap().to_string()
    }

    fn apply(&self, phone: &str, cert: &Certificate, kind: &str, attachment: Option<&[u8]>) -> Response {
        let serial = api::serial_of(cert);
        let mut fields: Vec<(&str, Option<&str>, &[u8])> = vec![
            ("k", None, phone.as_bytes()),
            ("serial", None, serial.as_bytes()),
            ("years", None, b"2"),
            ("kind", None, kind.as_bytes()),
            ("consent", None, b"yes"),
        ];
        if let Some(a) = attachment {
            fields.push(("attachment", Some("营业执照.pdf"), a));
        }
        self.post_multipart("/m/renew", &fields)
    }

    fn apply_and_pay(&self, phone: &str, cert: &Certificate, kind: &str) -> String {
        let resp = self.apply(phone, cert, kind, None);
        assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
        let html = String::from_utf8(resp.body).unwrap();
        let id = html.split("id=\"application\">").nth(1).unwrap().split('<').next().unwrap().to_string();
        let paid = self.post_form("/m/pay", &format!("k={phone}&application={id}"));
        assert_eq!(paid.status, 200);
        id
    }
}

fn code(e: &CaError) -> ErrorCode {
    e.code()
}

#[test]
fn binding_is_proven_confirmed_once_and_seen_by_long_poll() {
    let r = rig();
    assert!(r.client.server_info().unwrap().development);
    let (key, cert) = r.user(30);
    let b = r.client.request_binding(&r.binding_request(&key, &cert, "KBF-0001")).unwrap();
    assert_eq!(b.expires_in, 1800);
    assert!(b.qr_url.starts_with("http://127.0.0.1:") && b.qr_url.contains(&b.token));
    // The phone's page shows the four fields and the two buttons.
    let page = String::from_utf8(r.get(&format!("/m/bind?token={}", b.token)).body).unwrap();
    for needle in [
        "介质编号",
        "KBF-0001",
        "证书用户",
        "张三",
        "服务名称",
        "测试 CA",
        "证书有效期至",
        "确认绑定",
        "取消",
        "width=device-width",
    ] {
        assert!(page.contains(needle), "binding page lacks {needle}");
    }
    assert!(page.contains(&kb_devca::pages::date(cert.not_after())));
    // A long-poll waiting on `pending` wakes when the phone confirms.
    let (client, id) = (r.client.clone(), b.binding_id.clone());
    let poll = std::thread::spawn(move || client.binding_status(&id, Some((BindingState::Pending, Duration::from_secs(30)))));
    let s = r.client.binding_status(&b.binding_id, None).unwrap();
    assert_eq!(s.state, BindingState::Pending);
    assert_eq!(r.post_form("/m/bind", &format!("token={}&action=confirm", b.token)).status, 200);
    let s = poll.join().unwrap().unwrap();
    assert_eq!((s.state, s.certificates.clone()), (BindingState::Confirmed, vec![api::serial_of(&cert)]));
    // The token is used up: the page and a second confirmation are refused.
    assert_eq!(r.get(&format!("/m/bind?token={}", b.token)).status, 409);
    let replay = r.post_form("/m/bind", &format!("token={}&action=confirm", b.token));
    assert_eq!(replay.status, 409);
    assert!(String::from_utf8_lossy(&replay.body).contains("绑定二维码无效或已被使用"));
    assert_eq!(r.get("/m/bind?token=not-a-token").status, 409);
    assert!(r.client.renewal_status(&api::serial_of(&cert)).unwrap().bound);
}

#[test]
fn refusals_have_their_codes() {
    let r = rig();
    let (key, cert) = r.user(30);
    // A challenge is used once.
    let req = r.binding_request(&key, &cert, "KBF-0001");
    r.client.request_binding(&req).unwrap();
    assert_eq!(code(&r.client.request_binding(&req).unwrap_err()), ErrorCode::BindingTokenInvalid);
    // Someone else's certificate: the proof does not verify with its key.
    let (thief, _) = r.user(30);
    let stolen = r.binding_request(&thief, &cert, "KBF-0002");
    assert_eq!(code(&r.client.request_binding(&stolen).unwrap_err()), ErrorCode::BindingProofInvalid);
    // A certificate from another CA.
    let other = kb_pki::issue::TestCa::new(Algorithm::Sm2, "CN=Other").unwrap();
    let foreign = other.leaf("CN=x", key.public_key(), KeyUsage::Sign).unwrap();
    assert_eq!(code(&r.client.request_binding(&r.binding_request(&key, &foreign, "K")).unwrap_err()), ErrorCode::CaNotFound);
    // An expired challenge.
    let late = r.binding_request(&key, &cert, "KBF-0001");
    r.clock.advance(api::CHALLENGE_TTL_SECS + 1);
    assert_eq!(code(&r.client.request_binding(&late).unwrap_err()), ErrorCode::BindingExpired);
    assert_eq!(code(&r.client.binding_status("b-nope", None).unwrap_err()), ErrorCode::CaNotFound);
}

#[test]
fn an_expired_qr_code_cannot_be_used() {
    let r = rig();
    let (key, cert) = r.user(30);
    let b = r.client.request_binding(&r.binding_request(&key, &cert, "KBF-0001")).unwrap();
    r.clock.advance(api::BINDING_TTL_SECS - 1);
    assert_eq!(r.client.binding_status(&b.binding_id, None).unwrap().expires_in, 1);
    r.clock.advance(1);
    assert_eq!(r.get(&format!("/m/bind?token={}", b.token)).status, 410);
    let late = r.post_form("/m/bind", &format!("token={}&action=confirm", b.token));
    assert_eq!(late.status, 410);
    assert!(String::from_utf8_lossy(&late.body).contains("已过期"));
    let s = r.client.binding_status(&b.binding_id, None).unwrap();
    assert_eq!((s.state, s.expires_in), (BindingState::Expired, 0));
    assert!(!r.client.renewal_status(&api::serial_of(&cert)).unwrap().bound);
}

#[test]
fn renew_applied_paid_approved_and_reenrolled_with_the_same_key() {
    let r = rig();
    let (key, cert) = r.user(30);
    let serial = api::serial_of(&cert);
    assert_eq!(r.client.renewal_status(&serial).unwrap().state, RenewalState::None);
    let phone = r.bound(&key, &cert);
    // Outside the window: a certificate with a year left cannot be renewed yet.
    let (key2, far) = r.user(200);
    let phone2 = r.bound(&key2, &far);
    assert_eq!(r.apply(&phone2, &far, "renew", None).status, 400);
    // Another phone cannot apply for this certificate.
    assert_eq!(r.apply(&phone2, &cert, "renew", None).status, 403);
    let app = r.apply_and_pay(&phone, &cert, "renew");
    let st = r.client.renewal_status(&serial).unwrap();
    assert_eq!(st.state, RenewalState::Applied);
    assert_eq!(st.application.as_ref().map(|a| (a.kind, a.years, a.expired)), Some((RenewalKind::Renew, 2, false)));
    // Not approved yet: EST says 202 (pending).
    let csr = kb_pki::csr::build("C=CN,O=某某建设集团,CN=张三", &key, vec![]).unwrap();
    assert!(matches!(r.client.est_simplereenroll(&csr), Err(CaError::Pending { retry_after: 60 })));
    // The operator page lists it; approval by the page.
    let op = String::from_utf8(r.get("/op?key=op-key").body).unwrap();
    assert!(op.contains(&app) && op.contains("临期"));
    assert_eq!(r.get("/op?key=wrong").status, 403);
    assert_eq!(r.post_form("/op/decide", &format!("key=op-key&application={app}&action=approve")).status, 200);
    assert_eq!(r.client.renewal_status(&serial).unwrap().state, RenewalState::Approved);
    // A CSR with another subject is refused; with the same key and subject, issued.
    let wrong = kb_pki::csr::build("C=CN,O=别的公司,CN=张三", &key, vec![]).unwrap();
    assert_eq!(code(&r.client.est_simplereenroll(&wrong).unwrap_err()), ErrorCode::EnrolmentRefused);
    let certs = r.client.est_simplereenroll(&csr).unwrap();
    let new = &certs[0];
    assert_eq!(new.public_key().unwrap(), *key.public_key());
    // It says where to ask about its revocation: this CA's /crl and /ocsp.
    let base = r.ca.config().public_url;
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");
    assert_eq!((new.crl_urls(), new.ocsp_urls()), (vec![format!("{base}/crl")], vec![format!("{base}/ocsp")]));
    assert_eq!(new.subject(), cert.subject());
    assert_eq!(new.not_after(), UnixTime(cert.not_after().0 + 2 * 365 * 86400));
    let trust = kb_pki::chain::TrustStore::from_certs(r.client.est_cacerts().unwrap());
    assert!(kb_pki::chain::verify_chain(new, &[], &trust, UnixTime(r.clock_now())).is_ok());
    assert_eq!(trust.anchors(), std::slice::from_ref(&r.root));
    // Idempotent: enrolling again gives the same certificate; delivery gives it too.
    assert_eq!(&r.client.est_simplereenroll(&csr).unwrap()[0], new);
    let d = r.client.delivery(&app).unwrap();
    assert_eq!(api::unb64(&d.certificates[0]).unwrap(), new.der());
    assert_eq!(r.client.renewal_status(&serial).unwrap().state, RenewalState::Issued);
    // A key nobody applied for.
    let (stranger, _) = r.user(30);
    let csr3 = kb_pki::csr::build("CN=x", &stranger, vec![]).unwrap();
    assert_eq!(code(&r.client.est_simplereenroll(&csr3).unwrap_err()), ErrorCode::RenewalNotApproved);
}

#[test]
fn expired_needs_an_attachment_rejection_has_a_reason_and_rekey_needs_the_old_key() {
    let r = rig();
    let (key, cert) = r.user(-10);
    let phone = r.bound(&key, &cert);
    let page = String::from_utf8(r.get(&format!("/m/renew?k={phone}&serial={}", api::serial_of(&cert))).body).unwrap();
    assert!(page.contains("过期") && page.contains("type=\"file\""));
    assert_eq!(r.apply(&phone, &cert, "rekey", None).status, 400);
    let resp = r.apply(&phone, &cert, "rekey", Some(b"%PDF-1.4 licence"));
    assert_eq!(resp.status, 200);
    let html = String::from_utf8(resp.body).unwrap();
    let app = html.split("id=\"application\">").nth(1).unwrap().split('<').next().unwrap().to_string();
    assert_eq!(r.post_form("/m/pay", &format!("k={phone}&application={app}")).status, 200);
    assert_eq!(r.post_form("/m/pay", &format!("k={phone}&application={app}")).status, 409);
    let op = String::from_utf8(r.get("/op?key=op-key").body).unwrap();
    assert!(op.contains("过期") && op.contains("营业执照.pdf"));
    // Rejected with a reason, then a new application approved by the command path.
    assert!(r.ca.decide(&app, false, "").is_err());
    r.ca.decide(&app, false, "附件不清晰").unwrap();
    let st = r.client.renewal_status(&api::serial_of(&cert)).unwrap();
    assert_eq!((st.state, st.reason.as_deref()), (RenewalState::Rejected, Some("附件不清晰")));
    let resp = r.apply(&phone, &cert, "rekey", Some(b"%PDF-1.4 clearer"));
    let html = String::from_utf8(resp.body).unwrap();
    let app = html.split("id=\"application\">").nth(1).unwrap().split('<').next().unwrap().to_string();
    r.post_form("/m/pay", &format!("k={phone}&application={app}"));
    r.ca.decide(&app, true, "").unwrap();
    // 变更: a new key; simpleenroll authorised by the old key.
    let new_key = LocalSigner::new(PrivateKey::generate(Algorithm::Sm2).unwrap());
    let csr = kb_pki::csr::build("C=CN,O=某某建设集团,CN=张三", &new_key, vec![]).unwrap();
    let spki = new_key.public_key().to_spki_der().unwrap();
    let msg = kb_ca::proof::enrol_message(&app, &spki);
    assert_eq!(code(&r.client.est_simpleenroll(&csr, None).unwrap_err()), ErrorCode::EnrolmentRefused);
    let forged = api::b64(&new_key.sign_message(&msg).unwrap());
    assert_eq!(code(&r.client.est_simpleenroll(&csr, Some((&app, &forged))).unwrap_err()), ErrorCode::EnrolmentRefused);
    let auth = api::b64(&key.sign_message(&msg).unwrap());
    let issued = r.client.est_simpleenroll(&csr, Some((&app, &auth))).unwrap();
    assert_eq!(issued[0].public_key().unwrap(), *new_key.public_key());
    // Expired: the new validity starts now.
    assert_eq!(issued[0].not_after(), UnixTime(r.clock_now() + 2 * 365 * 86400));
    // 续期 (reenroll) is not the path for a rekey application.
    let csr_old = kb_pki::csr::build("C=CN,O=某某建设集团,CN=张三", &key, vec![]).unwrap();
    assert_eq!(code(&r.client.est_simplereenroll(&csr_old).unwrap_err()), ErrorCode::RenewalNotApproved);
}

#[test]
fn est_requests_must_be_base64_pkcs10() {
    let r = rig();
    let req = Request {
        method: "POST".into(),
        target: "/.well-known/est/simplereenroll".into(),
        headers: vec![("Content-Type".into(), "application/json".into())],
        body: b"{}".to_vec(),
    };
    assert_eq!(r.client.exchange(req.clone(), Duration::ZERO).unwrap().status, 415);
    let mut req2 = req;
    req2.headers = vec![("Content-Type".into(), "application/pkcs10".into())];
    req2.body = b"@@not base64@@".to_vec();
    assert_eq!(r.client.exchange(req2, Duration::ZERO).unwrap().status, 400);
    let cacerts = r.get("/.well-known/est/cacerts");
    assert_eq!(cacerts.header("Content-Type"), Some("application/pkcs7-mime"));
    assert_eq!(cacerts.header("Content-Transfer-Encoding"), Some("base64"));
    // One line of RFC 4648 base64, which a strict decoder (base64ct refuses whitespace) reads.
    let der = <base64ct::Base64 as base64ct::Encoding>::decode_vec(std::str::from_utf8(&cacerts.body).unwrap()).unwrap();
    assert_eq!(kb_ca::est::parse_certs_only(&der).unwrap(), vec![r.root.clone()]);
}

#[test]
fn the_dev_ca_speaks_https_too() {
    let r = rig();
    let (cert, key) = common::tls_identity();
    let cert = cert.to_pem();
    let tls = Server::start_tls(Arc::clone(&r.ca), "127.0.0.1:0".parse().unwrap(), &cert, &key).unwrap();
    let url = format!("https://localhost:{}", tls.addr().port());
    assert!(tls.url().starts_with("https://127.0.0.1:"));
    // Without the server's certificate as a trust anchor the handshake fails.
    assert_eq!(code(&HttpCaClient::new(&url).unwrap().est_cacerts().unwrap_err()), ErrorCode::CaUnreachable);
    let client = HttpCaClient::new(&url).unwrap().with_tls_roots(&cert);
    assert_eq!(client.est_cacerts().unwrap(), vec![r.root.clone()]);
    assert!(client.server_info().unwrap().development);
}

#[test]
fn revoked_on_the_operator_page_then_published_by_crl_and_ocsp() {
    use kb_crypto::HashAlgorithm;
    use kb_pki::ocsp::{CertId, check_response, request};
    use kb_pki::revocation::{Crl, RevocationReason, RevocationStatus, check_crl};
    let r = rig();
    let (key, cert) = r.user(30);
    let (key2, other) = r.user(30);
    // The CA knows certificates it issued or that were bound; a stranger's is refused.
    r.bound(&key, &cert);
    r.bound(&key2, &other);
    let serial = api::serial_of(&cert);
    let (_, stranger) = {
        let k = LocalSigner::new(PrivateKey::generate(Algorithm::Sm2).unwrap());
        let c = issue(
            &CertificateParams::leaf("CN=陌生人", KeyUsage::Sign, UnixTime::now(), 30),
            k.public_key(),
            Some(&r.root),
            &r.root_signer,
        )
        .unwrap();
        (k, c)
    };
    assert_eq!(r.ca.revoke(&api::serial_of(&stranger), RevocationReason::KeyCompromise).unwrap_err().status, 404);

    // Before: the CRL is empty and signed, OCSP says good.
    let now = UnixTime(r.clock_now());
    let crl = Crl::from_der(&r.get("/crl").body).unwrap();
    assert!(check_crl(&cert, &r.root, &crl, now).is_good());
    let ask = |c: &Certificate| {
        let nonce = kb_crypto::rng::random_array::<16>().unwrap();
        let req = request(&[CertId::new(c, &r.root, HashAlgorithm::Sm3)], Some(&nonce)).unwrap();
        let resp = r
            .client
            .exchange(
                Request {
                    method: "POST".into(),
                    target: "/ocsp".into(),
                    headers: vec![("Content-Type".into(), "application/ocsp-request".into())],
                    body: req,
                },
                Duration::ZERO,
            )
            .unwrap();
        assert_eq!((resp.status, resp.header("Content-Type")), (200, Some("application/ocsp-response")));
        check_response(c, &r.root, &resp.body, Some(&nonce), UnixTime(r.clock_now()))
    };
    assert!(ask(&cert).is_good());

    // The operator page lists the certificate with 吊销; revoking needs the key.
    let op = String::from_utf8(r.get("/op?key=op-key").body).unwrap();
    assert!(op.contains(&serial) && op.contains("吊销"), "{op}");
    assert_eq!(r.post_form("/op/revoke", &format!("key=wrong&serial={serial}&reason=keyCompromise")).status, 403);
    assert_eq!(r.post_form("/op/revoke", &format!("key=op-key&serial={serial}&reason=keyCompromise")).status, 200);
    // A revocation cannot be repeated (or re-dated).
    assert_eq!(r.post_form("/op/revoke", &format!("key=op-key&serial={serial}&reason=superseded")).status, 400);
    assert!(String::from_utf8(r.get("/op?key=op-key").body).unwrap().contains("已吊销"));

    // After: both sources say revoked with the reason; the other certificate stays good.
    let now = UnixTime(r.clock_now());
    let crl = Crl::from_der(&r.get("/crl").body).unwrap();
    assert!(matches!(
        check_crl(&cert, &r.root, &crl, now),
        RevocationStatus::Revoked { reason: Some(RevocationReason::KeyCompromise), .. }
    ));
    assert!(check_crl(&other, &r.root, &crl, now).is_good());
    let later = Crl::from_der(&r.get("/crl").body).unwrap();
    assert!(later.number().unwrap().len() >= crl.number().unwrap().len() && later.number() != crl.number(), "cRLNumber grows");
    assert!(matches!(ask(&cert), RevocationStatus::Revoked { reason: Some(RevocationReason::KeyCompromise), .. }));
    assert!(ask(&other).is_good());
    // The GET form (RFC 6960 A.1): URL-encoded base64 of the request.
    let req = request(&[CertId::new(&cert, &r.root, HashAlgorithm::Sha1)], None).unwrap();
    let b64 = api::b64(&req).replace('+', "%2B").replace('/', "%2F").replace('=', "%3D");
    let resp = r.get(&format!("/ocsp/{b64}"));
    assert!(matches!(check_response(&cert, &r.root, &resp.body, None, now), RevocationStatus::Revoked { .. }));
    // Garbage gets malformedRequest, not a crash; a day later the old CRL is stale.
    let bad = r
        .client
        .exchange(
            Request { method: "POST".into(), target: "/ocsp".into(), body: b"nonsense".to_vec(), ..Default::default() },
            Duration::ZERO,
        )
        .unwrap();
    assert_eq!(kb_pki::ocsp::OcspResponse::from_der(&bad.body).unwrap().status, kb_pki::ocsp::ResponseStatus::MalformedRequest);
    r.clock.advance(kb_devca::ca::CRL_VALIDITY_SECS + 60);
    assert!(matches!(check_crl(&other, &r.root, &crl, UnixTime(r.clock_now())), RevocationStatus::Unknown { .. }));
}

/// The desktop's embedded CA and `keybridge devca serve` may share one database file: a
/// write while the other process holds the lock waits for it (SQLite busy timeout)
/// instead of failing at once with "database is locked".
#[test]
fn a_locked_database_is_waited_for() {
    let r = rig();
    let other = rusqlite::Connection::open(r._dir.path().join("ca.sqlite")).unwrap();
    other.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let (started, wait_started) = std::sync::mpsc::channel();
    let ca = Arc::clone(&r.ca);
    let writer = std::thread::spawn(move || {
        started.send(()).unwrap();
        ca.challenge().map(|_| ()).map_err(|e| e.to_string())
    });
    wait_started.recv().unwrap();
    // Give the write time to hit the lock (if it is not there yet, the test proves less,
    // but cannot fail wrongly).
    std::thread::sleep(Duration::from_millis(300));
    other.execute_batch("COMMIT").unwrap();
    writer.join().unwrap().unwrap_or_else(|e| panic!("the write did not wait for the lock: {e}"));
}
