//! The revocation checker against a CA on loopback: OCSP from the certificate's AIA, its
//! CRL distribution point, the CRL folder, CRLs carried in a signature, the caches, and
//! every way of not knowing (responder down, garbage, silent, stale) — each with its code.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kb_ca::http::{Response, read_request, write_response};
use kb_pki::issue::{CertKind, CertificateParams, TestCa, issue, revocation_pointers};
use kb_pki::ocsp::CertStatus;
use kb_pki::revocation::{CrlEntry, RevocationReason, RevocationStatus, UnknownReason, issue_crl};
use kb_pki::time::UnixTime;
use kb_pki::{Certificate, LocalSigner, Signer};
use kb_service::revocation::{RevocationChecker, RevocationConfig, RevocationState, summary_of, text};
use kb_service::settings::RevocationCheck;
use kb_types::{Algorithm, ErrorCode, KeyUsage};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How the test CA's server answers.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    /// Real answers: OCSP and the CRL.
    Serve,
    /// OCSP refused with HTTP 503; the CRL still served.
    OcspDown,
    /// 200 with bytes that are neither.
    Garbage,
    /// Accepts and never answers.
    Silent,
}

struct Ca {
    root: Certificate,
    signer: LocalSigner,
    revoked: Mutex<Vec<CrlEntry>>,
    mode: Mutex<Mode>,
    /// CRL validity from "now": negative makes a stale CRL.
    crl_next_update: Mutex<i64>,
    /// Seconds added to the server's clock (time passing on both sides).
    clock_offset: Mutex<i64>,
    requests: AtomicUsize,
}

struct Peer {
    ca: Arc<Ca>,
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Peer {
    fn start(alg: Algorithm) -> Peer {
        let test_ca = TestCa::new(alg, "C=CN,O=Revocation Test,CN=Test Root").unwrap();
        let ca = Arc::new(Ca {
            root: test_ca.cert.clone(),
            signer: test_ca.signer,
            revoked: Mutex::new(Vec::new()),
            mode: Mutex::new(Mode::Serve),
            crl_next_update: Mutex::new(86_400),
            clock_offset: Mutex::new(0),
            requests: AtomicUsize::new(0),
        });
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s) = (Arc::clone(&ca), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            let mut held = Vec::new();
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut conn) = conn else { continue };
                c.requests.fetch_add(1, Ordering::SeqCst);
                let mode = *c.mode.lock().unwrap();
                if mode == Mode::Silent {
                    held.push(conn);
                    continue;
                }
                let Ok(req) = read_request(&mut conn, 1 << 16) else { continue };
                let resp = c.answer(mode, &req);
                let _ = write_response(&mut conn, &resp);
            }
        });
        Peer { ca, addr, stop, thread: Some(thread) }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// A leaf whose AIA and CRL DP name this server (either may be left out).
    fn leaf(&self, ocsp: bool, crl: bool) -> Certificate {
        let key = LocalSigner::new(kb_crypto::PrivateKey::generate(Algorithm::Sm2).unwrap());
        let mut p =
            CertificateParams::leaf("C=CN,O=某某建设集团有限公司,CN=张三", KeyUsage::Sign, UnixTime::now().plus_days(-1), 30);
        let (c, o) = (self.url("/crl"), self.url("/ocsp"));
        p.extra_extensions = revocation_pointers(crl.then_some(c.as_str()), ocsp.then_some(o.as_str())).unwrap();
        issue(&p, key.public_key(), Some(&self.ca.root), &self.ca.signer).unwrap()
    }

    fn revoke(&self, cert: &Certificate, reason: RevocationReason) {
        self.ca.revoked.lock().unwrap().push(CrlEntry {
            serial: cert.serial_bytes().to_vec(),
            at: UnixTime::now().plus_days(0),
            reason: Some(reason),
        });
    }

    fn set(&self, mode: Mode) {
        *self.ca.mode.lock().unwrap() = mode;
    }

    fn requests(&self) -> usize {
        self.ca.requests.load(Ordering::SeqCst)
    }
}

impl Ca {
    fn crl(&self) -> kb_pki::revocation::Crl {
        let now = UnixTime::now();
        let next = *self.crl_next_update.lock().unwrap();
        let this = if next < 0 { UnixTime(now.0 + next - 3600) } else { now };
        issue_crl(&self.root, &self.signer, &self.revoked.lock().unwrap(), this, UnixTime(now.0 + next), 1).unwrap()
    }

    fn answer(&self, mode: Mode, req: &kb_ca::http::Request) -> Response {
        match (mode, req.path()) {
            (Mode::Garbage, _) => Response::new(200, "application/octet-stream", b"\x30\x03\x02\x01".to_vec()),
            (Mode::OcspDown, "/ocsp") => Response::new(503, "text/plain", "down"),
            (_, "/crl") => Response::new(200, "application/pkix-crl", self.crl().der().to_vec()),
            (_, "/ocsp") => {
                let revoked = self.revoked.lock().unwrap().clone();
                let lookup = |id: &kb_pki::ocsp::CertId| {
                    Some(match revoked.iter().find(|e| e.serial == id.serial) {
                        Some(e) => CertStatus::Revoked { at: e.at, reason: e.reason },
                        None => CertStatus::Good,
                    })
                };
                let now = UnixTime(UnixTime::now().0 + *self.clock_offset.lock().unwrap());
                let der =
                    kb_pki::ocsp::respond(&self.root, &self.signer, &req.body, now, UnixTime(now.0 + 3600), &lookup).unwrap();
                Response::new(200, "application/ocsp-response", der)
            }
            _ => Response::new(404, "text/plain", "no"),
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn checker(mode: RevocationCheck, crl_dir: Option<&std::path::Path>, cache: Option<&std::path::Path>) -> RevocationChecker {
    RevocationChecker::new(RevocationConfig {
        mode,
        crl_dir: crl_dir.map(|p| p.to_path_buf()),
        cache_dir: cache.map(|p| p.to_path_buf()),
        // Generous: only a hang should ever reach these.
        fetch_timeout: Duration::from_secs(30),
        budget: Duration::from_secs(60),
        ..RevocationConfig::none()
    })
}

fn unknown_why(s: &RevocationStatus) -> &UnknownReason {
    match s {
        RevocationStatus::Unknown { why } => why,
        other => panic!("expected unknown, got {other:?}"),
    }
}

#[test]
fn ocsp_from_the_certificate_says_good_then_revoked_with_date_and_reason() {
    for alg in [Algorithm::Sm2, Algorithm::EcdsaP256] {
        let peer = Peer::start(alg);
        let leaf = peer.leaf(true, false);
        let now = UnixTime::now();
        let s = checker(RevocationCheck::Online, None, None).check(&leaf, &peer.ca.root, &[], now);
        assert!(s.is_good(), "{alg:?}: {s:?}");
        assert!(matches!(s, RevocationStatus::Good { source: kb_pki::revocation::RevocationSource::Ocsp { .. }, .. }));
        peer.revoke(&leaf, RevocationReason::KeyCompromise);
        // A new checker (the first one remembers "good" until the answer's nextUpdate).
        let s = checker(RevocationCheck::Online, None, None).check(&leaf, &peer.ca.root, &[], now);
        let RevocationStatus::Revoked { reason, .. } = &s else { panic!("{alg:?}: {s:?}") };
        assert_eq!(*reason, Some(RevocationReason::KeyCompromise));
        let summary = summary_of(&s);
        assert_eq!((summary.status, summary.code), (RevocationState::Revoked, Some(ErrorCode::CertificateRevoked.number())));
        assert!(
            text(&summary, kb_types::Lang::ZhCn).contains("已吊销")
                && text(&summary, kb_types::Lang::En).contains("keyCompromise")
        );
    }
}

#[test]
fn a_good_answer_is_cached_until_its_next_update_and_revoked_is_final() {
    let peer = Peer::start(Algorithm::Sm2);
    let leaf = peer.leaf(true, false);
    let c = checker(RevocationCheck::Online, None, None);
    let now = UnixTime::now();
    assert!(c.check(&leaf, &peer.ca.root, &[], now).is_good());
    let asked = peer.requests();
    assert!(c.check(&leaf, &peer.ca.root, &[], now).is_good());
    assert_eq!(peer.requests(), asked, "answered from the cache");
    // After the answer's nextUpdate (an hour), it is asked again.
    peer.revoke(&leaf, RevocationReason::Superseded);
    let later = UnixTime(now.0 + 3601);
    *peer.ca.clock_offset.lock().unwrap() = 3601;
    assert!(matches!(c.check(&leaf, &peer.ca.root, &[], later), RevocationStatus::Revoked { .. }));
    assert_eq!(peer.requests(), asked + 1);
    peer.set(Mode::Silent);
    assert!(matches!(c.check(&leaf, &peer.ca.root, &[], later), RevocationStatus::Revoked { .. }), "revoked stays revoked");
}

#[test]
fn a_fresh_check_asks_again_past_the_cache() {
    let peer = Peer::start(Algorithm::Sm2);
    let leaf = peer.leaf(true, false);
    let c = checker(RevocationCheck::Online, None, None);
    let now = UnixTime::now();
    assert!(c.check(&leaf, &peer.ca.root, &[], now).is_good());
    peer.revoke(&leaf, RevocationReason::KeyCompromise);
    assert!(c.check(&leaf, &peer.ca.root, &[], now).is_good(), "the cached answer, until its nextUpdate");
    assert!(matches!(c.check_fresh(&leaf, &peer.ca.root, &[], now), RevocationStatus::Revoked { .. }));
    // The fresh answer is cached for everyone.
    assert!(matches!(c.check(&leaf, &peer.ca.root, &[], now), RevocationStatus::Revoked { .. }));
}

#[test]
fn the_crl_distribution_point_is_used_when_ocsp_is_down_and_cached_on_disk() {
    let peer = Peer::start(Algorithm::Sm2);
    let leaf = peer.leaf(true, true);
    let other = peer.leaf(true, true);
    peer.revoke(&leaf, RevocationReason::CessationOfOperation);
    peer.set(Mode::OcspDown);
    let cache = tempfile::tempdir().unwrap();
    let now = UnixTime::now();
    let c = checker(RevocationCheck::Online, None, Some(cache.path()));
    let s = c.check(&leaf, &peer.ca.root, &[], now);
    assert!(matches!(&s, RevocationStatus::Revoked { source: kb_pki::revocation::RevocationSource::Crl { .. }, .. }), "{s:?}");
    assert!(c.check(&other, &peer.ca.root, &[], now).is_good());
    assert_eq!(std::fs::read_dir(cache.path()).unwrap().count(), 1, "one CRL file cached");
    // A new process, the CRL no longer reachable, answers from the disk cache.
    peer.set(Mode::OcspDown);
    let fresh = checker(RevocationCheck::Online, None, Some(cache.path()));
    let before = peer.requests();
    let s = fresh.check(&other, &peer.ca.root, &[], now);
    assert!(s.is_good(), "{s:?}");
    // Only the OCSP responder was asked: the CRL came from disk.
    assert_eq!(peer.requests(), before + 1);
}

#[test]
fn no_answer_is_never_good_and_says_why_with_its_code() {
    let peer = Peer::start(Algorithm::Sm2);
    let leaf = peer.leaf(true, true);
    let now = UnixTime::now();
    // Garbage from both.
    peer.set(Mode::Garbage);
    let s = checker(RevocationCheck::Online, None, None).check(&leaf, &peer.ca.root, &[], now);
    assert!(matches!(unknown_why(&s), UnknownReason::Malformed { .. }), "{s:?}");
    assert_eq!(s.error_code(), Some(ErrorCode::RevocationUnknown));
    // A server that accepts and never answers: unknown (offline) when the fetch times out.
    peer.set(Mode::Silent);
    let quick = RevocationChecker::new(RevocationConfig {
        mode: RevocationCheck::Online,
        fetch_timeout: Duration::from_millis(300),
        budget: Duration::from_millis(600),
        ..RevocationConfig::none()
    });
    let s = quick.check(&leaf, &peer.ca.root, &[], now);
    assert!(matches!(unknown_why(&s), UnknownReason::Offline { .. }), "{s:?}");
    // The failure is remembered: asking again does not reach the server.
    let asked = peer.requests();
    let s = quick.check(&leaf, &peer.ca.root, &[], now);
    assert!(matches!(unknown_why(&s), UnknownReason::Offline { .. }), "{s:?}");
    assert_eq!(peer.requests(), asked);
    // Nobody listening at all.
    let addr = peer.addr;
    drop(peer);
    let peer = Peer::start(Algorithm::Sm2);
    let mut p = CertificateParams::leaf("CN=x", KeyUsage::Sign, UnixTime::now().plus_days(-1), 30);
    let gone = format!("http://{addr}/ocsp");
    p.extra_extensions = revocation_pointers(None, Some(&gone)).unwrap();
    let key = LocalSigner::new(kb_crypto::PrivateKey::generate(Algorithm::Sm2).unwrap());
    let orphan = issue(&p, key.public_key(), Some(&peer.ca.root), &peer.ca.signer).unwrap();
    let s = checker(RevocationCheck::Online, None, None).check(&orphan, &peer.ca.root, &[], now);
    assert!(matches!(unknown_why(&s), UnknownReason::Offline { .. }), "{s:?}");
    // No pointers at all.
    let bare = TestCa::new(Algorithm::Sm2, "CN=Bare").unwrap();
    let leaf = bare.leaf("CN=y", key.public_key(), KeyUsage::Sign).unwrap();
    let s = checker(RevocationCheck::Online, None, None).check(&leaf, &bare.cert, &[], now);
    assert_eq!(unknown_why(&s), &UnknownReason::NoSource);
}

#[test]
fn offline_mode_uses_the_crl_folder_and_never_fetches() {
    let peer = Peer::start(Algorithm::Sm2);
    let leaf = peer.leaf(true, true);
    let kept = peer.leaf(true, true);
    peer.revoke(&leaf, RevocationReason::AffiliationChanged);
    let folder = tempfile::tempdir().unwrap();
    let now = UnixTime::now();
    let c = checker(RevocationCheck::Offline, Some(folder.path()), None);
    // Nothing in the folder yet: unknown (offline), and the server is never asked.
    let s = c.check(&leaf, &peer.ca.root, &[], now);
    assert!(matches!(unknown_why(&s), UnknownReason::Offline { .. }), "{s:?}");
    assert_eq!(peer.requests(), 0);
    // IT drops the CRL (PEM) and a file that is not one.
    std::fs::write(folder.path().join("ca.crl"), peer.ca.crl().to_pem()).unwrap();
    std::fs::write(folder.path().join("readme.txt"), "not a CRL").unwrap();
    assert!(matches!(c.check(&leaf, &peer.ca.root, &[], now), RevocationStatus::Revoked { .. }));
    assert!(c.check(&kept, &peer.ca.root, &[], now).is_good());
    assert_eq!(peer.requests(), 0);
    // Off: not checked at all.
    let s = checker(RevocationCheck::Off, Some(folder.path()), None).check(&leaf, &peer.ca.root, &[], now);
    assert!(matches!(unknown_why(&s), UnknownReason::Unsupported { .. }), "{s:?}");
}

#[test]
fn carried_crls_count_and_a_stale_one_is_unknown() {
    let peer = Peer::start(Algorithm::Sm2);
    let leaf = peer.leaf(false, false);
    peer.revoke(&leaf, RevocationReason::KeyCompromise);
    let now = UnixTime::now();
    let c = checker(RevocationCheck::Online, None, None);
    assert!(matches!(c.check(&leaf, &peer.ca.root, &[peer.ca.crl()], now), RevocationStatus::Revoked { .. }));
    *peer.ca.crl_next_update.lock().unwrap() = -60;
    let stale = peer.ca.crl();
    let s = c.check(&leaf, &peer.ca.root, &[stale], now);
    assert!(matches!(unknown_why(&s), UnknownReason::Stale { .. }), "{s:?}");
    // A CRL signed by another CA for the same name is not believed.
    let impostor = TestCa::new(Algorithm::Sm2, "C=CN,O=Revocation Test,CN=Test Root").unwrap();
    let forged = issue_crl(&impostor.cert, &impostor.signer, &[], now, UnixTime(now.0 + 3600), 9).unwrap();
    let s = c.check(&leaf, &peer.ca.root, &[forged], now);
    assert!(matches!(unknown_why(&s), UnknownReason::BadSignature { .. }), "{s:?}");
}

#[test]
fn the_summary_is_not_checked_without_a_trusted_chain() {
    let peer = Peer::start(Algorithm::Sm2);
    let leaf = peer.leaf(true, false);
    let c = checker(RevocationCheck::Online, None, None);
    let now = UnixTime::now();
    let nobody = kb_pki::chain::TrustStore::new();
    let s = c.summary(&leaf, &[], &nobody, &[], now);
    assert_eq!(s.status, RevocationState::NotChecked);
    assert_eq!(peer.requests(), 0, "an untrusted certificate's URLs are never fetched");
    let trusted = kb_pki::chain::TrustStore::from_certs([peer.ca.root.clone()]);
    assert_eq!(c.summary(&leaf, &[], &trusted, &[], now).status, RevocationState::Good);
    assert_eq!(c.summary(&peer.ca.root, &[], &trusted, &[], now).status, RevocationState::NotChecked);
    let _ = CertKind::Root { path_len: None };
}
