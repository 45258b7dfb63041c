//! Shared helpers for KeyBridge's interoperability tests (`tests/*.rs`).
//!
//! The peers are implementations nobody here wrote:
//! - the OpenSSL 3 command line (`openssl` on `PATH`, or `$KB_OPENSSL`);
//! - PyPI `gmssl`, in the venv `installer/bootstrap.sh` makes at `$KB_TOOLS/venv`
//!   (default `~/.cache/keybridge/venv`), driven by `py/gmssl_peer.py`;
//! - npm `sm-crypto`, installed by the bootstrap in `node/node_modules`, driven by
//!   `node/sm_crypto_peer.js`.
//! - the GmSSL 3.1.1 command line (`gmssl`: GM/T 0010 SM2 CMS, written by the GmSSL
//!   project), built by the bootstrap from the GmSSL source that PyPI's `easy_gmssl`
//!   sdist ships, into `$KB_TOOLS/gmssl-3.1.1/bin/gmssl` (or `$KB_GMSSL`).
//!
//! The scripts read one JSON request on stdin and write one JSON reply on stdout; byte
//! strings are hex. A peer that is missing (or not the pinned version) makes a test
//! print a loud `SKIP` line and return, unless `KB_INTEROP_REQUIRED=1` (CI), where it
//! fails and says to run `installer/bootstrap.sh`.
//!
//! [`openssl_ca`] runs a CA with `openssl ca` / `openssl ocsp` (revocation tests).
//! [`softhsm`] runs SoftHSM2 (a real PKCS#11 module) with OpenSC's `pkcs11-tool`.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

pub mod openssl_ca;
pub mod softhsm;

use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

/// This crate's directory (`tests/interop`).
pub fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Whether a missing peer is a failure (`KB_INTEROP_REQUIRED=1`, set by CI).
pub fn required() -> bool {
    std::env::var("KB_INTEROP_REQUIRED").is_ok_and(|v| v == "1")
}

/// Report an unavailable peer: panic when [`required`], otherwise print a loud SKIP to
/// stderr. Always returns `None` so a test can `let Some(p) = … else { return };`.
pub fn unavailable<T>(peer: &str, why: &str) -> Option<T> {
    let msg = format!("interop peer `{peer}` is unavailable: {why}. Run installer/bootstrap.sh to install the test peers.");
    if required() {
        panic!("{msg} (KB_INTEROP_REQUIRED=1, so this is a failure)");
    }
    // Straight to the process's stderr: `eprintln!` would be swallowed by the test
    // harness's output capture for a test that then passes.
    let line = format!("\n!!!!!!!! SKIP: {msg} (set KB_INTEROP_REQUIRED=1 to make this fail) !!!!!!!!\n");
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
    None
}

/// Run `cmd` with `stdin` fed from a separate thread (no pipe deadlock on big inputs).
pub fn run_with_stdin(cmd: &mut Command, stdin: &[u8]) -> Output {
    try_run_with_stdin(cmd, stdin).unwrap_or_else(|e| panic!("{e}"))
}

fn try_run_with_stdin(cmd: &mut Command, stdin: &[u8]) -> Result<Output, String> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {cmd:?}: {e}"))?;
    let mut pipe = child.stdin.take().ok_or("stdin is not piped")?;
    let input = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        // A peer that exits early closes the pipe; its exit status tells the story.
        let _ = pipe.write_all(&input);
    });
    let out = child.wait_with_output().map_err(|e| format!("waiting for {cmd:?}: {e}"))?;
    let _ = writer.join();
    Ok(out)
}

fn describe(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

// ------------------------------------------------------------------ OpenSSL

/// The OpenSSL 3 command-line tool.
#[derive(Clone, Debug)]
pub struct OpenSsl {
    bin: PathBuf,
    /// `openssl version` output.
    pub version: String,
}

/// The OpenSSL 3 CLI, or `None` (after a SKIP / panic) if there is none.
pub fn openssl() -> Option<OpenSsl> {
    static FOUND: OnceLock<Result<OpenSsl, String>> = OnceLock::new();
    let found = FOUND.get_or_init(|| {
        let bin = std::env::var_os("KB_OPENSSL").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("openssl"));
        let out = Command::new(&bin).arg("version").output().map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
        let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !out.status.success() || !version.starts_with("OpenSSL 3.") {
            return Err(format!("`{} version` says {version:?}; OpenSSL 3.x is needed", bin.display()));
        }
        Ok(OpenSsl { bin, version })
    });
    match found {
        Ok(o) => Some(o.clone()),
        Err(why) => unavailable("openssl", why),
    }
}

impl OpenSsl {
    /// Run `openssl args…` with `stdin`; the caller checks the status.
    pub fn run(&self, args: &[&str], stdin: &[u8]) -> Output {
        run_with_stdin(Command::new(&self.bin).args(args), stdin)
    }

    /// Run `openssl args…`; panic unless it succeeds; return stdout.
    pub fn ok(&self, args: &[&str]) -> Vec<u8> {
        self.ok_stdin(args, b"")
    }

    /// Run `openssl args…` with `stdin`; panic unless it succeeds; return stdout.
    pub fn ok_stdin(&self, args: &[&str], stdin: &[u8]) -> Vec<u8> {
        let out = self.run(args, stdin);
        assert!(out.status.success(), "openssl {} failed: {}", args.join(" "), describe(&out));
        out.stdout
    }

    /// Run `openssl args…`; panic if it *succeeds* (for negative checks).
    pub fn fails(&self, args: &[&str]) {
        let out = self.run(args, b"");
        assert!(!out.status.success(), "openssl {} unexpectedly succeeded: {}", args.join(" "), describe(&out));
    }
}

// ------------------------------------------------------------------ GmSSL

/// The GmSSL version the bootstrap builds (pinned there as `GMSSL_VERSION`).
pub const GMSSL_VERSION: &str = "3.1.1";

/// The GmSSL 3 command-line tool.
#[derive(Clone, Debug)]
pub struct GmSsl {
    bin: PathBuf,
}

/// The GmSSL CLI, or `None` (after a SKIP / panic) if there is none.
pub fn gmssl_cli() -> Option<GmSsl> {
    static FOUND: OnceLock<Result<GmSsl, String>> = OnceLock::new();
    let found = FOUND.get_or_init(|| {
        let bin = std::env::var_os("KB_GMSSL")
            .map(PathBuf::from)
            .unwrap_or_else(|| kb_tools().join(format!("gmssl-{GMSSL_VERSION}")).join("bin").join("gmssl"));
        let out = Command::new(&bin).arg("version").output().map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
        let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !out.status.success() || version != format!("GmSSL {GMSSL_VERSION}") {
            return Err(format!("`{} version` says {version:?}; GmSSL {GMSSL_VERSION} is pinned", bin.display()));
        }
        Ok(GmSsl { bin })
    });
    match found {
        Ok(g) => Some(g.clone()),
        Err(why) => unavailable("gmssl CLI (GmSSL, from PyPI easy_gmssl's source)", why),
    }
}

impl GmSsl {
    /// Run `gmssl args…`; the caller checks the status.
    pub fn run(&self, args: &[&str]) -> Output {
        run_with_stdin(Command::new(&self.bin).args(args), b"")
    }

    /// Run `gmssl args…`; panic unless it succeeds; return stdout.
    pub fn ok(&self, args: &[&str]) -> Vec<u8> {
        let out = self.run(args);
        assert!(out.status.success(), "gmssl {} failed: {}", args.join(" "), describe(&out));
        out.stdout
    }
}

// ------------------------------------------------------------------ script peers

/// A peer library driven by a JSON-over-stdio script.
#[derive(Clone, Debug)]
pub struct Peer {
    name: &'static str,
    program: PathBuf,
    script: PathBuf,
    /// The library version the peer reported.
    pub version: String,
}

impl Peer {
    /// Send one request; return the reply. Panics (with the peer's stderr) if the peer
    /// fails or replies with `{"error": …}`.
    pub fn call(&self, request: Value) -> Value {
        self.try_call(&request).unwrap_or_else(|e| panic!("{} peer, request {request}: {e}", self.name))
    }

    fn try_call(&self, request: &Value) -> Result<Value, String> {
        let out = try_run_with_stdin(Command::new(&self.program).arg(&self.script), request.to_string().as_bytes())?;
        let reply: Value =
            serde_json::from_slice(&out.stdout).map_err(|e| format!("unreadable reply ({e}): {}", describe(&out)))?;
        if let Some(err) = reply.get("error") {
            return Err(format!("peer error: {err}\n{}", describe(&out)));
        }
        if !out.status.success() {
            return Err(describe(&out));
        }
        Ok(reply)
    }

    /// Send several requests to one peer process; the replies come back in order.
    pub fn call_batch(&self, requests: Vec<Value>) -> Vec<Value> {
        let n = requests.len();
        let reply = self.call(serde_json::json!({ "op": "batch", "requests": requests }));
        match reply.get("replies").and_then(Value::as_array) {
            Some(r) if r.len() == n => r.clone(),
            _ => panic!("{} peer: batch of {n} answered {reply}", self.name),
        }
    }

    /// `reply[field]` as a string.
    pub fn call_str(&self, request: Value, field: &str) -> String {
        let reply = self.call(request);
        match reply.get(field).and_then(Value::as_str) {
            Some(s) => s.to_string(),
            None => panic!("{} peer: no string `{field}` in reply {reply}", self.name),
        }
    }

    /// `reply[field]` as hex-decoded bytes.
    pub fn call_hex(&self, request: Value, field: &str) -> Vec<u8> {
        let s = self.call_str(request, field);
        hex::decode(&s).unwrap_or_else(|e| panic!("{} peer: `{field}` is not hex ({e}): {s}", self.name))
    }

    /// `reply[field]` as a bool.
    pub fn call_bool(&self, request: Value, field: &str) -> bool {
        let reply = self.call(request);
        match reply.get(field).and_then(Value::as_bool) {
            Some(b) => b,
            None => panic!("{} peer: no bool `{field}` in reply {reply}", self.name),
        }
    }
}

/// `$KB_TOOLS`, or `~/.cache/keybridge`.
pub fn kb_tools() -> PathBuf {
    if let Some(t) = std::env::var_os("KB_TOOLS").filter(|t| !t.is_empty()) {
        return PathBuf::from(t);
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
    home.join(".cache").join("keybridge")
}

/// The version `file` pins for `package` (a `name==x.y.z` line or a `"name": "x.y.z"` entry).
fn pinned_version(file: &Path, package: &str) -> Result<String, String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    for line in text.lines() {
        let line = line.trim();
        if let Some(v) = line.strip_prefix(&format!("{package}==")) {
            return Ok(v.trim().to_string());
        }
        if let Some(rest) = line.strip_prefix(&format!("\"{package}\":")) {
            return Ok(rest.trim().trim_end_matches(',').trim_matches('"').to_string());
        }
    }
    Err(format!("{} does not pin {package}", file.display()))
}

fn find_peer(name: &'static str, program: PathBuf, script: PathBuf, pin_file: &Path, package: &str) -> Result<Peer, String> {
    if !program.exists() && program.components().count() > 1 {
        return Err(format!("{} does not exist", program.display()));
    }
    let want = pinned_version(pin_file, package)?;
    let mut peer = Peer { name, program, script, version: String::new() };
    let reply = peer.try_call(&serde_json::json!({ "op": "version" }))?;
    let got = reply.get("version").and_then(Value::as_str).unwrap_or_default().to_string();
    if got != want {
        return Err(format!("{package} {got:?} is installed but {} pins {want}", pin_file.display()));
    }
    peer.version = got;
    Ok(peer)
}

/// PyPI `gmssl` (pure-Python SM2/SM3/SM4) in the bootstrap venv.
pub fn gmssl() -> Option<Peer> {
    static FOUND: OnceLock<Result<Peer, String>> = OnceLock::new();
    let found = FOUND.get_or_init(|| {
        let python = kb_tools().join("venv").join("bin").join("python");
        find_peer("gmssl", python, crate_dir().join("py").join("gmssl_peer.py"), &crate_dir().join("requirements.txt"), "gmssl")
    });
    match found {
        Ok(p) => Some(p.clone()),
        Err(why) => unavailable("gmssl (PyPI)", why),
    }
}

/// npm `sm-crypto` in `tests/interop/node/node_modules`.
pub fn sm_crypto() -> Option<Peer> {
    static FOUND: OnceLock<Result<Peer, String>> = OnceLock::new();
    let found = FOUND.get_or_init(|| {
        let node_dir = crate_dir().join("node");
        if !node_dir.join("node_modules").join("sm-crypto").join("package.json").exists() {
            return Err(format!("{} has no sm-crypto", node_dir.join("node_modules").display()));
        }
        let node = std::env::var_os("KB_NODE").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("node"));
        find_peer("sm-crypto", node, node_dir.join("sm_crypto_peer.js"), &node_dir.join("package.json"), "sm-crypto")
    });
    match found {
        Ok(p) => Some(p.clone()),
        Err(why) => unavailable("sm-crypto (npm)", why),
    }
}

// ------------------------------------------------------------------ data

/// `n` bytes from the OS CSPRNG.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    kb_crypto::rng::fill(&mut v).expect("OS RNG");
    v
}

/// A uniformly random length in `lo..=hi`.
pub fn random_len(lo: usize, hi: usize) -> usize {
    let r = u64::from_le_bytes(kb_crypto::rng::random_array::<8>().expect("OS RNG"));
    lo + (r % (hi - lo + 1) as u64) as usize
}

/// A random message of random length in `1..=max`.
pub fn random_message(max: usize) -> Vec<u8> {
    random_bytes(random_len(1, max))
}

/// A random printable-ASCII distinguishing ID (never the GM/T default).
pub fn random_ascii_id() -> String {
    format!("kb-{}@interop.example", hex::encode(random_bytes(6)))
}

/// A fixed 16-byte array from random bytes.
pub fn random16() -> [u8; 16] {
    kb_crypto::rng::random_array::<16>().expect("OS RNG")
}

/// PEM-armour `der` under `label`.
pub fn pem(label: &str, der: &[u8]) -> String {
    der::pem::encode_string(label, der::pem::LineEnding::LF, der).expect("PEM encoding")
}

/// A fresh temporary directory (removed on drop).
pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

/// Write `bytes` to `dir/name`; return the path as a `String` for command lines.
pub fn write(dir: &Path, name: &str, bytes: impl AsRef<[u8]>) -> String {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap_or_else(|e| panic!("writing {}: {e}", p.display()));
    path_str(&p)
}

/// A path inside `dir` as a `String` (temp paths are UTF-8).
pub fn path_in(dir: &Path, name: &str) -> String {
    path_str(&dir.join(name))
}

fn path_str(p: &Path) -> String {
    p.to_str().unwrap_or_else(|| panic!("non-UTF-8 temp path {}", p.display())).to_string()
}

/// Read a file written by a peer.
pub fn read(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// Flip one bit of a copy of `v`.
pub fn flip(v: &[u8], byte: usize, bit: u8) -> Vec<u8> {
    let mut v = v.to_vec();
    v[byte] ^= 1 << bit;
    v
}
