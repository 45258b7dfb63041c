//! The 证书续期 page against the embedded dev CA on loopback and real file-type keys: the
//! "phone" is HTTP requests to the dev CA's pages, the PIN is typed into the window's
//! dialog by a thread standing in for the user.

use super::*;
use crate::model::*;
use crate::prompter::PromptSink;
use crate::{DesktopOptions, EventSink};
use kb_ca::http::Request;
use kb_filekey::{CreateOptions, FileToken, KdfParams};
use kb_pki::Certificate;
use kb_pki::issue::{CertificateParams, issue};
use kb_pki::time::UnixTime;
use kb_token::Token;
use kb_types::{KeyUsage, Pin};
use std::path::Path;
use std::sync::Condvar;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::Instant;

const PIN: &str = "11112222";
const WAIT: Duration = Duration::from_secs(60);

/// Prompts go to a channel the "user" thread answers.
struct Prompts(Mutex<Sender<PromptRequest>>);

impl PromptSink for Prompts {
    fn open(&self, request: &PromptRequest) {
        let _ = self.0.lock().unwrap().send(request.clone());
    }
    fn close(&self, _id: u32) {}
    fn notify(&self, _message: &str) {}
}

/// Renewal events, waited for.
#[derive(Default)]
struct Events {
    renewal: Mutex<Vec<RenewalEvent>>,
    changed: Condvar,
}

impl Events {
    fn wait_for(&self, what: impl Fn(&RenewalEvent) -> bool) -> RenewalEvent {
        let deadline = Instant::now() + WAIT;
        let mut seen = self.renewal.lock().unwrap();
        loop {
            if let Some(e) = seen.iter().find(|e| what(e)) {
                return e.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no such renewal event; saw {seen:?}");
            seen = self.changed.wait_timeout(seen, left).unwrap().0;
        }
    }
}

impl EventSink for Events {
    fn media_changed(&self, _: &MediaChanged) {}
    fn expiry_notice(&self, _: &ExpiryNotice) {}
    fn log_export_progress(&self, _: &LogExportProgress) {}
    fn update_available(&self, _: &UpdateStatus) {}
    fn operation_status(&self, _: &OperationStatus) {}
    fn renewal_event(&self, event: &RenewalEvent) {
        self.renewal.lock().unwrap().push(event.clone());
        self.changed.notify_all();
    }
}

struct Rig {
    _dir: tempfile::TempDir,
    home: std::path::PathBuf,
    desktop: Arc<Desktop>,
    events: Arc<Events>,
    clock: Arc<kb_devca::ManualClock>,
    pins_typed: Arc<Mutex<u32>>,
}

fn paths(home: &Path) -> kb_service::settings::Paths {
    kb_service::settings::Paths::under(home)
}

/// A file key `name` in the home's key directory: container c1 with a signing
/// certificate from the home's demo CA (which the dev CA issues from) that ends in 20½ days.
fn make_key(home: &Path, name: &str, serial: &str) -> Certificate {
    let p = paths(home);
    let keys = p.default_file_key_dir();
    std::fs::create_dir_all(&keys).unwrap();
    let opts = CreateOptions { serial: Some(serial.into()), ..CreateOptions::weak_for_tests() };
    let mut t =
        FileToken::create(keys.join(format!("{name}.kbkey")), "续期测试", &Pin::new(PIN), &Pin::new("33334444"), opts).unwrap();
    let mut s = t.login(&Pin::new(PIN)).unwrap();
    s.create_container("c1").unwrap();
    let public = s.generate_key_pair("c1", KeyUsage::Sign, kb_types::Algorithm::Sm2).unwrap();
    let (root, signer, _) = kb_service::demo::demo_ca(&kb_service::demo::demo_ca_dir(&p)).unwrap();
    let now = UnixTime::now();
    let mut params = CertificateParams::leaf("C=CN,O=某某公司,CN=王五", KeyUsage::Sign, now.plus_days(-300), 1);
    // Half a day past 20 days, so the days left read 20 whenever the test looks.
    params.not_after = UnixTime(now.plus_days(20).0 + 12 * 3600);
    let cert = issue(&params, &public, Some(&root), &signer).unwrap();
    s.import_certificate("c1", KeyUsage::Sign, cert.der()).unwrap();
    cert
}

/// A desktop over a home holding the keys `keys` (name, serial), its CA the embedded
/// dev CA with a clock the test moves.
fn rig(keys: &[(&str, &str)]) -> (Rig, Vec<Certificate>) {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let certs = keys.iter().map(|(n, s)| make_key(&home, n, s)).collect();
    let (tx, rx): (Sender<PromptRequest>, Receiver<PromptRequest>) = channel();
    let events = Arc::new(Events::default());
    let opts = DesktopOptions {
        home: Some(home.clone()),
        create_demo: false,
        kdf: KdfParams::weak_for_tests(),
        file_logging: false,
        hardware: false,
        bridge: None,
        update_keys: Vec::new(),
        ble: None,
        phone_secrets: crate::phone::BackendChoice::File,
        autostart_dir: None,
    };
    let desktop = Desktop::open(opts, Arc::new(Prompts(Mutex::new(tx))), events.clone()).unwrap();
    let clock = Arc::new(kb_devca::ManualClock::new(UnixTime::now().0));
    let setup = CaSetup::embedded(&desktop.manager, &desktop.paths, clock.clone()).unwrap();
    assert!(desktop.renewal.set_ca(setup), "the CA was set up before the test's");
    // The user: types the PIN into every PIN dialog.
    let pins_typed = Arc::new(Mutex::new(0));
    let (weak, typed) = (Arc::downgrade(&desktop), pins_typed.clone());
    std::thread::spawn(move || {
        for req in rx {
            let Some(d) = weak.upgrade() else { return };
            assert!(matches!(req.body, PromptBody::Pin { .. }), "{req:?}");
            *typed.lock().unwrap() += 1;
            d.prompter().answer(req.id, PromptAnswer::Pin { pin: PIN.into() }).unwrap();
        }
    });
    (Rig { _dir: dir, home, desktop, events, clock, pins_typed }, certs)
}

impl Rig {
    fn dev_ca(&self) -> Arc<kb_devca::DevCa> {
        self.desktop.embedded_dev_ca().unwrap()
    }

    /// The phone: a POST to the dev CA's page; (status, body).
    fn phone_post(&self, target: &str, body: String) -> (u16, String) {
        let url = self.desktop.renewal_page().unwrap().ca.unwrap().url;
        let phone = HttpCaClient::new(&url).unwrap();
        let req = Request {
            method: "POST".into(),
            target: target.into(),
            headers: vec![("Content-Type".into(), "application/x-www-form-urlencoded".into())],
            body: body.into_bytes(),
        };
        let resp = phone.exchange(req, Duration::ZERO).unwrap();
        (resp.status, String::from_utf8(resp.body).unwrap())
    }

    fn only_cert(&self) -> RenewalCert {
        let page = self.desktop.renewal_page().unwrap();
        assert_eq!(page.state, RenewalPageState::Ready, "{page:?}");
        assert_eq!(page.certificates.len(), 1, "{page:?}");
        page.certificates.into_iter().next().unwrap()
    }

    fn key_file(&self, name: &str) -> std::path::PathBuf {
        paths(&self.home).default_file_key_dir().join(format!("{name}.kbkey"))
    }
}

fn token_of(qr_url: &str) -> &str {
    qr_url.split("token=").nth(1).unwrap()
}

#[test]
fn bind_apply_approve_and_install_from_the_window() {
    let (r, certs) = rig(&[("k", "KBF-DESK-0001")]);
    let old = &certs[0];
    let d = &r.desktop;

    let page = d.renewal_page().unwrap();
    let ca = page.ca.clone().unwrap();
    assert!(ca.development && ca.embedded && ca.loopback, "{ca:?}");
    assert!(ca.url.starts_with("http://127.0.0.1:"), "{ca:?}");
    assert!(ca.operator_url.as_deref().is_some_and(|u| u.contains("/op?key=")), "{ca:?}");
    assert_eq!(page.medium_serial.as_deref(), Some("KBF-DESK-0001"));
    let c = r.only_cert();
    assert_eq!((c.status, c.days_left, c.bound), (CertStatus::NearExpiry, 20, Some(false)));
    assert_eq!((c.renewal, c.can_install, c.subject_cn.as_str()), (RenewalProgress::None, false, "王五"));
    assert_eq!(c.serial, kb_ca::api::serial_of(old));

    // 获取二维码: the PIN proves the key; a 30-minute code on the dev CA.
    let b = d.renewal_bind().unwrap();
    assert_eq!(*r.pins_typed.lock().unwrap(), 1, "the PIN was asked in the window's dialog");
    assert_eq!(b.expires_in, 1800);
    assert!(b.qr_url.starts_with(&format!("{}/m/bind?token=", ca.url)), "{b:?}");
    assert!((b.expires_at_ms - kb_service::audit::now_ms() - 1_800_000).abs() < 60_000);
    assert_eq!(d.renewal_page().unwrap().binding, Some(b.clone()), "the page shows the pending code");

    // The phone confirms (确认绑定); the window learns it from the long-poll.
    let (status, home_page) = r.phone_post("/m/bind", format!("token={}&action=confirm", token_of(&b.qr_url)));
    assert_eq!(status, 200, "{home_page}");
    let bound = r.events.wait_for(|e| e.kind == RenewalEventKind::Bound);
    assert_eq!(bound.binding_id.as_deref(), Some(b.binding_id.as_str()));
    assert_eq!(bound.serials, std::slice::from_ref(&c.serial));
    assert_eq!(d.renewal_page().unwrap().binding, None, "the code is no longer shown");
    assert_eq!(r.only_cert().bound, Some(true));

    // Applied for (续期, 1 year), paid and approved at the dev CA.
    let k = home_page.split("k=").nth(1).unwrap().split("&amp;").next().unwrap();
    let dev = r.dev_ca();
    let app = dev.apply(k, &c.serial, RenewalKind::Renew, 1, None).unwrap();
    dev.pay(k, &app).unwrap();
    assert_eq!(r.only_cert().renewal, RenewalProgress::Applied);
    assert!(!r.only_cert().can_install);
    assert!(d.renewal_check().unwrap().is_empty(), "nothing decided yet");
    dev.decide(&app, true, "").unwrap();

    // The approval is noticed once.
    let notices = d.renewal_check().unwrap();
    assert_eq!(notices.len(), 1, "{notices:?}");
    assert_eq!((notices[0].kind, notices[0].subjects.as_slice()), (RenewalEventKind::Approved, ["王五".to_string()].as_slice()));
    r.events.wait_for(|e| e.kind == RenewalEventKind::Approved);
    assert!(d.renewal_check().unwrap().is_empty(), "noticed once");
    let c = r.only_cert();
    assert_eq!((c.renewal, c.kind, c.can_install), (RenewalProgress::Approved, Some(RenewalKindView::Renew), true));

    // 安装证书 with the PIN from the dialog: the same key, a later expiry, from the dev CA.
    let typed = *r.pins_typed.lock().unwrap();
    let done = d.renewal_install(&c.cert_ref).unwrap();
    assert!(*r.pins_typed.lock().unwrap() >= typed, "a PIN is asked or still cached");
    assert_eq!((done.kind, done.old_serial.as_str()), (RenewalKindView::Renew, c.serial.as_str()));
    assert_eq!(done.cert_ref, c.cert_ref);
    let mut t = FileToken::open(r.key_file("k")).unwrap();
    let der = t.containers().unwrap().into_iter().find(|x| x.name == "c1").unwrap().sign.unwrap().certificate.unwrap();
    let new = Certificate::from_der(&der).unwrap();
    assert_eq!(kb_ca::api::serial_of(&new), done.new_serial);
    assert_ne!(done.new_serial, done.old_serial);
    assert_eq!(new.public_key().unwrap(), old.public_key().unwrap(), "续期 keeps the key pair");
    assert_eq!(new.public_key().unwrap(), t.public_key("c1", KeyUsage::Sign).unwrap());
    assert!(new.not_after() > old.not_after(), "a later expiry");
    kb_pki::chain::verify_chain(&new, &[], &TrustStore::from_certs(vec![dev.root().clone()]), UnixTime::now()).unwrap();
    // The page now lists the new certificate, not yet up for renewal.
    let c = r.only_cert();
    assert_eq!((c.serial.as_str(), c.status), (done.new_serial.as_str(), CertStatus::Valid));

    // Issue 19: the details ask the dev CA (OCSP, named in the certificate): good; revoked
    // there, the next look at the details says so, with the reason.
    let details = d.cert_details(&done.cert_ref).unwrap();
    assert_eq!(details.revocation.state, crate::model::RevocationState::Good, "{:?}", details.revocation);
    dev.revoke(&done.new_serial, kb_pki::revocation::RevocationReason::KeyCompromise).unwrap();
    let details = d.cert_details(&done.cert_ref).unwrap();
    assert_eq!((details.revocation.state, details.revocation.code), (crate::model::RevocationState::Revoked, Some(3030)));
    assert!(details.revocation.text.contains("keyCompromise"), "{}", details.revocation.text);
}

#[test]
fn several_keys_plugged_in_block_renewal() {
    let (r, _) = rig(&[("a", "KBF-DESK-0002"), ("b", "KBF-DESK-0003")]);
    let d = &r.desktop;
    let page = d.renewal_page().unwrap();
    assert_eq!(page.state, RenewalPageState::MultipleMedia);
    let problem = page.problem.unwrap();
    assert_eq!((problem.code, problem.name.as_str()), (7015, "multiple_media_present"));
    assert!(problem.detail.contains("2 keys"), "{problem:?}");
    assert!(page.certificates.is_empty() && page.ca.is_some_and(|c| c.development));
    assert_eq!(d.renewal_bind().unwrap_err().name, "multiple_media_present");
    let any = CertRef { device: "file:KBF-DESK-0002".into(), container: "c1".into(), usage: Usage::Sign };
    assert_eq!(d.renewal_install(&any).unwrap_err().name, "multiple_media_present");
    assert_eq!(*r.pins_typed.lock().unwrap(), 0, "no PIN is asked while blocked");
    assert!(d.renewal_check().unwrap().is_empty());
}

#[test]
fn an_expired_binding_code_is_refused() {
    let (r, _) = rig(&[("k", "KBF-DESK-0004")]);
    let d = &r.desktop;
    let b = d.renewal_bind().unwrap();
    // 30 minutes pass unconfirmed: the window is told, the page stops showing the code.
    r.clock.advance(kb_ca::api::BINDING_TTL_SECS + 1);
    r.dev_ca().notify();
    let expired = r.events.wait_for(|e| e.kind == RenewalEventKind::Expired);
    assert_eq!(expired.binding_id.as_deref(), Some(b.binding_id.as_str()));
    // The phone can no longer confirm it.
    let (status, page) = r.phone_post("/m/bind", format!("token={}&action=confirm", token_of(&b.qr_url)));
    assert_eq!(status, 410, "{page}");
    assert_eq!(r.only_cert().bound, Some(false));
    // 重新获取: a new code works.
    let again = d.renewal_bind().unwrap();
    assert_ne!(again.binding_id, b.binding_id);
    let (status, page) = r.phone_post("/m/bind", format!("token={}&action=confirm", token_of(&again.qr_url)));
    assert_eq!(status, 200, "{page}");
    r.events.wait_for(|e| e.kind == RenewalEventKind::Bound && e.binding_id.as_deref() == Some(&again.binding_id));
}

#[test]
fn loopback_urls_are_recognised() {
    for (url, lo) in [
        ("http://127.0.0.1:8443", true),
        ("http://localhost/x", true),
        ("http://[::1]:9", true),
        ("https://ca.example.cn", false),
        ("https://10.0.0.1:8443/p", false),
    ] {
        assert_eq!(is_loopback_url(url), lo, "{url}");
    }
}
