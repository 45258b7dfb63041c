//! The update check: one GET of a small JSON manifest from the configured URL.
//!
//! ```json
//! {"version": "0.2.0", "notes": "…", "url": "https://…/keybridge-0.2.0.deb"}
//! ```
//!
//! HTTPS through OpenSSL (system trust store, hostname checked), or plain HTTP to a
//! loopback address only (the settings refuse anything else). Nothing is sent but the
//! request line, Host and a User-Agent naming the version: no identifiers.

use serde::Deserialize;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Connect, read and write time limit.
const TIMEOUT: Duration = Duration::from_secs(8);
/// A manifest is small; anything bigger is not one.
const MAX_RESPONSE: u64 = 256 * 1024;

/// The manifest.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Manifest {
    /// Newest version, `MAJOR.MINOR.PATCH`.
    pub version: String,
    /// Release notes.
    #[serde(default)]
    pub notes: String,
    /// Download page or package.
    #[serde(default)]
    pub url: String,
}

/// Why a check failed.
#[derive(Debug)]
pub enum UpdateError {
    /// Could not reach the server (offline, DNS, refused, TLS, timeout).
    Network(String),
    /// The server answered, but not with a manifest.
    BadManifest(String),
    /// The URL is not one we fetch.
    BadUrl(String),
}

impl std::fmt::Display for UpdateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpdateError::Network(m) | UpdateError::BadManifest(m) | UpdateError::BadUrl(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for UpdateError {}

struct Url<'a> {
    tls: bool,
    host: &'a str,
    port: u16,
    path: &'a str,
}

fn parse_url(url: &str) -> Result<Url<'_>, UpdateError> {
    let bad = || UpdateError::BadUrl(format!("not an http(s) URL: {url}"));
    let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        return Err(bad());
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = if let Some(h) = authority.strip_prefix('[') {
        let end = h.find(']').ok_or_else(bad)?;
        let port = h[end + 1..].strip_prefix(':').map(str::parse).transpose().map_err(|_| bad())?;
        (&h[..end], port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p.parse().map_err(|_| bad())?)),
            None => (authority, None),
        }
    };
    if host.is_empty() || host.contains(['@', ' ']) {
        return Err(bad());
    }
    Ok(Url { tls, host, port: port.unwrap_or(if tls { 443 } else { 80 }), path })
}

/// Fetch and parse the manifest at `url`.
pub fn fetch_manifest(url: &str, user_agent: &str) -> Result<Manifest, UpdateError> {
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
    parse_response(&response)
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

/// Parse a raw HTTP response (status line, headers, body) into a manifest. Anything but a
/// `200` with a manifest whose version is `MAJOR.MINOR.PATCH` is refused. (Fuzzed:
/// `tests/fuzz`, target `update_manifest`.)
pub fn parse_response(raw: &[u8]) -> Result<Manifest, UpdateError> {
    let bad = |m: String| UpdateError::BadManifest(m);
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(|| bad("no HTTP header".into()))?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let status_line = head.lines().next().unwrap_or("");
    let status: u16 = status_line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    if status != 200 {
        return Err(bad(format!("the server answered {status_line:?}")));
    }
    let body = &raw[split + 4..];
    let m: Manifest = serde_json::from_slice(body).map_err(|e| bad(format!("not an update manifest: {e}")))?;
    if parse_version(&m.version).is_none() {
        return Err(bad(format!("version {:?} is not MAJOR.MINOR.PATCH", m.version)));
    }
    Ok(m)
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
        let ok =
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{\"version\":\"9.0.0\",\"notes\":\"n\",\"url\":\"u\"}";
        assert_eq!(parse_response(ok).unwrap().version, "9.0.0");
        for bad in [
            &b"HTTP/1.1 404 Not Found\r\n\r\n{}"[..],
            b"HTTP/1.1 200 OK\r\n\r\n<html>captive portal</html>",
            b"HTTP/1.1 200 OK\r\n\r\n{\"version\":\"latest\"}",
            b"garbage",
        ] {
            assert!(matches!(parse_response(bad), Err(UpdateError::BadManifest(_))));
        }
    }
}
