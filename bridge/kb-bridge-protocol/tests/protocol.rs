//! The strict parser, id echoing, the size cap, the error-code mapping, the no-PIN rule
//! and binary frames.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kb_bridge_protocol::frame::{FLAG_ABORT, FLAG_FIN, Frame, HEADER_LEN, Sequencer};
use kb_bridge_protocol::{
    Base64, Call, CertificatesListParams, ErrorObject, Id, ProtocolError, Request, Response, RpcCode, StreamId, parse_request,
};
use kb_types::{ErrorCode, KeyUsage};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

const MAX: usize = 4096;

fn code_of(text: &str) -> (Option<Id>, i32) {
    let e = parse_request(text.as_bytes(), MAX).expect_err(text);
    (e.id.clone(), e.code())
}

#[test]
fn malformed_inputs_get_their_codes() {
    let parse = ProtocolError::ParseError.code();
    let invalid = ProtocolError::InvalidRequest.code();
    let not_found = ProtocolError::MethodNotFound.code();
    let params = ProtocolError::InvalidParams.code();
    let cases: &[(&str, Option<Id>, i32)] = &[
        // -32700: not JSON
        ("", None, parse),
        ("{", None, parse),
        ("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"hello\",}", None, parse),
        ("\u{FEFF}{}", None, parse),
        // -32600: not a request
        ("[]", None, invalid),
        (r#"[{"jsonrpc":"2.0","id":1,"method":"devices.list"}]"#, None, invalid),
        ("42", None, invalid),
        ("null", None, invalid),
        (r#"{"jsonrpc":"2.0","method":"devices.list"}"#, None, invalid),
        (r#"{"jsonrpc":"2.0","id":null,"method":"devices.list"}"#, None, invalid),
        (r#"{"jsonrpc":"2.0","id":1.5,"method":"devices.list"}"#, None, invalid),
        (r#"{"jsonrpc":"2.0","id":true,"method":"devices.list"}"#, None, invalid),
        (r#"{"jsonrpc":"2.0","id":{"a":1},"method":"devices.list"}"#, None, invalid),
        (r#"{"jsonrpc":"2.0","id":18446744073709551615,"method":"devices.list"}"#, None, invalid),
        (r#"{"jsonrpc":"2.0","id":1e400,"method":"devices.list"}"#, None, invalid),
        (r#"{"jsonrpc":"2.0","id":-1e400,"method":"devices.list"}"#, None, invalid),
        (r#"{"id":1,"method":"devices.list"}"#, Some(Id::Number(1)), invalid),
        (r#"{"jsonrpc":"1.0","id":1,"method":"devices.list"}"#, Some(Id::Number(1)), invalid),
        (r#"{"jsonrpc":2.0,"id":1,"method":"devices.list"}"#, Some(Id::Number(1)), invalid),
        (r#"{"jsonrpc":"2.0","id":"a","method":7}"#, Some(Id::String("a".into())), invalid),
        (r#"{"jsonrpc":"2.0","id":"a"}"#, Some(Id::String("a".into())), invalid),
        (r#"{"jsonrpc":"2.0","id":"a","method":"devices.list","pin":"123456"}"#, Some(Id::String("a".into())), invalid),
        (r#"{"jsonrpc":"2.0","id":"a","method":"devices.list","params":"x"}"#, Some(Id::String("a".into())), invalid),
        (r#"{"jsonrpc":"2.0","id":"a","method":"devices.list","params":null}"#, Some(Id::String("a".into())), invalid),
        // -32601: no such method
        (r#"{"jsonrpc":"2.0","id":3,"method":"sign.pin"}"#, Some(Id::Number(3)), not_found),
        (r#"{"jsonrpc":"2.0","id":3,"method":"Hello"}"#, Some(Id::Number(3)), not_found),
        (r#"{"jsonrpc":"2.0","id":3,"method":""}"#, Some(Id::Number(3)), not_found),
        // -32602: params do not fit
        (r#"{"jsonrpc":"2.0","id":4,"method":"hello","params":[1,"x"]}"#, Some(Id::Number(4)), params),
        (r#"{"jsonrpc":"2.0","id":4,"method":"hello"}"#, Some(Id::Number(4)), params),
        (r#"{"jsonrpc":"2.0","id":4,"method":"hello","params":{"schema_version":"1","sdk":"x"}}"#, Some(Id::Number(4)), params),
        (r#"{"jsonrpc":"2.0","id":4,"method":"devices.list","params":{"all":true}}"#, Some(Id::Number(4)), params),
        (
            r#"{"jsonrpc":"2.0","id":4,"method":"sign","params":{"certificate":{"thumbprint":"00"},"input":{"data":""},"format":"raw"}}"#,
            Some(Id::Number(4)),
            params,
        ),
        (
            r#"{"jsonrpc":"2.0","id":4,"method":"sign","params":{"certificate":{"thumbprint":"0123456789ABCDEF0123456789ABCDEF01234567"},"input":{"data":"aGk"},"format":"raw"}}"#,
            Some(Id::Number(4)),
            params,
        ),
        (
            r#"{"jsonrpc":"2.0","id":4,"method":"sign","params":{"certificate":{"thumbprint":"0123456789ABCDEF0123456789ABCDEF01234567"},"input":{"data":"aGk=","stream":1},"format":"raw"}}"#,
            Some(Id::Number(4)),
            params,
        ),
        (
            r#"{"jsonrpc":"2.0","id":4,"method":"sign","params":{"certificate":{"thumbprint":"0123456789ABCDEF0123456789ABCDEF01234567"},"input":{"data":"aGk="},"format":"raw","pin":"123456"}}"#,
            Some(Id::Number(4)),
            params,
        ),
        (r#"{"jsonrpc":"2.0","id":4,"method":"stream.close","params":{"stream":0}}"#, Some(Id::Number(4)), params),
        (r#"{"jsonrpc":"2.0","id":4,"method":"subscribe","params":{"events":["progress"]}}"#, Some(Id::Number(4)), params),
        (r#"{"jsonrpc":"2.0","id":4,"method":"cancel","params":{"id":null}}"#, Some(Id::Number(4)), params),
    ];
    for (text, id, code) in cases {
        assert_eq!(code_of(text), (id.clone(), *code), "{text}");
    }
}

#[test]
fn not_utf8_is_a_parse_error() {
    let e = parse_request(b"{\"jsonrpc\":\"2.0\",\"id\":\"\xff\",\"method\":\"hello\"}", MAX).unwrap_err();
    assert_eq!((e.id.clone(), e.code()), (None, -32700));
}

#[test]
fn size_cap_is_enforced_before_parsing() {
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"devices.list"}"#;
    assert!(parse_request(body.as_bytes(), body.len()).is_ok());
    let e = parse_request(body.as_bytes(), body.len() - 1).unwrap_err();
    assert_eq!(e.code(), ErrorCode::InputTooLarge.number() as i32);
    assert_eq!(e.id, None, "nothing is read from an oversize message, not even its id");
    // Garbage over the cap is refused as too large, not as a parse error.
    let e = parse_request(&vec![b'{'; MAX + 1], MAX).unwrap_err();
    assert_eq!(e.error.data.name, "input_too_large");
}

#[test]
fn ids_are_echoed() {
    for (id, json_id) in [
        (Id::Number(0), json!(0)),
        (Id::Number(-7), json!(-7)),
        (Id::Number(i64::MAX), json!(i64::MAX)),
        (Id::String(String::new()), json!("")),
        (Id::String("请求-1".into()), json!("请求-1")),
        (Id::String("7".into()), json!("7")),
    ] {
        // Success.
        let text = json!({"jsonrpc": "2.0", "id": json_id, "method": "devices.list"}).to_string();
        let req = parse_request(text.as_bytes(), MAX).unwrap();
        assert_eq!(req.id, id);
        let resp: Value = serde_json::from_str(&Response::ok(req.id, &json!({"devices": []})).to_json().unwrap()).unwrap();
        assert_eq!(resp["id"], json_id);
        assert_eq!(resp["jsonrpc"], "2.0");
        // Failure after the id was read.
        let text = json!({"jsonrpc": "2.0", "id": json_id, "method": "nope"}).to_string();
        let resp: Value =
            serde_json::from_str(&parse_request(text.as_bytes(), MAX).unwrap_err().into_response().to_json().unwrap()).unwrap();
        assert_eq!(resp["id"], json_id);
        assert_eq!(resp["error"]["code"], -32601);
        assert!(resp.get("result").is_none());
    }
    // A string id "7" and a number id 7 are different ids.
    assert_ne!(Id::String("7".into()), Id::Number(7));
    // Unreadable id: null.
    let resp: Value = serde_json::from_str(&parse_request(b"{", MAX).unwrap_err().into_response().to_json().unwrap()).unwrap();
    assert_eq!(resp["id"], Value::Null);
    // Too long a string id.
    let long = "x".repeat(kb_bridge_protocol::MAX_ID_LEN + 1);
    let text = json!({"jsonrpc": "2.0", "id": long, "method": "devices.list"}).to_string();
    assert_eq!(code_of(&text), (None, -32600));
}

#[test]
fn requests_round_trip_through_to_json() {
    let call = Call::CertificatesList(CertificatesListParams {
        usage: Some(KeyUsage::Encrypt),
        subject_contains: Some("张三".into()),
        ..Default::default()
    });
    let req = Request::new(Id::String("r1".into()), call);
    let text = req.to_json().unwrap();
    assert_eq!(parse_request(text.as_bytes(), MAX).unwrap(), req);
    // Omitted params mean "all defaults" for methods whose params are all optional.
    let r = parse_request(br#"{"jsonrpc":"2.0","id":1,"method":"certificates.list"}"#, MAX).unwrap();
    assert_eq!(r.call, Call::CertificatesList(CertificatesListParams::default()));
}

/// Every KeyBridge code crosses as its own positive number and comes back as itself;
/// protocol errors are the standard negative codes; nothing collides.
#[test]
fn error_code_mapping_both_ways() {
    let mut seen = std::collections::HashSet::new();
    for &c in ErrorCode::ALL {
        let rpc = RpcCode::from(c);
        assert_eq!(rpc.code(), c.number() as i32);
        assert!(rpc.code() > 0);
        assert_eq!(RpcCode::from_code(rpc.code()), Some(rpc));
        assert!(seen.insert(rpc.code()));
        let obj = ErrorObject::new(c, "detail");
        assert_eq!(obj.code, c.number() as i32);
        assert_eq!(obj.data.name, c.name());
        assert_eq!(obj.rpc_code(), Some(rpc));
        // Through JSON and back.
        let back: ErrorObject = serde_json::from_str(&serde_json::to_string(&obj).unwrap()).unwrap();
        assert_eq!(back, obj);
    }
    for p in ProtocolError::ALL {
        let rpc = RpcCode::from(p);
        assert!((-32768..=-32000).contains(&rpc.code()), "{p:?}");
        assert_eq!(RpcCode::from_code(rpc.code()), Some(rpc));
        assert!(seen.insert(rpc.code()));
    }
    for unknown in [0, -1, -32603, -32000, 1, 999, 5999, 10_000, i32::MAX, i32::MIN] {
        assert_eq!(RpcCode::from_code(unknown), None, "{unknown}");
    }
    // Wrong PIN carries its tries left; empty details are omitted.
    let v = serde_json::to_value(ErrorObject::new(ErrorCode::WrongPin, "").with_retries_left(2)).unwrap();
    assert_eq!(v["data"]["retries_left"], 2);
    assert!(v["data"].get("detail").is_none());
    assert_eq!(v["data"]["messages"]["zh-CN"], "口令错误");
}

#[test]
fn a_response_has_result_or_error_not_both() {
    let both = r#"{"jsonrpc":"2.0","id":1,"result":{},"error":{"code":9999,"message":"internal error","data":{"name":"internal","messages":{"zh-CN":"内部错误","en":"internal error"}}}}"#;
    assert!(serde_json::from_str::<Response>(both).is_err());
    assert!(serde_json::from_str::<Response>(r#"{"jsonrpc":"1.0","id":1,"result":{}}"#).is_err());
}

/// The field names of a strict (`deny_unknown_fields`) struct or the variant names of an
/// enum, read from serde's own "expected one of" message for an unknown field.
fn names_of<T: DeserializeOwned>() -> Vec<String> {
    let probe = json!({"\u{1}probe": 0});
    let msg = match serde_json::from_value::<T>(probe) {
        Ok(_) => panic!("{} accepts unknown fields", std::any::type_name::<T>()),
        Err(e) => e.to_string(),
    };
    let names: Vec<String> = msg
        .split('`')
        .skip(3) // "unknown field `<probe>`, expected one of "
        .step_by(2)
        .map(str::to_string)
        .collect();
    assert!(
        msg.contains("unknown field") || msg.contains("unknown variant"),
        "{} is not strict: {msg}",
        std::any::type_name::<T>()
    );
    names
}

/// No method can be handed a PIN: no field of any params type (nested ones included)
/// is named like one.
#[test]
fn no_params_type_has_a_pin_field() {
    use kb_bridge_protocol::*;
    let all: Vec<(&str, Vec<String>)> = vec![
        ("HelloParams", names_of::<HelloParams>()),
        ("DevicesListParams", names_of::<DevicesListParams>()),
        ("CertificatesListParams", names_of::<CertificatesListParams>()),
        ("CertificatesGetParams", names_of::<CertificatesGetParams>()),
        ("SignParams", names_of::<SignParams>()),
        ("VerifyParams", names_of::<VerifyParams>()),
        ("EncryptParams", names_of::<EncryptParams>()),
        ("DecryptParams", names_of::<DecryptParams>()),
        ("StreamOpenParams", names_of::<StreamOpenParams>()),
        ("StreamCloseParams", names_of::<StreamCloseParams>()),
        ("CancelParams", names_of::<CancelParams>()),
        ("SubscribeParams", names_of::<SubscribeParams>()),
        ("CertificateRef", names_of::<CertificateRef>()),
        ("CertificateSource", names_of::<CertificateSource>()),
        ("Input", names_of::<Input>()),
        ("SignInput", names_of::<SignInput>()),
        ("OutputMode", names_of::<OutputMode>()),
    ];
    // The probe is not vacuous.
    assert!(all.iter().any(|(t, f)| *t == "SignParams" && f.contains(&"sm2_id".to_string())));
    assert!(all.iter().any(|(t, f)| *t == "Input" && f == &["data", "stream"]));
    for (ty, fields) in &all {
        for f in fields {
            let l = f.to_ascii_lowercase();
            assert!(!l.contains("pin") && !l.contains("password") && !l.contains("passwd"), "{ty}.{f} looks like a PIN field");
        }
    }
    // Every method's params type is in the list above.
    assert_eq!(
        all.iter().filter(|(t, _)| t.ends_with("Params")).count(),
        Method::ALL.len() - 1,
        "unsubscribe shares SubscribeParams"
    );
    // And the doc's examples (every request) carry no such key anywhere.
    fn walk(v: &Value) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    let l = k.to_ascii_lowercase();
                    assert!(!l.contains("pin") && !l.contains("password"), "key {k}");
                    walk(v);
                }
            }
            Value::Array(a) => a.iter().for_each(walk),
            _ => {}
        }
    }
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fuzz/seeds/bridge_request");
    for e in std::fs::read_dir(dir).unwrap() {
        let req = parse_request(&std::fs::read(e.unwrap().path()).unwrap(), usize::MAX).unwrap();
        walk(&req.call.params_value().unwrap());
    }
}

#[test]
fn base64_debug_hides_the_bytes() {
    let b = Base64(b"secret price".to_vec());
    assert_eq!(format!("{b:?}"), "Base64(12 bytes)");
}

#[test]
fn schema_negotiation() {
    use kb_bridge_protocol::{MIN_SCHEMA_VERSION, SCHEMA_VERSION, negotiate};
    assert_eq!(negotiate(SCHEMA_VERSION), Some(SCHEMA_VERSION));
    assert_eq!(negotiate(SCHEMA_VERSION + 5), Some(SCHEMA_VERSION));
    assert_eq!(negotiate(MIN_SCHEMA_VERSION), Some(MIN_SCHEMA_VERSION));
    assert_eq!(negotiate(0), None);
}

#[test]
fn frames_encode_decode_and_sequence() {
    let f = Frame { stream: StreamId(0x0102_0304), sequence: 7, flags: FLAG_FIN, payload: b"abc" };
    let bytes = f.encode();
    assert_eq!(&bytes[..HEADER_LEN], &[1, 1, 0, 0, 1, 2, 3, 4, 0, 0, 0, 7]);
    assert_eq!(Frame::decode(&bytes, 3).unwrap(), f);
    assert!(Frame::decode(&bytes, 2).is_err(), "payload over the chunk limit");
    let bad = |mutate: fn(&mut Vec<u8>)| {
        let mut b = bytes.clone();
        mutate(&mut b);
        Frame::decode(&b, 1024).unwrap_err().code()
    };
    assert_eq!(bad(|b| b[0] = 2), ErrorCode::StreamFrameInvalid);
    assert_eq!(bad(|b| b[1] = 0x04), ErrorCode::StreamFrameInvalid);
    assert_eq!(bad(|b| b[3] = 1), ErrorCode::StreamFrameInvalid);
    assert_eq!(bad(|b| b[4..8].copy_from_slice(&[0; 4])), ErrorCode::StreamFrameInvalid);
    assert_eq!(bad(|b| b.truncate(11)), ErrorCode::StreamFrameInvalid);
    // An empty FIN frame is fine.
    let fin = Frame { stream: StreamId(1), sequence: 0, flags: FLAG_FIN, payload: b"" };
    assert_eq!(Frame::decode(&fin.encode(), 0).unwrap(), fin);

    let mut s = Sequencer::default();
    let frame = |sequence, flags, payload: &'static [u8]| Frame { stream: StreamId(1), sequence, flags, payload };
    s.accept(&frame(0, 0, b"ab")).unwrap();
    assert!(s.accept(&frame(2, 0, b"x")).is_err(), "gap");
    s.accept(&frame(1, FLAG_FIN, b"cde")).unwrap();
    assert!(s.ended());
    assert_eq!(s.bytes(), 5);
    assert!(s.accept(&frame(2, 0, b"")).is_err(), "after FIN");
    let mut s = Sequencer::default();
    s.accept(&frame(0, FLAG_ABORT, b"")).unwrap();
    assert!(s.ended() && frame(0, FLAG_ABORT, b"").is_abort());
}
