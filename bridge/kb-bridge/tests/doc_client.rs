//! A client written only from `docs/bridge-protocol.md`: its requests are the
//! document's own JSON examples (read from the document at run time), with the example
//! thumbprints, certificates and stream ids replaced by the real ones; its frames are
//! built from the document's header table; the secret is sent as the document says.
//! It goes through every method, a streamed envelope both ways included, against the
//! real server, and each answer must have the shape of the document's example answer —
//! so the document cannot drift from the server again.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use base64ct::{Base64, Encoding};
use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

fn doc() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/bridge-protocol.md")).unwrap()
}

/// The document's examples: each request (by method and id) with the response that
/// follows it.
struct Examples {
    pairs: Vec<(Value, Value)>,
}

impl Examples {
    fn read(doc: &str) -> Self {
        let mut blocks = Vec::new();
        let mut current: Option<String> = None;
        for line in doc.lines() {
            match (&mut current, line.trim_end()) {
                (None, "```json") => current = Some(String::new()),
                (Some(_), "```") => blocks.push(serde_json::from_str::<Value>(&current.take().unwrap()).unwrap()),
                (Some(t), l) => {
                    t.push_str(l);
                    t.push('\n');
                }
                (None, _) => {}
            }
        }
        let mut pairs = Vec::new();
        let mut open: BTreeMap<String, Value> = BTreeMap::new();
        for b in blocks {
            let id = b.get("id").map(Value::to_string);
            match (b.get("method"), id) {
                (Some(_), Some(id)) => {
                    open.insert(id, b);
                }
                (None, Some(id)) => {
                    if let Some(req) = open.remove(&id) {
                        pairs.push((req, b));
                    }
                }
                _ => {}
            }
        }
        Examples { pairs }
    }

    /// The example request of `method` (the first, or the one with this id) and its answer.
    fn get(&self, method: &str, id: Option<Value>) -> (Value, Value) {
        self.pairs
            .iter()
            .find(|(q, _)| q["method"] == method && id.as_ref().is_none_or(|i| q["id"] == *i))
            .cloned()
            .unwrap_or_else(|| panic!("the document has no example of {method} {id:?}"))
    }
}

/// Fields the document shows that an answer carries only in some cases.
const OPTIONAL: [&str; 8] =
    ["chain_error", "error", "signing_time", "detail", "retries_left", "sdk_version", "revoked_at", "reason"];

/// `live` has the shape of the document's `example`: every member the example shows
/// (but the optional ones), with values of the same JSON type.
fn same_shape(example: &Value, live: &Value, path: &str) {
    match (example, live) {
        (Value::Object(e), Value::Object(l)) => {
            for (k, v) in e {
                match l.get(k) {
                    Some(w) => same_shape(v, w, &format!("{path}.{k}")),
                    None if OPTIONAL.contains(&k.as_str()) => {}
                    None => panic!("{path}.{k}: in the document, not in the answer {live}"),
                }
            }
        }
        (Value::Array(e), Value::Array(l)) => {
            if let (Some(a), Some(b)) = (e.first(), l.first()) {
                same_shape(a, b, &format!("{path}[0]"));
            }
        }
        (Value::String(_), Value::String(_)) | (Value::Number(_), Value::Number(_)) | (Value::Bool(_), Value::Bool(_)) => {}
        // `algorithm` is a name or an object (`{"rsa": …}`).
        (Value::String(_) | Value::Object(_), Value::String(_) | Value::Object(_)) if path.ends_with("algorithm") => {}
        _ => panic!("{path}: the document shows {example}, the answer has {live}"),
    }
}

/// Replace every occurrence of a JSON string value.
fn substitute(v: &mut Value, from: &str, to: &Value) {
    match v {
        Value::String(s) if s == from => *v = to.clone(),
        Value::Array(a) => a.iter_mut().for_each(|x| substitute(x, from, to)),
        Value::Object(o) => o.values_mut().for_each(|x| substitute(x, from, to)),
        _ => {}
    }
}

/// A frame as the document's header table describes it.
fn frame(stream: u32, sequence: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![1, flags, 0, 0];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(&sequence.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

const FIN: u8 = 1;

type Sink = futures_util::stream::SplitSink<Ws, Message>;

/// What the client receives: answers, download frames, events.
struct Reader {
    stream: futures_util::stream::SplitStream<Ws>,
    /// Download stream → (next sequence number, bytes, FIN seen).
    downloads: BTreeMap<u32, (u32, Vec<u8>, bool)>,
    progress: Vec<Value>,
}

struct DocClient {
    sink: Sink,
    reader: Reader,
    examples: Examples,
    /// Example value → real value.
    real: Vec<(String, Value)>,
}

impl Reader {
    /// The next answer to `id`, collecting download frames and events on the way.
    async fn answer(&mut self, id: &Value) -> Value {
        loop {
            let m = tokio::time::timeout(Duration::from_secs(60), self.stream.next()).await.expect("answer within 60 s");
            match m.unwrap().unwrap() {
                Message::Text(t) => {
                    let v: Value = serde_json::from_str(t.as_str()).unwrap();
                    if v.get("id") == Some(id) {
                        return v;
                    }
                    if v["method"] == "progress" {
                        self.progress.push(v);
                    }
                }
                Message::Binary(b) => {
                    // The header, read as the table says.
                    assert_eq!(b[0], 1, "frame version");
                    let stream = u32::from_be_bytes(b[4..8].try_into().unwrap());
                    let seq = u32::from_be_bytes(b[8..12].try_into().unwrap());
                    let d = self.downloads.entry(stream).or_default();
                    assert_eq!(seq, d.0, "download frames are numbered 0, 1, 2, …");
                    assert!(!d.2, "nothing after FIN");
                    d.0 += 1;
                    d.1.extend_from_slice(&b[12..]);
                    d.2 = b[1] & FIN != 0;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }
}

impl DocClient {
    async fn send(&mut self, v: &Value) {
        self.sink.send(Message::Text(v.to_string().into())).await.unwrap();
    }

    /// Run the document's example of `method` (id `id`, or the first), with the real
    /// values, `tweak`ed; the answer must look like the document's.
    async fn run(&mut self, method: &str, id: Option<Value>, tweak: impl FnOnce(&mut Value)) -> Value {
        let (mut req, example) = self.examples.get(method, id);
        for (from, to) in &self.real {
            substitute(&mut req, from, to);
        }
        tweak(&mut req);
        self.send(&req).await;
        let live = self.reader.answer(&req["id"]).await;
        assert_eq!(live.get("error").is_some(), example.get("error").is_some(), "{method}: {live}");
        same_shape(&example, &live, method);
        live
    }

    fn upload_frames(&self, stream: u32, data: &[u8], chunk: usize) -> Vec<Vec<u8>> {
        let mut frames: Vec<Vec<u8>> = data.chunks(chunk).enumerate().map(|(i, c)| frame(stream, i as u32, 0, c)).collect();
        // The document: the last frame carries FIN even though the length was declared.
        frames.push(frame(stream, frames.len() as u32, FIN, b""));
        frames
    }

    /// A streamed request: open an upload and a download stream (the `stream.open`
    /// example), send the method's example with them, then the data in frames.
    async fn streamed(&mut self, method: &str, id: Value, data: &[u8], tweak: impl FnOnce(&mut Value)) -> (Value, Vec<u8>) {
        let len = data.len();
        let up = self.run("stream.open", None, |q| q["params"]["length"] = json!(len)).await["result"].clone();
        let down = self.run("stream.open", None, |q| q["params"] = json!({"direction": "download"})).await["result"]["stream"]
            .as_u64()
            .unwrap() as u32;
        let (upload, chunk) = (up["stream"].as_u64().unwrap() as u32, up["max_chunk_bytes"].as_u64().unwrap() as usize);
        let (req, example) = self.examples.get(method, Some(id));
        let mut req = req;
        req["params"]["input"] = json!({"stream": upload});
        req["params"]["output"] = json!({"stream": down});
        for (from, to) in &self.real {
            substitute(&mut req, from, to);
        }
        tweak(&mut req);
        self.send(&req).await;
        // Frames go out while the answer and the download come in.
        let frames = self.upload_frames(upload, data, chunk);
        let sink = &mut self.sink;
        let sending = async move {
            for f in frames {
                sink.send(Message::Binary(f.into())).await.unwrap();
            }
        };
        let ((), live) = tokio::join!(sending, self.reader.answer(&req["id"]));
        same_shape(&example, &live, method);
        let (_, bytes, fin) = self.reader.downloads.remove(&down).expect("download frames before the answer");
        assert!(fin, "the download stream ended with FIN before the answer");
        assert_eq!(live["result"]["output"]["length"].as_u64(), Some(bytes.len() as u64));
        (live, bytes)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_written_from_the_document_does_everything() {
    let doc = doc();
    // The frame header builder follows the table: the document's own example bytes.
    let hex: Vec<String> = frame(1, 2, FIN, b"")[..12].iter().map(|b| format!("{b:02x}")).collect();
    assert!(doc.contains(&format!("`{}`", hex.join(" "))), "the document's frame example");

    let r = rig().await;
    r.prompter.push_pin(PIN);
    // Native tool: `Authorization: Bearer <the secret file's content>`.
    let mut req = r.bridge.url().into_client_request().unwrap();
    req.headers_mut().insert("authorization", r.secret.bearer().parse().unwrap());
    let (ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    let (sink, stream) = ws.split();
    let b64 = |b: &[u8]| json!(Base64::encode_string(b));
    let real = vec![
        ("3F2A9C1B7D4E5F60718293A4B5C6D7E8F9012345".to_string(), json!(r.key.sign_thumb())),
        ("3f2a9c1b7d4e5f60718293a4b5c6d7e8f9012345".to_string(), json!(r.key.sign_thumb().to_lowercase())),
        ("0123456789ABCDEF0123456789ABCDEF01234567".to_string(), json!(r.key.enc_thumb())),
        ("pcsc:ACME-0001".to_string(), json!(r.key.id.to_string())),
        ("MIIBszCCAVmgAwIBAgIDGis8".to_string(), b64(r.key.enc_cert.der())),
    ];
    let reader = Reader { stream, downloads: BTreeMap::new(), progress: Vec::new() };
    let mut c = DocClient { sink, reader, examples: Examples::read(&doc), real };

    c.run("hello", None, |_| {}).await;
    c.run("devices.list", None, |_| {}).await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let l = c.run("certificates.list", None, |q| q["params"]["valid_at"] = json!(now)).await;
    assert_eq!(l["result"]["certificates"][0]["thumbprint"], r.key.sign_thumb());
    c.run("certificates.get", None, |_| {}).await;

    // sign → verify the signature it made.
    let s = c.run("sign", None, |_| {}).await;
    let signature = s["result"]["signature"].clone();
    let v = c.run("verify", Some(json!(6)), |q| q["params"]["signature"] = signature.clone()).await;
    assert_eq!(v["result"]["valid"], true, "{v}");
    // The raw example is a signature that does not match: a real one over other bytes.
    let raw = c
        .run("sign", None, |q| {
            q["params"]["format"] = json!("raw");
            q["params"]["input"] = json!({"data": "b3RoZXI="});
        })
        .await["result"]["signature"]
        .clone();
    let v = c
        .run("verify", Some(json!(7)), |q| {
            q["params"]["signature"] = raw.clone();
            q["params"]["certificate"] = json!({"der": Base64::encode_string(r.key.sign_cert.der())});
        })
        .await;
    assert_eq!((v["result"]["valid"].as_bool(), v["result"]["error"].as_i64()), (Some(false), Some(2001)), "{v}");

    // sm2_raw both ways.
    let e = c.run("encrypt", Some(json!(8)), |_| {}).await;
    let ct = e["result"]["output"]["data"].clone();
    let d = c
        .run("decrypt", Some(json!("open-2")), |q| {
            q["params"]["input"]["data"] = ct.clone();
            q["params"]["sm2_layout"] = json!("c1c3c2");
        })
        .await;
    assert_eq!(d["result"]["output"]["data"], "MTIzNDU2Ny44OQ==");

    // A streamed envelope, both ways.
    let bid: Vec<u8> = (0..9 * 262_144 + 1234u32).map(|i| (i % 253) as u8).collect();
    let (enc, envelope) = c
        .streamed("encrypt", json!(9), &bid, |q| {
            q["params"]["recipients"] = json!([{"thumbprint": r.key.enc_thumb()}]);
        })
        .await;
    assert_eq!(enc["result"]["format"], "cms_envelope");
    assert!(!c.reader.progress.is_empty(), "progress events for the streamed request");
    for p in &c.reader.progress {
        assert_eq!(p["params"]["total"].as_u64(), Some(bid.len() as u64), "{p}");
    }
    let (dec, plain) = c.streamed("decrypt", json!("open-1"), &envelope, |_| {}).await;
    assert_eq!(dec["result"]["certificate"], r.key.enc_thumb());
    assert_eq!(plain, bid);

    // The same bid signed and enveloped in one request: the signature covers it and the
    // envelope opens to it.
    let (both, envelope) = c
        .streamed("encrypt", json!("bid-1"), &bid, |q| {
            q["params"]["recipients"] = json!([{"thumbprint": r.key.enc_thumb()}]);
            q["params"]["signer"] = json!({"thumbprint": r.key.sign_thumb()});
        })
        .await;
    let sig = Base64::decode_vec(both["result"]["signature"].as_str().unwrap()).unwrap();
    kb_pki::cms::SignedMessage::from_der(&sig).unwrap().verify(Some(&bid), &[]).unwrap();
    let local = kb_pki::cms::LocalDecrypter::new(r.key.enc_key.clone(), r.key.enc_cert.clone()).unwrap();
    assert!(kb_pki::cms::envelope::decrypt_bytes(&envelope, &local).unwrap()[..] == bid[..]);

    // stream.close on a stream of our own.
    let id = c.run("stream.open", None, |q| q["params"]["length"] = json!(3)).await["result"]["stream"].clone();
    let f = frame(id.as_u64().unwrap() as u32, 0, 0, b"abc");
    c.sink.send(Message::Binary(f.into())).await.unwrap();
    let closed = c.run("stream.close", None, |q| q["params"]["stream"] = id.clone()).await;
    assert_eq!(closed["result"]["bytes"], 3);

    c.run("cancel", None, |_| {}).await;
    c.run("subscribe", None, |_| {}).await;
    c.run("unsubscribe", None, |_| {}).await;
}
