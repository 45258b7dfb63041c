//! `keybridge renew …` and `keybridge devca …` through the real binary: the dev CA runs
//! as `keybridge devca serve` on a free loopback port; the "phone" is HTTP requests to
//! its pages; the key is a file key whose certificate (from the home's demo CA, which the
//! dev CA signs with) expires in 20 days.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kb_ca::HttpCaClient;
use kb_ca::http::Request;
use kb_filekey::{CreateOptions, FileToken};
use kb_pki::issue::{CertificateParams, issue};
use kb_pki::time::UnixTime;
use kb_pki::{Certificate, LocalSigner};
use kb_token::Token;
use kb_types::{KeyUsage, Pin};
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const PIN: &str = "11112222";

fn keybridge(home: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_keybridge"));
    c.arg("--home").arg(home).args(["--pin-stdin", "--weak-kdf-for-tests"]).args(args).env_remove("KEYBRIDGE_HOME");
    c.env_remove("KEYBRIDGE_CA_URL");
    c
}

fn run(home: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = keybridge(home, args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn json(out: &Output) -> Value {
    assert!(out.status.success(), "failed: {}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

struct DevCa(Child);
impl Drop for DevCa {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn post(client: &HttpCaClient, target: &str, content_type: &str, body: Vec<u8>) -> String {
    let req = Request {
        method: "POST".into(),
        target: target.into(),
        headers: vec![("Content-Type".into(), content_type.into())],
        body,
    };
    let resp = client.exchange(req, Duration::ZERO).unwrap();
    let text = String::from_utf8(resp.body).unwrap();
    assert_eq!(resp.status, 200, "{target}: {text}");
    text
}

fn between<'a>(text: &'a str, start: &str, end: &str) -> &'a str {
    text.split(start).nth(1).unwrap().split(end).next().unwrap()
}

/// A KeyBridge home with the dev CA running (`keybridge devca serve`) over its demo CA.
struct Rig {
    _dir: tempfile::TempDir,
    home: PathBuf,
    url: String,
    operator: String,
    ca_dir: PathBuf,
    root_pem: String,
    root: Certificate,
    root_key: kb_crypto::PrivateKey,
    _ca: DevCa,
}

impl Rig {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let home: PathBuf = dir.path().join("home");
        let ready = dir.path().join("ready.json");
        let ca = DevCa(
            keybridge(&home, &["devca", "serve", "--port", "0", "--ready-file", ready.to_str().unwrap()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        while !ready.exists() {
            assert!(Instant::now() < deadline, "devca serve did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        let info: Value = serde_json::from_slice(&std::fs::read(&ready).unwrap()).unwrap();
        let ca_dir = home.join("data").join("demo-ca");
        let root = Certificate::from_pem(&std::fs::read_to_string(ca_dir.join("root.pem")).unwrap()).unwrap();
        let root_key = kb_crypto::PrivateKey::from_pkcs8_pem(&std::fs::read_to_string(ca_dir.join("root.key")).unwrap()).unwrap();
        Rig {
            url: info["url"].as_str().unwrap().to_string(),
            operator: info["operator_url"].as_str().unwrap().to_string(),
            root_pem: ca_dir.join("root.pem").display().to_string(),
            home,
            ca_dir,
            root,
            root_key,
            _dir: dir,
            _ca: ca,
        }
    }

    fn key_file(&self) -> PathBuf {
        self.home.join("data").join("keys").join("k.kbkey")
    }

    /// The one file key, new: container c1 with a certificate expiring in 20 days.
    fn fresh_key(&self, serial: &str) -> Certificate {
        let keys = self.home.join("data").join("keys");
        let _ = std::fs::remove_dir_all(&keys);
        std::fs::create_dir_all(&keys).unwrap();
        let opts = CreateOptions { serial: Some(serial.into()), ..CreateOptions::weak_for_tests() };
        let mut t = FileToken::create(self.key_file(), "续期测试", &Pin::new(PIN), &Pin::new("33334444"), opts).unwrap();
        let mut s = t.login(&Pin::new(PIN)).unwrap();
        s.create_container("c1").unwrap();
        let public = s.generate_key_pair("c1", KeyUsage::Sign, kb_types::Algorithm::Sm2).unwrap();
        let now = UnixTime::now();
        let mut p = CertificateParams::leaf("C=CN,O=某某公司,CN=王五", KeyUsage::Sign, now.plus_days(-300), 1);
        p.not_after = now.plus_days(20);
        let cert = issue(&p, &public, Some(&self.root), &LocalSigner::new(self.root_key.clone())).unwrap();
        s.import_certificate("c1", KeyUsage::Sign, cert.der()).unwrap();
        cert
    }

    fn renew_args(&self, args: &[&str]) -> Vec<String> {
        args.iter()
            .map(|s| s.to_string())
            .chain(["--ca".into(), self.url.clone(), "--ca-root".into(), self.root_pem.clone()])
            .collect()
    }

    fn renew(&self, args: &[&str], stdin: &str) -> Output {
        let args = self.renew_args(args);
        run(&self.home, &args.iter().map(String::as_str).collect::<Vec<_>>(), stdin)
    }

    /// `renew bind`, confirmed on the "phone", which applies (临期, 1 year, `kind`) and pays.
    fn bind_and_apply(&self, old: &Certificate, kind: &str) -> String {
        let b = json(&self.renew(&["--json", "renew", "bind", "--no-wait"], &format!("{PIN}\n")));
        assert_eq!(b["binding"]["expires_in"], 1800);
        let qr = b["binding"]["qr_url"].as_str().unwrap();
        let phone = HttpCaClient::new(&self.url).unwrap();
        let token = qr.split("token=").nth(1).unwrap();
        let home_page =
            post(&phone, "/m/bind", "application/x-www-form-urlencoded", format!("token={token}&action=confirm").into_bytes());
        let k = between(&home_page, "k=", "&amp;");
        let boundary = "xYzBoUnDaRy";
        let serial = kb_ca::api::serial_of(old);
        let body: String = [("k", k), ("serial", serial.as_str()), ("years", "1"), ("kind", kind), ("consent", "yes")]
            .iter()
            .map(|(n, v)| format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{n}\"\r\n\r\n{v}\r\n"))
            .collect::<String>()
            + &format!("--{boundary}--\r\n");
        let pay_page = post(&phone, "/m/renew", &format!("multipart/form-data; boundary={boundary}"), body.into_bytes());
        let app = between(&pay_page, "id=\"application\">", "<").to_string();
        post(&phone, "/m/pay", "application/x-www-form-urlencoded", format!("k={k}&application={app}").into_bytes());
        app
    }

    fn approve(&self, app: &str) {
        let approved = json(&run(&self.home, &["--json", "devca", "approve", app], ""));
        assert_eq!(approved["state"], "approved");
    }

    /// The certificates on the key with their slot's public key, read from the file.
    fn on_the_key(&self) -> Vec<(String, Certificate, kb_crypto::PublicKey)> {
        let mut t = FileToken::open(self.key_file()).unwrap();
        let mut out = Vec::new();
        for c in t.containers().unwrap() {
            if let Some(der) = c.sign.as_ref().and_then(|s| s.certificate.clone()) {
                out.push((c.name.clone(), Certificate::from_der(&der).unwrap(), t.public_key(&c.name, KeyUsage::Sign).unwrap()));
            }
        }
        out
    }
}

#[test]
fn bind_apply_approve_and_install_through_the_cli() {
    let r = Rig::new();
    let old = r.fresh_key("KBF-CLI-0001");
    let serial = kb_ca::api::serial_of(&old);
    let (home, ca_dir, root_pem, operator) = (&r.home, &r.ca_dir, &r.root_pem, &r.operator);
    let keys = home.join("data").join("keys");
    let renew = |args: &[&str], stdin: &str| r.renew(args, stdin);
    let st = json(&renew(&["--json", "renew", "status"], ""));
    assert_eq!(st[0]["validity"], "expiring_soon");
    assert_eq!(st[0]["renewal"]["state"], "none");
    assert_eq!(st[0]["renewal"]["bound"], false);

    // Not approved: install refuses with its code.
    let out = renew(&["--json", "renew", "install"], &format!("{PIN}\n"));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("7008") || String::from_utf8_lossy(&out.stdout).contains("7008"));

    // Bind (the phone confirms), apply and pay.
    let app = r.bind_and_apply(&old, "renew");
    let st = json(&renew(&["--json", "renew", "status"], ""));
    assert_eq!((st[0]["renewal"]["bound"].as_bool(), st[0]["renewal"]["state"].as_str()), (Some(true), Some("applied")));
    // The operator page lists it; the command approves it.
    assert!(operator.contains("/op?key="));
    r.approve(&app);

    // 安装证书 with the PIN.
    let report = json(&renew(&["--json", "renew", "install"], &format!("{PIN}\n")));
    assert_eq!(report["kind"], "renew");
    assert_eq!(report["old_serial"], serial.as_str());
    let mut t = FileToken::open(keys.join("k.kbkey")).unwrap();
    let der = t.containers().unwrap()[0].sign.as_ref().unwrap().certificate.clone().unwrap();
    let new = Certificate::from_der(&der).unwrap();
    assert_eq!(kb_ca::api::serial_of(&new), report["new_serial"].as_str().unwrap());
    assert_eq!(new.public_key().unwrap(), old.public_key().unwrap());
    assert!(new.not_after() > old.not_after());
    // OpenSSL verifies the new certificate against the dev CA's root (when it is installed).
    let files = home.parent().unwrap();
    std::fs::write(files.join("new.pem"), new.to_pem()).unwrap();
    if let Ok(o) = Command::new("openssl")
        .args(["verify", "-vfyopt", "distid:1234567812345678", "-CAfile", root_pem, files.join("new.pem").to_str().unwrap()])
        .output()
    {
        assert!(
            o.status.success(),
            "openssl verify: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let st = json(&renew(&["--json", "renew", "status"], ""));
    assert_eq!(st[0]["serial"], report["new_serial"]);
    assert!(operator.contains("/op?key=") && ca_dir.join("root.key").is_file());
}

/// A small deterministic generator for the kill delays (the seed is printed).
fn next(seed: &mut u64) -> u64 {
    *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    *seed >> 33
}

/// `keybridge renew install` killed with SIGKILL at random moments (续期 and 变更/补发):
/// right after, the key holds a working certificate (the old one or the new one); after
/// `keybridge renew recover` the install is finished or undone, and a new install
/// finishes it.
#[test]
fn install_killed_at_random_moments_leaves_a_working_certificate() {
    let r = Rig::new();
    let mut seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    eprintln!("kill-delay seed {seed}");
    let trust = kb_pki::chain::TrustStore::from_certs([r.root.clone()]);
    let working = |r: &Rig, old: &Certificate, when: &str| -> Certificate {
        let on_key = r.on_the_key();
        let ok: Vec<_> = on_key
            .iter()
            .filter(|(_, c, k)| {
                c.public_key().ok().as_ref() == Some(k)
                    && c.subject() == old.subject()
                    && kb_pki::chain::verify_chain(c, &[], &trust, UnixTime::now()).is_ok()
            })
            .map(|(_, c, _)| c.clone())
            .collect();
        assert!(!ok.is_empty(), "{when}: no working certificate on the key: {on_key:?}");
        ok.into_iter().max_by_key(|c| c.not_after()).unwrap()
    };
    let mut killed_mid_way = 0;
    for round in 0..8 {
        let kind = if round % 2 == 0 { "renew" } else { "rekey" };
        let old = r.fresh_key(&format!("KBF-KILL-{round}"));
        let app = r.bind_and_apply(&old, kind);
        r.approve(&app);
        let args = r.renew_args(&["--json", "renew", "install"]);
        let mut child = keybridge(&r.home, &args.iter().map(String::as_str).collect::<Vec<_>>())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(format!("{PIN}\n").as_bytes()).unwrap();
        let delay = Duration::from_millis(next(&mut seed) % 600);
        std::thread::sleep(delay);
        let finished = child.try_wait().unwrap().is_some();
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        if !finished {
            killed_mid_way += 1;
        }
        let ctx = format!("round {round} ({kind}), killed after {delay:?}");
        let now = working(&r, &old, &format!("{ctx}, right after"));
        let rec = r.renew(&["--json", "renew", "recover"], &format!("{PIN}\n{PIN}\n"));
        let rec = json(&rec);
        let after = working(&r, &old, &format!("{ctx}, after recover ({rec})"));
        assert!(after.not_after() >= now.not_after(), "{ctx}: recovery went backwards");
        let journal = r.home.join("data").join("renewal");
        assert!(std::fs::read_dir(&journal).map(|d| d.count() == 0).unwrap_or(true), "{ctx}: journal left");
        if after == old {
            let report = json(&r.renew(&["--json", "renew", "install"], &format!("{PIN}\n{PIN}\n")));
            assert_eq!(report["kind"], kind, "{ctx}");
            assert!(working(&r, &old, &format!("{ctx}, after retry")).not_after() > old.not_after());
        }
    }
    eprintln!("{killed_mid_way} of 8 installs were killed before they finished");
}

#[test]
fn devca_revoke_and_crl_through_the_cli() {
    use kb_pki::revocation::{Crl, RevocationReason, RevocationStatus, check_crl};
    let r = Rig::new();
    let old = r.fresh_key("KBF-CLI-REVOKE");
    // Bound: the dev CA knows the certificate.
    r.bind_and_apply(&old, "renew");
    let serial = kb_ca::api::serial_of(&old);
    let bad = run(&r.home, &["--json", "devca", "revoke", &serial, "--reason", "lost-it"], "");
    assert!(!bad.status.success(), "an unknown reason is refused");
    let done = json(&run(&r.home, &["--json", "devca", "revoke", &serial, "--reason", "keyCompromise"], ""));
    assert_eq!((done["revoked"].as_bool(), done["serial"].as_str()), (Some(true), Some(serial.as_str())));
    let again = run(&r.home, &["--json", "devca", "revoke", &serial], "");
    assert!(!again.status.success(), "a revocation cannot be repeated");
    let out = r.home.parent().unwrap().join("dev.crl");
    let written = json(&run(&r.home, &["--json", "devca", "crl", "--out", out.to_str().unwrap()], ""));
    assert_eq!(written["entries"], 1);
    let crl = Crl::from_any(&std::fs::read(&out).unwrap()).unwrap();
    assert!(matches!(
        check_crl(&old, &r.root, &crl, UnixTime::now()),
        RevocationStatus::Revoked { reason: Some(RevocationReason::KeyCompromise), .. }
    ));
    // The running server publishes the same (it shares the database).
    let phone = HttpCaClient::new(&r.url).unwrap();
    let served = phone
        .exchange(
            kb_ca::http::Request { method: "GET".into(), target: "/crl".into(), ..Default::default() },
            std::time::Duration::ZERO,
        )
        .unwrap();
    let served = Crl::from_der(&served.body).unwrap();
    assert!(matches!(check_crl(&old, &r.root, &served, UnixTime::now()), RevocationStatus::Revoked { .. }));
}

#[test]
fn the_settings_ca_url_names_the_ca() {
    let r = Rig::new();
    r.fresh_key("KBF-CLI-0003");
    let config = r.home.join("config");
    std::fs::create_dir_all(&config).unwrap();
    // Without --ca the CLI talks to the CA in the settings (not the default port 8443).
    std::fs::write(config.join("settings.toml"), format!("ca_url = \"{}\"\n", r.url)).unwrap();
    let st = json(&run(&r.home, &["--json", "renew", "status", "--ca-root", &r.root_pem], ""));
    assert_eq!(st[0]["renewal"]["state"], "none", "{st}");
    assert!(st[0]["ca_error"].is_null(), "{st}");
    // A configured CA needs its root named: the dev CA's is not assumed.
    let out = run(&r.home, &["--json", "renew", "status"], "");
    assert!(!out.status.success());
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(said.contains("7014") || said.contains("ca_not_configured"), "{said}");
}

#[test]
fn a_certificate_revoked_on_the_dev_ca_shows_revoked_and_its_signatures_fail() {
    let r = Rig::new();
    let old = r.fresh_key("KBF-CLI-REVOKED");
    let app = r.bind_and_apply(&old, "renew");
    r.approve(&app);
    let report = json(&r.renew(&["--json", "renew", "install"], &format!("{PIN}\n")));
    let serial = report["new_serial"].as_str().unwrap().to_string();
    let (_, new, _) = r.on_the_key().remove(0);
    // The dev CA names itself as where to ask.
    assert_eq!(new.ocsp_urls(), vec![format!("{}/ocsp", r.url)]);

    // Good (the dev CA's OCSP answer, checked against the demo root the home trusts).
    let certs = json(&run(&r.home, &["--json", "certs"], ""));
    let row = &certs["certificates"][0];
    assert_eq!(row["serial"].as_str().map(str::to_uppercase), Some(new.serial_hex().to_uppercase()));
    assert_eq!(row["revocation"]["status"], "good", "{row}");
    let files = r.home.parent().unwrap();
    let (bid, sig) = (files.join("bid.txt"), files.join("bid.p7s"));
    std::fs::write(&bid, "投标文件").unwrap();
    let signed = run(
        &r.home,
        &["sign", "--in", bid.to_str().unwrap(), "--out", sig.to_str().unwrap(), "--format", "cms-attached"],
        &format!("{PIN}\n"),
    );
    assert!(signed.status.success(), "{}", String::from_utf8_lossy(&signed.stderr));
    let verify = ["--json", "verify", "--sig", sig.to_str().unwrap(), "--ca", r.root_pem.as_str()];
    let v = json(&run(&r.home, &verify, ""));
    assert_eq!((v["ok"].as_bool(), v["signers"][0]["revocation"]["status"].as_str()), (Some(true), Some("good")), "{v}");

    // Revoked on the dev CA: every new look says so, with the reason.
    let done = json(&run(&r.home, &["--json", "devca", "revoke", &serial, "--reason", "keyCompromise"], ""));
    assert_eq!(done["revoked"], true);
    let certs = json(&run(&r.home, &["--json", "certs"], ""));
    let rev = &certs["certificates"][0]["revocation"];
    assert_eq!((rev["status"].as_str(), rev["reason"].as_str()), (Some("revoked"), Some("keyCompromise")), "{rev}");
    assert_eq!(rev["code"], kb_types::ErrorCode::CertificateRevoked.number());
    let text = String::from_utf8(run(&r.home, &["certs"], "").stdout).unwrap();
    assert!(text.contains("[已吊销]") && text.contains("keyCompromise"), "{text}");
    // The signature made before now fails, with the code and the reason.
    let out = run(&r.home, &verify, "");
    assert!(!out.status.success());
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(said.contains("3030") && said.contains("keyCompromise"), "{said}");
}
