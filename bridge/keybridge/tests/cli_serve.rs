//! `keybridge serve` through the real binary: the demo key served on 127.0.0.1, a
//! native tool authenticating with the secret file, the PIN typed into the server's own
//! stdin (never sent by the client), grants managed with `keybridge bridge`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kb_bridge::client::{BridgeClient, ClientOptions};
use kb_bridge::secret::ClientSecret;
use serde_json::{Value, json};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn kb(home: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_keybridge"));
    c.arg("--home").arg(home).arg("--weak-kdf-for-tests").env_remove("KEYBRIDGE_HOME");
    c
}

fn json_of(c: &mut Command) -> Value {
    let out = c.arg("--json").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The server process, killed (by pid) when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(home: &Path, extra: &[&str]) -> (Server, Value) {
    let ready: PathBuf = home.join("ready.json");
    let mut child = kb(home)
        .args(["--pin-stdin", "serve", "--port", "0", "--ready-file"])
        .arg(&ready)
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The PIN goes to the server's own terminal input, never over the socket.
    child.stdin.take().unwrap().write_all(b"12345678\n").unwrap();
    let t0 = Instant::now();
    while !ready.exists() {
        assert!(t0.elapsed() < Duration::from_secs(60), "serve did not start");
        if let Some(s) = child.try_wait().unwrap() {
            panic!("serve exited: {s}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let r: Value = serde_json::from_slice(&std::fs::read(&ready).unwrap()).unwrap();
    (Server(child), r)
}

#[test]
fn serve_the_demo_key_to_a_native_tool() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    json_of(kb(&home).arg("demo"));
    let root = home.join("data/demo-ca/root.pem");
    let (_server, ready) = serve(&home, &["--trust", root.to_str().unwrap()]);
    assert!(ready["url"].as_str().unwrap().starts_with("ws://127.0.0.1:"));
    assert_eq!(ready["trust_anchors"], 1);
    assert_eq!(ready["consent"], "prompt");
    let secret_file = PathBuf::from(ready["secret_file"].as_str().unwrap());
    assert_eq!(secret_file, home.join("config/bridge-secret"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&secret_file).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let secret = ClientSecret::from_hex(&std::fs::read_to_string(&secret_file).unwrap()).unwrap();
        let url = ready["url"].as_str().unwrap().to_string();
        let c = BridgeClient::connect(ClientOptions {
            url: url.clone(),
            origin: None,
            secret: Some(secret),
            sdk: "bid-tool-test".into(),
        })
        .await
        .unwrap();
        let list = c.request(c.next_id(), "certificates.list", json!({"usage": "sign"})).await.unwrap();
        let thumb = list["certificates"][0]["thumbprint"].as_str().unwrap().to_string();
        let s = c
            .request(
                c.next_id(),
                "sign",
                json!({"certificate": {"thumbprint": thumb}, "input": {"data": "5oqV5qCH"}, "format": "cms_detached"}),
            )
            .await
            .unwrap();
        let v = c
            .request(
                c.next_id(),
                "verify",
                json!({"signature": s["signature"], "format": "cms_detached", "content": {"data": "5oqV5qCH"}}),
            )
            .await
            .unwrap();
        assert_eq!((v["valid"].as_bool(), v["chain"].as_str()), (Some(true), Some("trusted")), "{v}");
        // Without the secret: refused.
        let e = BridgeClient::connect(ClientOptions { url, origin: None, secret: None, sdk: "x".into() }).await.unwrap_err();
        assert_eq!(e.code(), Some(5003));
    });
    // The key use is in the audit log with the tool's name.
    let audit = json_of(kb(&home).args(["audit", "--days", "1"]));
    let text = audit.to_string();
    assert!(text.contains("native:bid-tool-test"), "{text}");
}

#[test]
fn grants_are_managed_and_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    json_of(kb(&home).arg("demo"));
    let g = json_of(kb(&home).args(["bridge", "allow", "HTTPS://Bid.Example.CN:443"]));
    assert_eq!(g["origin"], "https://bid.example.cn");
    json_of(kb(&home).args(["bridge", "deny", "https://evil.example"]));
    let list = json_of(kb(&home).args(["bridge", "grants"]));
    assert_eq!(list.as_array().unwrap().len(), 2);
    let bad = kb(&home).args(["--json", "bridge", "allow", "http://bid.example.cn"]).output().unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stdout).contains("1004") || String::from_utf8_lossy(&bad.stderr).contains("1004"));

    let (_server, ready) = serve(&home, &["--consent", "grants-only", "--allow-origin", "http://127.0.0.1:9"]);
    let url = ready["url"].as_str().unwrap().to_string();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let web = |origin: &str| {
            BridgeClient::connect(ClientOptions {
                url: url.clone(),
                origin: Some(origin.into()),
                secret: None,
                sdk: "keybridge-js".into(),
            })
        };
        let ok = web("https://bid.example.cn").await.unwrap();
        ok.request(ok.next_id(), "devices.list", json!({})).await.unwrap();
        let session = web("http://127.0.0.1:9").await.unwrap();
        session.request(session.next_id(), "devices.list", json!({})).await.unwrap();
        let e = web("https://evil.example").await.unwrap_err();
        assert_eq!(e.code(), Some(5002));
        // grants-only: nobody to ask, so an origin without a grant is refused at the handshake.
        let e = web("https://stranger.example").await.unwrap_err();
        assert_eq!(e.code(), Some(5002));
        // `keybridge bridge revoke` in another process applies to the running server at
        // once: the site's open connection is dropped and it cannot connect again.
        let r = json_of(kb(&home).args(["bridge", "revoke", "https://bid.example.cn"]));
        assert_eq!(r["revoked"], true);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while ok.request(ok.next_id(), "devices.list", json!({})).await.is_ok() {
            assert!(std::time::Instant::now() < deadline, "the revoked site is still served");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert_eq!(web("https://bid.example.cn").await.unwrap_err().code(), Some(5002));
    });
    // Session grants are never written down.
    let list = json_of(kb(&home).args(["bridge", "grants"]));
    assert!(!list.to_string().contains("127.0.0.1"));
}

/// Native messaging: length-prefixed JSON (native byte order).
fn native_frame(v: &Value) -> Vec<u8> {
    let body = serde_json::to_vec(v).unwrap();
    [(body.len() as u32).to_ne_bytes().to_vec(), body].concat()
}

/// Starts the host as a browser does (the extension's origin its only argument), sends
/// `open` for `origin` and `texts`, reads `want` messages, then closes the pipe as the
/// browser does when the page goes away (unless `ends_itself`: a refused connection's
/// host must exit with the pipe still open — the browser waits for it); the host must
/// then end cleanly, having written nothing else.
fn native_host(home: &Path, origin: &str, texts: &[Value], want: usize, ends_itself: bool) -> Vec<Value> {
    use std::io::Read;
    let mut child = Command::new(env!("CARGO_BIN_EXE_keybridge"))
        .arg("chrome-extension://aomgeigggnonmephipbmolmfcaagmdme/")
        .env("KEYBRIDGE_HOME", home)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&native_frame(&json!({"type": "open", "origin": origin}))).unwrap();
    for t in texts {
        stdin.write_all(&native_frame(&json!({"type": "text", "data": t.to_string()}))).unwrap();
    }
    let mut stdout = child.stdout.take().unwrap();
    let mut msgs = Vec::new();
    while msgs.len() < want {
        let mut len = [0u8; 4];
        stdout.read_exact(&mut len).unwrap();
        let mut body = vec![0u8; u32::from_ne_bytes(len) as usize];
        stdout.read_exact(&mut body).unwrap();
        msgs.push(serde_json::from_slice(&body).unwrap());
    }
    if ends_itself {
        let t0 = Instant::now();
        while child.try_wait().unwrap().is_none() {
            assert!(t0.elapsed() < Duration::from_secs(30), "the host waits for the browser to close the pipe");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    drop(stdin);
    let mut rest = Vec::new();
    stdout.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "more on the host's stdout: {}", String::from_utf8_lossy(&rest));
    assert!(child.wait().unwrap().success());
    msgs
}

#[test]
fn a_browser_starts_the_host_which_reaches_the_bridge_with_the_page_origin() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    json_of(kb(&home).arg("demo"));
    let (_server, ready) = serve(&home, &["--consent", "grants-only", "--allow-origin", "https://bid.example.cn"]);
    // The host finds the bridge where the settings say it is.
    std::fs::write(home.join("config/settings.toml"), format!("bridge_port = {}\n", ready["port"])).unwrap();
    let hello = json!({"jsonrpc": "2.0", "id": 1, "method": "hello", "params": {"schema_version": 1, "sdk": "page"}});
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "certificates.list", "params": {"usage": "sign"}});

    let msgs = native_host(&home, "https://bid.example.cn", &[hello.clone(), list], 3, false);
    assert_eq!(msgs[0], json!({"type": "open", "origin": "https://bid.example.cn"}), "{msgs:?}");
    let texts: Vec<Value> = msgs[1..].iter().map(|m| serde_json::from_str(m["data"].as_str().unwrap()).unwrap()).collect();
    assert_eq!(texts[0]["result"]["schema_version"], 1, "{msgs:?}");
    assert_eq!(texts[1]["result"]["certificates"].as_array().unwrap().len(), 1, "{}", texts[1]);

    // Another origin is refused by the bridge (grants-only), with its code.
    let msgs = native_host(&home, "https://evil.example", &[hello], 1, true);
    assert_eq!(msgs[0]["type"], "error", "{msgs:?}");
    assert_eq!(msgs[0]["error"]["code"], 5002);
}

#[test]
fn host_manifests_are_installed_and_removed_for_the_user() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let config = dir.path().join("config");
    let run = |args: &[&str]| json_of(kb(&home).env("XDG_CONFIG_HOME", &config).args(["browser"]).args(args));
    let installed = run(&["install-host"]);
    let files: Vec<PathBuf> = installed.as_array().unwrap().iter().map(|m| PathBuf::from(m["file"].as_str().unwrap())).collect();
    let expect: Vec<PathBuf> = ["chromium", "google-chrome", "microsoft-edge"]
        .iter()
        .map(|b| config.join(b).join("NativeMessagingHosts/com.keybridge.host.json"))
        .collect();
    assert_eq!(files, expect);
    for f in &files {
        let m: Value = serde_json::from_slice(&std::fs::read(f).unwrap()).unwrap();
        assert_eq!(PathBuf::from(m["path"].as_str().unwrap()), PathBuf::from(env!("CARGO_BIN_EXE_keybridge")));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(f).unwrap().permissions().mode() & 0o777, 0o644, "the browser must read it");
        }
    }
    let removed = run(&["remove-host", "--browser", "edge"]);
    assert_eq!(removed[0]["state"], "removed");
    assert!(!files[2].exists() && files[0].exists());
    assert_eq!(run(&["remove-host", "--browser", "edge"])[0]["state"], "absent");
}
