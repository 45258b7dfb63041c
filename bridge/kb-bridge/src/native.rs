//! Native messaging: the host the KeyBridge browser extension starts, so a web page
//! reaches KeyBridge with no port open to it (see `docs/bridge-protocol.md`, "Native
//! messaging").
//!
//! The browser speaks Chrome's native messaging protocol on the host's stdin/stdout:
//! each message is UTF-8 JSON preceded by its length as a 32-bit unsigned integer in
//! native byte order. One host process serves one page connection (the extension calls
//! `connectNative` once per page port). Its first message names the page's origin, taken
//! by the extension from the port's sender (`sender.origin`), never from the page.
//!
//! The host runs no methods itself: it opens a WebSocket to the running bridge on
//! loopback with that origin as `Origin`, and relays text frames (JSON-RPC) and binary
//! frames (streams, base64 in JSON) both ways. So the bridge's handshake checks, consent,
//! grants, methods, limits and audit are the ones every WebSocket client gets, and the
//! one process that owns the media and the PIN dialogs (the desktop app, or
//! `keybridge serve`) stays the only one.
//!
//! Size caps: a message to the browser is at most [`MAX_TO_BROWSER`] (1 MiB, Chrome's
//! own limit: a larger one would make Chrome drop the host); a message from the browser
//! at most [`MAX_FROM_BROWSER`] (2 MiB: Chrome would send up to 64 MiB, but the bridge
//! takes text frames of at most 1 MiB and stream chunks of 256 KiB, so twice the text
//! limit leaves room for JSON escaping and is all the host ever allocates for one
//! message).

use crate::browser_policy::Browser;
use base64ct::{Base64, Encoding};
use futures_util::{SinkExt, StreamExt};
use kb_bridge_protocol::ErrorObject;
use kb_types::ErrorCode;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

/// The host's name in browser manifests (`com.keybridge.host.json`).
pub const HOST_NAME: &str = "com.keybridge.host";
/// The KeyBridge extension's id (fixed by the `key` in `browser/extension/manifest.json`).
pub const EXTENSION_ID: &str = "aomgeigggnonmephipbmolmfcaagmdme";
/// The largest message the host sends to the browser (Chrome's limit).
pub const MAX_TO_BROWSER: usize = 1 << 20;
/// The largest message the host accepts from the browser.
pub const MAX_FROM_BROWSER: usize = 2 << 20;
/// Time for the extension's first message (`open`) and for the bridge's handshake.
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

/// A framing or message error on the browser side of the host.
#[derive(Debug, thiserror::Error)]
pub enum NativeError {
    /// The stream ended inside a message (in its length or its body).
    #[error("the browser's stream ended inside a message ({got} of {want} bytes)")]
    Truncated {
        /// Bytes received.
        got: usize,
        /// Bytes the length (or the length field) promised.
        want: usize,
    },
    /// A message over the cap for its direction.
    #[error("a native message of {len} bytes is over the {cap}-byte cap")]
    TooLarge {
        /// The message's length.
        len: usize,
        /// The cap.
        cap: usize,
    },
    /// A message that is not one of the host's messages (bad JSON, unknown type, bad base64).
    #[error("invalid native message: {0}")]
    Invalid(String),
    /// Reading or writing the pipe failed.
    #[error("native messaging pipe: {0}")]
    Io(#[from] std::io::Error),
}

impl NativeError {
    /// The stable code reported to the browser.
    pub fn code(&self) -> ErrorCode {
        match self {
            NativeError::TooLarge { .. } => ErrorCode::ExtensionMessageTooLarge,
            NativeError::Truncated { .. } | NativeError::Invalid(_) => ErrorCode::MalformedInput,
            NativeError::Io(_) => ErrorCode::Io,
        }
    }
}

/// Reads one message: `Ok(None)` when the stream ends cleanly before a message.
/// Short reads are waited for; a length over `cap` is refused before any body is read.
pub async fn read_message<R: AsyncRead + Unpin>(r: &mut R, cap: usize) -> Result<Option<Vec<u8>>, NativeError> {
    let mut len = [0u8; 4];
    let got = read_full(r, &mut len).await?;
    if got == 0 {
        return Ok(None);
    }
    if got < len.len() {
        return Err(NativeError::Truncated { got, want: len.len() });
    }
    let n = u32::from_ne_bytes(len) as usize;
    if n > cap {
        return Err(NativeError::TooLarge { len: n, cap });
    }
    let mut body = vec![0u8; n];
    let got = read_full(r, &mut body).await?;
    if got < n {
        return Err(NativeError::Truncated { got, want: n });
    }
    Ok(Some(body))
}

/// Fills `buf` unless the stream ends first; returns how many bytes were read.
async fn read_full<R: AsyncRead + Unpin>(r: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut at = 0;
    while at < buf.len() {
        match r.read(&mut buf[at..]).await? {
            0 => break,
            n => at += n,
        }
    }
    Ok(at)
}

/// Writes one message (length, then body), refusing one over `cap`.
pub async fn write_message<W: AsyncWrite + Unpin>(w: &mut W, body: &[u8], cap: usize) -> Result<(), NativeError> {
    if body.len() > cap {
        return Err(NativeError::TooLarge { len: body.len(), cap });
    }
    let len = u32::try_from(body.len()).map_err(|_| NativeError::TooLarge { len: body.len(), cap })?;
    w.write_all(&len.to_ne_bytes()).await?;
    w.write_all(body).await?;
    w.flush().await?;
    Ok(())
}

/// A message from the extension.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum FromBrowser {
    /// The first message: the page's origin, from the extension's port sender.
    Open {
        /// e.g. `https://bid.example.cn`.
        origin: String,
    },
    /// A text frame (one JSON-RPC message, as the page wrote it).
    Text {
        /// The frame.
        data: String,
    },
    /// A binary frame (a stream chunk), standard padded base64.
    Binary {
        /// The frame.
        data: String,
    },
    /// The page closed the connection.
    Close {},
}

impl FromBrowser {
    /// Parses a message body.
    pub fn parse(body: &[u8]) -> Result<Self, NativeError> {
        serde_json::from_slice(body).map_err(|e| NativeError::Invalid(e.to_string()))
    }
}

/// A message to the extension.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ToBrowser {
    /// The bridge accepted the connection (the WebSocket `open` event).
    Open {
        /// The origin the bridge was given (what consent and grants are bound to).
        origin: String,
    },
    /// A text frame from the bridge.
    Text {
        /// The frame.
        data: String,
    },
    /// A binary frame from the bridge, base64.
    Binary {
        /// The frame.
        data: String,
    },
    /// A binary frame from the browser was handed to the bridge's socket: the page's
    /// upload back-pressure (its `bufferedAmount` goes down by `bytes`).
    Sent {
        /// The frame's length.
        bytes: usize,
    },
    /// The bridge closed the connection.
    Close {
        /// The WebSocket close code (1006 when the connection dropped without one).
        code: u16,
        /// The close reason.
        reason: String,
    },
    /// The connection could not be made or had to end: the bridge's refusal, or the host's.
    Error {
        /// The error object (as in a JSON-RPC error response).
        error: ErrorObject,
    },
}

impl ToBrowser {
    fn error(code: ErrorCode, detail: impl Into<String>) -> Self {
        ToBrowser::Error { error: ErrorObject::new(code, detail) }
    }
}

/// Serializes a message for the browser. One over the cap cannot be sent (Chrome would
/// drop the host): in its place comes a small `error` (5022), and the connection ends.
fn encode_to_browser(m: &ToBrowser) -> Result<Vec<u8>, Vec<u8>> {
    let body = serde_json::to_vec(m).unwrap_or_default();
    if body.len() <= MAX_TO_BROWSER {
        return Ok(body);
    }
    let e = ToBrowser::error(
        ErrorCode::ExtensionMessageTooLarge,
        format!("a message of {} bytes from KeyBridge is over the browser's {MAX_TO_BROWSER}-byte cap", body.len()),
    );
    Err(serde_json::to_vec(&e).unwrap_or_default())
}

/// Runs the host for one page connection: `input`/`output` are the browser's pipe
/// (stdin/stdout), `bridge_port` the local bridge's port on 127.0.0.1. Returns when
/// either side closes; every failure has been reported to the browser as an `error`
/// message before the host ends.
pub async fn run_host<R, W>(input: R, output: W, bridge_port: u16) -> Result<(), NativeError>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (to_browser, rx) = mpsc::channel::<ToBrowser>(16);
    let writer = tokio::spawn(write_loop(output, rx));
    let (from_browser, mut incoming) = mpsc::channel::<Result<FromBrowser, NativeError>>(16);
    let reader = tokio::spawn(read_loop(input, from_browser));
    let outcome = session(&mut incoming, &to_browser, bridge_port).await;
    if let Err(e) = &outcome {
        let _ = to_browser.send(ToBrowser::error(e.code(), e.to_string())).await;
    }
    drop(to_browser);
    reader.abort();
    let written = writer.await.unwrap_or(Ok(()));
    outcome.and(written)
}

async fn write_loop<W: AsyncWrite + Unpin>(mut w: W, mut rx: mpsc::Receiver<ToBrowser>) -> Result<(), NativeError> {
    while let Some(m) = rx.recv().await {
        match encode_to_browser(&m) {
            Ok(body) => write_message(&mut w, &body, MAX_TO_BROWSER).await?,
            Err(refusal) => {
                write_message(&mut w, &refusal, MAX_TO_BROWSER).await?;
                // Dropping the receiver ends the session: its next send fails.
                return Ok(());
            }
        }
    }
    Ok(())
}

/// Reads messages until the browser closes the pipe or one is bad (which ends it: the
/// pipe cannot be trusted to be in step after a bad length).
async fn read_loop<R: AsyncRead + Unpin>(mut r: R, tx: mpsc::Sender<Result<FromBrowser, NativeError>>) {
    loop {
        let m = match read_message(&mut r, MAX_FROM_BROWSER).await {
            Ok(None) => return,
            Ok(Some(body)) => FromBrowser::parse(&body),
            Err(e) => Err(e),
        };
        let stop = m.is_err();
        if tx.send(m).await.is_err() || stop {
            return;
        }
    }
}

type Incoming = mpsc::Receiver<Result<FromBrowser, NativeError>>;

async fn session(incoming: &mut Incoming, out: &mpsc::Sender<ToBrowser>, port: u16) -> Result<(), NativeError> {
    let origin = match tokio::time::timeout(OPEN_TIMEOUT, incoming.recv()).await {
        Err(_) => return Err(NativeError::Invalid("no open message in time".into())),
        Ok(None) => return Ok(()),
        Ok(Some(m)) => match m? {
            FromBrowser::Open { origin } => origin,
            other => return Err(NativeError::Invalid(format!("the first message must be open, not {other:?}"))),
        },
    };
    let origin = match crate::handshake::normalize_origin(&origin) {
        Ok(o) => o,
        Err(why) => {
            let _ = out.send(ToBrowser::error(ErrorCode::OriginRejected, format!("{origin:?}: {why}"))).await;
            return Ok(());
        }
    };
    let ws = match connect(port, &origin).await {
        Ok(ws) => ws,
        Err(error) => {
            let _ = out.send(ToBrowser::Error { error }).await;
            return Ok(());
        }
    };
    let _ = out.send(ToBrowser::Open { origin }).await;
    let (mut sink, mut stream) = ws.split();
    let dropped = || ToBrowser::Close { code: 1006, reason: "the bridge connection dropped".into() };
    // The two directions run side by side: an upload frame waiting for the bridge to read
    // (TCP back-pressure) never holds up the bridge's answers and download frames.
    let upstream = async {
        loop {
            let mut sent = None;
            let frame = match incoming.recv().await {
                None | Some(Ok(FromBrowser::Close {})) => {
                    let _ = sink.close().await;
                    return Ok(());
                }
                Some(Err(e)) => return Err(e),
                Some(Ok(FromBrowser::Text { data })) => Message::Text(data.into()),
                Some(Ok(FromBrowser::Binary { data })) => {
                    let bytes =
                        Base64::decode_vec(&data).map_err(|_| NativeError::Invalid("binary data is not base64".into()))?;
                    sent = Some(bytes.len());
                    Message::Binary(bytes.into())
                }
                Some(Ok(FromBrowser::Open { .. })) => return Err(NativeError::Invalid("a second open".into())),
            };
            if sink.send(frame).await.is_err() {
                let _ = out.send(dropped()).await;
                return Ok(());
            }
            if let Some(bytes) = sent
                && out.send(ToBrowser::Sent { bytes }).await.is_err()
            {
                return Ok(());
            }
        }
    };
    let downstream = async {
        loop {
            let m = match stream.next().await {
                Some(Ok(Message::Text(t))) => ToBrowser::Text { data: t.as_str().to_owned() },
                Some(Ok(Message::Binary(b))) => ToBrowser::Binary { data: Base64::encode_string(&b) },
                Some(Ok(Message::Close(frame))) => {
                    let (code, reason) = frame
                        .map(|f: CloseFrame| (u16::from(f.code), f.reason.as_str().to_owned()))
                        .unwrap_or((1005, String::new()));
                    let _ = out.send(ToBrowser::Close { code, reason }).await;
                    return Ok(());
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => {
                    let _ = out.send(dropped()).await;
                    return Ok(());
                }
            };
            if out.send(m).await.is_err() {
                return Ok(());
            }
        }
    };
    tokio::select! {
        r = upstream => r,
        r = downstream => r,
    }
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens the bridge connection for `origin`; a refusal comes back as the bridge's error object.
async fn connect(port: u16, origin: &str) -> Result<Ws, ErrorObject> {
    let unreachable = |why: String| ErrorObject::new(ErrorCode::NativeHostBridgeUnreachable, why);
    let mut req = format!("ws://127.0.0.1:{port}").into_client_request().map_err(|e| unreachable(e.to_string()))?;
    let value = origin.parse().map_err(|_| ErrorObject::new(ErrorCode::OriginRejected, "origin is not a header value"))?;
    req.headers_mut().insert("origin", value);
    let attempt = tokio_tungstenite::connect_async_with_config(req, None, true);
    match tokio::time::timeout(OPEN_TIMEOUT, attempt).await {
        Err(_) => Err(unreachable(format!("no answer from 127.0.0.1:{port} in time"))),
        Ok(Ok((ws, _))) => Ok(ws),
        Ok(Err(tokio_tungstenite::tungstenite::Error::Http(resp))) => {
            let status = resp.status().as_u16();
            let body = resp.body().as_deref().unwrap_or_default();
            Err(serde_json::from_slice(body).unwrap_or_else(|_| unreachable(format!("the bridge answered HTTP {status}"))))
        }
        Ok(Err(e)) => Err(unreachable(format!("127.0.0.1:{port}: {e}"))),
    }
}

/// The host manifest (`com.keybridge.host.json`) for a host at `path` (absolute).
pub fn host_manifest(path: &Path) -> String {
    let m = serde_json::json!({
        "name": HOST_NAME,
        "description": "KeyBridge security client (国密证书客户端): web pages sign through the KeyBridge extension",
        "path": path,
        "type": "stdio",
        "allowed_origins": [format!("chrome-extension://{EXTENSION_ID}/")],
    });
    let mut s = serde_json::to_string_pretty(&m).unwrap_or_default();
    s.push('\n');
    s
}

/// The manifest's file name.
pub fn manifest_file_name() -> String {
    format!("{HOST_NAME}.json")
}

/// Where a browser looks for the current user's host manifests on Linux, under the
/// user's config directory (`$XDG_CONFIG_HOME`, by default `~/.config`). A browser
/// started with `--user-data-dir DIR` looks in `DIR/NativeMessagingHosts` instead.
pub fn user_manifest_dir(browser: Browser, config_home: &Path) -> PathBuf {
    config_home
        .join(match browser {
            Browser::Chromium => "chromium",
            Browser::Chrome => "google-chrome",
            Browser::Edge => "microsoft-edge",
        })
        .join("NativeMessagingHosts")
}

/// Where a browser looks for system-wide host manifests on Linux, under `root` (`/`).
pub fn system_manifest_dir(browser: Browser, root: &Path) -> PathBuf {
    root.join(match browser {
        Browser::Chromium => "etc/chromium/native-messaging-hosts",
        Browser::Chrome => "etc/opt/chrome/native-messaging-hosts",
        Browser::Edge => "etc/opt/edge/native-messaging-hosts",
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::duplex;

    fn framed(body: &[u8]) -> Vec<u8> {
        let mut v = (body.len() as u32).to_ne_bytes().to_vec();
        v.extend_from_slice(body);
        v
    }

    #[tokio::test]
    async fn a_message_split_into_one_byte_reads_is_read_whole() {
        // A duplex pipe of capacity 1 hands the reader one byte at a time.
        let (mut w, mut r) = duplex(1);
        let body = br#"{"type":"text","data":"{\"jsonrpc\":\"2.0\"}"}"#.to_vec();
        let bytes = [framed(&body), framed(b"{}")].concat();
        let writer = tokio::spawn(async move { w.write_all(&bytes).await });
        assert_eq!(read_message(&mut r, 1024).await.unwrap(), Some(body));
        assert_eq!(read_message(&mut r, 1024).await.unwrap(), Some(b"{}".to_vec()));
        writer.await.unwrap().unwrap();
        assert_eq!(read_message(&mut r, 1024).await.unwrap(), None, "a clean end after a message");
    }

    #[tokio::test]
    async fn the_length_is_native_endian() {
        let mut out = Vec::new();
        write_message(&mut out, b"{\"a\":1}", 64).await.unwrap();
        assert_eq!(&out[..4], &7u32.to_ne_bytes());
        assert_eq!(&out[4..], b"{\"a\":1}");
    }

    #[tokio::test]
    async fn a_length_over_the_cap_is_refused_before_the_body_is_read() {
        let mut input: &[u8] = &(MAX_FROM_BROWSER as u32 + 1).to_ne_bytes();
        let e = read_message(&mut input, MAX_FROM_BROWSER).await.unwrap_err();
        assert!(matches!(e, NativeError::TooLarge { len, cap } if len == MAX_FROM_BROWSER + 1 && cap == MAX_FROM_BROWSER));
        assert_eq!(e.code(), ErrorCode::ExtensionMessageTooLarge);
        // Exactly the cap is fine.
        let body = vec![b' '; 16];
        let bytes = framed(&body);
        assert_eq!(read_message(&mut bytes.as_slice(), 16).await.unwrap(), Some(body));
    }

    #[tokio::test]
    async fn a_message_over_the_cap_is_not_written() {
        let mut out = Vec::new();
        let e = write_message(&mut out, &[b'x'; 17], 16).await.unwrap_err();
        assert!(matches!(e, NativeError::TooLarge { len: 17, cap: 16 }));
        assert!(out.is_empty());
    }

    #[tokio::test]
    async fn the_end_of_the_stream_inside_a_message_is_an_error() {
        // Inside the length…
        let e = read_message(&mut &[5u8, 0][..], 64).await.unwrap_err();
        assert!(matches!(e, NativeError::Truncated { got: 2, want: 4 }), "{e:?}");
        // …and inside the body.
        let mut bytes = framed(b"{\"type\":\"close\"}");
        bytes.truncate(10);
        let e = read_message(&mut bytes.as_slice(), 64).await.unwrap_err();
        assert!(matches!(e, NativeError::Truncated { got: 6, want: 16 }), "{e:?}");
    }

    #[test]
    fn the_manifest_allows_only_the_extension_and_names_the_host() {
        let m: serde_json::Value = serde_json::from_str(&host_manifest(Path::new("/usr/bin/keybridge"))).unwrap();
        assert_eq!(m["name"], HOST_NAME);
        assert_eq!(m["type"], "stdio");
        assert_eq!(m["path"], "/usr/bin/keybridge");
        assert_eq!(m["allowed_origins"], serde_json::json!([format!("chrome-extension://{EXTENSION_ID}/")]));
    }

    #[test]
    fn the_packaged_manifest_is_the_generated_one() {
        let file = concat!(env!("CARGO_MANIFEST_DIR"), "/../../installer/browser/com.keybridge.host.json");
        let packaged = std::fs::read_to_string(file).unwrap();
        assert_eq!(packaged, host_manifest(Path::new("/usr/bin/keybridge")), "regenerate {file}");
    }

    /// The extension's id is fixed by the public key in its manifest: the first 128 bits
    /// of SHA-256(key), each hex digit written as a letter a–p.
    #[test]
    fn the_extension_id_is_the_one_its_manifest_key_gives() {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../browser/extension/manifest.json")).unwrap();
        let manifest: serde_json::Value = serde_json::from_str(&text).unwrap();
        let key = Base64::decode_vec(manifest["key"].as_str().unwrap()).unwrap();
        let digest = kb_crypto::hash::digest(kb_crypto::HashAlgorithm::Sha256, &key);
        let id: String = digest[..16].iter().flat_map(|b| [b >> 4, b & 15]).map(|n| char::from(b'a' + n)).collect();
        assert_eq!(id, EXTENSION_ID);
    }

    #[test]
    fn messages_from_the_browser_parse_strictly() {
        assert_eq!(
            FromBrowser::parse(br#"{"type":"open","origin":"https://bid.example.cn"}"#).unwrap(),
            FromBrowser::Open { origin: "https://bid.example.cn".into() }
        );
        assert_eq!(FromBrowser::parse(br#"{"type":"close"}"#).unwrap(), FromBrowser::Close {});
        for bad in [
            &b"not json"[..],
            b"{\"type\":\"text\"",
            b"[]",
            br#"{"type":"teleport"}"#,
            br#"{"type":"text","data":1}"#,
            br#"{"type":"open","origin":"https://a.example","as":"https://b.example"}"#,
            b"\xff\xfe",
        ] {
            let e = FromBrowser::parse(bad).unwrap_err();
            assert!(matches!(e, NativeError::Invalid(_)), "{bad:?}: {e:?}");
        }
    }

    #[test]
    fn a_message_too_large_for_the_browser_becomes_a_small_error() {
        let big = ToBrowser::Text { data: "x".repeat(MAX_TO_BROWSER) };
        let body = encode_to_browser(&big).unwrap_err();
        assert!(body.len() < 1024);
        let ToBrowser::Error { error } = serde_json::from_slice(&body).unwrap() else { panic!("not an error") };
        assert_eq!(error.code, ErrorCode::ExtensionMessageTooLarge.number() as i32);
        let small = ToBrowser::Text { data: "x".repeat(MAX_TO_BROWSER - 100) };
        assert_eq!(encode_to_browser(&small), Ok(serde_json::to_vec(&small).unwrap()));
    }

    /// Runs the host over in-memory pipes; returns (browser's writer, browser's reader, host task).
    fn host(port: u16) -> (tokio::io::DuplexStream, tokio::io::DuplexStream, tokio::task::JoinHandle<Result<(), NativeError>>) {
        let (browser_w, host_r) = duplex(1 << 16);
        let (host_w, browser_r) = duplex(1 << 16);
        (browser_w, browser_r, tokio::spawn(run_host(host_r, host_w, port)))
    }

    async fn send(w: &mut tokio::io::DuplexStream, m: &FromBrowser) {
        write_message(w, &serde_json::to_vec(m).unwrap(), MAX_FROM_BROWSER).await.unwrap();
    }

    async fn recv(r: &mut tokio::io::DuplexStream) -> ToBrowser {
        let body = read_message(r, MAX_TO_BROWSER).await.unwrap().expect("a message");
        serde_json::from_slice(&body).unwrap()
    }

    #[tokio::test]
    async fn garbage_from_the_browser_is_reported_and_ends_the_host() {
        let (mut w, mut r, task) = host(1);
        write_message(&mut w, b"{\"type\":", MAX_FROM_BROWSER).await.unwrap();
        let ToBrowser::Error { error } = recv(&mut r).await else { panic!("not an error") };
        assert_eq!(error.code, ErrorCode::MalformedInput.number() as i32);
        assert!(task.await.unwrap().is_err());
    }

    #[tokio::test]
    async fn an_over_cap_length_from_the_browser_is_reported_as_5022() {
        let (mut w, mut r, task) = host(1);
        w.write_all(&(MAX_FROM_BROWSER as u32 + 1).to_ne_bytes()).await.unwrap();
        let ToBrowser::Error { error } = recv(&mut r).await else { panic!("not an error") };
        assert_eq!(error.code, 5022);
        assert!(task.await.unwrap().is_err());
    }

    #[tokio::test]
    async fn no_bridge_listening_is_reported_as_unreachable() {
        // A port nobody listens on: bind one, then drop it.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let (mut w, mut r, task) = host(port);
        send(&mut w, &FromBrowser::Open { origin: "https://bid.example.cn".into() }).await;
        let ToBrowser::Error { error } = recv(&mut r).await else { panic!("not an error") };
        assert_eq!(error.code, ErrorCode::NativeHostBridgeUnreachable.number() as i32);
        task.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn an_origin_that_is_not_a_web_origin_is_refused_without_connecting() {
        let (mut w, mut r, task) = host(1);
        send(&mut w, &FromBrowser::Open { origin: "null".into() }).await;
        let ToBrowser::Error { error } = recv(&mut r).await else { panic!("not an error") };
        assert_eq!(error.code, ErrorCode::OriginRejected.number() as i32);
        task.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn the_first_message_must_be_open() {
        let (mut w, mut r, task) = host(1);
        send(&mut w, &FromBrowser::Text { data: "{}".into() }).await;
        let ToBrowser::Error { error } = recv(&mut r).await else { panic!("not an error") };
        assert_eq!(error.code, ErrorCode::MalformedInput.number() as i32);
        assert!(task.await.unwrap().is_err());
    }
}
