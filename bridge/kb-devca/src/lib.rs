//! The KeyBridge development CA: the CA API v1 and EST (docs/ca-api.md) over SQLite, and
//! phone-sized pages standing in for the WeChat side, so the whole renewal flow runs on
//! one machine. **For development and tests only**: every page says so, its root is named
//! so, and it listens on loopback unless told otherwise.
//!
//! - [`ca`]: the rules and the store ([`DevCa`]): challenges, bindings (30-minute one-time
//!   tokens, proofs checked with the certificate's key), applications (临期/过期, payment,
//!   approval), issuing.
//! - [`routes`]: HTTP requests → answers, without a socket ([`routes::handle`]).
//! - [`pages`]: the HTML.
//! - [`server`]: the loopback listener.
//! - [`clock`]: an injectable clock (tests expire QR codes without sleeping).

#![cfg_attr(test, allow(clippy::panic, clippy::unwrap_used, clippy::expect_used))]

pub mod ca;
pub mod clock;
pub mod pages;
pub mod routes;
pub mod server;

pub use ca::{Config, DevCa, Refusal};
pub use clock::{Clock, ManualClock, SystemClock};
pub use server::Server;

use kb_crypto::PrivateKey;
use kb_pki::issue::{CertKind, CertificateParams, self_signed};
use kb_pki::time::UnixTime;
use kb_pki::{Certificate, LocalSigner};
use std::path::Path;

/// The dev CA's own root subject (when it makes one).
pub const ROOT_SUBJECT: &str = "C=CN,O=KeyBridge Dev CA (DEV),CN=KeyBridge Dev Root CA (DEV - not for production)";
/// The service name its pages show.
pub const SERVICE_NAME: &str = "KeyBridge 开发 CA（测试）";

/// A root for a dev CA in `dir` (`root.pem`, `root.key`), created once.
pub fn root_in(dir: &Path) -> std::io::Result<(Certificate, LocalSigner)> {
    let other = |e: &dyn std::fmt::Display| std::io::Error::other(e.to_string());
    let (cp, kp) = (dir.join("root.pem"), dir.join("root.key"));
    if cp.is_file() && kp.is_file() {
        let cert = Certificate::from_pem(&std::fs::read_to_string(&cp)?).map_err(|e| other(&e))?;
        let key = PrivateKey::from_pkcs8_pem(&std::fs::read_to_string(&kp)?).map_err(|e| other(&e))?;
        return Ok((cert, LocalSigner::new(key)));
    }
    std::fs::create_dir_all(dir)?;
    let signer = LocalSigner::new(PrivateKey::generate(kb_types::Algorithm::Sm2).map_err(|e| other(&e))?);
    let params = CertificateParams::new(ROOT_SUBJECT, CertKind::Root { path_len: Some(0) }, UnixTime::now().plus_days(-1), 3650);
    let cert = self_signed(&params, &signer).map_err(|e| other(&e))?;
    let pem = signer.private_key().to_pkcs8_pem().map_err(|e| other(&e))?;
    write_private(&kp, pem.as_bytes())?;
    std::fs::write(&cp, cert.to_pem())?;
    Ok((cert, signer))
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    std::io::Write::write_all(&mut o.open(path)?, bytes)
}

/// A random operator key (for `/op?key=…`).
pub fn new_operator_key() -> String {
    hex::encode(kb_crypto::rng::random_array::<12>().unwrap_or_default())
}
