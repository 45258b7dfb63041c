//! `keybridge`: the command line over KeyBridge's keys and certificates.
//!
//! Every command that prints data takes `--json`. Errors print their stable code and a
//! zh-CN/en message, and the process exits with status 2 for a failed check
//! (signature invalid, expired…), 1 for any other error. PINs are never taken from
//! the command line.

mod cert_cmd;
mod output;

use clap::{Parser, Subcommand};
use output::Out;

#[derive(Parser)]
#[command(name = "keybridge", version, about = "KeyBridge security client (国密证书客户端) command line")]
struct Cli {
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// Messages in English instead of Chinese.
    #[arg(long, global = true)]
    en: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Certificates in files: show details, thumbprints, chain status.
    Cert(cert_cmd::CertArgs),
    /// Verify a signature (CMS attached/detached, or raw with a certificate).
    Verify(cert_cmd::VerifyArgs),
    /// Encrypt a file into a digital envelope for one or more recipient certificates.
    Encrypt(cert_cmd::EncryptArgs),
}

fn main() {
    let cli = Cli::parse();
    let out = Out::new(cli.json, cli.en);
    let result = match cli.command {
        Command::Cert(a) => cert_cmd::cert(&out, a),
        Command::Verify(a) => cert_cmd::verify(&out, a),
        Command::Encrypt(a) => cert_cmd::encrypt(&out, a),
    };
    if let Err(e) = result {
        std::process::exit(out.error(&e));
    }
}
