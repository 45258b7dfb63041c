//! [`CaClient`]: what KeyBridge asks a CA, and [`HttpCaClient`], the HTTP(S)
//! implementation with bounded time and size.
//!
//! Failures become stable codes: a server that cannot be reached → `ca_unreachable`;
//! one that does not answer in time (connect, or the whole exchange) → `ca_timed_out`;
//! an answer that is not what the API promises (garbage, too big, wrong content type) →
//! `ca_response_invalid`; an error the CA states → its own code (`binding_expired`, …).

use crate::api::{self, Binding, BindingRequest, BindingState, BindingStatus, Challenge, Delivery, RenewalStatus, ServerInfo};
use crate::http::{self, Request, Response};
use crate::{CaError, Result, est};
use kb_pki::Certificate;
use kb_types::{Category, ErrorCode};
use serde::de::DeserializeOwned;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// What KeyBridge asks a CA. Implemented over HTTP by [`HttpCaClient`]; tests and the
/// desktop may put anything behind it.
pub trait CaClient: Send + Sync {
    /// `GET /api/v1`.
    fn server_info(&self) -> Result<ServerInfo>;
    /// `POST /api/v1/challenges`.
    fn challenge(&self) -> Result<Challenge>;
    /// `POST /api/v1/bindings`.
    fn request_binding(&self, request: &BindingRequest) -> Result<Binding>;
    /// `GET /api/v1/bindings/{id}`; with `wait`, the CA holds the answer until the state
    /// differs from `known` or `wait` passes (long-poll, at most [`api::MAX_WAIT_SECS`]).
    fn binding_status(&self, binding_id: &str, wait: Option<(BindingState, Duration)>) -> Result<BindingStatus>;
    /// `GET /api/v1/certificates/{serial}/renewal`.
    fn renewal_status(&self, serial: &str) -> Result<RenewalStatus>;
    /// `GET /api/v1/applications/{id}/certificates`.
    fn delivery(&self, application_id: &str) -> Result<Delivery>;
    /// EST `GET /cacerts`: the CA's certificates (root and issuing CAs).
    fn est_cacerts(&self) -> Result<Vec<Certificate>>;
    /// EST `POST /simpleenroll` (a new key pair) with HTTP Basic `user:password`.
    fn est_simpleenroll(&self, csr_der: &[u8], basic_auth: Option<(&str, &str)>) -> Result<Vec<Certificate>>;
    /// EST `POST /simplereenroll` (the same key pair; the CSR's signature is the proof).
    fn est_simplereenroll(&self, csr_der: &[u8]) -> Result<Vec<Certificate>>;
}

/// Time and size bounds of one exchange.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// To connect (each address).
    pub connect: Duration,
    /// For the whole exchange after connecting (a long-poll adds its wait).
    pub exchange: Duration,
    /// Largest answer accepted, head and body.
    pub max_response: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { connect: Duration::from_secs(10), exchange: Duration::from_secs(30), max_response: 1024 * 1024 }
    }
}

/// A CA reached over HTTP or HTTPS (OpenSSL, system trust store, host name checked).
#[derive(Clone, Debug)]
pub struct HttpCaClient {
    tls: bool,
    host: String,
    port: u16,
    base: String,
    limits: Limits,
    tls_options: TlsOptions,
}

/// TLS settings beyond the system's trust store.
#[derive(Clone, Debug, Default)]
struct TlsOptions {
    /// Extra trust anchors for the server's certificate (PEM).
    roots: Option<String>,
    /// A client certificate and its key (PEM) for CAs that authenticate the TLS client
    /// (EST §3.3.2) with a software key.
    identity: Option<(String, String)>,
}

impl HttpCaClient {
    /// For a base URL such as `https://ca.example.cn` or `http://127.0.0.1:8443/prefix`.
    pub fn new(base_url: &str) -> Result<Self> {
        let bad = || CaError::BadConfig(format!("not an http(s) URL: {base_url}"));
        let u = crate::http::parse_http_url(base_url).ok_or_else(bad)?;
        Ok(HttpCaClient {
            tls: u.tls,
            host: u.host.to_string(),
            port: u.port,
            base: u.path.trim_end_matches('/').to_string(),
            limits: Limits::default(),
            tls_options: TlsOptions::default(),
        })
    }

    /// Other limits.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Also trust these roots (PEM bundle) for the server's TLS certificate.
    pub fn with_tls_roots(mut self, pem: &str) -> Self {
        self.tls_options.roots = Some(pem.to_string());
        self
    }

    /// Present this client certificate (PEM) with its key (PEM) in TLS.
    pub fn with_tls_identity(mut self, cert_pem: &str, key_pem: &str) -> Self {
        self.tls_options.identity = Some((cert_pem.to_string(), key_pem.to_string()));
        self
    }

    fn connector(&self) -> std::result::Result<openssl::ssl::SslConnector, openssl::error::ErrorStack> {
        let mut b = openssl::ssl::SslConnector::builder(openssl::ssl::SslMethod::tls_client())?;
        if let Some(pem) = &self.tls_options.roots {
            for c in openssl::x509::X509::stack_from_pem(pem.as_bytes())? {
                b.cert_store_mut().add_cert(c)?;
            }
        }
        if let Some((cert, key)) = &self.tls_options.identity {
            let cert = openssl::x509::X509::from_pem(cert.as_bytes())?;
            let key = openssl::pkey::PKey::private_key_from_pem(key.as_bytes())?;
            b.set_certificate(&cert)?;
            b.set_private_key(&key)?;
        }
        Ok(b.build())
    }

    fn server(&self) -> String {
        if self.host.contains(':') { format!("[{}]:{}", self.host, self.port) } else { format!("{}:{}", self.host, self.port) }
    }

    /// One exchange: connect, send, read until the server closes — all within the limits.
    pub fn exchange(&self, mut req: Request, extra_wait: Duration) -> Result<Response> {
        let server = self.server();
        let unreachable = |e: &dyn std::fmt::Display| CaError::Unreachable { server: server.clone(), reason: e.to_string() };
        let timed_out = |d: Duration| CaError::TimedOut { server: server.clone(), seconds: d.as_secs().max(1) };
        req.target = format!("{}{}", self.base, req.target);
        let addrs: Vec<_> = (self.host.as_str(), self.port).to_socket_addrs().map_err(|e| unreachable(&e))?.collect();
        let mut last: Option<std::io::Error> = None;
        let mut stream = None;
        for a in addrs {
            match TcpStream::connect_timeout(&a, self.limits.connect) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let stream = match (stream, last) {
            (Some(s), _) => s,
            (None, Some(e)) if e.kind() == std::io::ErrorKind::TimedOut => return Err(timed_out(self.limits.connect)),
            (None, Some(e)) => return Err(unreachable(&e)),
            (None, None) => return Err(unreachable(&"no address")),
        };
        let budget = self.limits.exchange + extra_wait;
        let deadline = Instant::now() + budget;
        let bytes = req.to_bytes(&server);
        let io = |e: std::io::Error| {
            if matches!(e.kind(), std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock) {
                timed_out(budget)
            } else {
                unreachable(&e)
            }
        };
        let raw = if self.tls {
            let connector = self.connector().map_err(|e| CaError::BadConfig(format!("TLS settings: {e}")))?;
            set_timeouts(&stream, deadline).map_err(io)?;
            let mut tls = connector.connect(&self.host, stream).map_err(|e| unreachable(&e))?;
            tls.write_all(&bytes).map_err(io)?;
            read_all(&mut tls, deadline, self.limits.max_response, |s, d| set_timeouts(s.get_ref(), d)).map_err(io)
        } else {
            let mut s = stream;
            set_timeouts(&s, deadline).map_err(io)?;
            s.write_all(&bytes).map_err(io)?;
            read_all(&mut s, deadline, self.limits.max_response, set_timeouts).map_err(io)
        };
        let raw = raw?.ok_or_else(|| CaError::InvalidResponse {
            server: server.clone(),
            reason: format!("the answer is over {} bytes", self.limits.max_response),
        })?;
        http::parse_response(&raw).map_err(|reason| CaError::InvalidResponse { server, reason })
    }

    fn api<T: DeserializeOwned>(&self, method: &str, path: &str, body: Option<Vec<u8>>, extra_wait: Duration) -> Result<T> {
        let mut req = Request { method: method.into(), target: format!("{}{path}", api::API_PREFIX), ..Default::default() };
        req.headers.push(("Accept".into(), "application/json".into()));
        if let Some(b) = body {
            req.headers.push(("Content-Type".into(), "application/json".into()));
            req.body = b;
        }
        let resp = self.exchange(req, extra_wait)?;
        if resp.status != 200 {
            return Err(self.refusal(&resp, ErrorCode::CaRefused));
        }
        self.expect_type(&resp, "application/json")?;
        serde_json::from_slice(&resp.body)
            .map_err(|e| CaError::InvalidResponse { server: self.server(), reason: format!("not the expected JSON: {e}") })
    }

    fn expect_type(&self, resp: &Response, media_type: &str) -> Result<()> {
        let got = est::media_type(resp.header("Content-Type").unwrap_or(""));
        if got != media_type {
            return Err(CaError::InvalidResponse {
                server: self.server(),
                reason: format!("Content-Type {got:?}, expected {media_type}"),
            });
        }
        Ok(())
    }

    /// The error an answer other than 200 states: the API's error body (its code, when it
    /// is one of the CA codes), else `fallback` with the status and the start of the body.
    fn refusal(&self, resp: &Response, fallback: ErrorCode) -> CaError {
        if let Ok(b) = serde_json::from_slice::<api::ErrorBody>(&resp.body) {
            let code = ErrorCode::from_number(b.error.code).filter(|c| c.category() == Category::Ca).unwrap_or(fallback);
            return CaError::Refused { code, message: b.error.message };
        }
        if resp.status >= 500 && resp.status != 503 {
            return CaError::InvalidResponse { server: self.server(), reason: format!("HTTP {}", resp.status) };
        }
        let text: String = String::from_utf8_lossy(&resp.body).chars().filter(|c| !c.is_control()).take(200).collect();
        let code = if resp.status == 404 && fallback == ErrorCode::CaRefused { ErrorCode::CaNotFound } else { fallback };
        CaError::Refused { code, message: format!("HTTP {}: {}", resp.status, text.trim()) }
    }

    fn est(&self, method: &str, op: &str, body: Option<&[u8]>, auth: Option<(&str, &str)>) -> Result<Vec<Certificate>> {
        let mut req = Request { method: method.into(), target: format!("{}{op}", api::EST_PREFIX), ..Default::default() };
        if let Some(csr) = body {
            req.headers.push(("Content-Type".into(), est::PKCS10.into()));
            req.headers.push((est::TRANSFER_ENCODING.0.into(), est::TRANSFER_ENCODING.1.into()));
            req.body = est::encode_request_body(csr);
        }
        if let Some((user, password)) = auth {
            req.headers.push(("Authorization".into(), format!("Basic {}", api::b64(format!("{user}:{password}").as_bytes()))));
        }
        let resp = self.exchange(req, Duration::ZERO)?;
        match resp.status {
            200 => {}
            202 => {
                let retry_after = resp.header("Retry-After").and_then(|v| v.trim().parse().ok()).unwrap_or(60);
                return Err(CaError::Pending { retry_after });
            }
            _ => return Err(self.refusal(&resp, ErrorCode::EnrolmentRefused)),
        }
        self.expect_type(&resp, est::PKCS7_MIME)?;
        let invalid = |reason: String| CaError::InvalidResponse { server: self.server(), reason };
        let der = est::decode_body(&resp.body).ok_or_else(|| invalid("the body is not base64".into()))?;
        est::parse_certs_only(&der).map_err(|e| invalid(format!("not a certs-only PKCS#7: {e}")))
    }
}

fn set_timeouts(s: &TcpStream, deadline: Instant) -> std::io::Result<()> {
    let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
    s.set_read_timeout(Some(left))?;
    s.set_write_timeout(Some(left))
}

/// Read until the peer closes, the deadline passes (an error) or more than `max` bytes
/// come (`Ok(None)`).
fn read_all<S: Read>(
    s: &mut S,
    deadline: Instant,
    max: usize,
    arm: impl Fn(&S, Instant) -> std::io::Result<()>,
) -> std::io::Result<Option<Vec<u8>>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        if Instant::now() >= deadline {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        arm(s, deadline)?;
        let n = match s.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            return Ok(Some(out));
        }
        out.extend_from_slice(&buf[..n]);
        if out.len() > max {
            return Ok(None);
        }
    }
}

impl CaClient for HttpCaClient {
    fn server_info(&self) -> Result<ServerInfo> {
        let info: ServerInfo = self.api("GET", "", None, Duration::ZERO)?;
        if info.api_version != api::API_VERSION {
            return Err(CaError::Refused {
                code: ErrorCode::CaApiVersionUnsupported,
                message: format!("the CA speaks API {}, this client {}", info.api_version, api::API_VERSION),
            });
        }
        Ok(info)
    }

    fn challenge(&self) -> Result<Challenge> {
        self.api("POST", "/challenges", Some(Vec::new()), Duration::ZERO)
    }

    fn request_binding(&self, request: &BindingRequest) -> Result<Binding> {
        let body = serde_json::to_vec(request).map_err(|e| CaError::BadConfig(e.to_string()))?;
        self.api("POST", "/bindings", Some(body), Duration::ZERO)
    }

    fn binding_status(&self, binding_id: &str, wait: Option<(BindingState, Duration)>) -> Result<BindingStatus> {
        let id = http::percent_encode(binding_id);
        match wait {
            None => self.api("GET", &format!("/bindings/{id}"), None, Duration::ZERO),
            Some((known, wait)) => {
                let wait = wait.min(Duration::from_secs(api::MAX_WAIT_SECS));
                let known = serde_json::to_value(known).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default();
                self.api("GET", &format!("/bindings/{id}?wait={}&known={known}", wait.as_secs()), None, wait)
            }
        }
    }

    fn renewal_status(&self, serial: &str) -> Result<RenewalStatus> {
        self.api("GET", &format!("/certificates/{}/renewal", http::percent_encode(serial)), None, Duration::ZERO)
    }

    fn delivery(&self, application_id: &str) -> Result<Delivery> {
        self.api("GET", &format!("/applications/{}/certificates", http::percent_encode(application_id)), None, Duration::ZERO)
    }

    fn est_cacerts(&self) -> Result<Vec<Certificate>> {
        self.est("GET", est::CACERTS, None, None)
    }

    fn est_simpleenroll(&self, csr_der: &[u8], basic_auth: Option<(&str, &str)>) -> Result<Vec<Certificate>> {
        self.est("POST", est::SIMPLEENROLL, Some(csr_der), basic_auth)
    }

    fn est_simplereenroll(&self, csr_der: &[u8]) -> Result<Vec<Certificate>> {
        self.est("POST", est::SIMPLEREENROLL, Some(csr_der), None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_parse_or_are_refused() {
        let c = HttpCaClient::new("http://127.0.0.1:8080/ca/").unwrap();
        assert_eq!((c.tls, c.host.as_str(), c.port, c.base.as_str()), (false, "127.0.0.1", 8080, "/ca"));
        let c = HttpCaClient::new("https://[::1]").unwrap();
        assert_eq!((c.tls, c.port, c.server().as_str()), (true, 443, "[::1]:443"));
        for bad in ["ftp://x", "http://", "http://a:b", "http://u@h/"] {
            assert!(matches!(HttpCaClient::new(bad), Err(CaError::BadConfig(_))), "{bad}");
        }
    }
}
