//! The phone as the PC's key, end to end over real processes on loopback: the real
//! `keybridge` (pairing, then `serve`) and the real `keybridge-phone` (its own home and
//! file-type key). A native tool signs through the bridge with the phone's certificate;
//! the PIN is typed only into the phone process; the signature verifies; the audit says
//! auth `phone`; a refusal gives its code; the phone killed mid-signature fails the
//! request cleanly and its medium goes offline; restarted, it is back online without a
//! restart of KeyBridge. Over the direct listener and through a NATS relay.
//!
//! Run with both binaries built: `cargo test -p keybridge -p keybridge-phone --test e2e`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stdout)]

use kb_bridge::client::{BridgeClient, ClientError, ClientOptions};
use kb_bridge::secret::ClientSecret;
use kb_types::ErrorCode;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);
const PIN: &str = "12345678";

fn phone_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_keybridge-phone"))
}

fn keybridge_bin() -> PathBuf {
    let p = phone_bin().with_file_name("keybridge");
    assert!(p.exists(), "build keybridge too: cargo test -p keybridge -p keybridge-phone");
    p
}

fn kb(home: &Path) -> Command {
    let mut c = Command::new(keybridge_bin());
    c.arg("--home").arg(home).env_remove("KEYBRIDGE_HOME").env("KEYBRIDGE_PHONE_SECRETS", "file");
    c
}

fn ph(home: &Path) -> Command {
    let mut c = Command::new(phone_bin());
    c.arg("--home").arg(home).arg("--json");
    c
}

/// A child process killed (by pid) when dropped, its stdout lines as JSON events.
struct Proc {
    child: Child,
    lines: Receiver<String>,
    stdin: Option<ChildStdin>,
}

impl Proc {
    fn spawn(mut c: Command) -> Proc {
        let mut child = c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines() {
                let Ok(l) = l else { break };
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        Proc { child, lines, stdin }
    }

    /// The next JSON event satisfying `pred` (others are skipped).
    fn expect(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.lines.recv_timeout(left).unwrap_or_else(|e| panic!("waiting for {what}: {e}"));
            let Ok(v) = serde_json::from_str::<Value>(&line) else { continue };
            if pred(&v) {
                return v;
            }
        }
    }

    fn event(&mut self, name: &str) -> Value {
        self.expect(name, |v| v["event"] == name)
    }

    fn type_line(&mut self, s: &str) {
        let i = self.stdin.as_mut().unwrap();
        writeln!(i, "{s}").unwrap();
        i.flush().unwrap();
    }

    fn wait_success(mut self) {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                assert!(s.success(), "exited with {s}");
                return;
            }
            assert!(Instant::now() < deadline, "the process did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn json_of(c: &mut Command) -> Value {
    let out = c.arg("--json").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A PC home with these phone settings, and a phone home with its demo key.
struct Homes {
    _dir: tempfile::TempDir,
    pc: PathBuf,
    phone: PathBuf,
}

fn homes(settings: &str) -> Homes {
    let dir = tempfile::tempdir().unwrap();
    let (pc, phone) = (dir.path().join("pc"), dir.path().join("phone"));
    std::fs::create_dir_all(pc.join("config")).unwrap();
    std::fs::write(pc.join("config/settings.toml"), settings).unwrap();
    let out = ph(&phone).args(["init", "--weak-kdf-for-tests"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    Homes { _dir: dir, pc, phone }
}

/// `keybridge phone pair --yes` against `keybridge-phone pair`: both show the same code,
/// the PC confirms, both finish.
fn pair(h: &Homes) {
    let mut pc = Proc::spawn({
        let mut c = kb(&h.pc);
        c.args(["--json", "--yes", "phone", "pair"]);
        c
    });
    let offer = pc.event("offer");
    let text = offer["text"].as_str().unwrap().to_owned();
    assert!(text.starts_with("KB1:"), "{offer}");
    let mut phone = Proc::spawn({
        let mut c = ph(&h.phone);
        c.args(["pair", &text]);
        c
    });
    let code = phone.event("code")["code"].as_str().unwrap().to_owned();
    let asked = pc.event("awaiting_confirmation");
    assert_eq!(asked["code"], code.as_str(), "both screens show the same code");
    pc.event("paired");
    phone.event("paired");
    pc.wait_success();
    phone.wait_success();
    let list = json_of(kb(&h.pc).args(["phone", "list"]));
    assert_eq!(list["phones"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list["secrets"]["kind"], "file", "{list}");
}

/// `keybridge serve` on a free port, trusting the phone's demo CA.
fn serve(h: &Homes) -> (Proc, String, ClientSecret) {
    serve_typing(h, None)
}

/// The same, with `pc_pin` typed into the server's own stdin (for a PC medium's PIN).
fn serve_typing(h: &Homes, pc_pin: Option<&str>) -> (Proc, String, ClientSecret) {
    let ready = h.pc.join("ready.json");
    let root = h.phone.join("data/demo-ca/root.pem");
    let mut c = kb(&h.pc);
    c.args(["--pin-stdin", "serve", "--port", "0", "--ready-file"]).arg(&ready).arg("--trust").arg(&root);
    let mut p = Proc::spawn(c);
    let t0 = Instant::now();
    while !ready.exists() {
        assert!(t0.elapsed() < WAIT, "serve did not start");
        if let Some(s) = p.child.try_wait().unwrap() {
            panic!("serve exited: {s}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // The PC is never asked for the phone's PIN: nothing but a PC medium's PIN is typed
    // into serve.
    if let Some(pin) = pc_pin {
        p.type_line(pin);
    }
    let r: Value = serde_json::from_slice(&std::fs::read(&ready).unwrap()).unwrap();
    let secret = ClientSecret::from_hex(&std::fs::read_to_string(r["secret_file"].as_str().unwrap()).unwrap()).unwrap();
    p.stdin.take();
    (p, r["url"].as_str().unwrap().to_owned(), secret)
}

fn run_phone(h: &Homes, extra: &[&str]) -> Proc {
    let mut c = ph(&h.phone);
    c.args(["run", "--pin-stdin"]).args(extra);
    let mut p = Proc::spawn(c);
    p.event("connected");
    p
}

async fn client(url: &str, secret: &ClientSecret, sdk: &str) -> BridgeClient {
    BridgeClient::connect(ClientOptions { url: url.into(), origin: None, secret: Some(secret.clone()), sdk: sdk.into() })
        .await
        .unwrap()
}

/// The phone's medium, once the bridge lists it with the given reachability.
async fn phone_medium(c: &BridgeClient, online: bool) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let l = c.request(c.next_id(), "devices.list", json!({})).await.unwrap();
        let offline: Vec<&str> =
            l["offline"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
        let phone = l["devices"].as_array().unwrap().iter().find(|d| d["transport"] == "phone");
        if let Some(d) = phone {
            let id = d["id"].as_str().unwrap().to_owned();
            if offline.contains(&id.as_str()) != online {
                return id;
            }
        }
        assert!(Instant::now() < deadline, "the phone's medium is not {}: {l}", if online { "online" } else { "offline" });
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn sign_thumb(c: &BridgeClient) -> String {
    let list = c.request(c.next_id(), "certificates.list", json!({"usage": "sign"})).await.unwrap();
    let cert = list["certificates"].as_array().unwrap().iter().find(|x| x["subject"].as_str().unwrap_or("").contains("演示用户"));
    cert.unwrap_or_else(|| panic!("the phone's signing certificate: {list}"))["thumbprint"].as_str().unwrap().to_owned()
}

fn sign_params(thumb: &str) -> Value {
    json!({"certificate": {"thumbprint": thumb}, "input": {"data": "5oqV5qCH"}, "format": "cms_detached"})
}

fn code_of(e: &ClientError) -> Option<i32> {
    e.code()
}

fn the_phone_signs_for_the_pc(h: &Homes) {
    let (_server, url, secret) = serve(h);
    let mut phone = run_phone(h, &[]);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let c = client(&url, &secret, "bid-tool").await;
        phone_medium(&c, true).await;
        let thumb = sign_thumb(&c).await;

        // Sign: the phone shows the context and asks its own PIN.
        let call = c.begin(c.next_id(), "sign", sign_params(&thumb)).await.unwrap();
        let req = phone.event("request");
        assert_eq!(req["kind"], "sign");
        assert_eq!(req["pin"], true, "{req}");
        assert!(req["client"].as_str().unwrap().contains("bid-tool"), "{req}");
        assert!(req["certificate"].as_str().unwrap().contains("演示用户"), "{req}");
        assert!(!req["digest"].as_str().unwrap().is_empty(), "{req}");
        phone.type_line(PIN);
        let s = call.response().await.unwrap();
        let v = c
            .request(
                c.next_id(),
                "verify",
                json!({"signature": s["signature"], "format": "cms_detached", "content": {"data": "5oqV5qCH"}}),
            )
            .await
            .unwrap();
        assert_eq!((v["valid"].as_bool(), v["chain"].as_str()), (Some(true), Some("trusted")), "{v}");

        // Another tool: the phone's PIN cache is per client, so it asks again; the phone
        // is killed while it waits → a clean error, and the medium goes offline.
        let other = client(&url, &secret, "other-tool").await;
        let call = other.begin(other.next_id(), "sign", sign_params(&thumb)).await.unwrap();
        phone.event("request");
        phone.kill();
        let e = tokio::time::timeout(WAIT, call.response()).await.expect("the request ends within the bound").unwrap_err();
        let code = code_of(&e).expect("a stable code");
        // Behind a relay the PC learns that the phone vanished only from the link's
        // keep-alive bound (25 s), which the request's own 30 s timeout can still beat on a
        // busy machine: request_timeout is then the clean end; the medium going offline is
        // checked next either way.
        assert!(
            [ErrorCode::OutcomeUnknown, ErrorCode::MediumOffline, ErrorCode::Cancelled, ErrorCode::RequestTimeout]
                .iter()
                .any(|c| c.number() as i32 == code),
            "{e:?}"
        );
        phone_medium(&c, false).await;

        // Restarted (refusing): online again without restarting KeyBridge; the refusal
        // arrives with its code.
        let mut refusing = run_phone(h, &["--refuse", "不是我的操作"]);
        phone_medium(&c, true).await;
        let e = c.request(c.next_id(), "sign", sign_params(&thumb)).await.unwrap_err();
        assert_eq!(code_of(&e), Some(ErrorCode::RefusedOnMedium.number() as i32), "{e:?}");
        refusing.event("refused");
    });
    drop(rt);

    // The audit log: the phone's signature with auth type phone, the refusal failed.
    let audit = json_of(kb(&h.pc).args(["audit", "--days", "1"]));
    let records = audit.as_array().cloned().or_else(|| audit["records"].as_array().cloned()).unwrap_or_default();
    let ok = records.iter().any(|r| r["auth"] == "phone" && r["device_type"] == "phone" && r["result"] == "ok");
    let refused = records.iter().any(|r| r["auth"] == "phone" && r["error_name"] == "refused_on_medium");
    assert!(ok && refused, "{audit}");
}

#[test]
fn a_phone_paired_over_the_direct_listener_signs_through_the_bridge() {
    let port = free_port();
    let h = homes(&format!("phone_listen = [\"127.0.0.1:{port}\"]\n"));
    pair(&h);
    the_phone_signs_for_the_pc(&h);
}

/// nats-server on loopback (TCP port unused by the test; WebSocket for both ends).
struct Nats(Child);

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn nats(dir: &Path) -> (Nats, u16) {
    let (port, ws) = (free_port(), free_port());
    let conf = dir.join("nats.conf");
    std::fs::write(
        &conf,
        format!(
            "listen: \"127.0.0.1:{port}\"\nmax_payload: 66560\nwebsocket {{\n  listen: \"127.0.0.1:{ws}\"\n  no_tls: true\n  compression: false\n}}\n"
        ),
    )
    .unwrap();
    let child = Command::new("nats-server").arg("-c").arg(&conf).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + WAIT;
    while std::net::TcpStream::connect(("127.0.0.1", ws)).is_err() {
        assert!(Instant::now() < deadline, "nats-server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    (Nats(child), ws)
}

#[test]
fn a_phone_paired_through_the_relay_signs_through_the_bridge() {
    let dir = tempfile::tempdir().unwrap();
    let (_nats, ws) = nats(dir.path());
    let h = homes(&format!("phone_relay_url = \"ws://127.0.0.1:{ws}\"\n"));
    pair(&h);
    the_phone_signs_for_the_pc(&h);
}

/// p50 and p99 of `samples` in milliseconds.
fn percentiles(mut samples: Vec<Duration>) -> (f64, f64) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize].as_secs_f64() * 1000.0;
    (at(0.50), at(0.99))
}

/// Sign round trips through the bridge with the phone's certificate (PIN cached on the
/// phone) against the PC's own file key, same run. A measurement, not a test:
/// `cargo test --release -p keybridge -p keybridge-phone --test e2e -- --ignored --nocapture bench`.
#[test]
#[ignore = "benchmark"]
fn bench_sign_round_trip_phone_vs_file_key() {
    const N: usize = 200;
    let dir = tempfile::tempdir().unwrap();
    let (_nats, ws) = nats(dir.path());
    for (name, settings) in [
        ("direct", format!("phone_listen = [\"127.0.0.1:{}\"]\n", free_port())),
        ("relay", format!("phone_relay_url = \"ws://127.0.0.1:{ws}\"\n")),
    ] {
        let h = homes(&settings);
        let demo = kb(&h.pc).args(["--weak-kdf-for-tests", "--json", "demo"]).output().unwrap();
        assert!(demo.status.success(), "{}", String::from_utf8_lossy(&demo.stderr));
        pair(&h);
        let (_server, url, secret) = serve_typing(&h, Some(PIN));
        let mut phone = run_phone(&h, &[]);
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async {
            let c = client(&url, &secret, "bench").await;
            phone_medium(&c, true).await;
            let list = c.request(c.next_id(), "certificates.list", json!({"usage": "sign"})).await.unwrap();
            let certs = list["certificates"].as_array().unwrap().clone();
            let thumb_of = |dev: &str| {
                certs.iter().find(|x| x["device"].as_str().unwrap_or("").starts_with(dev)).unwrap_or_else(|| panic!("{list}"))
                    ["thumbprint"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            };
            let (phone_thumb, file_thumb) = (thumb_of("phone:"), thumb_of("file:"));
            // Warm up: the phone's PIN once (then cached for this client), the PC's PIN once.
            let call = c.begin(c.next_id(), "sign", sign_params(&phone_thumb)).await.unwrap();
            phone.event("request");
            phone.type_line(PIN);
            call.response().await.unwrap();
            c.request(c.next_id(), "sign", sign_params(&file_thumb)).await.unwrap();
            let params = json!({"certificate": {"thumbprint": ""}, "input": {"data": "5oqV5qCH"}, "format": "raw"});
            for (label, thumb) in [("phone", &phone_thumb), ("file key", &file_thumb)] {
                let mut p = params.clone();
                p["certificate"]["thumbprint"] = json!(thumb);
                let mut samples = Vec::with_capacity(N);
                for _ in 0..N {
                    let t0 = Instant::now();
                    c.request(c.next_id(), "sign", p.clone()).await.unwrap();
                    samples.push(t0.elapsed());
                }
                let (p50, p99) = percentiles(samples);
                println!("sign round trip via bridge, {label} ({name} run), n={N}: p50 {p50:.2} ms, p99 {p99:.2} ms");
            }
        });
    }
}
