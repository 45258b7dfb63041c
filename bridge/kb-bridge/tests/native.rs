//! The native messaging host against a real bridge on loopback: the page's origin the
//! extension names is the one the bridge checks (grants, consent), and JSON-RPC text
//! and stream frames pass both ways unchanged.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use base64ct::{Base64, Encoding};
use common::*;
use kb_bridge::config::ConsentPolicy;
use kb_bridge::consent::GrantStore;
use kb_bridge::native::{FromBrowser, MAX_FROM_BROWSER, MAX_TO_BROWSER, ToBrowser, read_message, run_host, write_message};
use kb_bridge_protocol::StreamId;
use kb_bridge_protocol::frame::{FLAG_FIN, Frame};
use kb_types::ErrorCode;
use serde_json::{Value, json};
use std::sync::Arc;
use tokio::io::{DuplexStream, duplex};

const PLATFORM: &str = "https://bid.example.cn";

struct Browser {
    w: DuplexStream,
    r: DuplexStream,
    host: tokio::task::JoinHandle<Result<(), kb_bridge::native::NativeError>>,
}

impl Browser {
    fn start(port: u16) -> Self {
        let (w, host_in) = duplex(1 << 16);
        let (host_out, r) = duplex(1 << 16);
        Browser { w, r, host: tokio::spawn(run_host(host_in, host_out, port)) }
    }

    async fn send(&mut self, m: FromBrowser) {
        write_message(&mut self.w, &serde_json::to_vec(&m).unwrap(), MAX_FROM_BROWSER).await.unwrap();
    }

    async fn recv(&mut self) -> ToBrowser {
        let body = read_message(&mut self.r, MAX_TO_BROWSER).await.unwrap().expect("a message from the host");
        serde_json::from_slice(&body).unwrap()
    }

    async fn call(&mut self, id: i64, method: &str, params: Value) -> Value {
        let data = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string();
        self.send(FromBrowser::Text { data }).await;
        loop {
            if let ToBrowser::Text { data } = self.recv().await {
                let v: Value = serde_json::from_str(&data).unwrap();
                if v["id"] == id {
                    return v;
                }
            }
        }
    }
}

async fn granted_rig() -> Rig {
    let grants = Arc::new(GrantStore::in_memory());
    grants.allow_for_session(PLATFORM).unwrap();
    rig_full(|c| c.consent = ConsentPolicy::GrantsOnly, None, grants).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_granted_origin_reaches_the_bridge_through_the_host() {
    let r = granted_rig().await;
    let mut b = Browser::start(r.port());
    b.send(FromBrowser::Open { origin: "HTTPS://Bid.Example.CN:443".into() }).await;
    assert_eq!(b.recv().await, ToBrowser::Open { origin: PLATFORM.into() }, "the origin is normalized");
    let hello = b.call(1, "hello", json!({"schema_version": 1, "sdk": "keybridge-js"})).await;
    assert_eq!(hello["result"]["schema_version"], 1, "{hello}");
    let certs = b.call(2, "certificates.list", json!({"usage": "sign"})).await;
    assert_eq!(certs["result"]["certificates"][0]["thumbprint"], r.key.sign_thumb(), "{certs}");

    // Streams: binary frames go as base64 both ways. Encrypt an uploaded text into a
    // downloaded envelope (no PIN needed) and open it with the key.
    let up = b.call(3, "stream.open", json!({"direction": "upload"})).await["result"]["stream"].as_u64().unwrap();
    let down = b.call(4, "stream.open", json!({"direction": "download"})).await["result"]["stream"].as_u64().unwrap();
    let request = json!({"jsonrpc": "2.0", "id": 5, "method": "encrypt", "params": {"format": "cms_envelope",
        "recipients": [{"thumbprint": r.key.enc_thumb()}], "input": {"stream": up}, "output": {"stream": down}}});
    b.send(FromBrowser::Text { data: request.to_string() }).await;
    let plain = "投标文件 via native messaging".as_bytes();
    let chunk = Frame { stream: StreamId(up as u32), sequence: 0, flags: FLAG_FIN, payload: plain }.encode();
    b.send(FromBrowser::Binary { data: Base64::encode_string(&chunk) }).await;
    let mut envelope = Vec::new();
    let mut acked = 0;
    let response = loop {
        match b.recv().await {
            ToBrowser::Binary { data } => {
                let bytes = Base64::decode_vec(&data).unwrap();
                let f = Frame::decode(&bytes, usize::MAX).unwrap();
                assert_eq!(f.stream, StreamId(down as u32));
                envelope.extend_from_slice(f.payload);
            }
            ToBrowser::Text { data } => break serde_json::from_str::<Value>(&data).unwrap(),
            ToBrowser::Sent { bytes } => {
                assert_eq!(bytes, chunk.len(), "the upload frame is acknowledged once the bridge's socket took it");
                acked += 1;
            }
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(response["result"]["output"]["length"], envelope.len(), "{response}");
    assert_eq!(acked, 1);
    let local = kb_pki::cms::LocalDecrypter::new(r.key.enc_key.clone(), r.key.enc_cert.clone()).unwrap();
    assert_eq!(&kb_pki::cms::envelope::decrypt_bytes(&envelope, &local).unwrap()[..], plain);
    b.send(FromBrowser::Close {}).await;
    b.host.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_origin_is_refused_by_the_bridge_with_its_own_code() {
    let r = granted_rig().await;
    let mut b = Browser::start(r.port());
    b.send(FromBrowser::Open { origin: "https://evil.example".into() }).await;
    let ToBrowser::Error { error } = b.recv().await else { panic!("not refused") };
    assert_eq!(error.code, ErrorCode::OriginRejected.number() as i32);
    b.host.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bridge_closing_the_connection_is_passed_on() {
    let r = granted_rig().await;
    let mut b = Browser::start(r.port());
    b.send(FromBrowser::Open { origin: PLATFORM.into() }).await;
    assert!(matches!(b.recv().await, ToBrowser::Open { .. }));
    // A method before hello, then the grant is withdrawn: the bridge closes with 1008.
    let early = b.call(1, "devices.list", json!({})).await;
    assert_eq!(early["error"]["code"], ErrorCode::HelloRequired.number() as i32, "{early}");
    r.grants.revoke(PLATFORM).unwrap();
    loop {
        match b.recv().await {
            ToBrowser::Close { code, .. } => {
                assert_eq!(code, 1008);
                break;
            }
            ToBrowser::Text { .. } => continue,
            other => panic!("{other:?}"),
        }
    }
    b.host.await.unwrap().unwrap();
}
