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

#[test]
fn bind_apply_approve_and_install_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let home: PathBuf = dir.path().join("home");
    // The dev CA on a free port; it creates the home's demo CA root.
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
    let url = info["url"].as_str().unwrap().to_string();
    let operator = info["operator_url"].as_str().unwrap().to_string();
    let ca_dir = home.join("data").join("demo-ca");
    let root = Certificate::from_pem(&std::fs::read_to_string(ca_dir.join("root.pem")).unwrap()).unwrap();
    let root_key = kb_crypto::PrivateKey::from_pkcs8_pem(&std::fs::read_to_string(ca_dir.join("root.key")).unwrap()).unwrap();

    // A file key whose certificate expires in 20 days.
    let keys = home.join("data").join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let opts = CreateOptions { serial: Some("KBF-CLI-0001".into()), ..CreateOptions::weak_for_tests() };
    let mut t = FileToken::create(keys.join("k.kbkey"), "续期测试", &Pin::new(PIN), &Pin::new("33334444"), opts).unwrap();
    let old = {
        let mut s = t.login(&Pin::new(PIN)).unwrap();
        s.create_container("c1").unwrap();
        let public = s.generate_key_pair("c1", KeyUsage::Sign, kb_types::Algorithm::Sm2).unwrap();
        let now = UnixTime::now();
        let mut p = CertificateParams::leaf("C=CN,O=某某公司,CN=王五", KeyUsage::Sign, now.plus_days(-300), 1);
        p.not_after = now.plus_days(20);
        let cert = issue(&p, &public, Some(&root), &LocalSigner::new(root_key)).unwrap();
        s.import_certificate("c1", KeyUsage::Sign, cert.der()).unwrap();
        cert
    };
    drop(t);

    let root_pem = ca_dir.join("root.pem").display().to_string();
    let renew = |args: &[&str], stdin: &str| run(&home, &[args, &["--ca", &url, "--ca-root", &root_pem]].concat(), stdin);
    let st = json(&renew(&["--json", "renew", "status"], ""));
    assert_eq!(st[0]["validity"], "expiring_soon");
    assert_eq!(st[0]["renewal"]["state"], "none");
    assert_eq!(st[0]["renewal"]["bound"], false);

    // Not approved: install refuses with its code.
    let out = renew(&["--json", "renew", "install"], &format!("{PIN}\n"));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("7008") || String::from_utf8_lossy(&out.stdout).contains("7008"));

    // Bind: the QR URL; the "phone" confirms.
    let b = json(&renew(&["--json", "renew", "bind", "--no-wait"], &format!("{PIN}\n")));
    let qr = b["binding"]["qr_url"].as_str().unwrap();
    assert_eq!(b["binding"]["expires_in"], 1800);
    let phone = HttpCaClient::new(&url).unwrap();
    let token = qr.split("token=").nth(1).unwrap();
    let home_page =
        post(&phone, "/m/bind", "application/x-www-form-urlencoded", format!("token={token}&action=confirm").into_bytes());
    let k = between(&home_page, "k=", "&amp;");
    // Apply (临期, 1 year, 续期) and pay.
    let boundary = "xYzBoUnDaRy";
    let serial = kb_ca::api::serial_of(&old);
    let body: String = [("k", k), ("serial", serial.as_str()), ("years", "1"), ("kind", "renew"), ("consent", "yes")]
        .iter()
        .map(|(n, v)| format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{n}\"\r\n\r\n{v}\r\n"))
        .collect::<String>()
        + &format!("--{boundary}--\r\n");
    let pay_page = post(&phone, "/m/renew", &format!("multipart/form-data; boundary={boundary}"), body.into_bytes());
    let app = between(&pay_page, "id=\"application\">", "<").to_string();
    post(&phone, "/m/pay", "application/x-www-form-urlencoded", format!("k={k}&application={app}").into_bytes());
    let st = json(&renew(&["--json", "renew", "status"], ""));
    assert_eq!((st[0]["renewal"]["bound"].as_bool(), st[0]["renewal"]["state"].as_str()), (Some(true), Some("applied")));
    // The operator page lists it; the command approves it.
    assert!(operator.contains("/op?key="));
    let approved = json(&run(&home, &["--json", "devca", "approve", &app], ""));
    assert_eq!(approved["state"], "approved");

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
    let files = dir.path();
    std::fs::write(files.join("new.pem"), new.to_pem()).unwrap();
    if let Ok(o) = Command::new("openssl")
        .args(["verify", "-vfyopt", "distid:1234567812345678", "-CAfile", &root_pem, files.join("new.pem").to_str().unwrap()])
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
    drop(ca);
}
