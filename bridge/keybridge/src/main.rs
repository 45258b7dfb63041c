//! `keybridge`: the command line over KeyBridge's keys and certificates.
//!
//! Every command that prints data takes `--json`. Errors print their stable code and a
//! zh-CN/en message, and the process exits with status 2 for a failed check
//! (signature invalid, expired…), 1 for any other error. PINs are never taken from
//! the command line: they are read from the terminal without echo, or line by line
//! from stdin with `--pin-stdin`.
//!
//! Media come from the device service (`kb-service`) over the file-key directory; every
//! key use is recorded in the audit log with the client name `cli`.

mod audit_cmd;
mod ble_cmd;
mod browser_cmd;
mod cert_cmd;
mod crypto_cmd;
mod ctx;
mod device_cmd;
mod filekey_cmd;
mod input;
mod output;
mod phone_cmd;
mod renew_cmd;
mod serve_cmd;
mod term;

use clap::{Parser, Subcommand};
use ctx::{App, GlobalOpts};

#[derive(Parser)]
#[command(
    name = "keybridge",
    version,
    about = "KeyBridge security client (国密证书客户端) command line",
    after_help = "PINs are never accepted as arguments: they are asked on the terminal (no echo), or read \
                  line by line from stdin with --pin-stdin. The WeChat binding QR code (keybridge renew bind) and the phone \
                  pairing QR code (keybridge phone pair) are drawn in the terminal. \
                  Start with `keybridge demo` on a fresh machine."
)]
struct Cli {
    #[command(flatten)]
    global: GlobalOpts,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Key media present: id, label, serial, type, capabilities, PIN tries left.
    Devices,
    /// Every certificate on every medium, with its status (有效 / 临期 / 过期).
    Certs(device_cmd::CertsArgs),
    /// One certificate (a file or a medium's): details, thumbprints, chain; export.
    Cert(cert_cmd::CertArgs),
    /// PIN status, change, unblock.
    Pin(device_cmd::PinArgs),
    /// Sign a file with a medium's key: CMS attached/detached, or raw.
    Sign(crypto_cmd::SignArgs),
    /// Verify a signature (CMS attached/detached, or raw with a certificate or medium).
    Verify(cert_cmd::VerifyArgs),
    /// Encrypt a file into a digital envelope for certificate files and/or a medium.
    Encrypt(cert_cmd::EncryptArgs),
    /// Open a digital envelope with a medium's encryption key.
    Decrypt(crypto_cmd::DecryptArgs),
    /// Seal images (电子签章) on a medium.
    Seal(device_cmd::SealArgs),
    /// File-type keys: create one; generate key pairs, CSRs, install and delete certificates.
    Filekey(filekey_cmd::FilekeyArgs),
    /// The audit log: every key use, with client, device, certificate, result and auth type.
    Audit(audit_cmd::AuditArgs),
    /// Logs for support.
    Logs(audit_cmd::LogsArgs),
    /// Run the local signing bridge (WebSocket on 127.0.0.1) for web pages and bid tools.
    Serve(serve_cmd::ServeArgs),
    /// The bridge's web-origin grants and the client secret for native tools.
    Bridge(serve_cmd::BridgeArgs),
    /// BLE keys (蓝牙Key): scan, connect, disconnect, forget.
    Ble(ble_cmd::BleArgs),
    /// Renew the plugged-in key's certificates with a CA: status, WeChat binding QR, 安装证书.
    Renew(renew_cmd::RenewArgs),
    /// The local development CA (CA API + EST + phone pages), for development and tests.
    Devca(renew_cmd::DevcaArgs),
    /// Phones as this PC's keys (移动电子密钥): pair (QR), list, rename, revoke.
    Phone(phone_cmd::PhoneArgs),
    /// The browser extension's native messaging host manifests (Chromium, Chrome, Edge).
    Browser(browser_cmd::BrowserArgs),
    /// The native messaging host the KeyBridge browser extension starts (stdin/stdout
    /// carry the browser's messages); browsers run it as `keybridge chrome-extension://…/`.
    NativeHost(browser_cmd::NativeHostArgs),
    /// Create (once) a labelled demo file key with an SM2 sign+encrypt certificate pair
    /// from a local demo CA, and say what to try next.
    Demo,
}

fn run(app: &App, command: Command) -> output::CliResult {
    match command {
        Command::Devices => device_cmd::devices(app),
        Command::Certs(a) => device_cmd::certs(app, a),
        Command::Cert(a) => cert_cmd::cert(app, a),
        Command::Pin(a) => device_cmd::pin(app, a),
        Command::Sign(a) => crypto_cmd::sign(app, a),
        Command::Verify(a) => cert_cmd::verify(app, a),
        Command::Encrypt(a) => cert_cmd::encrypt(app, a),
        Command::Decrypt(a) => crypto_cmd::decrypt(app, a),
        Command::Seal(a) => device_cmd::seal(app, a),
        Command::Filekey(a) => filekey_cmd::filekey(app, a),
        Command::Audit(a) => audit_cmd::audit(app, a),
        Command::Logs(a) => audit_cmd::logs(app, a),
        Command::Serve(a) => serve_cmd::serve(app, a),
        Command::Bridge(a) => serve_cmd::bridge(app, a),
        Command::Ble(a) => ble_cmd::ble(app, a),
        Command::Renew(a) => renew_cmd::renew(app, a),
        Command::Devca(a) => renew_cmd::devca(app, a),
        Command::Phone(a) => phone_cmd::phone(app, a),
        Command::Browser(a) => browser_cmd::browser(app, a),
        Command::NativeHost(a) => browser_cmd::native_host(app, a),
        Command::Demo => filekey_cmd::demo(app),
    }
}

fn main() {
    let cli = Cli::parse_from(browser_call(std::env::args_os().collect()));
    let app = App::new(cli.global);
    // Everything the command opened (device service, audit log, log writer) is dropped
    // inside `run`, so logs are flushed before the process exits.
    let result = run(&app, cli.command).and_then(|()| app.out.write_error().map_or(Ok(()), Err));
    if let Err(e) = result {
        std::process::exit(app.out.error(&app.explain(e)));
    }
}

/// A browser starts the native messaging host as `keybridge chrome-extension://<id>/ …`
/// (the manifest can name only an executable, no arguments): that is `keybridge native-host …`.
fn browser_call(mut args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    if args.get(1).and_then(|a| a.to_str()).is_some_and(|a| a.starts_with(browser_cmd::CALLER_PREFIX)) {
        args.insert(1, "native-host".into());
    }
    args
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_browser_starting_the_host_is_the_native_host_command() {
        let args = |v: &[&str]| v.iter().map(std::ffi::OsString::from).collect::<Vec<_>>();
        let called = browser_call(args(&[
            "/usr/bin/keybridge",
            "chrome-extension://aomgeigggnonmephipbmolmfcaagmdme/",
            "--parent-window=0",
        ]));
        let cli = Cli::try_parse_from(called).unwrap();
        assert!(matches!(cli.command, Command::NativeHost(_)));
        // Any other first argument is left alone.
        assert_eq!(browser_call(args(&["keybridge", "devices"])), args(&["keybridge", "devices"]));
    }
}
