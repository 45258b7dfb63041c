//! The update check: one GET of a small, **signed** JSON manifest from the configured URL.
//!
//! The server answers with the manifest's bytes (base64) and a signature over exactly those
//! bytes by a release key pinned in the app ([`pinned_keys`]); `key` names which one (the
//! first 8 bytes of the SM3 digest of its SubjectPublicKeyInfo, hex):
//!
//! ```json
//! {"manifest": "eyJ2ZXJzaW9uIjoiMC4yLjAiLC…", "key": "1f2e3d4c5b6a7988",
//!  "signature": "MEUCIQ…"}
//! ```
//!
//! and the manifest itself is
//!
//! ```json
//! {"version": "0.2.0", "notes": "…", "url": "https://…/keybridge-0.2.0.deb",
//!  "sha256": "…64 hex…"}
//! ```
//!
//! SM2 keys sign with SM3 and the GM/T default ID, P-256 keys with ECDSA-SHA256 (DER
//! signatures). An unsigned manifest, an unknown key or a signature that does not verify is
//! refused with `update_signature_invalid` (9006) before any field is looked at. Release
//! manifests are made with `cargo run -p kb-desktop --example sign_update_manifest`.
//!
//! HTTPS through OpenSSL (system trust store, hostname checked), or plain HTTP to a
//! loopback address only (the settings refuse anything else). Nothing is sent but the
//! request line, Host and a User-Agent naming the version: no identifiers.

use base64ct::{Base64, Encoding};
use kb_crypto::{HashAlgorithm, PublicKey, SignatureScheme, digest};
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Connect, read and write time limit.
const TIMEOUT: Duration = Duration::from_secs(8);
/// A manifest is small; anything bigger is not one.
const MAX_RESPONSE: u64 = 256 * 1024;

/// The release key(s) the app trusts, pinned at build time (`keys/update-release.pem`). Its
/// private half is held by whoever publishes releases and is not in the repository.
pub fn pinned_keys() -> Vec<PublicKey> {
    // A malformed pinned key is a build defect the tests catch (`the_pinned_key_parses`).
    PublicKey::from_spki_pem(include_str!("../keys/update-release.pem")).into_iter().collect()
}

/// The identifier a signed manifest uses for its key: the first 8 bytes of SM3(SPKI), hex.
pub fn key_id(key: &PublicKey) -> String {
    let spki = key.to_spki_der().unwrap_or_default();
    hex::encode(&digest(HashAlgorithm::Sm3, &spki)[..8])
}

/// What the server sends: the manifest's bytes and a signature over them.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct SignedManifest {
    /// The manifest's JSON bytes, base64.
    pub manifest: String,
    /// Which pinned key signed it ([`key_id`]).
    pub key: String,
    /// The signature over the manifest's bytes, base64 (DER).
    pub signature: String,
}

impl SignedManifest {
    /// Sign `manifest` (its exact JSON bytes) with a release key.
    pub fn sign(manifest: &[u8], key: &kb_crypto::PrivateKey) -> Result<Self, UpdateError> {
        let public = key.public_key();
        let sig = key
            .sign(&SignatureScheme::default_for(public.algorithm()), manifest)
            .map_err(|e| UpdateError::BadManifest(format!("cannot sign: {e}")))?;
        Ok(SignedManifest {
            manifest: Base64::encode_string(manifest),
            key: key_id(&public),
            signature: Base64::encode_string(&sig),
        })
    }

    /// Check the signature with the trusted keys, then parse the manifest.
    pub fn open(&self, trusted: &[PublicKey]) -> Result<Manifest, UpdateError> {
        let unsigned = |m: String| UpdateError::BadSignature(m);
        let key = trusted
            .iter()
            .find(|k| key_id(k) == self.key)
            .ok_or_else(|| unsigned(format!("signed by key {:?}, which this app does not trust", self.key)))?;
        let bytes = Base64::decode_vec(&self.manifest).map_err(|_| unsigned("the manifest is not base64".into()))?;
        let sig = Base64::decode_vec(&self.signature).map_err(|_| unsigned("the signature is not base64".into()))?;
        key.verify(&SignatureScheme::default_for(key.algorithm()), &bytes, &sig)
            .map_err(|_| unsigned("the manifest's signature does not verify: refused".into()))?;
        let m: Manifest =
            serde_json::from_slice(&bytes).map_err(|e| UpdateError::BadManifest(format!("not an update manifest: {e}")))?;
        if parse_version(&m.version).is_none() {
            return Err(UpdateError::BadManifest(format!("version {:?} is not MAJOR.MINOR.PATCH", m.version)));
        }
        if !(m.sha256.is_empty() || (m.sha256.len() == 64 && m.sha256.bytes().all(|b| b.is_ascii_hexdigit()))) {
            return Err(UpdateError::BadManifest("sha256 is not 64 hex digits".into()));
        }
        Ok(m)
    }
}

/// The manifest.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct Manifest {
    /// Newest version, `MAJOR.MINOR.PATCH`.
    pub version: String,
    /// Release notes.
    #[serde(default)]
    pub notes: String,
    /// Download page or package.
    #[serde(default)]
    pub url: String,
    /// SHA-256 of the package at `url` (hex), so a download can be checked.
    #[serde(default)]
    pub sha256: String,
}

/// Why a check failed.
#[derive(Debug)]
pub enum UpdateError {
    /// Could not reach the server (offline, DNS, refused, TLS, timeout).
    Network(String),
    /// The server answered, but not with a manifest.
    BadManifest(String),
    /// The manifest is unsigned, signed by a key the app does not pin, or tampered with.
    BadSignature(String),
    /// The URL is not one we fetch.
    BadUrl(String),
}

impl std::fmt::Display for UpdateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpdateError::Network(m) | UpdateError::BadManifest(m) | UpdateError::BadSignature(m) | UpdateError::BadUrl(m) => {
                f.write_str(m)
            }
        }
    }
}

impl std::error::Error for UpdateError {}

fn parse_url(url: &str) -> Result<kb_ca::http::HttpUrl<'_>, UpdateError> {
    let u = kb_ca::http::parse_http_url(url).ok_or_else(|| UpdateError::BadUrl(format!("not an http(s) URL: {url}")))?;
    Ok(kb_ca::http::HttpUrl { path: if u.path.is_empty() { "/" } else { u.path }, ..u })
}

/// Fetch the signed manifest at `url` and open it with the `trusted` keys.
pub fn fetch_manifest(url: &str, user_agent: &str, trusted: &[PublicKey]) -> Result<Manifest, UpdateError> {
    let u = parse_url(url)?;
    let net = |e: &dyn std::fmt::Display| UpdateError::Network(format!("{}: {e}", u.host));
    let addrs: Vec<_> = (u.host, u.port).to_socket_addrs().map_err(|e| net(&e))?.collect();
    let mut last = None;
    let mut stream = None;
    for a in addrs {
        match TcpStream::connect_timeout(&a, TIMEOUT) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = Some(e),
        }
    }
    let stream = match (stream, last) {
        (Some(s), _) => s,
        (None, Some(e)) => return Err(net(&e)),
        (None, None) => return Err(net(&"no address")),
    };
    stream.set_read_timeout(Some(TIMEOUT)).map_err(|e| net(&e))?;
    stream.set_write_timeout(Some(TIMEOUT)).map_err(|e| net(&e))?;
    // HTTP/1.0: no chunked encoding, the server closes after the body.
    let request = format!(
        "GET {} HTTP/1.0\r\nHost: {}\r\nUser-Agent: {user_agent}\r\nAccept: application/json\r\nConnection: close\r\n\r\n",
        u.path, u.host
    );
    let response = if u.tls {
        let connector = openssl::ssl::SslConnector::builder(openssl::ssl::SslMethod::tls_client()).map_err(|e| net(&e))?.build();
        let mut tls = connector.connect(u.host, stream).map_err(|e| net(&e))?;
        exchange(&mut tls, &request).map_err(|e| net(&e))?
    } else {
        let mut s = stream;
        exchange(&mut s, &request).map_err(|e| net(&e))?
    };
    parse_response(&response, trusted)
}

fn exchange(s: &mut (impl Read + Write), request: &str) -> std::io::Result<Vec<u8>> {
    s.write_all(request.as_bytes())?;
    s.flush()?;
    let mut out = Vec::new();
    s.take(MAX_RESPONSE + 1).read_to_end(&mut out)?;
    if out.len() as u64 > MAX_RESPONSE {
        return Err(std::io::Error::other("response too large for an update manifest"));
    }
    Ok(out)
}

/// Parse a raw HTTP response (status line, headers, body) into a manifest: anything but a
/// `200` with a signed manifest ([`SignedManifest`]) that verifies with a `trusted` key and
/// whose version is `MAJOR.MINOR.PATCH` is refused. (Fuzzed: `tests/fuzz`, target
/// `update_manifest`.)
pub fn parse_response(raw: &[u8], trusted: &[PublicKey]) -> Result<Manifest, UpdateError> {
    let bad = |m: String| UpdateError::BadManifest(m);
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(|| bad("no HTTP header".into()))?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let status_line = head.lines().next().unwrap_or("");
    let status: u16 = status_line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    if status != 200 {
        return Err(bad(format!("the server answered {status_line:?}")));
    }
    let body = &raw[split + 4..];
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| bad(format!("not an update manifest: {e}")))?;
    if value.get("version").is_some() && value.get("signature").is_none() {
        return Err(UpdateError::BadSignature("the manifest is not signed: refused".into()));
    }
    let signed: SignedManifest = serde_json::from_value(value).map_err(|e| bad(format!("not a signed update manifest: {e}")))?;
    signed.open(trusted)
}

/// `MAJOR.MINOR.PATCH` (a pre-release suffix after `-` is ignored for ordering).
pub fn parse_version(v: &str) -> Option<(u64, u64, u64)> {
    let core = v.trim().trim_start_matches('v').split(['-', '+']).next()?;
    let mut it = core.split('.').map(|p| p.parse::<u64>().ok());
    let (a, b, c) = (it.next()??, it.next()??, it.next()??);
    if it.next().is_some() {
        return None;
    }
    Some((a, b, c))
}

/// `latest` is newer than `current`.
pub fn is_newer(latest: &str, current: &str) -> bool {
    matches!((parse_version(latest), parse_version(current)), (Some(l), Some(c)) if l > c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_numerically() {
        assert!(is_newer("0.10.0", "0.9.9"));
        assert!(is_newer("1.0.0", "0.99.99"));
        assert!(!is_newer("0.1.0", "0.1.0"));
        assert!(!is_newer("0.0.9", "0.1.0"));
        assert!(!is_newer("garbage", "0.1.0"));
        assert_eq!(parse_version("v1.2.3-rc.1"), Some((1, 2, 3)));
        assert_eq!(parse_version("1.2"), None);
        assert_eq!(parse_version("1.2.3.4"), None);
    }

    #[test]
    fn urls_parse_or_are_refused() {
        let u = parse_url("https://updates.example.cn/keybridge/latest.json").unwrap();
        assert!(u.tls && u.host == "updates.example.cn" && u.port == 443 && u.path == "/keybridge/latest.json");
        let u = parse_url("http://127.0.0.1:8080").unwrap();
        assert!(!u.tls && u.port == 8080 && u.path == "/");
        let u = parse_url("http://[::1]:9/x").unwrap();
        assert!(u.host == "::1" && u.port == 9);
        for bad in ["ftp://x/", "https://", "http://a:b/", "https://user@host/", "http://[::1/"] {
            assert!(matches!(parse_url(bad), Err(UpdateError::BadUrl(_))), "{bad}");
        }
    }

    #[test]
    fn responses_other_than_a_manifest_are_refused() {
        let key = kb_crypto::PrivateKey::generate(kb_types::Algorithm::Sm2).unwrap();
        let trusted = [key.public_key()];
        let ok = response(&SignedManifest::sign(br#"{"version":"9.0.0","notes":"n","url":"u"}"#, &key).unwrap());
        assert_eq!(parse_response(&ok, &trusted).unwrap().version, "9.0.0");
        let not_version = response(&SignedManifest::sign(br#"{"version":"latest"}"#, &key).unwrap());
        for bad in [
            &b"HTTP/1.1 404 Not Found\r\n\r\n{}"[..],
            b"HTTP/1.1 200 OK\r\n\r\n<html>captive portal</html>",
            &not_version,
            b"garbage",
        ] {
            assert!(matches!(parse_response(bad, &trusted), Err(UpdateError::BadManifest(_))));
        }
    }

    fn response(m: &SignedManifest) -> Vec<u8> {
        let mut r = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n".to_vec();
        r.extend(serde_json::to_vec(m).unwrap());
        r
    }

    #[test]
    fn the_pinned_key_parses() {
        assert_eq!(pinned_keys().len(), 1);
        assert_eq!(pinned_keys()[0].algorithm(), kb_types::Algorithm::Sm2);
    }

    #[test]
    fn unsigned_tampered_and_foreign_manifests_are_refused() {
        let sm2 = kb_crypto::PrivateKey::generate(kb_types::Algorithm::Sm2).unwrap();
        let p256 = kb_crypto::PrivateKey::generate(kb_types::Algorithm::EcdsaP256).unwrap();
        let trusted = [sm2.public_key(), p256.public_key()];
        let body = br#"{"version":"1.2.3","url":"https://x/k.deb","sha256":"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"}"#;
        // Both pinned algorithms open.
        for key in [&sm2, &p256] {
            let m = parse_response(&response(&SignedManifest::sign(body, key).unwrap()), &trusted).unwrap();
            assert_eq!(m.version, "1.2.3");
        }
        let bad_sig = |r: Result<Manifest, UpdateError>| matches!(r, Err(UpdateError::BadSignature(_)));
        // The old unsigned form.
        let unsigned = b"HTTP/1.1 200 OK\r\n\r\n{\"version\":\"9.9.9\"}";
        assert!(bad_sig(parse_response(unsigned, &trusted)));
        // One byte of the manifest changed after signing.
        let mut tampered = SignedManifest::sign(body, &sm2).unwrap();
        let mut bytes = Base64::decode_vec(&tampered.manifest).unwrap();
        bytes[13] ^= 0x01; // "1.2.3" -> "0.2.3"
        tampered.manifest = Base64::encode_string(&bytes);
        assert!(bad_sig(parse_response(&response(&tampered), &trusted)));
        // A signature by a key the app does not pin, even when it claims a pinned key's id.
        let stranger = kb_crypto::PrivateKey::generate(kb_types::Algorithm::Sm2).unwrap();
        let foreign = SignedManifest::sign(body, &stranger).unwrap();
        assert!(bad_sig(parse_response(&response(&foreign), &trusted)));
        let impostor = SignedManifest { key: key_id(&sm2.public_key()), ..foreign };
        assert!(bad_sig(parse_response(&response(&impostor), &trusted)));
        // The real pinned key does not accept a manifest signed by a test key.
        assert!(bad_sig(parse_response(&response(&SignedManifest::sign(body, &sm2).unwrap()), &pinned_keys())));
        // A malformed digest for the package is not a manifest.
        let bad_digest = SignedManifest::sign(br#"{"version":"1.2.3","sha256":"xyz"}"#, &sm2).unwrap();
        assert!(matches!(parse_response(&response(&bad_digest), &trusted), Err(UpdateError::BadManifest(_))));
    }
}
