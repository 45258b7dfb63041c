//! The checks on the HTTP upgrade request, before any method runs. Pure functions of
//! the request's headers, so every rule has a unit test; the server calls [`check`]
//! from its handshake callback and answers a refusal with an HTTP error whose body is
//! a JSON-RPC error object.

use crate::secret::ClientSecret;
use kb_bridge_protocol::ErrorObject;
use kb_types::ErrorCode;
use std::fmt;
use std::net::IpAddr;

/// Who is on the other end of an accepted connection.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Client {
    /// A web page; the normalized origin (`https://bid.example.cn`).
    Web(String),
    /// A native tool that presented the per-user secret.
    Native,
}

impl Client {
    /// The origin, for web clients.
    pub fn origin(&self) -> Option<&str> {
        match self {
            Client::Web(o) => Some(o),
            Client::Native => None,
        }
    }
}

impl fmt::Display for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Client::Web(o) => f.write_str(o),
            Client::Native => f.write_str("native"),
        }
    }
}

/// A refused handshake: the HTTP status and the error object sent as its body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// 403 or 401 (503 when the bridge is full).
    pub status: u16,
    /// The KeyBridge code.
    pub code: ErrorCode,
    /// Why (for the body's `data.detail` and the log; never a secret).
    pub detail: String,
}

impl Refusal {
    /// A refusal.
    pub fn new(status: u16, code: ErrorCode, detail: impl Into<String>) -> Self {
        Refusal { status, code, detail: detail.into() }
    }

    /// The response body.
    pub fn body(&self) -> String {
        serde_json::to_string(&ErrorObject::new(self.code, self.detail.clone())).unwrap_or_default()
    }
}

/// The headers that matter, as received.
#[derive(Clone, Copy, Debug, Default)]
pub struct Headers<'a> {
    /// `Host`.
    pub host: Option<&'a str>,
    /// `Origin`.
    pub origin: Option<&'a str>,
    /// `Authorization`.
    pub authorization: Option<&'a str>,
}

/// The loopback host names a `Host` header may carry.
const LOOPBACK_HOSTS: [&str; 3] = ["127.0.0.1", "localhost", "[::1]"];

/// A port as written in a URL authority, strictly: 1 to 5 ASCII digits, no sign, no
/// leading zero (`+17210` and `017210` are not port 17210).
fn strict_port(p: &str) -> Option<u16> {
    let ok = !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) && !p.starts_with('0');
    ok.then(|| p.parse().ok()).flatten()
}

/// The one value of a header the checks read, from all the values the request carried
/// under that name. A header sent twice, or whose value is not printable ASCII, is
/// refused (with the code of the check it would feed): the first-wins or ignore-it
/// readings of such requests differ between parsers, and a check must not be fooled by
/// the difference.
pub fn single_header<'a>(name: &str, values: &[&'a [u8]]) -> Result<Option<&'a str>, Refusal> {
    let refuse = |why: &str| {
        let (status, code) = match name {
            "host" => (403, ErrorCode::HostRejected),
            "origin" => (403, ErrorCode::OriginRejected),
            _ => (401, ErrorCode::ClientUnauthenticated),
        };
        Refusal::new(status, code, format!("{name} header {why}"))
    };
    match values {
        [] => Ok(None),
        [v] => {
            if !v.iter().all(|b| (0x20..0x7f).contains(b) || *b == b'\t') {
                return Err(refuse("is not printable ASCII"));
            }
            std::str::from_utf8(v).map(Some).map_err(|_| refuse("is not printable ASCII"))
        }
        _ => Err(refuse("sent more than once")),
    }
}

/// `Host` must be a loopback name with exactly our port: a DNS-rebinding page
/// (`evil.example` resolving to 127.0.0.1) sends its own name.
pub fn check_host(host: Option<&str>, port: u16) -> Result<(), Refusal> {
    let refuse = |d: String| Refusal::new(403, ErrorCode::HostRejected, d);
    let Some(host) = host else { return Err(refuse("no Host header".into())) };
    let host = host.trim().to_ascii_lowercase();
    let Some((name, p)) = host.rsplit_once(':') else {
        return Err(refuse(format!("Host {host:?} has no port")));
    };
    if !LOOPBACK_HOSTS.contains(&name) {
        return Err(refuse(format!("Host {host:?} is not a loopback name")));
    }
    if strict_port(p) != Some(port) {
        return Err(refuse(format!("Host {host:?} is not port {port}")));
    }
    Ok(())
}

/// Normalize a web origin: lower-case, default port removed. Refuses `null`, `file:`,
/// anything but `https:` and `http:` on a loopback host, and anything with a path,
/// user info or bad port.
pub fn normalize_origin(origin: &str) -> Result<String, &'static str> {
    let o = origin.trim().to_ascii_lowercase();
    if o == "null" {
        return Err("the null origin (sandboxed frame, file or data URL) is never allowed");
    }
    let (scheme, rest) = o.split_once("://").ok_or("not a web origin")?;
    if rest.is_empty() || rest.contains(['/', '?', '#', '@', '\\', ' ']) {
        return Err("not a web origin");
    }
    let (host, port) = match rest.strip_prefix('[') {
        Some(v6) => {
            let (h, after) = v6.split_once(']').ok_or("not a web origin")?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or("not a web origin")?),
            };
            (format!("[{h}]"), port)
        }
        None => match rest.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (rest.to_string(), None),
        },
    };
    let host_ok = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => !v6.is_empty() && v6.chars().all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.'),
        None => {
            !host.is_empty()
                && !host.starts_with(['.', '-'])
                && host.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-' | '_'))
        }
    };
    if !host_ok {
        return Err("not a web origin");
    }
    let port = match port {
        None => None,
        Some(p) => Some(strict_port(p).ok_or("bad port in origin")?),
    };
    let default = match scheme {
        "https" => 443,
        "http" => {
            if !LOOPBACK_HOSTS.contains(&host.as_str()) {
                return Err("plain http origins are allowed only on localhost / 127.0.0.1 / [::1]");
            }
            80
        }
        "file" => return Err("file: pages are never allowed"),
        _ => return Err("only https: origins (and http: on localhost) are allowed"),
    };
    Ok(match port {
        Some(p) if p != default => format!("{scheme}://{host}:{p}"),
        _ => format!("{scheme}://{host}"),
    })
}

/// The whole handshake check. `denied(origin)` says whether the user put a normalized
/// origin on the deny list.
pub fn check(
    peer: IpAddr,
    h: Headers<'_>,
    port: u16,
    secret: &ClientSecret,
    denied: impl Fn(&str) -> bool,
) -> Result<Client, Refusal> {
    if !peer.is_loopback() {
        return Err(Refusal::new(403, ErrorCode::HostRejected, format!("peer {peer} is not on loopback")));
    }
    check_host(h.host, port)?;
    if let Some(origin) = h.origin {
        let o =
            normalize_origin(origin).map_err(|why| Refusal::new(403, ErrorCode::OriginRejected, format!("{origin}: {why}")))?;
        if denied(&o) {
            return Err(Refusal::new(403, ErrorCode::OriginRejected, format!("{o} is on the deny list")));
        }
        return Ok(Client::Web(o));
    }
    let presented = h.authorization.and_then(|a| {
        let (scheme, token) = a.trim().split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then_some(token)
    });
    match presented {
        Some(t) if secret.verify(t) => Ok(Client::Native),
        Some(_) => Err(Refusal::new(401, ErrorCode::ClientUnauthenticated, "wrong client secret")),
        None => Err(Refusal::new(
            401,
            ErrorCode::ClientUnauthenticated,
            "no Origin and no Authorization: native clients send Authorization: Bearer <the secret in the config directory's bridge-secret>",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    #[test]
    fn host_must_be_loopback_with_our_port() {
        for ok in ["127.0.0.1:17210", "localhost:17210", "LOCALHOST:17210", "[::1]:17210"] {
            assert!(check_host(Some(ok), 17210).is_ok(), "{ok}");
        }
        for bad in [
            None,
            Some("127.0.0.1"),
            Some("localhost"),
            Some("evil.example:17210"),
            Some("127.0.0.1.evil.example:17210"),
            Some("localhost:17211"),
            Some("127.0.0.2:17210"),
            Some("localhost:x"),
            Some("localhost:+17210"),
            Some("localhost:017210"),
            Some("localhost: 17210"),
        ] {
            let e = check_host(bad, 17210).unwrap_err();
            assert_eq!((e.status, e.code), (403, ErrorCode::HostRejected), "{bad:?}");
        }
    }

    #[test]
    fn origins() {
        for (given, norm) in [
            ("https://bid.example.cn", "https://bid.example.cn"),
            ("HTTPS://Bid.Example.CN:443", "https://bid.example.cn"),
            ("https://bid.example.cn:8443", "https://bid.example.cn:8443"),
            ("http://localhost:5173", "http://localhost:5173"),
            ("http://127.0.0.1", "http://127.0.0.1"),
            ("http://127.0.0.1:80", "http://127.0.0.1"),
            ("http://[::1]:8080", "http://[::1]:8080"),
        ] {
            assert_eq!(normalize_origin(given).as_deref(), Ok(norm), "{given}");
        }
        for bad in [
            "null",
            "file://",
            "file:///home/a/x.html",
            "http://bid.example.cn",
            "http://127.0.0.1.evil.example",
            "ws://localhost",
            "chrome-extension://abc",
            "https://",
            "https://a.example/path",
            "https://user@a.example",
            "https://a.example:99999",
            "https://bid.example.cn:.cn:443",
            "https://bid example.cn",
            "https://[zz::1]",
            "https://a.example:+443",
            "https://a.example:0443",
            "https://a.example:",
            "https://.example",
            "bid.example.cn",
        ] {
            assert!(normalize_origin(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn native_clients_need_the_secret() {
        let s = ClientSecret::generate().unwrap();
        let host = Some("127.0.0.1:17210");
        let bearer = s.bearer();
        let ok = Headers { host, origin: None, authorization: Some(&bearer) };
        assert_eq!(check(LO, ok, 17210, &s, |_| false), Ok(Client::Native));
        let other = ClientSecret::generate().unwrap().bearer();
        for auth in [None, Some(other.as_str()), Some("Basic abc"), Some("Bearer"), Some("")] {
            let e = check(LO, Headers { host, origin: None, authorization: auth }, 17210, &s, |_| false).unwrap_err();
            assert_eq!((e.status, e.code), (401, ErrorCode::ClientUnauthenticated), "{auth:?}");
        }
    }

    #[test]
    fn web_origins_checked_and_deny_list_applies() {
        let s = ClientSecret::generate().unwrap();
        let host = Some("localhost:17210");
        let h = |o| Headers { host, origin: Some(o), authorization: None };
        assert_eq!(
            check(LO, h("https://bid.example.cn"), 17210, &s, |_| false),
            Ok(Client::Web("https://bid.example.cn".into()))
        );
        let e = check(LO, h("https://evil.example"), 17210, &s, |o| o == "https://evil.example").unwrap_err();
        assert_eq!(e.code, ErrorCode::OriginRejected);
        let e = check(LO, h("null"), 17210, &s, |_| false).unwrap_err();
        assert_eq!((e.status, e.code), (403, ErrorCode::OriginRejected));
        // An Origin header wins over a secret: a page cannot borrow a native tool's rights.
        let bearer = s.bearer();
        let both = Headers { host, origin: Some("http://evil.example"), authorization: Some(&bearer) };
        assert_eq!(check(LO, both, 17210, &s, |_| false).unwrap_err().code, ErrorCode::OriginRejected);
    }

    #[test]
    fn host_is_checked_before_origin_and_peer_before_all() {
        let s = ClientSecret::generate().unwrap();
        let h = Headers { host: Some("evil.example:17210"), origin: Some("https://bid.example.cn"), authorization: None };
        assert_eq!(check(LO, h, 17210, &s, |_| false).unwrap_err().code, ErrorCode::HostRejected);
        let lan = IpAddr::V4(Ipv4Addr::new(192, 168, 1, 9));
        let good = Headers { host: Some("127.0.0.1:17210"), origin: Some("https://bid.example.cn"), authorization: None };
        assert_eq!(check(lan, good, 17210, &s, |_| false).unwrap_err().code, ErrorCode::HostRejected);
        assert!(check(IpAddr::V6(Ipv6Addr::LOCALHOST), good, 17210, &s, |_| false).is_ok());
    }

    #[test]
    fn headers_sent_twice_or_not_ascii_are_refused() {
        assert_eq!(single_header("origin", &[]), Ok(None));
        assert_eq!(single_header("origin", &[b"https://a.example"]), Ok(Some("https://a.example")));
        let twice = single_header("host", &[b"127.0.0.1:1", b"evil.example:1"]).unwrap_err();
        assert_eq!((twice.status, twice.code), (403, ErrorCode::HostRejected));
        let twice = single_header("origin", &[b"https://a.example", b"https://b.example"]).unwrap_err();
        assert_eq!(twice.code, ErrorCode::OriginRejected);
        let twice = single_header("authorization", &[b"Bearer a", b"Bearer b"]).unwrap_err();
        assert_eq!((twice.status, twice.code), (401, ErrorCode::ClientUnauthenticated));
        let utf8 = single_header("origin", &["https://bid.例子.cn".as_bytes()]).unwrap_err();
        assert_eq!(utf8.code, ErrorCode::OriginRejected);
        assert!(single_header("origin", &[b"https://a.example\x01"]).is_err());
    }

    #[test]
    fn refusal_body_is_an_error_object() {
        let r = Refusal::new(403, ErrorCode::OriginRejected, "x");
        let v: serde_json::Value = serde_json::from_str(&r.body()).unwrap();
        assert_eq!(v["code"], 5002);
        assert_eq!(v["data"]["name"], "origin_rejected");
    }
}
