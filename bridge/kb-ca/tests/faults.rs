//! A CA that cannot be reached, answers garbage, answers too much or too slowly: each
//! becomes its stable code, within the client's bounds. Peers listen on 127.0.0.1 only.
#![allow(clippy::unwrap_used, clippy::panic, clippy::expect_used)]

use kb_ca::{CaClient, CaError, HttpCaClient, Limits};
use kb_types::{ErrorCode, HasErrorCode};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

/// A one-connection-at-a-time peer that reads the request head and answers `answer`
/// (or holds the connection open for `hold` without answering).
fn peer(answer: Vec<u8>, hold: Option<Duration>) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let mut buf = [0u8; 4096];
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = s.read(&mut buf);
            if let Some(h) = hold {
                std::thread::sleep(h);
            }
            let _ = s.write_all(&answer);
        }
    });
    url
}

/// Generous time limits (a busy machine must not turn an answer into a time-out).
fn limits() -> Limits {
    Limits { connect: Duration::from_secs(30), exchange: Duration::from_secs(30), max_response: 4096 }
}

#[test]
fn unreachable_garbage_oversized_and_slow_have_stable_codes() {
    // Nobody listens: a port bound then released.
    let free = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let c = HttpCaClient::new(&format!("http://{free}")).unwrap().with_limits(limits());
    assert_eq!(c.challenge().unwrap_err().code(), ErrorCode::CaUnreachable);

    let garbage =
        HttpCaClient::new(&peer(b"\x16\x03\x01 definitely not HTTP\r\n\r\n".to_vec(), None)).unwrap().with_limits(limits());
    assert_eq!(garbage.renewal_status("0a").unwrap_err().code(), ErrorCode::CaResponseInvalid);

    let html = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n<html>captive portal</html>".to_vec();
    let portal = HttpCaClient::new(&peer(html, None)).unwrap().with_limits(limits());
    let e = portal.server_info().unwrap_err();
    assert!(matches!(&e, CaError::InvalidResponse { reason, .. } if reason.contains("text/html")), "{e}");

    let bad_json = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{\"state\": 12}".to_vec();
    let c = HttpCaClient::new(&peer(bad_json, None)).unwrap().with_limits(limits());
    assert_eq!(c.renewal_status("0a").unwrap_err().code(), ErrorCode::CaResponseInvalid);

    let mut big = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n".to_vec();
    big.extend(std::iter::repeat_n(b' ', 10_000));
    let c = HttpCaClient::new(&peer(big, None)).unwrap().with_limits(limits());
    let e = c.renewal_status("0a").unwrap_err();
    assert!(matches!(&e, CaError::InvalidResponse { reason, .. } if reason.contains("over 4096")), "{e}");

    // Answers only after 120 s: the client gives up after its 1 s exchange limit (the
    // bound only catches a hang).
    let slow = HttpCaClient::new(&peer(Vec::new(), Some(Duration::from_secs(120))))
        .unwrap()
        .with_limits(Limits { exchange: Duration::from_secs(1), ..limits() });
    let started = std::time::Instant::now();
    assert_eq!(slow.renewal_status("0a").unwrap_err().code(), ErrorCode::CaTimedOut);
    assert!(started.elapsed() < Duration::from_secs(60), "the time limit did not hold");

    // An EST refusal in plain text; an API error body with its own code; a 5xx.
    let est = b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\n\r\nnot authorised".to_vec();
    let c = HttpCaClient::new(&peer(est, None)).unwrap().with_limits(limits());
    let e = c.est_simplereenroll(b"x").unwrap_err();
    assert_eq!(e.code(), ErrorCode::EnrolmentRefused);
    assert!(e.to_string().contains("not authorised"));
    let body = br#"{"error":{"code":7006,"name":"binding_expired","message":"expired"}}"#;
    let mut api =
        format!("HTTP/1.1 410 Gone\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
    api.extend_from_slice(body);
    let c = HttpCaClient::new(&peer(api, None)).unwrap().with_limits(limits());
    assert_eq!(c.binding_status("b-1", None).unwrap_err().code(), ErrorCode::BindingExpired);
    let c = HttpCaClient::new(&peer(b"HTTP/1.1 500 Oops\r\n\r\n".to_vec(), None)).unwrap().with_limits(limits());
    assert_eq!(c.challenge().unwrap_err().code(), ErrorCode::CaResponseInvalid);
    // An EST answer that is not base64 PKCS#7.
    let c = HttpCaClient::new(&peer(b"HTTP/1.1 200 OK\r\nContent-Type: application/pkcs7-mime\r\n\r\nAAAA".to_vec(), None))
        .unwrap()
        .with_limits(limits());
    assert_eq!(c.est_cacerts().unwrap_err().code(), ErrorCode::CaResponseInvalid);
}
