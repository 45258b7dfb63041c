//! The attack suite: every refusal the bridge makes, each with its stable code, over a
//! real socket with hand-made requests (a browser's, a rebinding page's, a flooder's).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

/// A handshake with exactly these headers; `Err((status, body))` when refused.
async fn handshake(port: u16, headers: &[(&str, &str)]) -> Result<Ws, (u16, Value)> {
    let mut req = format!("ws://127.0.0.1:{port}").into_client_request().unwrap();
    for (k, v) in headers {
        let name = tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(k.as_bytes()).unwrap();
        req.headers_mut().insert(name, v.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            let body = resp.body().as_deref().unwrap_or_default();
            Err((resp.status().as_u16(), serde_json::from_slice(body).unwrap()))
        }
        Err(e) => panic!("{e}"),
    }
}

async fn native_ws(r: &Rig) -> Ws {
    let bearer = r.secret.bearer();
    let mut ws = handshake(r.port(), &[("authorization", &bearer)]).await.unwrap();
    send(&mut ws, json!({"jsonrpc": "2.0", "id": 0, "method": "hello", "params": {"schema_version": 1, "sdk": "attack"}})).await;
    assert!(recv(&mut ws).await["result"].is_object());
    ws
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
}

async fn recv(ws: &mut Ws) -> Value {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await.unwrap() {
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                // What a request waits for is announced without being asked: not an answer.
                if v["method"] == "operation.status" {
                    continue;
                }
                return v;
            }
            Some(Ok(Message::Close(f))) => return json!({"closed": f.map(|f| u16::from(f.code))}),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return json!({"error": e.to_string()}),
            None => return json!({"closed": null}),
        }
    }
}

async fn raw_text(ws: &mut Ws, text: &str) -> Value {
    ws.send(Message::Text(text.to_string().into())).await.unwrap();
    recv(ws).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_refusals() {
    let r = rig().await;
    let port = r.port();
    let host = format!("127.0.0.1:{port}");
    let rebinding = format!("evil.example:{port}");
    let wrong_port = format!("localhost:{}", port.wrapping_add(1));
    let bearer = r.secret.bearer();
    let cases: Vec<(&str, Vec<(&str, &str)>, u16, i64)> = vec![
        ("foreign origin over http", vec![("origin", "http://evil.example")], 403, 5002),
        ("null origin (sandboxed iframe, file:)", vec![("origin", "null")], 403, 5002),
        ("file origin", vec![("origin", "file://")], 403, 5002),
        ("DNS rebinding Host", vec![("host", &rebinding), ("origin", "https://evil.example")], 403, 5001),
        ("Host with the wrong port", vec![("host", &wrong_port), ("authorization", &bearer)], 403, 5001),
        ("no Origin and no secret", vec![("host", &host)], 401, 5003),
        (
            "no Origin and a wrong secret",
            vec![("authorization", "Bearer 0000000000000000000000000000000000000000000000000000000000000000")],
            401,
            5003,
        ),
        ("a page cannot borrow the secret", vec![("origin", "http://evil.example"), ("authorization", &bearer)], 403, 5002),
    ];
    for (what, headers, status, code) in cases {
        let (s, body) = handshake(port, &headers).await.err().unwrap_or_else(|| panic!("{what}: accepted"));
        assert_eq!((s, body["code"].as_i64()), (status, Some(code)), "{what}: {body}");
        assert!(body["data"]["messages"]["zh-CN"].is_string(), "{what}");
    }
    // The right secret passes; so does an allowed-shape origin (consent comes later).
    assert!(handshake(port, &[("authorization", &bearer)]).await.is_ok());
    assert!(handshake(port, &[("origin", "https://bid.example.cn")]).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_only() {
    let r = rig().await;
    assert!(r.bridge.local_addr().ip().is_loopback());
    // Any non-loopback address of this machine must not reach the bridge.
    let addrs: Vec<std::net::IpAddr> = std::fs::read_to_string("/proc/net/fib_trie")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().strip_prefix("|-- ").and_then(|a| a.parse().ok()))
        .filter(|a: &std::net::IpAddr| !a.is_loopback() && !a.is_unspecified() && a.is_ipv4())
        .collect();
    for a in addrs {
        let res = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect((a, r.port()))).await;
        assert!(!matches!(res, Ok(Ok(_))), "the bridge answered on {a}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_unknown() {
    let r = rig().await;
    let bearer = r.secret.bearer();
    let mut ws = handshake(r.port(), &[("authorization", &bearer)]).await.unwrap();
    // Before hello.
    let v = raw_text(&mut ws, r#"{"jsonrpc":"2.0","id":1,"method":"devices.list"}"#).await;
    assert_eq!(v["error"]["code"], 5006);
    let v = raw_text(&mut ws, r#"{"jsonrpc":"2.0","id":2,"method":"hello","params":{"schema_version":0,"sdk":"old"}}"#).await;
    assert_eq!(v["error"]["code"], 5005);
    let v = raw_text(&mut ws, r#"{"jsonrpc":"2.0","id":3,"method":"hello","params":{"schema_version":1,"sdk":"attack"}}"#).await;
    assert_eq!(v["result"]["schema_version"], 1);
    for (text, code) in [
        ("{not json", -32700),
        ("[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"hello\"}]", -32600),
        (r#"{"jsonrpc":"2.0","method":"devices.list"}"#, -32600),
        (r#"{"jsonrpc":"1.0","id":4,"method":"devices.list"}"#, -32600),
        (r#"{"jsonrpc":"2.0","id":5,"method":"sign.pin"}"#, -32601),
        (r#"{"jsonrpc":"2.0","id":6,"method":"sign","params":{"pin":"12345678"}}"#, -32602),
        (r#"{"jsonrpc":"2.0","id":7,"method":"sign","params":[1,2]}"#, -32602),
    ] {
        let v = raw_text(&mut ws, text).await;
        assert_eq!(v["error"]["code"].as_i64(), Some(code), "{text}: {v}");
    }
    // Malformed binary frames and frames for unknown streams are dropped, not fatal.
    ws.send(Message::Binary(vec![9; 3].into())).await.unwrap();
    ws.send(Message::Binary(
        kb_bridge_protocol::frame::Frame { stream: kb_bridge_protocol::StreamId(77), sequence: 0, flags: 0, payload: b"x" }
            .encode()
            .into(),
    ))
    .await
    .unwrap();
    let v = raw_text(&mut ws, r#"{"jsonrpc":"2.0","id":8,"method":"devices.list"}"#).await;
    assert!(v["result"]["devices"].is_array(), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_messages() {
    let r = rig().await;
    let mut ws = native_ws(&r).await;
    // Over the 1 MiB text cap: refused before parsing, the connection stays usable.
    let big = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"devices.list","params":{{"x":"{}"}}}}"#, "a".repeat(1 << 20));
    let v = raw_text(&mut ws, &big).await;
    assert_eq!(v["error"]["code"], 1005, "{}", v["error"]);
    let v = raw_text(&mut ws, r#"{"jsonrpc":"2.0","id":2,"method":"devices.list"}"#).await;
    assert!(v["result"].is_object());
    // Far over it: the WebSocket layer cuts the connection (1009) without buffering it all.
    let huge = "a".repeat(16 << 20);
    let _ = ws.send(Message::Text(huge.into())).await;
    let v = recv(&mut ws).await;
    assert!(v.get("closed").is_some() || v.get("error").is_some(), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_flood_and_failure_burst() {
    let r = rig().await;
    r.prompter.push_pin(PIN);
    let mut ws = native_ws(&r).await;
    // Hold the medium so signatures stay in flight.
    let pause = r.key.token.pause_next("login");
    let sign = |id: i64| json!({"jsonrpc": "2.0", "id": id, "method": "sign", "params": {"certificate": {"thumbprint": r.key.sign_thumb()}, "input": {"data": "AA=="}, "format": "raw"}});
    for id in 1..=16 {
        send(&mut ws, sign(id)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    send(&mut ws, sign(17)).await;
    let v = recv(&mut ws).await;
    assert_eq!((v["id"].as_i64(), v["error"]["code"].as_i64()), (Some(17), Some(5007)), "{v}");
    pause.release();
    let mut ok = 0;
    for _ in 0..16 {
        if recv(&mut ws).await["result"].is_object() {
            ok += 1;
        }
    }
    assert_eq!(ok, 16, "the first sixteen were served");

    // A burst of failures closes the connection with 1008.
    for i in 0..200 {
        if ws.send(Message::Text(format!("{{bad {i}").into())).await.is_err() {
            break; // already closed on us
        }
    }
    let (mut answered, mut ended) = (0usize, false);
    for _ in 0..200 {
        let v = recv(&mut ws).await;
        if let Some(c) = v.get("closed") {
            // A close frame, when it arrives before the reset, says why.
            assert!(c.is_null() || *c == json!(u16::from(CloseCode::Policy)), "{v}");
            ended = true;
            break;
        }
        if v["error"].is_string() {
            ended = true; // the server dropped the connection (reset while we still wrote)
            break;
        }
        if v["error"]["code"] == 5007 {
            continue; // "too many failed requests" (may be lost to the reset)
        }
        assert_eq!(v["error"]["code"], -32700, "{v}");
        answered += 1;
    }
    assert!(ended, "the connection was closed after the burst");
    // Closed because of the limit (32 failures in 10 s, with the 16 sign results above
    // not counted): at most that many parse errors were answered before the end.
    assert!(answered <= 32, "{answered} failures answered before the close");
    // The service goes on for everyone else.
    let c = r.native().await;
    c.request(c.next_id(), "devices.list", json!({})).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_dropped() {
    let r = rig_with(
        |c| {
            c.send_timeout = Duration::from_millis(500);
            c.handshake_timeout = Duration::from_millis(500);
        },
        None,
    )
    .await;
    // Slowloris: connect and say nothing.
    let mut tcp = TcpStream::connect(("127.0.0.1", r.port())).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n").await.unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf)).await.expect("the server hung up").unwrap_or(0);
    assert_eq!(n, 0, "closed without an answer");

    // A client that never reads what it asked for.
    r.prompter.push_pin(PIN);
    let mut ws = native_ws(&r).await;
    send(&mut ws, json!({"jsonrpc": "2.0", "id": 1, "method": "stream.open", "params": {"direction": "upload"}})).await;
    let up = recv(&mut ws).await["result"]["stream"].as_u64().unwrap() as u32;
    send(&mut ws, json!({"jsonrpc": "2.0", "id": 2, "method": "stream.open", "params": {"direction": "download"}})).await;
    let down = recv(&mut ws).await["result"]["stream"].as_u64().unwrap() as u32;
    send(
        &mut ws,
        json!({"jsonrpc": "2.0", "id": 3, "method": "encrypt", "params": {"format": "cms_envelope",
        "recipients": [{"thumbprint": r.key.enc_thumb()}], "input": {"stream": up}, "output": {"stream": down}}}),
    )
    .await;
    let chunk = vec![0u8; 256 << 10];
    let t0 = std::time::Instant::now();
    let mut seq = 0u32;
    // Keep uploading without reading: the server's output backs up, then it hangs up.
    let gone = loop {
        let f = kb_bridge_protocol::frame::Frame {
            stream: kb_bridge_protocol::StreamId(up),
            sequence: seq,
            flags: 0,
            payload: &chunk,
        }
        .encode();
        seq += 1;
        match tokio::time::timeout(Duration::from_secs(2), ws.send(Message::Binary(f.into()))).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => break true,
            Err(_) => break false,
        }
        if t0.elapsed() > Duration::from_secs(30) {
            break false;
        }
    };
    // Either our sends failed (reset), or they block: then the server must have closed.
    if !gone {
        let mut tcp_closed = false;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            match tokio::time::timeout(Duration::from_secs(1), ws.next()).await {
                Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => {
                    tcp_closed = true;
                    break;
                }
                _ => {}
            }
        }
        assert!(tcp_closed, "the server kept a client that does not read");
    }
    // Everyone else is still served.
    let c = r.native().await;
    c.request(c.next_id(), "devices.list", json!({})).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_origin_cannot_take_every_connection() {
    let r = rig_with(|c| c.max_connections_per_client = 3, None).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(handshake(r.port(), &[("origin", "https://greedy.example")]).await.unwrap());
    }
    // The fourth from the same origin is closed with 1008 at once...
    let mut ws = handshake(r.port(), &[("origin", "https://greedy.example")]).await.unwrap();
    let v = recv(&mut ws).await;
    assert_eq!(v["closed"], json!(u16::from(CloseCode::Policy)), "{v}");
    // ...while other clients still get in.
    assert!(handshake(r.port(), &[("origin", "https://bid.example.cn")]).await.is_ok());
    let c = r.native().await;
    c.request(c.next_id(), "devices.list", json!({})).await.unwrap();
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unclaimed_stream_memory_is_bounded_per_connection() {
    let r = rig().await;
    // Streams filled without a request reading them share one 4 MiB budget per
    // connection (a page may open streams before consent): the stream that goes over it
    // is failed, and a request naming it learns 5011.
    let mut ws = native_ws(&r).await;
    let open = |id: i64| json!({"jsonrpc": "2.0", "id": id, "method": "stream.open", "params": {"direction": "upload"}});
    let chunk = vec![7u8; 256 << 10];
    let mut streams = Vec::new();
    for i in 0..2 {
        send(&mut ws, open(10 + i)).await;
        streams.push(recv(&mut ws).await["result"]["stream"].as_u64().unwrap() as u32);
    }
    let frame = |stream: u32, sequence: u32| {
        kb_bridge_protocol::frame::Frame { stream: kb_bridge_protocol::StreamId(stream), sequence, flags: 0, payload: &chunk }
            .encode()
    };
    for seq in 0..16 {
        ws.send(Message::Binary(frame(streams[0], seq).into())).await.unwrap(); // exactly 4 MiB
    }
    ws.send(Message::Binary(frame(streams[1], 0).into())).await.unwrap(); // over the budget
    let encrypt = |id: i64, stream: u32| {
        json!({"jsonrpc": "2.0", "id": id, "method": "encrypt", "params": {"format": "cms_envelope",
            "recipients": [{"thumbprint": r.key.enc_thumb()}], "input": {"stream": stream}}})
    };
    send(&mut ws, encrypt(20, streams[1])).await;
    let v = recv(&mut ws).await;
    assert_eq!((v["id"].as_i64(), v["error"]["code"].as_i64()), (Some(20), Some(5011)), "{v}");
    // The first stream kept its 4 MiB: finished with FIN it is encrypted whole (and the
    // 4 MiB envelope is too big to answer inline: 1005, not the stream's 5011).
    let fin = kb_bridge_protocol::frame::Frame {
        stream: kb_bridge_protocol::StreamId(streams[0]),
        sequence: 16,
        flags: kb_bridge_protocol::frame::FLAG_FIN,
        payload: b"",
    }
    .encode();
    send(&mut ws, encrypt(21, streams[0])).await;
    ws.send(Message::Binary(fin.into())).await.unwrap();
    let v = recv(&mut ws).await;
    assert_eq!((v["id"].as_i64(), v["error"]["code"].as_i64()), (Some(21), Some(1005)), "{v}");
}
