//! A small HTTP/1.1 message layer: requests and responses as plain values, parsers with
//! size caps, serialisers. One request per connection (`Connection: close`), bodies by
//! `Content-Length` (and chunked answers from other servers). Shared by the client and
//! the dev CA.

use std::io::{self, Read, Write};

/// Longest request or response head (status line and headers).
pub const MAX_HEAD: usize = 16 * 1024;

/// An HTTP request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Request {
    /// `GET`, `POST`, …
    pub method: String,
    /// The request target: path and query.
    pub target: String,
    /// Header names as sent, values trimmed.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

/// An HTTP response.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Header names as sent, values trimmed.
    pub headers: Vec<(String, String)>,
    /// The body (de-chunked).
    pub body: Vec<u8>,
}

fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

impl Request {
    /// A header's value (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// The path without the query.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    /// A query parameter, percent-decoded.
    pub fn query(&self, name: &str) -> Option<String> {
        let q = self.target.split_once('?')?.1;
        form_decode(q.as_bytes()).into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    /// Serialise (with `Host`, `Content-Length` and `Connection: close`).
    pub fn to_bytes(&self, host: &str) -> Vec<u8> {
        let mut out = format!("{} {} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n", self.method, self.target);
        for (k, v) in &self.headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str(&format!("Content-Length: {}\r\n\r\n", self.body.len()));
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }
}

impl Response {
    /// A response with a body and its content type.
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        Response { status, headers: vec![("Content-Type".into(), content_type.into())], body: body.into() }
    }

    /// A JSON response.
    pub fn json(status: u16, value: &impl serde::Serialize) -> Self {
        Self::new(status, "application/json", serde_json::to_vec(value).unwrap_or_default())
    }

    /// Add a header.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// A header's value (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// Serialise (with `Content-Length` and `Connection: close`).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = format!("HTTP/1.1 {} {}\r\nConnection: close\r\n", self.status, reason(self.status));
        for (k, v) in &self.headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str(&format!("Content-Length: {}\r\n\r\n", self.body.len()));
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        202 => "Accepted",
        303 => "See Other",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        410 => "Gone",
        413 => "Payload Too Large",
        _ => "Status",
    }
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// Read one request: a head of at most [`MAX_HEAD`] bytes, a body of at most `max_body`.
pub fn read_request(r: &mut impl Read, max_body: usize) -> io::Result<Request> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf).map_err(|e| invalid(e.to_string()))? {
            httparse::Status::Complete(head_len) => {
                let headers: Vec<(String, String)> = req
                    .headers
                    .iter()
                    .map(|h| (h.name.to_string(), String::from_utf8_lossy(h.value).trim().to_string()))
                    .collect();
                let mut out = Request {
                    method: req.method.unwrap_or("").to_string(),
                    target: req.path.unwrap_or("").to_string(),
                    headers,
                    body: Vec::new(),
                };
                if out.header("Transfer-Encoding").is_some() {
                    return Err(invalid("chunked requests are not accepted; send Content-Length"));
                }
                let len: usize = match out.header("Content-Length") {
                    Some(v) => v.parse().map_err(|_| invalid("bad Content-Length"))?,
                    None => 0,
                };
                if len > max_body {
                    return Err(io::Error::new(io::ErrorKind::OutOfMemory, format!("body of {len} bytes is over the limit")));
                }
                let mut body = buf[head_len..].to_vec();
                body.truncate(len);
                while body.len() < len {
                    let n = r.read(&mut chunk)?;
                    if n == 0 {
                        return Err(invalid("connection closed inside the body"));
                    }
                    body.extend_from_slice(&chunk[..n.min(len - body.len())]);
                }
                out.body = body;
                return Ok(out);
            }
            httparse::Status::Partial => {
                if buf.len() > MAX_HEAD {
                    return Err(invalid("request head too large"));
                }
                let n = r.read(&mut chunk)?;
                if n == 0 {
                    return Err(invalid("connection closed inside the head"));
                }
                buf.extend_from_slice(&chunk[..n]);
            }
        }
    }
}

/// Write a response and flush.
pub fn write_response(w: &mut impl Write, resp: &Response) -> io::Result<()> {
    w.write_all(&resp.to_bytes())?;
    w.flush()
}

/// Parse a complete raw response (everything the server sent before closing).
pub fn parse_response(raw: &[u8]) -> Result<Response, String> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    let head_len = match resp.parse(raw).map_err(|e| format!("not HTTP: {e}"))? {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => return Err("the answer ended inside its head".into()),
    };
    let headers: Vec<(String, String)> =
        resp.headers.iter().map(|h| (h.name.to_string(), String::from_utf8_lossy(h.value).trim().to_string())).collect();
    let status = resp.code.unwrap_or(0);
    let rest = &raw[head_len..];
    let body = if find_header(&headers, "Transfer-Encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")) {
        dechunk(rest)?
    } else if let Some(len) = find_header(&headers, "Content-Length") {
        let len: usize = len.parse().map_err(|_| "bad Content-Length".to_string())?;
        if rest.len() < len {
            return Err(format!("the answer ended after {} of {len} body bytes", rest.len()));
        }
        rest[..len].to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Response { status, headers, body })
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n").ok_or("bad chunk")?;
        let size_text = std::str::from_utf8(&data[..line_end]).map_err(|_| "bad chunk size")?;
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16).map_err(|_| "bad chunk size")?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size + 2 {
            return Err("the answer ended inside a chunk".into());
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// Decode `application/x-www-form-urlencoded` (also a query string).
pub fn form_decode(data: &[u8]) -> Vec<(String, String)> {
    data.split(|b| *b == b'&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let mut it = pair.splitn(2, |b| *b == b'=');
            let k = percent_decode(it.next().unwrap_or(&[]));
            let v = percent_decode(it.next().unwrap_or(&[]));
            (k, v)
        })
        .collect()
}

/// Percent-decode form data (`+` is a space), lossy UTF-8.
pub fn percent_decode(s: &[u8]) -> String {
    percent_decode_with(s, true)
}

/// Percent-decode a path segment (RFC 3986: `+` stays `+`, as in URL-encoded base64),
/// lossy UTF-8.
pub fn percent_decode_path(s: &[u8]) -> String {
    percent_decode_with(s, false)
}

fn percent_decode_with(s: &[u8], plus_is_space: bool) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match (s[i], s.get(i + 1).copied().and_then(hex), s.get(i + 2).copied().and_then(hex)) {
            (b'+', _, _) if plus_is_space => out.push(b' '),
            (b'%', Some(h), Some(l)) => {
                out.push(h << 4 | l);
                i += 2;
            }
            (b, _, _) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An `http://` or `https://` URL taken apart (no user info, no query handling).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpUrl<'a> {
    /// `https`.
    pub tls: bool,
    /// Host name or address (IPv6 without its brackets).
    pub host: &'a str,
    /// The port, or 443 / 80.
    pub port: u16,
    /// Everything from the first `/` after the authority, as given (`""` when none).
    pub path: &'a str,
}

/// Take an http(s) URL apart; `None` when it is not one (another scheme, a bad port, an
/// empty host, user info).
pub fn parse_http_url(url: &str) -> Option<HttpUrl<'_>> {
    let (tls, rest) = match (url.strip_prefix("https://"), url.strip_prefix("http://")) {
        (Some(r), _) => (true, r),
        (None, Some(r)) => (false, r),
        (None, None) => return None,
    };
    let (authority, path) = rest.find('/').map_or((rest, ""), |i| (&rest[..i], &rest[i..]));
    let (host, port) = if let Some(h) = authority.strip_prefix('[') {
        let end = h.find(']')?;
        (&h[..end], h[end + 1..].strip_prefix(':').map(str::parse).transpose().ok()?)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p.parse().ok()?)),
            None => (authority, None),
        }
    };
    if host.is_empty() || host.contains(['@', ' ']) {
        return None;
    }
    Some(HttpUrl { tls, host, port: port.unwrap_or(if tls { 443 } else { 80 }), path })
}

/// Percent-encode everything but unreserved characters (RFC 3986).
pub fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_keep_plus_forms_make_it_a_space() {
        assert_eq!(percent_decode_path(b"MEU%2Bab+c%3D"), "MEU+ab+c=");
        assert_eq!(percent_decode(b"a+b%2B"), "a b+");
    }

    #[test]
    fn http_urls_taken_apart() {
        let u = parse_http_url("https://ca.example.cn/est/").unwrap();
        assert_eq!((u.tls, u.host, u.port, u.path), (true, "ca.example.cn", 443, "/est/"));
        let u = parse_http_url("http://[::1]:8443").unwrap();
        assert_eq!((u.tls, u.host, u.port, u.path), (false, "::1", 8443, ""));
        for bad in ["ftp://x", "http://", "http://a:b", "http://u@h/", "http://[::1", "https://h:99999"] {
            assert!(parse_http_url(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn requests_round_trip_and_limits_hold() {
        let req = Request {
            method: "POST".into(),
            target: "/m/bind?token=a%2Bb&x=%E4%B8%AD".into(),
            headers: vec![("Content-Type".into(), "application/x-www-form-urlencoded".into())],
            body: b"action=confirm&n=a+b".to_vec(),
        };
        let raw = req.to_bytes("127.0.0.1:1");
        let back = read_request(&mut &raw[..], 100).unwrap();
        assert_eq!((back.method.as_str(), back.path(), back.body.as_slice()), ("POST", "/m/bind", &req.body[..]));
        assert_eq!(back.query("token").as_deref(), Some("a+b"));
        assert_eq!(back.query("x").as_deref(), Some("中"));
        assert_eq!(form_decode(&back.body), vec![("action".into(), "confirm".into()), ("n".into(), "a b".into())]);
        assert!(read_request(&mut &raw[..], 5).is_err());
        assert!(read_request(&mut &b"GET / HTTP/1.1\r\nHost: x\r\n"[..], 5).is_err());
        assert!(read_request(&mut &vec![b'a'; MAX_HEAD + 5000][..], 5).is_err());
        assert_eq!(percent_decode(b"%zz%4"), "%zz%4");
        assert_eq!(percent_decode(percent_encode("a b/中").as_bytes()), "a b/中");
    }

    #[test]
    fn responses_parse_with_length_chunks_or_close() {
        let r = Response::new(200, "text/plain", "hello").with_header("Retry-After", "3");
        let back = parse_response(&r.to_bytes()).unwrap();
        assert_eq!((back.status, back.body.as_slice(), back.header("retry-after")), (200, &b"hello"[..], Some("3")));
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse_response(chunked).unwrap().body, b"abcde");
        assert_eq!(parse_response(b"HTTP/1.0 200 OK\r\n\r\nto the end").unwrap().body, b"to the end");
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort").is_err());
        assert!(parse_response(b"garbage\r\n\r\n").is_err());
    }
}
