//! Our EST client ([`HttpCaClient`]) against an independent EST server: the crates.io
//! crate `est-ca` 0.2.0 (RFC 7030 `/cacerts`, `/simpleenroll`, `/simplereenroll` as axum
//! 0.6 handlers, issuing with rcgen), which nobody here wrote.
//!
//! The server runs in-process on 127.0.0.1 behind a TLS front (OpenSSL, a server
//! certificate for `IP:127.0.0.1` that the client is told to trust), so the client's real
//! HTTPS path is used. The key pairs are generated on a KeyBridge medium — a file-type
//! key — and every PKCS#10 is signed there. rcgen cannot read SM2 keys, so the media's
//! other algorithms are used: ECDSA P-256 and RSA 2048.
//!
//! est-ca leaves the identity for `/simplereenroll` to the embedder (a `Principal` request
//! extension). Our client sends no credential there: the CSR's self-signature is its proof
//! of possession (docs/ca-api.md). [`renewal_identity`] is that embedder part; see its
//! comment for exactly what it checks. It uses only x509-parser and est-ca's own CMS
//! decoder, not KeyBridge code.
#![allow(clippy::unwrap_used, clippy::panic, clippy::expect_used)]

use axum::body::Body;
use axum::extract::State;
use axum::http::{Request, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use est_ca::auth::{AuthBackend, Principal};
use est_ca::ca::serial::InMemorySerialStore;
use est_ca::ca::{CertProfile, Issuer};
use est_ca::est::server::EstServer;
use kb_ca::{CaClient, HttpCaClient, Limits};
use kb_crypto::{PublicKey, SignatureScheme};
use kb_filekey::{CreateOptions, FileToken};
use kb_pki::chain::{TrustStore, verify_chain};
use kb_pki::time::UnixTime;
use kb_pki::{Certificate, Signer};
use kb_token::{Session, Token, TokenError};
use kb_types::{Algorithm, ErrorCode, HasErrorCode, KeyUsage, Pin};
use std::cell::RefCell;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use x509_parser::prelude::FromDer;

const USER: &str = "device-7";
const PASSWORD: &str = "bootstrap-secret";
const PIN: &str = "123456";

// ---------------------------------------------------------------- the est-ca server

/// HTTP Basic bootstrap credentials for `/simpleenroll`: one user, one password.
struct Bootstrap;

impl AuthBackend for Bootstrap {
    fn verify_bootstrap(&self, user: &str, pass: &str) -> Result<Principal, String> {
        if user == USER && pass == PASSWORD { Ok(Principal::new(user)) } else { Err("unknown bootstrap credentials".into()) }
    }
}

/// What this server has issued: SubjectPublicKeyInfo DER → the certificate's CN.
#[derive(Clone, Default)]
struct Issued(Arc<Mutex<HashMap<Vec<u8>, String>>>);

/// The embedder part est-ca asks for (a `Principal` on `/simplereenroll`), derived from
/// what our client sends there — the base64 PKCS#10 and nothing else:
///
/// 1. the body decodes (base64, whitespace ignored) and parses as a PKCS#10
///    (x509-parser);
/// 2. its self-signature verifies with its own public key (x509-parser's `verify`:
///    proof of possession of the private key);
/// 3. its SubjectPublicKeyInfo is, byte for byte, that of a certificate this server issued
///    earlier (RFC 7030 §4.2.2: re-enrolment keeps the key) — the Principal is that
///    certificate's CN.
///
/// Anything else reaches est-ca without a Principal, which it refuses with 401. On the way
/// out it records the key and CN of every certificate est-ca issues (decoded with est-ca's
/// own `cms::decode_degenerate_first`).
async fn renewal_identity(State(issued): State<Issued>, req: Request<Body>, next: Next<Body>) -> Response {
    let path = req.uri().path().to_string();
    let enrolment = path.ends_with("/simpleenroll") || path.ends_with("/simplereenroll");
    let req = if path.ends_with("/simplereenroll") {
        let (mut parts, body) = req.into_parts();
        let Ok(bytes) = hyper::body::to_bytes(body).await else {
            return StatusCode::BAD_REQUEST.into_response();
        };
        if let Some(cn) = proven_holder(&issued, &bytes) {
            parts.extensions.insert(Principal::new(cn));
        }
        Request::from_parts(parts, Body::from(bytes))
    } else {
        req
    };
    let resp = next.run(req).await;
    if !enrolment || resp.status() != StatusCode::OK {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let Ok(bytes) = hyper::body::to_bytes(body).await else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    if let Some((spki, cn)) =
        base64_decode(&bytes).and_then(|der| est_ca::cms::decode_degenerate_first(&der).ok()).and_then(|cert| key_and_cn(&cert))
    {
        issued.0.lock().unwrap().insert(spki, cn);
    }
    Response::from_parts(parts, axum::body::boxed(axum::body::Full::from(bytes)))
}

fn proven_holder(issued: &Issued, body: &[u8]) -> Option<String> {
    let der = base64_decode(body)?;
    let (_, csr) = x509_parser::certification_request::X509CertificationRequest::from_der(&der).ok()?;
    csr.verify_signature().ok()?;
    issued.0.lock().unwrap().get(csr.certification_request_info.subject_pki.raw).cloned()
}

fn key_and_cn(cert_der: &[u8]) -> Option<(Vec<u8>, String)> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).ok()?;
    let cn = cert.subject().iter_common_name().next()?.as_str().ok()?.to_string();
    Some((cert.public_key().raw.to_vec(), cn))
}

/// Standard base64 with whitespace ignored (RFC 8951 §3.2.1 asks receivers to tolerate it).
fn base64_decode(text: &[u8]) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let clean: Vec<u8> = text.iter().copied().filter(|b| !b.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD.decode(clean).ok()
}

/// est-ca's router on a background runtime, plain HTTP on 127.0.0.1.
fn start_est_ca(issuer: Issuer) -> SocketAddr {
    let issued = Issued::default();
    let app = EstServer::new(issuer, Arc::new(Bootstrap))
        .router()
        .layer(axum::middleware::from_fn_with_state(issued, renewal_identity));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move { axum::Server::from_tcp(listener).unwrap().serve(app.into_make_service()).await }).unwrap();
    });
    addr
}

// ---------------------------------------------------------------- TLS in front of it

/// A self-signed P-256 server certificate for `IP:127.0.0.1` (PEM) and its key.
fn tls_identity() -> (openssl::x509::X509, openssl::pkey::PKey<openssl::pkey::Private>) {
    use openssl::x509::extension::{BasicConstraints, SubjectAlternativeName};
    let group = openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1).unwrap();
    let key = openssl::pkey::PKey::from_ec_key(openssl::ec::EcKey::generate(&group).unwrap()).unwrap();
    let mut name = openssl::x509::X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", "est-ca interop TLS").unwrap();
    let name = name.build();
    let mut b = openssl::x509::X509::builder().unwrap();
    b.set_version(2).unwrap();
    b.set_serial_number(&openssl::bn::BigNum::from_u32(1).unwrap().to_asn1_integer().unwrap()).unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(&name).unwrap();
    b.set_pubkey(&key).unwrap();
    b.set_not_before(&openssl::asn1::Asn1Time::days_from_now(0).unwrap()).unwrap();
    b.set_not_after(&openssl::asn1::Asn1Time::days_from_now(2).unwrap()).unwrap();
    b.append_extension(BasicConstraints::new().critical().build().unwrap()).unwrap();
    let san = SubjectAlternativeName::new().ip("127.0.0.1").build(&b.x509v3_context(None, None)).unwrap();
    b.append_extension(san).unwrap();
    b.sign(&key, openssl::hash::MessageDigest::sha256()).unwrap();
    (b.build(), key)
}

/// Terminate TLS on 127.0.0.1 and relay each request (one per connection, as our client
/// sends them) to `backend`, the answer back until the backend closes. Returns the URL
/// and the server certificate (PEM) to trust.
fn tls_front(backend: SocketAddr) -> (String, String) {
    let (cert, key) = tls_identity();
    let mut b = openssl::ssl::SslAcceptor::mozilla_intermediate_v5(openssl::ssl::SslMethod::tls_server()).unwrap();
    b.set_private_key(&key).unwrap();
    b.set_certificate(&cert).unwrap();
    let acceptor = Arc::new(b.build());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("https://127.0.0.1:{}", listener.local_addr().unwrap().port());
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            let acceptor = acceptor.clone();
            std::thread::spawn(move || relay(&acceptor, tcp, backend));
        }
    });
    (url, String::from_utf8(cert.to_pem().unwrap()).unwrap())
}

fn relay(acceptor: &openssl::ssl::SslAcceptor, tcp: TcpStream, backend: SocketAddr) -> std::io::Result<()> {
    // Generous: only a hang ends a relay this way.
    tcp.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut tls = acceptor.accept(tcp).map_err(|e| std::io::Error::other(e.to_string()))?;
    let request = read_request(&mut tls)?;
    let mut up = TcpStream::connect(backend)?;
    up.set_read_timeout(Some(Duration::from_secs(60)))?;
    up.write_all(&request)?;
    let mut answer = Vec::new();
    up.read_to_end(&mut answer)?;
    tls.write_all(&answer)?;
    let _ = tls.shutdown();
    Ok(())
}

/// The raw bytes of one request: its head and `Content-Length` bytes of body.
fn read_request(r: &mut impl Read) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        if let Ok(httparse::Status::Complete(head)) = req.parse(&buf) {
            let len = req
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("Content-Length"))
                .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if buf.len() >= head + len {
                return Ok(buf);
            }
        }
        let n = r.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

// ---------------------------------------------------------------- the medium

/// A `kb_pki::Signer` over a slot of an open session: the private key stays on the
/// medium, which signs each digest.
struct MediumSigner<'s, 'a> {
    session: RefCell<&'s mut (dyn Session + 'a)>,
    container: &'static str,
    public: PublicKey,
    scheme: SignatureScheme,
}

impl Signer for MediumSigner<'_, '_> {
    fn public_key(&self) -> &PublicKey {
        &self.public
    }
    fn scheme(&self) -> &SignatureScheme {
        &self.scheme
    }
    fn sign_digest(&self, digest: &[u8]) -> kb_pki::Result<Vec<u8>> {
        let mut s = self.session.borrow_mut();
        s.sign_digest(self.container, KeyUsage::Sign, &self.scheme, digest).map_err(|e| match e {
            TokenError::Crypto(c) => kb_pki::PkiError::Crypto(c),
            TokenError::Pki(p) => p,
            other => kb_pki::PkiError::CsrInvalid(format!("the medium did not sign: {other}")),
        })
    }
}

/// A PKCS#10 for the container's signing key, signed on the medium.
fn csr_on_medium(session: &mut dyn Session, container: &'static str, public: &PublicKey, subject: &str) -> Vec<u8> {
    let scheme = SignatureScheme::default_for(public.algorithm());
    let signer = MediumSigner { session: RefCell::new(session), container, public: public.clone(), scheme };
    kb_pki::csr::build(subject, &signer, Vec::new()).unwrap()
}

// ---------------------------------------------------------------- checks

/// The issued certificate: the medium's key, CN = the principal, chains to est-ca's CA by
/// our verifier and by `openssl verify`.
fn check_issued(issued: &[Certificate], ca: &Certificate, key: &PublicKey, dir: &std::path::Path) -> Certificate {
    assert_eq!(issued.len(), 1, "est-ca answers with the leaf only");
    let leaf = issued[0].clone();
    assert_eq!(&leaf.public_key().unwrap(), key, "the certificate is for the medium's key");
    assert_eq!(leaf.subject(), format!("CN={USER}"), "est-ca names the principal");
    verify_chain(&leaf, &[], &TrustStore::from_certs([ca.clone()]), UnixTime::now()).unwrap();
    let (ca_pem, leaf_pem) = (dir.join("ca.pem"), dir.join("leaf.pem"));
    std::fs::write(&ca_pem, ca.to_pem()).unwrap();
    std::fs::write(&leaf_pem, leaf.to_pem()).unwrap();
    let out = std::process::Command::new("openssl")
        .arg("verify")
        .arg("-CAfile")
        .arg(&ca_pem)
        .arg(&leaf_pem)
        .output()
        .expect("the openssl CLI (installer/bootstrap.sh installs it)");
    assert!(
        out.status.success(),
        "openssl verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    leaf
}

fn refused(r: kb_ca::Result<Vec<Certificate>>) -> kb_ca::CaError {
    match r {
        Ok(_) => panic!("est-ca issued a certificate it should have refused"),
        Err(e) => e,
    }
}

// ---------------------------------------------------------------- the test

#[test]
fn our_est_client_enrols_and_reenrols_with_est_ca_over_tls() {
    let issuer = Issuer::generate_self_signed(
        "est-ca interop CA",
        CertProfile::client_auth_for_days(30),
        Arc::new(InMemorySerialStore::new()),
    )
    .unwrap();
    let ca_der = issuer.ca_cert_der().to_vec();
    let backend = start_est_ca(issuer);
    let (url, tls_root) = tls_front(backend);
    let limits = Limits { connect: Duration::from_secs(60), exchange: Duration::from_secs(60), ..Limits::default() };
    let client = HttpCaClient::new(&url).unwrap().with_tls_roots(&tls_root).with_limits(limits);

    // /cacerts: exactly the CA est-ca signs with.
    let cacerts = client.est_cacerts().unwrap();
    assert_eq!(cacerts.iter().map(|c| c.der().to_vec()).collect::<Vec<_>>(), vec![ca_der]);
    let ca = cacerts[0].clone();

    let dir = tempfile::tempdir().unwrap();
    let pin = Pin::new(PIN);
    let mut medium = FileToken::create(
        dir.path().join("est.kbkey"),
        "EST interop",
        &pin,
        &Pin::new("12345678"),
        CreateOptions::weak_for_tests(),
    )
    .unwrap();
    let mut session = medium.login(&pin).unwrap();

    let mut certified = Vec::new();
    for (container, algorithm) in [("p256", Algorithm::EcdsaP256), ("rsa", Algorithm::Rsa { bits: 2048 })] {
        session.create_container(container).unwrap();
        let key = session.generate_key_pair(container, KeyUsage::Sign, algorithm).unwrap();

        // /simpleenroll with HTTP Basic, a CSR signed on the medium.
        let csr = csr_on_medium(session.as_mut(), container, &key, "CN=requested");
        let first = client.est_simpleenroll(&csr, Some((USER, PASSWORD))).unwrap();
        let first = check_issued(&first, &ca, &key, dir.path());
        // The medium takes it (it checks the certificate matches its key).
        session.import_certificate(container, KeyUsage::Sign, first.der()).unwrap();

        // /simplereenroll: the same public key (RFC 7030 §4.2.2), a new CSR.
        let csr = csr_on_medium(session.as_mut(), container, &key, &format!("CN={USER}"));
        let renewed = client.est_simplereenroll(&csr).unwrap();
        let renewed = check_issued(&renewed, &ca, &key, dir.path());
        assert_ne!(renewed.serial_bytes(), first.serial_bytes(), "{algorithm}: a new certificate");
        session.import_certificate(container, KeyUsage::Sign, renewed.der()).unwrap();
        certified.push((container, key));
    }

    // Refusals become our stable code, enrolment_refused (7009).
    session.create_container("other").unwrap();
    let other = session.generate_key_pair("other", KeyUsage::Sign, Algorithm::EcdsaP256).unwrap();
    let csr = csr_on_medium(session.as_mut(), "other", &other, "CN=x");
    // A wrong Basic password: est-ca's AuthBackend refuses (403).
    let e = refused(client.est_simpleenroll(&csr, Some((USER, "wrong"))));
    assert_eq!(e.code(), ErrorCode::EnrolmentRefused, "{e}");
    assert!(e.to_string().contains("403"), "{e}");
    // No credentials at all (401).
    let e = refused(client.est_simpleenroll(&csr, None));
    assert_eq!(e.code(), ErrorCode::EnrolmentRefused, "{e}");
    assert!(e.to_string().contains("401"), "{e}");
    // Re-enrolling a key est-ca never certified: no Principal, 401.
    let e = refused(client.est_simplereenroll(&csr));
    assert_eq!(e.code(), ErrorCode::EnrolmentRefused, "{e}");
    assert!(e.to_string().contains("401"), "{e}");
    // A CSR whose signature does not verify (one byte of the signature flipped): no proof
    // of possession, 401, even though the key is a certified one.
    let (container, key) = &certified[0];
    let mut forged = csr_on_medium(session.as_mut(), container, key, "CN=y");
    let last = forged.len() - 1;
    forged[last] ^= 0x01;
    let e = refused(client.est_simplereenroll(&forged));
    assert_eq!(e.code(), ErrorCode::EnrolmentRefused, "{e}");
    assert!(e.to_string().contains("401"), "{e}");
}
