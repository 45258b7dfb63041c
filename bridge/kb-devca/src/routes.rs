//! HTTP requests to the dev CA: the API and EST answer JSON/PKCS#7, the pages HTML.
//! [`handle`] is a plain function (no socket), so tests drive it directly.

use crate::ca::{DevCa, Refusal, basic_auth};
use crate::pages;
use base64ct::Encoding;
use kb_ca::api::{self, BindingRequest, BindingState, ErrorBody, RenewalKind};
use kb_ca::est;
use kb_ca::http::{Request, Response, form_decode};
use kb_pki::time::UnixTime;
use kb_types::{ErrorCode, Lang};
use std::time::Duration;

/// Largest request body (an attachment upload included).
pub const MAX_BODY: usize = 4 * 1024 * 1024;

fn api_error(r: &Refusal) -> Response {
    let resp = Response::json(r.status, &ErrorBody { error: api::ApiError::new(r.code, r.message.clone()) });
    match (r.code, r.status) {
        (ErrorCode::EnrolmentPending, _) => resp.with_header("Retry-After", "60"),
        // RFC 7030 §3.2.3 / RFC 7235: a 401 names the scheme to use.
        (_, 401) => resp.with_header("WWW-Authenticate", "Basic realm=\"KeyBridge dev CA EST\""),
        _ => resp,
    }
}

fn html(status: u16, body: String) -> Response {
    Response::new(status, "text/html; charset=utf-8", body)
}

fn page_error(r: &Refusal) -> Response {
    html(r.status, pages::error(r.code.message(Lang::ZhCn), &r.message))
}

fn method_not_allowed() -> Response {
    api_error(&Refusal::new(ErrorCode::CaRefused, 405, "method not allowed"))
}

/// Answer one request.
pub fn handle(ca: &DevCa, req: &Request) -> Response {
    let path = req.path().to_string();
    if let Some(rest) = path.strip_prefix(api::API_PREFIX) {
        return api_route(ca, req, rest).unwrap_or_else(|e| api_error(&e));
    }
    if let Some(op) = path.strip_prefix(api::EST_PREFIX) {
        return est_route(ca, req, op).unwrap_or_else(|e| api_error(&e));
    }
    if path == "/crl" || path == "/ocsp" || path.starts_with("/ocsp/") {
        return revocation_route(ca, req, &path).unwrap_or_else(|e| api_error(&e));
    }
    if path == "/op" || path.starts_with("/op/") {
        return operator_route(ca, req, &path).unwrap_or_else(|e| page_error(&e));
    }
    if path.starts_with("/m/") || path == "/m" {
        return phone_route(ca, req, &path).unwrap_or_else(|e| page_error(&e));
    }
    api_error(&Refusal::new(ErrorCode::CaNotFound, 404, format!("no such page {path}")))
}

fn json_body<T: serde::de::DeserializeOwned>(req: &Request) -> Result<T, Refusal> {
    serde_json::from_slice(&req.body).map_err(|e| Refusal::new(ErrorCode::CaRefused, 400, format!("invalid JSON: {e}")))
}

fn api_route(ca: &DevCa, req: &Request, rest: &str) -> Result<Response, Refusal> {
    let parts: Vec<&str> = rest.trim_matches('/').split('/').filter(|p| !p.is_empty()).collect();
    let get = req.method == "GET";
    let post = req.method == "POST";
    Ok(match parts.as_slice() {
        [] if get => Response::json(200, &ca.server_info()),
        ["challenges"] if post => Response::json(200, &ca.challenge()?),
        ["bindings"] if post => Response::json(200, &ca.request_binding(&json_body::<BindingRequest>(req)?)?),
        ["bindings", id] if get => {
            let wait = req.query("wait").and_then(|w| w.parse::<u64>().ok()).unwrap_or(0);
            let known = match req.query("known").as_deref() {
                Some("confirmed") => BindingState::Confirmed,
                Some("cancelled") => BindingState::Cancelled,
                Some("expired") => BindingState::Expired,
                _ => BindingState::Pending,
            };
            let id = kb_ca::http::percent_decode(id.as_bytes());
            let s = if wait == 0 { ca.binding_status(&id)? } else { ca.wait_binding(&id, known, Duration::from_secs(wait))? };
            Response::json(200, &s)
        }
        ["certificates", serial, "renewal"] if get => {
            Response::json(200, &ca.renewal_status(&kb_ca::http::percent_decode(serial.as_bytes()).to_ascii_lowercase())?)
        }
        ["applications", id, "certificates"] if get => {
            Response::json(200, &ca.delivery(&kb_ca::http::percent_decode(id.as_bytes()))?)
        }
        _ if matches!(parts.first(), Some(&("challenges" | "bindings" | "certificates" | "applications")))
            || parts.is_empty() =>
        {
            method_not_allowed()
        }
        _ => return Err(Refusal::new(ErrorCode::CaNotFound, 404, "no such API path")),
    })
}

/// A certs-only answer: base64 on one line. RFC 8951 made EST's base64 that of RFC 4648,
/// which adds no line breaks (§3.1; RFC 7030 erratum 5904: HTTP base64 has no CRLFs), and
/// strict clients (est-ca 0.2.0) refuse a body with any. `openssl base64 -d` needs `-A`.
fn pkcs7(status: u16, content_type: &str, der: &[u8]) -> Response {
    Response::new(status, content_type, api::b64(der)).with_header(est::TRANSFER_ENCODING.0, est::TRANSFER_ENCODING.1)
}

fn est_route(ca: &DevCa, req: &Request, op: &str) -> Result<Response, Refusal> {
    let refused = |status, m: &str| Refusal::new(ErrorCode::EnrolmentRefused, status, m.to_string());
    match (req.method.as_str(), op) {
        ("GET", est::CACERTS) => Ok(pkcs7(200, est::PKCS7_MIME, &est::certs_only(&ca.cacerts()))),
        ("POST", est::SIMPLEENROLL | est::SIMPLEREENROLL) => {
            let ct = est::media_type(req.header("Content-Type").unwrap_or(""));
            if ct != est::PKCS10 {
                return Err(refused(415, "Content-Type must be application/pkcs10"));
            }
            let csr = est::decode_body(&req.body).ok_or_else(|| refused(400, "the body must be base64 DER PKCS#10"))?;
            let cert = if op == est::SIMPLEENROLL {
                ca.simpleenroll(&csr, basic_auth(req.header("Authorization")))?
            } else {
                ca.simplereenroll(&csr)?
            };
            Ok(pkcs7(200, est::PKCS7_CERTS_ONLY, &est::certs_only(&[cert])))
        }
        (_, est::CACERTS | est::SIMPLEENROLL | est::SIMPLEREENROLL) => Ok(method_not_allowed()),
        _ => Err(Refusal::new(ErrorCode::CaNotFound, 404, "EST operation not supported")),
    }
}

fn field(fields: &[(String, String)], name: &str) -> Option<String> {
    fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
}

fn form(req: &Request) -> Vec<(String, String)> {
    form_decode(&req.body)
}

fn missing(name: &str) -> Refusal {
    Refusal::new(ErrorCode::CaRefused, 400, format!("missing {name}"))
}

fn phone_route(ca: &DevCa, req: &Request, path: &str) -> Result<Response, Refusal> {
    let service = ca.config().name;
    let now = UnixTime(ca.now());
    match (req.method.as_str(), path) {
        ("GET", "/m/bind") => {
            let token = req.query("token").ok_or_else(|| missing("token"))?;
            let view = ca.binding_view(&token)?;
            Ok(html(200, pages::binding(&service, &token, &view)))
        }
        ("POST", "/m/bind") => {
            let f = form(req);
            let token = field(&f, "token").ok_or_else(|| missing("token"))?;
            let confirm = field(&f, "action").as_deref() == Some("confirm");
            match ca.answer_binding(&token, confirm)? {
                Some(k) => Ok(html(200, pages::phone_home(&service, &k, &ca.phone_certificates(&k)?, now))),
                None => Ok(html(200, pages::notice("已取消绑定"))),
            }
        }
        ("GET", "/m") => {
            let k = req.query("k").ok_or_else(|| missing("k"))?;
            Ok(html(200, pages::phone_home(&service, &k, &ca.phone_certificates(&k)?, now)))
        }
        ("GET", "/m/renew") => {
            let (k, serial) =
                (req.query("k").ok_or_else(|| missing("k"))?, req.query("serial").ok_or_else(|| missing("serial"))?);
            let cert = ca
                .phone_certificates(&k)?
                .into_iter()
                .find(|c| api::serial_of(c) == serial)
                .ok_or_else(|| Refusal::new(ErrorCode::CaRefused, 403, "this certificate is not bound to this phone"))?;
            let expired = ca.renewal_window(&cert)?;
            Ok(html(200, pages::renew_form(&service, &k, &cert, expired)))
        }
        ("POST", "/m/renew") => {
            let parts = multipart(req).ok_or_else(|| Refusal::new(ErrorCode::CaRefused, 400, "expected multipart/form-data"))?;
            let text = |n: &str| parts.iter().find(|p| p.name == n).map(|p| String::from_utf8_lossy(&p.data).into_owned());
            if text("consent").as_deref() != Some("yes") {
                return Err(Refusal::new(ErrorCode::CaRefused, 400, "the applicant must confirm (意愿表达)"));
            }
            let k = text("k").ok_or_else(|| missing("k"))?;
            let serial = text("serial").ok_or_else(|| missing("serial"))?;
            let years = text("years").and_then(|y| y.trim().parse().ok()).ok_or_else(|| missing("years"))?;
            let kind = if text("kind").as_deref() == Some("rekey") { RenewalKind::Rekey } else { RenewalKind::Renew };
            let attachment = parts
                .iter()
                .find(|p| p.name == "attachment" && !p.data.is_empty())
                .map(|p| (p.filename.clone().unwrap_or_else(|| "attachment".into()), p.data.clone()));
            let id = ca.apply(&k, &serial, kind, years, attachment)?;
            Ok(html(200, pages::payment(&k, &ca.application(&id)?)))
        }
        ("POST", "/m/pay") => {
            let f = form(req);
            let k = field(&f, "k").ok_or_else(|| missing("k"))?;
            let id = field(&f, "application").ok_or_else(|| missing("application"))?;
            ca.pay(&k, &id)?;
            Ok(html(200, pages::paid(&ca.application(&id)?)))
        }
        _ => Err(Refusal::new(ErrorCode::CaNotFound, 404, "no such page")),
    }
}

/// `GET /crl` (DER, application/pkix-crl), `POST /ocsp` and `GET /ocsp/<base64 request>`
/// (RFC 6960 appendix A).
fn revocation_route(ca: &DevCa, req: &Request, path: &str) -> Result<Response, Refusal> {
    match (req.method.as_str(), path) {
        ("GET", "/crl") => Ok(Response::new(200, "application/pkix-crl", ca.crl()?.der().to_vec())),
        ("POST", "/ocsp") => {
            if req.body.len() > 16 * 1024 {
                return Err(Refusal::new(ErrorCode::CaRefused, 413, "OCSP request too large"));
            }
            Ok(Response::new(200, "application/ocsp-response", ca.ocsp(&req.body)?))
        }
        ("GET", p) if p.starts_with("/ocsp/") => {
            let b64 = kb_ca::http::percent_decode_path(&p.as_bytes()["/ocsp/".len()..]);
            let der = base64ct::Base64::decode_vec(&b64).map_err(|_| Refusal::new(ErrorCode::CaRefused, 400, "not base64"))?;
            Ok(Response::new(200, "application/ocsp-response", ca.ocsp(&der)?))
        }
        ("GET" | "POST", "/crl" | "/ocsp") => Ok(method_not_allowed()),
        _ => Err(Refusal::new(ErrorCode::CaNotFound, 404, "no such path")),
    }
}

fn operator_route(ca: &DevCa, req: &Request, path: &str) -> Result<Response, Refusal> {
    let key_ok = |k: Option<String>| k.is_some_and(|k| !k.is_empty() && k == ca.config().operator_key);
    match (req.method.as_str(), path) {
        ("GET", "/op") => {
            if !key_ok(req.query("key")) {
                return Err(Refusal::new(ErrorCode::CaRefused, 403, "operator key required"));
            }
            Ok(html(200, pages::operator(&ca.config().operator_key, &ca.applications("applied")?, &ca.issued()?)))
        }
        ("POST", "/op/decide") => {
            let f = form(req);
            if !key_ok(field(&f, "key")) {
                return Err(Refusal::new(ErrorCode::CaRefused, 403, "operator key required"));
            }
            let id = field(&f, "application").ok_or_else(|| missing("application"))?;
            let approve = field(&f, "action").as_deref() == Some("approve");
            ca.decide(&id, approve, &field(&f, "reason").unwrap_or_default())?;
            Ok(html(200, pages::notice(if approve { "已审核通过" } else { "已驳回" })))
        }
        ("POST", "/op/revoke") => {
            let f = form(req);
            if !key_ok(field(&f, "key")) {
                return Err(Refusal::new(ErrorCode::CaRefused, 403, "operator key required"));
            }
            let serial = field(&f, "serial").ok_or_else(|| missing("serial"))?;
            let reason = field(&f, "reason").unwrap_or_else(|| "unspecified".into());
            let reason =
                crate::ca::reason_by_name(&reason).ok_or_else(|| Refusal::new(ErrorCode::CaRefused, 400, "unknown reason"))?;
            ca.revoke(&serial, reason)?;
            Ok(html(200, pages::notice("已吊销")))
        }
        _ => Err(Refusal::new(ErrorCode::CaNotFound, 404, "no such page")),
    }
}

/// One part of a `multipart/form-data` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// The field name.
    pub name: String,
    /// The file name, for a file.
    pub filename: Option<String>,
    /// The bytes.
    pub data: Vec<u8>,
}

fn disposition_param(header: &str, name: &str) -> Option<String> {
    header.split(';').map(str::trim).find_map(|p| p.strip_prefix(&format!("{name}=")).map(|v| v.trim_matches('"').to_string()))
}

/// Parse a `multipart/form-data` body (RFC 7578).
pub fn multipart(req: &Request) -> Option<Vec<Part>> {
    let ct = req.header("Content-Type")?;
    if est::media_type(ct) != "multipart/form-data" {
        return None;
    }
    let boundary = ct.split(';').map(str::trim).find_map(|p| p.strip_prefix("boundary="))?.trim_matches('"');
    let delim = format!("--{boundary}").into_bytes();
    let body = &req.body;
    let mut positions = Vec::new();
    let mut i = 0;
    while let Some(p) = body[i..].windows(delim.len()).position(|w| w == delim.as_slice()) {
        positions.push(i + p);
        i += p + delim.len();
    }
    let mut parts = Vec::new();
    for w in positions.windows(2) {
        let chunk = &body[w[0] + delim.len()..w[1]];
        let chunk = chunk.strip_prefix(b"\r\n").unwrap_or(chunk);
        let chunk = chunk.strip_suffix(b"\r\n").unwrap_or(chunk);
        let split = chunk.windows(4).position(|x| x == b"\r\n\r\n")?;
        let head = String::from_utf8_lossy(&chunk[..split]);
        let disp = head.lines().find(|l| l.to_ascii_lowercase().starts_with("content-disposition:"))?;
        parts.push(Part {
            name: disposition_param(disp, "name")?,
            filename: disposition_param(disp, "filename"),
            data: chunk[split + 4..].to_vec(),
        });
    }
    Some(parts)
}
