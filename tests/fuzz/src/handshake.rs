//! Harness body for the bridge's handshake checks: the `Host`, `Origin` and
//! `Authorization` headers a client sends (uses nothing but `kb_bridge` and `std`, so
//! `bridge/kb-bridge/tests/no_panic.rs` can include this file).
//!
//! Input: the three header values separated by `\n` (missing ones absent). Invariants:
//! an accepted origin is normalized idempotently and to a form the checks accept again;
//! an accepted handshake's Host passes on its own; every refusal is 401/403 with a
//! bridge code and a JSON body.

use kb_bridge::handshake::{Client, Headers, check, check_host, normalize_origin};
use kb_bridge::secret::ClientSecret;
use std::net::{IpAddr, Ipv4Addr};

const PORT: u16 = 17210;
/// A fixed secret (the fuzzer may find it: it is in the seeds).
const SECRET: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

/// Returns whether the handshake was accepted.
pub fn handshake(data: &[u8]) -> bool {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.split('\n');
    let mut next = || parts.next().filter(|s| !s.is_empty());
    let (host, origin, authorization) = (next(), next(), next());
    if let Some(o) = origin
        && let Ok(n) = normalize_origin(o)
    {
        assert_eq!(normalize_origin(&n).as_deref(), Ok(n.as_str()), "normalization is idempotent");
    }
    let Some(secret) = ClientSecret::from_hex(SECRET) else { return false };
    let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
    match check(lo, Headers { host, origin, authorization }, PORT, &secret, |o| o.contains("deny")) {
        Ok(client) => {
            assert!(check_host(host, PORT).is_ok(), "accepted with a bad Host");
            if let Client::Web(o) = &client {
                assert_eq!(normalize_origin(o).as_deref(), Ok(o.as_str()));
                assert!(!o.contains("deny"), "a denied origin was accepted");
            }
            true
        }
        Err(r) => {
            assert!(matches!(r.status, 401 | 403), "status {}", r.status);
            assert!((5001..=5003).contains(&r.code.number()), "code {}", r.code.number());
            let body = r.body();
            assert!(body.starts_with('{') && body.contains("\"code\""));
            false
        }
    }
}
