//! Scenario tests of the device commands, through the real `keybridge` binary: each test
//! has its own KeyBridge home (`--home`), PINs come from stdin (`--pin-stdin`), and new
//! file keys use the fast test KDF (`--weak-kdf-for-tests`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kb_crypto::PrivateKey;
use kb_pki::csr::CertificationRequest;
use kb_pki::issue::{CertKind, CertificateParams, issue, self_signed};
use kb_pki::time::UnixTime;
use kb_pki::{Certificate, LocalSigner};
use kb_types::{Algorithm, KeyUsage};
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const DEMO_PIN: &str = "12345678\n";

struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("files")).unwrap();
        Home { dir }
    }

    fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    fn keys(&self) -> PathBuf {
        self.home().join("data").join("keys")
    }

    /// A path for a work file (outside the home).
    fn file(&self, name: &str) -> String {
        self.dir.path().join("files").join(name).display().to_string()
    }

    fn root_pem(&self) -> String {
        self.home().join("data").join("demo-ca").join("root.pem").display().to_string()
    }

    /// Start `keybridge --home … --pin-stdin --weak-kdf-for-tests ARGS`, every stdio piped
    /// (with a backtrace on, so a panic would show).
    fn spawn(&self, args: &[&str]) -> std::process::Child {
        Command::new(env!("CARGO_BIN_EXE_keybridge"))
            .arg("--home")
            .arg(self.home())
            .args(["--pin-stdin", "--weak-kdf-for-tests"])
            .args(args)
            .env_remove("KEYBRIDGE_HOME")
            .env("RUST_BACKTRACE", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Run `keybridge --home … --pin-stdin --weak-kdf-for-tests ARGS` with `stdin`.
    fn run(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = self.spawn(args);
        let mut input = child.stdin.take().unwrap();
        // The command may exit before reading everything: a broken pipe is fine.
        let _ = input.write_all(stdin.as_bytes());
        drop(input);
        child.wait_with_output().unwrap()
    }

    /// `--json ARGS`, which must succeed; its JSON.
    fn ok(&self, args: &[&str], stdin: &str) -> Value {
        let out = self.run(&with_json(args), stdin);
        assert!(
            out.status.success(),
            "{args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        json(&out)
    }

    /// `--json ARGS`, which must fail; (exit status, error object).
    fn fail(&self, args: &[&str], stdin: &str) -> (i32, Value) {
        let out = self.run(&with_json(args), stdin);
        assert!(!out.status.success(), "{args:?} should fail: {}", String::from_utf8_lossy(&out.stdout));
        (out.status.code().unwrap(), json(&out)["error"].clone())
    }

    fn demo(&self) -> Value {
        self.ok(&["demo"], "")
    }
}

fn with_json<'a>(args: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["--json"];
    v.extend_from_slice(args);
    v
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}\nstderr: {}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    })
}

fn code(e: &Value) -> u64 {
    e["code"].as_u64().unwrap_or(0)
}

/// Files in a directory (names), to prove nothing was left behind.
fn names(dir: &str) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

/// A test CA (not the demo one) and an SM2 encryption certificate with its key.
struct TestCa {
    cert: Certificate,
    signer: LocalSigner,
}

fn test_ca() -> TestCa {
    let signer = LocalSigner::new(PrivateKey::generate(Algorithm::Sm2).unwrap());
    let cert = self_signed(
        &CertificateParams::new(
            "C=CN,CN=CLI Device Test CA",
            CertKind::Root { path_len: None },
            UnixTime::now().plus_days(-800),
            3650,
        ),
        &signer,
    )
    .unwrap();
    TestCa { cert, signer }
}

/// Create a file key `name` with the given PINs, and an SM2 signing key pair in container `c`.
fn file_key(h: &Home, name: &str, user: &str, so: &str) {
    let v = h.ok(
        &["filekey", "create", "--name", name, "--label", &format!("测试介质 {name}")],
        &format!("{user}\n{user}\n{so}\n{so}\n"),
    );
    assert_eq!(v["device"], format!("file:{name}"));
    let v = h.ok(
        &["filekey", "keygen", "--device", &format!("file:{name}"), "--container", "c", "--usage", "sign"],
        &format!("{user}\n"),
    );
    assert_eq!(v["algorithm"], "sm2");
}

#[test]
fn demo_devices_certs_and_cert_show_export() {
    let h = Home::new();
    let v = h.demo();
    assert_eq!(v["created"], true);
    assert_eq!(v["device"], "file:demo");
    assert_eq!(v["user_pin"], "12345678");
    assert_eq!(v["certificates"].as_array().unwrap().len(), 2);
    // Text mode says clearly that the PINs are demo-only and what to try next.
    let text = h.run(&["demo"], "");
    let stdout = String::from_utf8(text.stdout).unwrap();
    assert!(stdout.contains("演示介质已存在") && stdout.contains("仅供演示") && stdout.contains("keybridge --home"), "{stdout}");
    assert!(stdout.contains(" certs") && stdout.contains(" sign "), "{stdout}");
    // Run again: reported, not re-created.
    assert_eq!(h.demo()["created"], false);

    let v = h.ok(&["devices"], "");
    let devs = v["devices"].as_array().unwrap();
    assert_eq!(devs.len(), 1);
    assert_eq!(devs[0]["id"], "file:demo");
    assert_eq!(devs[0]["label"], "KeyBridge 演示介质 (DEMO)");
    assert_eq!(devs[0]["transport"], "file");
    assert_eq!(devs[0]["model"], "File Key v1");
    assert_eq!(devs[0]["capabilities"]["key_generation"], true);
    assert_eq!(devs[0]["user_pin"]["retries_left"], 6);
    assert_eq!(devs[0]["so_pin"]["retries_left"], 10);
    assert!(devs[0]["serial"].as_str().unwrap().starts_with("KBF-"));

    let v = h.ok(&["certs"], "");
    let certs = v["certificates"].as_array().unwrap();
    assert_eq!(certs.len(), 2);
    for c in certs {
        assert_eq!(c["device"], "file:demo");
        assert_eq!(c["container"], "demo");
        assert_eq!(c["status"], "valid");
        assert_eq!(c["status_text"], "有效");
        assert!(c["issuer"].as_str().unwrap().contains("DEMO"));
        assert_eq!(c["thumbprint_sha1"].as_str().unwrap().len(), 40);
    }
    let usages: Vec<&str> = certs.iter().map(|c| c["usage"].as_str().unwrap()).collect();
    assert_eq!(usages, ["sign", "encrypt"]);

    // cert show on the device: same output as for a file, with thumbprints and chain.
    let v = h.ok(
        &[
            "cert",
            "show",
            "--device",
            "file:demo",
            "--usage",
            "encrypt",
            "--thumbprint",
            "sm3",
            "--thumbprint",
            "sha1",
            "--ca",
            &h.root_pem(),
        ],
        "",
    );
    assert_eq!(v["usage"], "encrypt");
    assert_eq!(v["chain"]["ok"], true);
    assert_eq!(v["thumbprints"]["sm3"].as_str().unwrap().len(), 64);
    assert_eq!(v["thumbprint_sha1"], certs[1]["thumbprint_sha1"]);

    // Export DER and PEM; the files show the same certificate.
    h.ok(
        &["cert", "export", "--device", "file:demo", "--container", "demo", "--usage", "encrypt", "--out", &h.file("enc.der")],
        "",
    );
    h.ok(&["cert", "export", "--usage", "sign", "--out", &h.file("sign.pem"), "--pem"], "");
    assert!(std::fs::read_to_string(h.file("sign.pem")).unwrap().starts_with("-----BEGIN CERTIFICATE-----"));
    let enc = Certificate::from_der(&std::fs::read(h.file("enc.der")).unwrap()).unwrap();
    assert_eq!(enc.serial_hex(), certs[1]["serial"]);
    let v = h.ok(&["cert", "show", "--file", &h.file("sign.pem")], "");
    assert_eq!(v["serial"], certs[0]["serial"]);
    // No such container.
    let (_, e) = h.fail(&["cert", "show", "--container", "nope"], "");
    assert_eq!(code(&e), 4005);
}

#[test]
fn sign_verify_round_trips_and_tampering() {
    let h = Home::new();
    h.demo();
    let content = "投标文件正文 bid content ".repeat(5000);
    std::fs::write(h.file("bid.txt"), &content).unwrap();
    let mut tampered = content.clone().into_bytes();
    tampered[100] ^= 1;
    std::fs::write(h.file("tampered.txt"), &tampered).unwrap();
    let root = h.root_pem();

    // CMS attached.
    let v = h.ok(&["sign", "--in", &h.file("bid.txt"), "--out", &h.file("bid.p7m")], DEMO_PIN);
    assert_eq!(v["format"], "cms-attached");
    let v = h.ok(&["verify", "--sig", &h.file("bid.p7m"), "--ca", &root], "");
    assert_eq!(v["ok"], true);
    assert_eq!(v["signers"][0]["chain"]["ok"], true);
    h.ok(&["verify", "--sig", &h.file("bid.p7m"), "--in", &h.file("bid.txt")], "");
    let (st, e) = h.fail(&["verify", "--sig", &h.file("bid.p7m"), "--in", &h.file("tampered.txt")], "");
    assert_eq!((st, code(&e)), (2, 3021));

    // CMS detached (streamed).
    let v = h.ok(&["sign", "--format", "cms-detached", "--in", &h.file("bid.txt"), "--out", &h.file("bid.p7s")], DEMO_PIN);
    assert_eq!(v["format"], "cms-detached");
    assert!(v["bytes_out"].as_u64().unwrap() < 2000, "detached: content not embedded");
    let v = h.ok(&["verify", "--sig", &h.file("bid.p7s"), "--in", &h.file("bid.txt"), "--ca", &root], "");
    assert_eq!(v["detached"], true);
    let (st, e) = h.fail(&["verify", "--sig", &h.file("bid.p7s"), "--in", &h.file("tampered.txt")], "");
    assert_eq!((st, code(&e)), (2, 3021));

    // Raw SM2 with the default ID and with a custom one, checked with the device and with a certificate file.
    h.ok(&["sign", "--format", "raw", "--in", &h.file("bid.txt"), "--out", &h.file("bid.sig")], DEMO_PIN);
    h.ok(&["verify", "--raw", "--sig", &h.file("bid.sig"), "--in", &h.file("bid.txt"), "--device", "file:demo"], "");
    h.ok(&["cert", "export", "--out", &h.file("sign.der")], "");
    let v = h.ok(
        &[
            "verify",
            "--raw",
            "--sig",
            &h.file("bid.sig"),
            "--in",
            &h.file("bid.txt"),
            "--cert",
            &h.file("sign.der"),
            "--ca",
            &root,
        ],
        "",
    );
    assert_eq!(v["chain"]["ok"], true);
    let (st, e) = h.fail(
        &["verify", "--raw", "--sig", &h.file("bid.sig"), "--in", &h.file("tampered.txt"), "--cert", &h.file("sign.der")],
        "",
    );
    assert_eq!((st, code(&e)), (2, 2001));
    h.ok(
        &["sign", "--format", "raw", "--id", "ALICE123@YAHOO.COM", "--in", &h.file("bid.txt"), "--out", &h.file("alice.sig")],
        DEMO_PIN,
    );
    let v =
        h.ok(&["verify", "--raw", "--id", "ALICE123@YAHOO.COM", "--sig", &h.file("alice.sig"), "--in", &h.file("bid.txt")], "");
    assert_eq!(v["sm2_id"], "ALICE123@YAHOO.COM");
    let (st, e) = h.fail(&["verify", "--raw", "--sig", &h.file("alice.sig"), "--in", &h.file("bid.txt")], "");
    assert_eq!((st, code(&e)), (2, 2001), "default ID does not verify a signature made with another ID");
    // The raw signature also verifies independently of the CLI.
    let cert = Certificate::from_der(&std::fs::read(h.file("sign.der")).unwrap()).unwrap();
    let sig = std::fs::read(h.file("alice.sig")).unwrap();
    let scheme = kb_crypto::SignatureScheme::Sm2Sm3 { id: b"ALICE123@YAHOO.COM".to_vec() };
    cert.public_key().unwrap().verify(&scheme, content.as_bytes(), &sig).unwrap();

    // --id is for raw signatures only; no output is written for a refused request.
    let (_, e) = h.fail(&["sign", "--id", "X", "--in", &h.file("bid.txt"), "--out", &h.file("no.p7m")], DEMO_PIN);
    assert_eq!(code(&e), 1004);
    assert!(!Path::new(&h.file("no.p7m")).exists());
}

#[test]
fn encrypt_decrypt_5mb_and_failed_decrypt_leaves_nothing() {
    let h = Home::new();
    h.demo();
    let data: Vec<u8> = (0..5_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(h.file("bid.bin"), &data).unwrap();
    let other = test_ca();
    let other_key = PrivateKey::generate(Algorithm::Sm2).unwrap();
    let other_cert = issue(
        &CertificateParams::leaf("C=CN,CN=另一位收件人", KeyUsage::Encrypt, UnixTime::now().plus_days(-1), 30),
        &other_key.public_key(),
        Some(&other.cert),
        &other.signer,
    )
    .unwrap();
    std::fs::write(h.file("other.pem"), other_cert.to_pem()).unwrap();

    // To the demo key and another recipient at once.
    let v = h.ok(
        &["encrypt", "--to-device", "--to", &h.file("other.pem"), "--in", &h.file("bid.bin"), "--out", &h.file("bid.p7e")],
        "",
    );
    assert_eq!(v["recipients"].as_array().unwrap().len(), 2);
    let v = h.ok(&["decrypt", "--in", &h.file("bid.p7e"), "--out", &h.file("opened.bin")], DEMO_PIN);
    assert_eq!(v["bytes_out"], 5_000_000);
    assert!(std::fs::read(h.file("opened.bin")).unwrap() == data);
    // The other recipient can open it too (independently of the device).
    let d = kb_pki::cms::LocalDecrypter::new(other_key, other_cert.clone()).unwrap();
    let plain = kb_pki::cms::envelope::decrypt_bytes(&std::fs::read(h.file("bid.p7e")).unwrap(), &d).unwrap();
    assert!(plain[..] == data[..]);

    // Wrong PIN: nothing written.
    let (_, e) = h.fail(&["decrypt", "--in", &h.file("bid.p7e"), "--out", &h.file("x1.bin")], "wrongpin\n");
    assert_eq!(code(&e), 4001);
    assert_eq!(e["retries_left"], 5);
    // An envelope for someone else: no recipient, nothing written.
    h.ok(&["encrypt", "--to", &h.file("other.pem"), "--in", &h.file("bid.bin"), "--out", &h.file("other.p7e")], "");
    let before_other = names(&h.file(""));
    let (st, e) = h.fail(&["decrypt", "--in", &h.file("other.p7e"), "--out", &h.file("x2.bin")], DEMO_PIN);
    assert_eq!((st, code(&e)), (2, 3022));
    // A truncated envelope fails after the content started: the partial output is removed.
    let env = std::fs::read(h.file("bid.p7e")).unwrap();
    std::fs::write(h.file("trunc.p7e"), &env[..env.len() - 1000]).unwrap();
    let (_, e) = h.fail(&["decrypt", "--in", &h.file("trunc.p7e"), "--out", &h.file("x3.bin")], DEMO_PIN);
    assert_eq!(code(&e), 3020, "{e}");
    let mut after = names(&h.file(""));
    after.retain(|n| n != "trunc.p7e");
    assert_eq!(after, before_other, "a failed decryption leaves no file behind");
    // An existing output file is left as it was when decryption fails.
    std::fs::write(h.file("keep.bin"), b"keep me").unwrap();
    h.fail(&["decrypt", "--in", &h.file("trunc.p7e"), "--out", &h.file("keep.bin")], DEMO_PIN);
    assert_eq!(std::fs::read(h.file("keep.bin")).unwrap(), b"keep me");
}

#[test]
fn wrong_pin_counts_down_locks_and_unblock_restores() {
    let h = Home::new();
    file_key(&h, "k", "user-pin-1", "so-pin-123");
    std::fs::write(h.file("m.txt"), b"message").unwrap();
    let sign =
        |stdin: &str| h.run(&["--json", "sign", "--format", "raw", "--in", &h.file("m.txt"), "--out", &h.file("m.sig")], stdin);
    h.ok(&["sign", "--format", "raw", "--in", &h.file("m.txt"), "--out", &h.file("m.sig")], "user-pin-1\n");
    // A wrong PIN then the right one: the second prompt says the first was wrong, and the
    // right PIN restores the full count.
    let out = sign("wrong-pin\nuser-pin-1\n");
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("剩余 6 次") && stderr.contains("口令错误") && stderr.contains("剩余 5 次"), "{stderr}");
    assert_eq!(h.ok(&["pin", "status"], "")["user"]["retries_left"], 6);
    for left in (1..=5u64).rev() {
        let out = sign("wrong-pin\n");
        let e = &json(&out)["error"];
        assert_eq!((code(e), e["retries_left"].as_u64()), (4001, Some(left)), "{e}");
        assert_eq!(h.ok(&["pin", "status"], "")["user"]["retries_left"], left);
    }
    // The last try: the prompt shows 1 left; the wrong PIN locks at once, with no
    // further prompt that could not succeed.
    let out = sign("wrong-pin\nwrong-pin\n");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("剩余 1 次"), "{stderr}");
    assert_eq!(stderr.matches("用户口令").count(), 1, "one prompt only: {stderr}");
    assert_eq!(code(&json(&out)["error"]), 4002, "locked after the last try");
    let st = h.ok(&["pin", "status"], "");
    assert_eq!((st["user"]["locked"].as_bool(), st["user"]["retries_left"].as_u64()), (Some(true), Some(0)));
    assert_eq!(code(&json(&sign("user-pin-1\n"))["error"]), 4002, "even the right PIN");

    // Unblock: a wrong SO PIN costs an SO try; mismatched new PINs are refused before the medium is asked.
    let (_, e) = h.fail(&["pin", "unblock"], "bad-so-pin\nnew-pin-22\nnew-pin-22\n");
    assert_eq!((code(&e), e["retries_left"].as_u64()), (4001, Some(9)));
    let (_, e) = h.fail(&["pin", "unblock"], "so-pin-123\nnew-pin-22\nnew-pin-23\n");
    assert_eq!(code(&e), 1004);
    assert_eq!(h.ok(&["pin", "status"], "")["so"]["retries_left"], 9);
    h.ok(&["pin", "unblock"], "so-pin-123\nnew-pin-22\nnew-pin-22\n");
    let st = h.ok(&["pin", "status"], "");
    assert_eq!((st["user"]["locked"].as_bool(), st["user"]["retries_left"].as_u64()), (Some(false), Some(6)));
    assert_eq!(st["so"]["retries_left"], 10);
    assert!(sign("new-pin-22\n").status.success());

    // Change: mismatch, too short, then right; SO PIN too.
    let (_, e) = h.fail(&["pin", "change"], "new-pin-22\nnext-pin-3\nnext-pin-4\n");
    assert_eq!(code(&e), 1004);
    let (_, e) = h.fail(&["pin", "change"], "new-pin-22\n123\n123\n");
    assert_eq!(code(&e), 4006);
    h.ok(&["pin", "change"], "new-pin-22\nnext-pin-3\nnext-pin-3\n");
    assert!(sign("next-pin-3\n").status.success());
    assert_eq!(code(&json(&sign("new-pin-22\n"))["error"]), 4001, "the old PIN no longer works");
    h.ok(&["pin", "change", "--so"], "so-pin-123\nso-pin-456\nso-pin-456\n");
    let (_, e) = h.fail(&["pin", "unblock"], "so-pin-123\nx-pin-777\nx-pin-777\n");
    assert_eq!(code(&e), 4001);

    // Without --pin-stdin and without a terminal: Cancelled, with a hint.
    let out = Command::new(env!("CARGO_BIN_EXE_keybridge"))
        .arg("--home")
        .arg(h.home())
        .args(["--json", "sign", "--format", "raw", "--in", &h.file("m.txt"), "--out", &h.file("n.sig")])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(code(&json(&out)["error"]), 4011);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--pin-stdin"));
    assert!(!Path::new(&h.file("n.sig")).exists());
}

#[test]
fn corrupt_truncated_and_unknown_keys() {
    let h = Home::new();
    // Only a damaged key: choosing the only medium reports the damage.
    h.ok(&["devices"], "");
    let good = tempfile::tempdir().unwrap();
    let other = Home { dir: good };
    std::fs::create_dir(other.dir.path().join("files")).unwrap();
    other.demo();
    let demo_bytes = std::fs::read(other.keys().join("demo.kbkey")).unwrap();
    let mut flipped = demo_bytes.clone();
    flipped[200] ^= 0x40;
    std::fs::write(h.keys().join("bad.kbkey"), &flipped).unwrap();
    let (_, e) = h.fail(&["pin", "status"], "");
    assert_eq!(code(&e), 4008, "{e}");

    let truncated = demo_bytes[..demo_bytes.len() / 2].to_vec();
    std::fs::write(h.keys().join("short.kbkey"), &truncated).unwrap();
    std::fs::write(h.keys().join("demo.kbkey"), &demo_bytes).unwrap();
    let v = h.ok(&["devices"], "");
    assert_eq!(v["devices"].as_array().unwrap().len(), 1);
    let problems = v["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems.iter().all(|p| p.as_str().unwrap().contains("corrupt")));

    std::fs::write(h.file("m.txt"), b"m").unwrap();
    for (dev, bytes) in [("file:bad", &flipped), ("file:short", &truncated)] {
        let (st, e) = h.fail(&["pin", "status", "--device", dev], "");
        assert_eq!((st, code(&e)), (1, 4008));
        let (_, e) = h.fail(&["sign", "--device", dev, "--in", &h.file("m.txt"), "--out", &h.file("m.p7m")], DEMO_PIN);
        assert_eq!(code(&e), 4008);
        let (_, e) = h.fail(&["pin", "change", "--device", dev], "12345678\nabcdefgh\nabcdefgh\n");
        assert_eq!(code(&e), 4008);
        let name = dev.strip_prefix("file:").unwrap();
        assert!(std::fs::read(h.keys().join(format!("{name}.kbkey"))).unwrap() == *bytes, "{dev} unchanged");
    }
    // The intact copy still works next to them.
    h.ok(&["sign", "--device", "file:demo", "--in", &h.file("m.txt"), "--out", &h.file("m.p7m")], DEMO_PIN);
    // Unknown device: 4004, with what is present.
    let (_, e) = h.fail(&["certs", "--device", "file:nope"], "");
    assert_eq!(code(&e), 4004);
    assert!(e["detail"].as_str().unwrap().contains("file:demo"));
    let (_, e) = h.fail(&["pin", "status", "--device", "pcsc:reader0"], "");
    assert_eq!(code(&e), 4004);
}

#[test]
fn two_devices_need_a_choice() {
    let h = Home::new();
    file_key(&h, "alpha", "alpha-pin-1", "alpha-so-1");
    file_key(&h, "beta", "beta-pin-12", "beta-so-12");
    let (st, e) = h.fail(&["pin", "status"], "");
    assert_eq!((st, code(&e)), (1, 1004));
    let detail = e["detail"].as_str().unwrap();
    assert!(detail.contains("file:alpha") && detail.contains("file:beta") && detail.contains("--device"), "{detail}");
    std::fs::write(h.file("m.txt"), b"m").unwrap();
    let (_, e) = h.fail(&["sign", "--format", "raw", "--in", &h.file("m.txt"), "--out", &h.file("m.sig")], "alpha-pin-1\n");
    assert_eq!(code(&e), 1004);
    h.ok(
        &["sign", "--device", "file:beta", "--format", "raw", "--in", &h.file("m.txt"), "--out", &h.file("m.sig")],
        "beta-pin-12\n",
    );
    h.ok(&["verify", "--raw", "--device", "file:beta", "--sig", &h.file("m.sig"), "--in", &h.file("m.txt")], "");
    let (st, e) = h.fail(&["verify", "--raw", "--device", "file:alpha", "--sig", &h.file("m.sig"), "--in", &h.file("m.txt")], "");
    assert_eq!((st, code(&e)), (2, 2001));
    assert_eq!(h.ok(&["devices"], "")["devices"].as_array().unwrap().len(), 2);
    let text = String::from_utf8(h.run(&["devices"], "").stdout).unwrap();
    assert!(text.contains("多个介质"), "{text}");
}

#[test]
fn csr_import_expired_certificate_and_delete() {
    let h = Home::new();
    file_key(&h, "k", "pin-123456", "so-123456");
    // An ECDSA key pair too, in another container.
    let v = h.ok(&["filekey", "keygen", "--container", "p256", "--usage", "sign", "--alg", "ecdsa-p256"], "pin-123456\n");
    assert_eq!(v["algorithm"], "ecdsa_p256");
    h.ok(
        &[
            "filekey",
            "csr",
            "--container",
            "c",
            "--usage",
            "sign",
            "--subject",
            "C=CN,O=某某建设集团有限公司,CN=张三",
            "--out",
            &h.file("req.pem"),
            "--pem",
        ],
        "pin-123456\n",
    );
    let req = CertificationRequest::from_pem(&std::fs::read_to_string(h.file("req.pem")).unwrap()).unwrap();
    req.verify().unwrap();
    assert_eq!(req.subject(), "CN=张三, O=某某建设集团有限公司, C=CN");
    // The CA issues an already expired certificate for the request.
    let ca = test_ca();
    let expired = issue(
        &CertificateParams::leaf(&req.subject_dn(), KeyUsage::Sign, UnixTime::now().plus_days(-400), 365),
        &req.public_key().unwrap(),
        Some(&ca.cert),
        &ca.signer,
    )
    .unwrap();
    std::fs::write(h.file("expired.der"), expired.der()).unwrap();
    // A certificate for another key is refused.
    let stranger = issue(
        &CertificateParams::leaf("CN=别人", KeyUsage::Sign, UnixTime::now(), 30),
        &PrivateKey::generate(Algorithm::Sm2).unwrap().public_key(),
        Some(&ca.cert),
        &ca.signer,
    )
    .unwrap();
    std::fs::write(h.file("stranger.pem"), stranger.to_pem()).unwrap();
    let (_, e) = h.fail(
        &["filekey", "import-cert", "--container", "c", "--usage", "sign", "--cert", &h.file("stranger.pem")],
        "pin-123456\n",
    );
    assert_eq!(code(&e), 4009);
    let v = h
        .ok(&["filekey", "import-cert", "--container", "c", "--usage", "sign", "--cert", &h.file("expired.der")], "pin-123456\n");
    assert_eq!(v["status"], "expired");
    let v = h.ok(&["certs"], "");
    let c = &v["certificates"][0];
    assert_eq!((c["status"].as_str(), c["status_text"].as_str()), (Some("expired"), Some("过期")));
    assert!(c["days_left"].as_i64().unwrap() < 0);
    let v = h.ok(&["--en", "certs"], "");
    assert_eq!(v["certificates"][0]["status_text"], "expired");
    let text = String::from_utf8(h.run(&["certs"], "").stdout).unwrap();
    assert!(text.contains("[过期]"), "{text}");
    // cert show on the device with --ca: details shown, chain fails (3002 expired), exit 2.
    let out = h.run(&["--json", "cert", "show", "--container", "c", "--ca", &h.file("ca.pem")], "");
    assert_eq!(code(&json(&out)["error"]), 9001, "no such CA file");
    std::fs::write(h.file("ca.pem"), ca.cert.to_pem()).unwrap();
    let out = h.run(&["--json", "cert", "show", "--container", "c", "--ca", &h.file("ca.pem")], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"code\":3002"));

    // Delete: refused without confirmation, done with it.
    let (_, e) = h.fail(&["filekey", "delete-cert", "--container", "c", "--usage", "sign"], "n\n");
    assert_eq!(code(&e), 4011);
    assert_eq!(h.ok(&["certs"], "")["certificates"].as_array().unwrap().len(), 1);
    h.ok(&["filekey", "delete-cert", "--container", "c", "--usage", "sign"], "y\npin-123456\n");
    assert_eq!(h.ok(&["certs"], "")["certificates"].as_array().unwrap().len(), 0);
    let (_, e) = h.fail(&["--yes", "filekey", "delete-cert", "--container", "c", "--usage", "sign"], "pin-123456\n");
    assert_eq!(code(&e), 4005);
    // Creating a key that exists, or with a bad name, is refused.
    let (_, e) = h.fail(&["filekey", "create", "--name", "k"], "abcdefgh\nabcdefgh\nabcdefgh\nabcdefgh\n");
    assert_eq!(code(&e), 4007);
    let (_, e) = h.fail(&["filekey", "create", "--name", "../evil"], "abcdefgh\nabcdefgh\nabcdefgh\nabcdefgh\n");
    assert_eq!(code(&e), 1004);
    let (_, e) = h.fail(&["filekey", "create", "--name", "short"], "123\n123\nabcdefgh\nabcdefgh\n");
    assert_eq!(code(&e), 4006);
    assert!(!h.keys().join("short.kbkey").exists());
}

#[test]
fn seals_write_list_read_delete() {
    let h = Home::new();
    h.demo();
    let png = b"\x89PNG\r\n\x1a\n fake image bytes".to_vec();
    std::fs::write(h.file("seal.png"), &png).unwrap();
    std::fs::write(h.file("seal.tiff"), &png).unwrap();
    assert_eq!(h.ok(&["seal", "list"], "")["seals"].as_array().unwrap().len(), 0);
    h.ok(&["seal", "write", "--id", "s1", "--name", "公司公章", "--in", &h.file("seal.png")], DEMO_PIN);
    let v = h.ok(&["seal", "list"], "");
    let s = &v["seals"][0];
    assert_eq!((s["id"].as_str(), s["name"].as_str(), s["mime"].as_str()), (Some("s1"), Some("公司公章"), Some("image/png")));
    assert_eq!(s["size"], png.len());
    h.ok(&["seal", "read", "--id", "s1", "--out", &h.file("back.png")], "");
    assert_eq!(std::fs::read(h.file("back.png")).unwrap(), png);
    let (_, e) = h.fail(&["seal", "write", "--id", "s2", "--name", "x", "--in", &h.file("seal.tiff")], DEMO_PIN);
    assert_eq!(code(&e), 1004);
    let (_, e) = h.fail(&["seal", "read", "--id", "nope", "--out", &h.file("nope.png")], "");
    assert_eq!(code(&e), 4005);
    h.ok(&["seal", "delete", "--id", "s1"], DEMO_PIN);
    assert_eq!(h.ok(&["seal", "list"], "")["seals"].as_array().unwrap().len(), 0);
}

#[test]
fn audit_lists_operations_and_exports_csv() {
    let h = Home::new();
    h.demo();
    std::fs::write(h.file("m.txt"), b"m").unwrap();
    h.ok(&["sign", "--in", &h.file("m.txt"), "--out", &h.file("m.p7m")], DEMO_PIN);
    h.fail(&["sign", "--in", &h.file("m.txt"), "--out", &h.file("m.p7m")], "wrong-pin\n");
    let v = h.ok(&["audit", "--days", "1"], "");
    let recs = v["records"].as_array().unwrap();
    // demo: create_container, 2 × (keygen, CSR sign, import); then sign ok, sign failed.
    assert_eq!(recs.len(), 9, "{recs:?}");
    let newest = &recs[0];
    assert_eq!((newest["operation"].as_str(), newest["result"].as_str()), (Some("sign"), Some("error")));
    assert_eq!((newest["error_code"].as_u64(), newest["error_name"].as_str()), (Some(4001), Some("wrong_pin")));
    assert_eq!(newest["auth"], "pin_entered");
    assert_eq!(newest["client"], "cli");
    assert_eq!(newest["device"], "file:demo");
    assert!(newest["certificate"].as_str().unwrap().contains("演示用户"));
    assert_eq!((recs[1]["result"].as_str(), recs[1]["auth"].as_str()), (Some("ok"), Some("pin_entered")));
    assert!(recs.iter().any(|r| r["operation"] == "keygen" && r["auth"] == "pin_cached"));
    let ops: Vec<&str> = recs.iter().map(|r| r["operation"].as_str().unwrap()).collect();
    assert!(ops.contains(&"import_certificate") && ops.contains(&"create_container"));

    let v = h.ok(&["audit", "--failures"], "");
    assert_eq!(v["records"].as_array().unwrap().len(), 1);
    assert_eq!(h.ok(&["audit", "--limit", "2"], "")["records"].as_array().unwrap().len(), 2);
    assert_eq!(h.ok(&["audit", "--from", "2999-01-01"], "")["records"].as_array().unwrap().len(), 0);
    assert_eq!(
        h.ok(&["audit", "--from", "2000-01-01T00:00:00+08:00", "--to", "2999-01-01"], "")["records"].as_array().unwrap().len(),
        9
    );
    let (_, e) = h.fail(&["audit", "--from", "yesterday"], "");
    assert_eq!(code(&e), 1004);
    let v = h.ok(&["audit", "--csv", &h.file("audit.csv")], "");
    assert_eq!(v["records"], 9);
    let csv = std::fs::read_to_string(h.file("audit.csv")).unwrap();
    assert!(csv.starts_with("\u{feff}time_utc,"));
    assert!(csv.contains("wrong_pin") && csv.contains("pin_entered"));
    let text = String::from_utf8(h.run(&["audit"], "").stdout).unwrap();
    assert!(text.contains("error E4001 wrong_pin"), "{text}");
}

#[test]
fn logs_export_is_readable_with_the_support_key() {
    let h = Home::new();
    h.demo();
    std::fs::write(h.file("m.txt"), b"m").unwrap();
    h.ok(&["sign", "--in", &h.file("m.txt"), "--out", &h.file("m.p7m")], DEMO_PIN);
    assert!(!names(&h.home().join("logs").display().to_string()).is_empty(), "log files are written");
    // The demo's encryption certificate plays the support certificate here.
    h.ok(&["cert", "export", "--usage", "encrypt", "--out", &h.file("support.pem"), "--pem"], "");
    let v = h.ok(&["logs", "export", "--to", &h.file("support.pem"), "--out", &h.file("logs.p7e")], "");
    assert!(!v["files"].as_array().unwrap().is_empty());
    h.ok(&["decrypt", "--in", &h.file("logs.p7e"), "--out", &h.file("logs.tar.gz")], DEMO_PIN);
    assert_eq!(&std::fs::read(h.file("logs.tar.gz")).unwrap()[..2], b"\x1f\x8b", "gzip inside");
    let (_, e) = h.fail(&["logs", "export", "--to", &h.file("m.txt"), "--out", &h.file("x.p7e")], "");
    assert_eq!(code(&e), 3001);
}

#[test]
fn marker_pin_never_leaks() {
    const MARKER: &str = "PIN-MARKER-7f3a";
    let h = Home::new();
    let mut outputs: Vec<Output> = Vec::new();
    let mut run = |args: &[&str], stdin: &str| {
        let out = h.run(args, stdin);
        outputs.push(out);
    };
    let m = format!("{MARKER}\n");
    run(&["--json", "filekey", "create", "--name", "mk"], &format!("{m}{m}so-pin-0000\nso-pin-0000\n"));
    run(&["filekey", "keygen", "--container", "c", "--usage", "sign"], &m);
    run(&["--json", "filekey", "keygen", "--container", "c", "--usage", "encrypt"], &m);
    std::fs::write(h.file("m.txt"), b"message").unwrap();
    run(&["--json", "sign", "--format", "raw", "--in", &h.file("m.txt"), "--out", &h.file("m.sig")], &m);
    run(&["sign", "--format", "raw", "--in", &h.file("m.txt"), "--out", &h.file("m.sig")], "wrong-pin\n");
    run(&["--json", "sign", "--format", "raw", "--in", &h.file("m.txt"), "--out", &h.file("m.sig")], "wrong-pin\n");
    run(&["filekey", "csr", "--container", "c", "--usage", "sign", "--subject", "CN=x", "--out", &h.file("r.der")], &m);
    run(&["--json", "pin", "change"], &format!("{m}other-pin-1\nother-pin-2\n"));
    run(&["pin", "change"], &format!("{m}{m}{m}"));
    run(&["--json", "pin", "change"], &format!("{m}new-pin-000\nnew-pin-000\n"));
    run(&["--json", "pin", "change"], &format!("new-pin-000\n{m}{m}"));
    run(&["pin", "unblock"], &format!("so-pin-0000\n{m}{m}"));
    run(&["--json", "devices"], "");
    run(&["audit"], "");
    run(&["--json", "audit"], "");
    assert_eq!(outputs.len(), 15);
    assert!(outputs[3].status.success() && outputs[9].status.success() && outputs[11].status.success());
    for (i, o) in outputs.iter().enumerate() {
        for (what, bytes) in [("stdout", &o.stdout), ("stderr", &o.stderr)] {
            assert!(!String::from_utf8_lossy(bytes).contains(MARKER), "command {i} {what}");
        }
    }
    // The audit store (with its WAL) and the log files: never the PIN.
    let mut checked = 0;
    for dir in [h.home().join("data"), h.home().join("logs"), h.keys()] {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_file() {
                let bytes = std::fs::read(&p).unwrap();
                assert!(!bytes.windows(MARKER.len()).any(|w| w == MARKER.as_bytes()), "{} holds the PIN", p.display());
                checked += 1;
            }
        }
    }
    assert!(checked >= 3, "audit DB, a log file and the key file were checked");
    assert!(h.home().join("data").join("audit.sqlite3").is_file());
}

/// `s` as PEM with `label`, and as bare base64 (what CA middleware hands out).
fn armoured(der: &[u8], label: &str) -> (String, String) {
    use base64ct::{Base64, Encoding};
    let b64 = Base64::encode_string(der);
    let lines: Vec<&str> = b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
    (format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n")), b64)
}

/// Prompts for the user PIN in `--en` stderr.
fn pin_prompts(out: &Output) -> usize {
    String::from_utf8_lossy(&out.stderr).matches("user PIN for \"").count()
}

#[test]
fn csr_subject_pasted_as_displayed_matches_the_certificate() {
    let h = Home::new();
    h.demo();
    let cert = h.ok(&["cert", "show", "--device", "file:demo", "--usage", "sign"], "");
    let shown = cert["subject"].as_str().unwrap().to_string();
    assert!(shown.starts_with("CN="), "displayed most specific first: {shown}");
    h.ok(&["cert", "export", "--device", "file:demo", "--usage", "sign", "--out", &h.file("sign.der")], "");
    let cert = Certificate::from_der(&std::fs::read(h.file("sign.der")).unwrap()).unwrap();
    let subject = cert.subject_der();
    // Pasted as displayed, and typed most general first: the same subject, in the same
    // RDN order, as the certificate's DER.
    for (i, written) in [shown.clone(), "C=CN, O=KeyBridge 演示单位 (DEMO), CN=演示用户 (DEMO)".to_string()].iter().enumerate()
    {
        let out = h.file(&format!("req{i}.der"));
        let v = h.ok(
            &[
                "filekey",
                "csr",
                "--device",
                "file:demo",
                "--container",
                "demo",
                "--usage",
                "sign",
                "--subject",
                written,
                "--out",
                &out,
            ],
            DEMO_PIN,
        );
        assert_eq!(v["subject"], shown.as_str());
        let req = CertificationRequest::from_der(&std::fs::read(&out).unwrap()).unwrap();
        assert!(
            req.der().windows(subject.len()).any(|w| w == &subject[..]),
            "{written}: subject DER differs from the certificate's"
        );
    }
}

#[test]
fn every_input_reads_der_pem_and_base64() {
    let h = Home::new();
    h.demo();
    std::fs::write(h.file("bid.txt"), "投标文件 PEM test".repeat(5000)).unwrap();
    let variants = |name: &str, label: &str| -> Vec<String> {
        let der = std::fs::read(h.file(name)).unwrap();
        let (pem, b64) = armoured(&der, label);
        std::fs::write(h.file(&format!("{name}.pem")), pem).unwrap();
        std::fs::write(h.file(&format!("{name}.b64")), b64).unwrap();
        vec![h.file(name), h.file(&format!("{name}.pem")), h.file(&format!("{name}.b64"))]
    };
    // Certificates: cert show, encrypt --to, verify --cert, import-cert, logs export --to, --ca.
    h.ok(&["cert", "export", "--usage", "encrypt", "--out", &h.file("enc.der")], "");
    h.ok(&["cert", "export", "--usage", "sign", "--out", &h.file("sign.der")], "");
    let root = kb_pki::Certificate::from_pem(&std::fs::read_to_string(h.root_pem()).unwrap()).unwrap();
    std::fs::write(h.file("root.der"), root.der()).unwrap();
    let roots = variants("root.der", "CERTIFICATE");
    for (i, enc) in variants("enc.der", "CERTIFICATE").iter().enumerate() {
        assert_eq!(h.ok(&["cert", "show", "--file", enc, "--ca", &roots[i]], "")["chain"]["ok"], true, "{enc}");
        h.ok(&["encrypt", "--to", enc, "--in", &h.file("bid.txt"), "--out", &h.file(&format!("e{i}.p7e"))], "");
        h.ok(
            &["filekey", "delete-cert", "--device", "file:demo", "--container", "demo", "--usage", "encrypt", "--yes"],
            DEMO_PIN,
        );
        h.ok(
            &["filekey", "import-cert", "--device", "file:demo", "--container", "demo", "--usage", "encrypt", "--cert", enc],
            DEMO_PIN,
        );
        h.ok(&["logs", "export", "--to", enc, "--out", &h.file(&format!("logs{i}.p7e"))], "");
    }
    // Envelopes: decrypt takes each form (PEM streamed).
    for env in variants("e0.p7e", "CMS") {
        let out = h.file("opened.txt");
        h.ok(&["decrypt", "--in", &env, "--out", &out], DEMO_PIN);
        assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(h.file("bid.txt")).unwrap(), "{env}");
    }
    let (pem, _) = armoured(&std::fs::read(h.file("e0.p7e")).unwrap(), "PKCS7");
    std::fs::write(h.file("e0.pkcs7.pem"), pem).unwrap();
    h.ok(&["decrypt", "--in", &h.file("e0.pkcs7.pem"), "--out", &h.file("o2.txt")], DEMO_PIN);
    // A PEM of the wrong kind is refused by its label, before any PIN.
    let (pem, _) = armoured(&std::fs::read(h.file("e0.p7e")).unwrap(), "PRIVATE KEY");
    std::fs::write(h.file("key.pem"), pem).unwrap();
    let out = h.run(&["--json", "--en", "decrypt", "--in", &h.file("key.pem"), "--out", &h.file("o3.txt")], DEMO_PIN);
    let e = &json(&out)["error"];
    assert!(e["detail"].as_str().unwrap().contains("PRIVATE KEY"), "{e}");
    assert_eq!(pin_prompts(&out), 0);
    // Signatures: verify takes each form, and a raw signature's certificate in each.
    h.ok(&["sign", "--in", &h.file("bid.txt"), "--out", &h.file("bid.p7s"), "--format", "cms-detached"], DEMO_PIN);
    for (i, sig) in variants("bid.p7s", "PKCS7").iter().enumerate() {
        let v = h.ok(&["verify", "--sig", sig, "--in", &h.file("bid.txt"), "--ca", &roots[i]], "");
        assert_eq!(v["ok"], true, "{sig}");
    }
    h.ok(&["sign", "--in", &h.file("bid.txt"), "--out", &h.file("bid.sig"), "--format", "raw"], DEMO_PIN);
    for c in variants("sign.der", "CERTIFICATE") {
        h.ok(&["verify", "--raw", "--sig", &h.file("bid.sig"), "--in", &h.file("bid.txt"), "--cert", &c], "");
    }
}

/// Settings with the PIN cache off.
fn cache_off(h: &Home) {
    std::fs::create_dir_all(h.home().join("config")).unwrap();
    std::fs::write(h.home().join("config").join("settings.toml"), "pin_cache_minutes = \"off\"\n").unwrap();
}

#[test]
fn keygen_into_a_new_container_asks_for_the_pin_once() {
    let h = Home::new();
    cache_off(&h);
    file_key(&h, "k", "user-pin-1", "so-pin-123");
    std::fs::write(h.file("m.txt"), b"message").unwrap();
    // One PIN line only: a second prompt would find stdin at its end and cancel.
    let args = ["--json", "--en", "filekey", "keygen", "--device", "file:k", "--container", "fresh", "--usage", "encrypt"];
    let out = h.run(&args, "user-pin-1\n");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(pin_prompts(&out), 1, "{}", String::from_utf8_lossy(&out.stderr));
    // The cache is off again: the next command, and each operation, asks.
    let out = h.run(
        &["--en", "sign", "--format", "raw", "--container", "c", "--in", &h.file("m.txt"), "--out", &h.file("m.sig")],
        "user-pin-1\n",
    );
    assert!(out.status.success());
    assert_eq!(pin_prompts(&out), 1);
    // A wrong PIN is not carried to the second operation: asked again, right, done.
    let args = ["--json", "--en", "filekey", "keygen", "--device", "file:k", "--container", "fresh2", "--usage", "sign"];
    let out = h.run(&args, "wrong-pin\nuser-pin-1\n");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(pin_prompts(&out), 2, "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn decrypt_checks_the_medium_can_open_the_envelope_before_the_pin() {
    let h = Home::new();
    cache_off(&h);
    h.demo();
    std::fs::write(h.file("bid.txt"), b"bid").unwrap();
    // Another toolkit may address an envelope to a signing certificate (ours refuses
    // to): a signing key pair does not decrypt (an SKF key's cannot), which is said
    // before any PIN, whichever slot was asked for. Stand-in: a signing certificate on
    // the medium and an encryption certificate with its issuer and serial, to encrypt to.
    file_key(&h, "s", "user-pin-1", "so-pin-123");
    let other = test_ca();
    h.ok(
        &[
            "filekey",
            "csr",
            "--device",
            "file:s",
            "--container",
            "c",
            "--usage",
            "sign",
            "--subject",
            "CN=签名, C=CN",
            "--out",
            &h.file("s.csr"),
        ],
        "user-pin-1\n",
    );
    let req = CertificationRequest::from_der(&std::fs::read(h.file("s.csr")).unwrap()).unwrap();
    let same = |usage| {
        let mut p = CertificateParams::leaf(&req.subject_dn(), usage, UnixTime::now().plus_days(-1), 30);
        p.serial = Some(vec![0x42, 0x42]);
        issue(&p, &req.public_key().unwrap(), Some(&other.cert), &other.signer).unwrap()
    };
    std::fs::write(h.file("s-sign.der"), same(KeyUsage::Sign).der()).unwrap();
    std::fs::write(h.file("s-enc.der"), same(KeyUsage::Encrypt).der()).unwrap();
    h.ok(
        &["filekey", "import-cert", "--device", "file:s", "--container", "c", "--usage", "sign", "--cert", &h.file("s-sign.der")],
        "user-pin-1\n",
    );
    h.ok(&["encrypt", "--to", &h.file("s-enc.der"), "--in", &h.file("bid.txt"), "--out", &h.file("to-sign.p7e")], "");
    let (env, x) = (h.file("to-sign.p7e"), h.file("x.txt"));
    for extra in [&[][..], &["--usage", "sign"][..]] {
        let mut args = vec!["--json", "--en", "decrypt", "--device", "file:s", "--in", &env, "--out", &x];
        args.extend_from_slice(extra);
        let out = h.run(&args, "user-pin-1\n");
        assert_eq!(code(&json(&out)["error"]), 3008, "{}", String::from_utf8_lossy(&out.stdout));
        assert_eq!(pin_prompts(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    }
    // For a certificate that is not on the medium: says so, naming the medium, no PIN.
    let key = PrivateKey::generate(Algorithm::Sm2).unwrap();
    let params = CertificateParams::leaf("C=CN,CN=别人", KeyUsage::Encrypt, UnixTime::now().plus_days(-1), 30);
    let cert = issue(&params, &key.public_key(), Some(&other.cert), &other.signer).unwrap();
    std::fs::write(h.file("other.der"), cert.der()).unwrap();
    h.ok(&["encrypt", "--to", &h.file("other.der"), "--in", &h.file("bid.txt"), "--out", &h.file("other.p7e")], "");
    let out = h.run(
        &["--json", "--en", "decrypt", "--device", "file:demo", "--in", &h.file("other.p7e"), "--out", &h.file("x.txt")],
        DEMO_PIN,
    );
    let e = &json(&out)["error"];
    assert_eq!(code(e), 3022);
    assert!(e["detail"].as_str().unwrap().contains("file:demo"), "{e}");
    assert_eq!(pin_prompts(&out), 0);
    assert!(!Path::new(&h.file("x.txt")).exists());

    // A second medium and container: the envelope finds its certificate without
    // --device or --container, and the PIN is asked once, for that medium.
    file_key(&h, "k", "user-pin-1", "so-pin-123");
    h.ok(&["filekey", "keygen", "--device", "file:k", "--container", "enc", "--usage", "encrypt"], "user-pin-1\n");
    h.ok(
        &[
            "filekey",
            "csr",
            "--device",
            "file:k",
            "--container",
            "enc",
            "--usage",
            "encrypt",
            "--subject",
            "CN=加密, C=CN",
            "--out",
            &h.file("k.csr"),
        ],
        "user-pin-1\n",
    );
    let req = CertificationRequest::from_der(&std::fs::read(h.file("k.csr")).unwrap()).unwrap();
    let params = CertificateParams::leaf(&req.subject_dn(), KeyUsage::Encrypt, UnixTime::now().plus_days(-1), 30);
    let kcert = issue(&params, &req.public_key().unwrap(), Some(&other.cert), &other.signer).unwrap();
    std::fs::write(h.file("k.der"), kcert.der()).unwrap();
    h.ok(
        &["filekey", "import-cert", "--device", "file:k", "--container", "enc", "--usage", "encrypt", "--cert", &h.file("k.der")],
        "user-pin-1\n",
    );
    h.ok(&["encrypt", "--to", &h.file("k.der"), "--in", &h.file("bid.txt"), "--out", &h.file("k.p7e")], "");
    let out = h.run(&["--json", "--en", "decrypt", "--in", &h.file("k.p7e"), "--out", &h.file("k.txt")], "user-pin-1\n");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(json(&out)["device"], "file:k");
    assert_eq!(json(&out)["container"], "enc");
    assert_eq!(pin_prompts(&out), 1);
    assert_eq!(std::fs::read(h.file("k.txt")).unwrap(), b"bid");
}

#[test]
fn a_medium_that_goes_away_mid_command_is_named() {
    use std::io::BufRead;
    let h = Home::new();
    file_key(&h, "k", "user-pin-1", "so-pin-123");
    std::fs::write(h.file("m.txt"), b"message").unwrap();
    let mut child = h.spawn(&["--json", "--en", "sign", "--format", "raw", "--in", &h.file("m.txt"), "--out", &h.file("m.sig")]);
    // While the PIN is being asked for, the medium goes away.
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("user PIN for") {
        line.clear();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "no PIN prompt");
    }
    // Every PIN prompt names who asks (issue 12, item 4).
    assert!(line.contains("requested by cli"), "{line}");
    std::fs::remove_file(h.keys().join("k.kbkey")).unwrap();
    child.stdin.take().unwrap().write_all(b"user-pin-1\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let e = &json(&out)["error"];
    assert_eq!(code(e), 4003, "{e}");
    let detail = e["detail"].as_str().unwrap();
    assert!(detail.contains("测试介质 k") && detail.contains("file:k") && detail.contains("file key"), "{detail}");
    assert!(!detail.contains("keybridge demo"), "{detail}");
}

#[test]
fn a_closed_stdout_ends_quietly() {
    let h = Home::new();
    h.demo();
    std::fs::write(h.file("m.txt"), b"message").unwrap();
    for _ in 0..3 {
        h.ok(&["sign", "--in", &h.file("m.txt"), "--out", &h.file("m.p7s")], DEMO_PIN);
    }
    let run_closed = |args: &[&str]| {
        let mut child = h.spawn(args);
        drop(child.stdin.take());
        // The reader goes away before anything is written (like `| head` after its lines).
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!stderr.contains("panicked") && !stderr.contains("Broken pipe"), "{args:?}: {stderr}");
        out.status.code()
    };
    for args in [&["audit"][..], &["--json", "audit"], &["certs"], &["--json", "devices"], &["cert", "show"]] {
        assert_eq!(run_closed(args), Some(0), "{args:?}");
    }
    // An error still has its status.
    assert_eq!(run_closed(&["--json", "cert", "show", "--file", "/nonexistent"]), Some(1));
}
