//! `keybridge-phone`: the reference phone (移动电子密钥). A separate process with its own
//! data directory (`--home`) holding a file-type key; it talks to the PC only over the
//! phone link.
//!
//! ```text
//! keybridge-phone --home P init                 # a demo key pair + certificates (like `keybridge demo`)
//! keybridge-phone --home P pair 'KB1:…'         # prints the code; waits for the PC's confirmation
//! keybridge-phone --home P run [--pin-stdin] [--refuse REASON]
//! ```
//!
//! `run` reconnects with the stored pairing (directly or through the relay), shows each
//! request's context (client or origin, operation, certificate, summary, digest), asks
//! its own PIN (the terminal, or one line of stdin per PIN with `--pin-stdin`) and
//! reconnects after the link is lost until killed. `--json` prints one JSON event per line.
//!
//! What a real phone app adds: a camera QR scanner, the key in the phone's secure hardware
//! (or a CA's SDK token) instead of a file, the pairing in the platform keystore, a screen
//! with confirm/refuse buttons (leaving it aborts the request), push to wake the app.

// A command-line program: its output is its interface.
#![allow(clippy::print_stdout)]

use clap::{Parser, Subcommand};
use kb_filekey::{FileToken, KdfParams};
use kb_phone::agent::{Answer, PhoneAgent, PhonePrompter, Prompt, RequestKind};
use kb_phone::msg::PhoneInfo;
use kb_phonelink::phone::{DialFuture, Dialer};
use kb_phonelink::relay::{self, RelayEndpoint, RelayOptions, Role, TunnelId};
use kb_phonelink::{Endpoint, LinkConfig, LinkError, LinkRuntime, Pairing, Phone, StaticKey};
use kb_service::prompter::{ConfirmRequest, PinRequest, Prompter, QrRequest};
use kb_service::settings::Paths;
use kb_token::OpContext;
use kb_types::{ErrorCode, HasErrorCode, Pin};
use serde_json::{Value, json};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use zeroize::Zeroizing;

const KEY_FILE: &str = "phone-key";
const PAIRING_FILE: &str = "pairing.json";
/// How long `run` waits before dialling again after a failed or lost link.
const RETRY: Duration = Duration::from_millis(500);
/// The phone's PIN cache time.
const PIN_CACHE: Duration = Duration::from_secs(300);

#[derive(Parser)]
#[command(name = "keybridge-phone", version, about = "KeyBridge reference phone: a phone acting as the PC's key")]
struct Cli {
    /// This phone's data directory (its key, its pairing).
    #[arg(long, global = true, default_value = "keybridge-phone-home")]
    home: PathBuf,
    /// One JSON event per line on stdout.
    #[arg(long, global = true)]
    json: bool,
    /// The name the PC shows for this phone.
    #[arg(long, global = true, default_value = "KeyBridge 参考手机")]
    name: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create the phone's link key and a demo file-type key (SM2 sign + encrypt
    /// certificates from a local demo CA; PIN 12345678). Idempotent.
    Init {
        /// A cheap key-file KDF (tests only).
        #[arg(long)]
        weak_kdf_for_tests: bool,
    },
    /// Pair with a PC from its QR string; prints the code to compare with the PC's.
    Pair {
        /// The `KB1:…` string the PC shows.
        offer: String,
    },
    /// Connect with the stored pairing and serve the PC's requests until killed.
    Run {
        /// Read each PIN (and nothing else) as one line of stdin; confirm without asking.
        #[arg(long)]
        pin_stdin: bool,
        /// Refuse every request with this reason.
        #[arg(long, value_name = "REASON")]
        refuse: Option<String>,
    },
}

/// Prints events: JSON lines, or text.
#[derive(Clone, Copy)]
struct Out {
    json: bool,
}

impl Out {
    fn event(&self, v: Value, text: impl FnOnce() -> String) {
        let mut o = std::io::stdout().lock();
        let line = if self.json { v.to_string() } else { text() };
        let _ = writeln!(o, "{line}");
        let _ = o.flush();
    }

    fn error(&self, e: &dyn HasErrorCode, what: &str, detail: &str) {
        let code = e.code();
        self.event(
            json!({"event": "error", "what": what, "code": code.name(), "number": code.number(), "message": detail}),
            || format!("{what}: {code}: {detail}"),
        );
    }
}

fn main() {
    let cli = Cli::parse();
    let out = Out { json: cli.json };
    let status = match run(&cli, out) {
        Ok(()) => 0,
        Err(e) => {
            out.error(&e, "failed", &e.to_string());
            1
        }
    };
    std::process::exit(status);
}

fn run(cli: &Cli, out: Out) -> Result<(), LinkError> {
    match &cli.command {
        Command::Init { weak_kdf_for_tests } => init(&cli.home, *weak_kdf_for_tests, out),
        Command::Pair { offer } => pair(cli, offer, out),
        Command::Run { pin_stdin, refuse } => serve(cli, *pin_stdin, refuse.clone(), out),
    }
}

fn fail(code: ErrorCode, detail: impl Into<String>) -> LinkError {
    LinkError::Failed { code, detail: detail.into() }
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), LinkError> {
    let io = |e: std::io::Error| fail(ErrorCode::Io, format!("{}: {e}", path.display()));
    let tmp = path.with_extension("tmp");
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    let mut f = o.open(&tmp).map_err(io)?;
    f.write_all(bytes).and_then(|()| f.sync_all()).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

fn key_dir(home: &Path) -> PathBuf {
    home.join("keys")
}

/// The phone's static link key (created by `init`).
fn link_key(home: &Path) -> Result<StaticKey, LinkError> {
    let path = home.join(KEY_FILE);
    let text = Zeroizing::new(
        std::fs::read_to_string(&path)
            .map_err(|e| fail(ErrorCode::Io, format!("{}: {e} (run `keybridge-phone init` first)", path.display())))?,
    );
    let bytes = Zeroizing::new(hex::decode(text.trim()).map_err(|_| fail(ErrorCode::Io, "the link key file is damaged"))?);
    StaticKey::from_private(&bytes)
}

/// `init` never asks anything: the demo key's PIN is known; anything else fails.
struct NoPrompts;

impl Prompter for NoPrompts {
    fn ask_pin(&self, _: &PinRequest, _: &OpContext) -> kb_service::Result<Pin> {
        Err(kb_service::ServiceError::Cancelled)
    }
    fn confirm(&self, _: &ConfirmRequest) -> kb_service::Result<bool> {
        Ok(false)
    }
    fn show_qr(&self, _: &QrRequest) -> kb_service::Result<()> {
        Ok(())
    }
    fn notify(&self, _: &str) {}
}

fn init(home: &Path, weak: bool, out: Out) -> Result<(), LinkError> {
    let svc = |e: kb_service::ServiceError| fail(e.code(), e.to_string());
    let paths = Paths::under(home);
    paths.create_all().map_err(svc)?;
    if !home.join(KEY_FILE).exists() {
        let key = StaticKey::generate()?;
        write_private(&home.join(KEY_FILE), hex::encode(&key.private_bytes()[..]).as_bytes())?;
    }
    let kdf = if weak { KdfParams::weak_for_tests() } else { KdfParams::DEFAULT };
    let demo = kb_service::demo::ensure_demo_key(&paths, &key_dir(home), kdf, Arc::new(NoPrompts)).map_err(svc)?;
    let id = link_key(home)?.peer_id();
    out.event(
        json!({"event": "initialized", "phone_id": id.0, "key_file": demo.path, "root_ca": demo.root_pem, "pin": kb_service::demo::DEMO_USER_PIN}),
        || {
            format!(
                "phone {id}\nkey file {} (demo PIN {})\ndemo CA root {}",
                demo.path.display(),
                kb_service::demo::DEMO_USER_PIN,
                demo.root_pem.display()
            )
        },
    );
    Ok(())
}

/// Dials direct endpoints and relay tunnels (the phone's end).
struct AnyDialer;

impl Dialer for AnyDialer {
    fn dial(&self, endpoint: &Endpoint, cfg: &LinkConfig) -> DialFuture {
        let (endpoint, cfg) = (endpoint.clone(), cfg.clone());
        Box::pin(async move {
            match endpoint {
                Endpoint::Direct(a) => kb_phonelink::direct::connect(a, &cfg).await,
                Endpoint::Relay { url, tunnel } => {
                    let bad = || fail(ErrorCode::RelayEndpointInvalid, "the relay tunnel is not a tunnel id");
                    let id: [u8; relay::TUNNEL_ID_LEN] =
                        hex::decode(&tunnel).ok().and_then(|b| b.try_into().ok()).ok_or_else(bad)?;
                    let ep = RelayEndpoint::new(url, TunnelId::from_bytes(id)).map_err(|e| fail(e.code(), e.to_string()))?;
                    let options = RelayOptions {
                        connect_timeout: cfg.handshake_timeout,
                        peer_timeout: Some(cfg.handshake_timeout),
                        ..RelayOptions::default()
                    };
                    let t = relay::open(&ep, Role::Phone, &options).await.map_err(|e| fail(e.code(), e.to_string()))?;
                    // The PC's end answers at once when it is there.
                    t.watch.ready().await.map_err(|e| fail(e.code(), e.to_string()))?;
                    Ok(t.pipe)
                }
            }
        })
    }
}

fn phone(cli: &Cli) -> Result<Phone, LinkError> {
    let key = link_key(&cli.home)?;
    Ok(Phone::new(key, &cli.name, LinkConfig::default(), LinkRuntime::new()?).with_dialer(Arc::new(AnyDialer)))
}

fn pair(cli: &Cli, offer: &str, out: Out) -> Result<(), LinkError> {
    let phone = phone(cli)?;
    let pending = phone.pair(offer)?;
    let (code, pc) = (pending.code.clone(), pending.pc_name.clone());
    out.event(json!({"event": "code", "code": code, "pc": pc}), || {
        format!("confirmation code {code} — check that \"{pc}\" shows the same, and confirm there")
    });
    let (pairing, conn) = phone.wait_confirmed(pending)?;
    write_private(&cli.home.join(PAIRING_FILE), pairing.to_json().as_bytes())?;
    conn.close();
    let pc_id = pairing.pc_id();
    out.event(json!({"event": "paired", "pc_id": pc_id.0, "endpoints": pairing.endpoints.iter().map(Endpoint::url).collect::<Vec<_>>()}), || {
        format!("paired with {pc_id}; `keybridge-phone run` connects and serves")
    });
    Ok(())
}

/// The terminal as the phone's screen.
struct Screen {
    out: Out,
    pin_stdin: bool,
    refuse: Option<String>,
    /// Lines of stdin (one reader thread, so a withdrawn prompt leaves no stray read).
    lines: Mutex<Receiver<String>>,
}

impl Screen {
    /// The next stdin line, or `None` when the request was withdrawn (or stdin ended).
    fn line(&self, ctx: &OpContext) -> Option<Zeroizing<String>> {
        let rx = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if ctx.stopped().is_some() {
                return None;
            }
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(l) => return Some(Zeroizing::new(l)),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return None,
            }
        }
    }
}

impl PhonePrompter for Screen {
    fn ask(&self, p: &Prompt, ctx: &OpContext) -> Answer {
        let (kind, scheme, digest) = match &p.kind {
            RequestKind::Sign { scheme, digest } => ("sign", scheme.as_str(), digest.as_str()),
            RequestKind::Decrypt => ("decrypt", "", ""),
        };
        let c = &p.context;
        self.out.event(
            json!({"event": "request", "id": p.id, "kind": kind, "client": c.client, "operation": c.operation,
                   "summary": c.summary, "certificate": c.certificate, "scheme": scheme, "digest": digest,
                   "medium": p.medium, "container": p.container, "usage": p.usage.to_string(), "pin": p.pin.is_some()}),
            || {
                format!(
                    "request {}: {kind} for {}\n  operation {}\n  summary {}\n  certificate {}\n  {scheme} digest {digest}",
                    p.id, c.client, c.operation, c.summary, c.certificate
                )
            },
        );
        if let Some(reason) = &self.refuse {
            self.out.event(json!({"event": "refused", "id": p.id, "reason": reason}), || format!("refused: {reason}"));
            return Answer::Refuse(reason.clone());
        }
        let pin = match p.pin {
            None => None,
            Some(_) if self.pin_stdin => match self.line(ctx) {
                Some(l) => Some(Pin::new(l.trim_end_matches(['\r', '\n']))),
                None => return Answer::LeftScreen,
            },
            Some(_) => match rpassword::prompt_password("PIN: ") {
                Ok(l) => Some(Pin::new(Zeroizing::new(l).as_str())),
                Err(_) => return Answer::LeftScreen,
            },
        };
        if !self.pin_stdin {
            println!("confirm? [y / anything else is the reason to refuse]");
            let Some(l) = self.line(ctx) else { return Answer::LeftScreen };
            if l.trim() != "y" {
                return Answer::Refuse(l.trim().to_owned());
            }
        }
        self.out.event(json!({"event": "confirmed", "id": p.id}), || format!("request {} confirmed", p.id));
        Answer::Confirm(pin)
    }
}

fn stdin_lines() -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let _ = std::thread::Builder::new().name("stdin".into()).spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(l) = line else { break };
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    rx
}

fn serve(cli: &Cli, pin_stdin: bool, refuse: Option<String>, out: Out) -> Result<(), LinkError> {
    let path = cli.home.join(PAIRING_FILE);
    let text = Zeroizing::new(
        std::fs::read_to_string(&path)
            .map_err(|e| fail(ErrorCode::PhoneNotPaired, format!("{}: {e} (pair first)", path.display())))?,
    );
    let pairing = Pairing::from_json(&text)?;
    let key_file = key_dir(&cli.home).join(format!("{}.kbkey", kb_service::demo::DEMO_NAME));
    let token = FileToken::open(&key_file).map_err(|e| fail(e.code(), e.to_string()))?;
    let screen = Screen { out, pin_stdin, refuse, lines: Mutex::new(stdin_lines()) };
    let info =
        PhoneInfo { name: cli.name.clone(), model: "reference phone".into(), app_version: env!("CARGO_PKG_VERSION").into() };
    let agent = PhoneAgent::new(Box::new(token), Arc::new(screen), PIN_CACHE, info);
    let phone = phone(cli)?;
    loop {
        match phone.reconnect(&pairing) {
            Ok(conn) => {
                out.event(json!({"event": "connected", "pc_id": pairing.pc_id().0}), || "connected to the PC".into());
                let why = match agent.serve(Arc::clone(&conn)) {
                    Ok(()) => conn.close_reason().unwrap_or(LinkError::Closed),
                    Err(e) => fail(e.code(), e.to_string()),
                };
                out.error(&why, "disconnected", &why.to_string());
            }
            Err(e) if e.code() == ErrorCode::PhoneRevoked || e.code() == ErrorCode::PhoneNotPaired => {
                out.error(&e, "refused", &e.to_string());
                return Err(e);
            }
            Err(e) => out.error(&e, "reconnect_failed", &e.to_string()),
        }
        std::thread::sleep(RETRY);
    }
}
