//! JSON-RPC 2.0 envelopes: requests (client → server), responses and notifications
//! (server → client), and the strict request parser every text frame goes through.

use crate::error::{ErrorObject, ProtocolError, RpcCode};
use crate::methods::{Call, Method};
use kb_types::ErrorCode;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use std::fmt;

/// Longest string id accepted (ids are echoed and logged).
pub const MAX_ID_LEN: usize = 128;

/// The `"jsonrpc": "2.0"` member: serializes as `"2.0"`, accepts nothing else.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Version2;

impl Serialize for Version2 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("2.0")
    }
}

impl<'de> Deserialize<'de> for Version2 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = String::deserialize(d)?;
        if v == "2.0" { Ok(Version2) } else { Err(D::Error::custom(format!("jsonrpc must be \"2.0\", not {v:?}"))) }
    }
}

/// A request id: a string (at most [`MAX_ID_LEN`] characters) or an integer. Echoed
/// unchanged in the response.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Id {
    /// An integer id.
    Number(i64),
    /// A string id.
    String(String),
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Id::Number(n) => write!(f, "{n}"),
            Id::String(s) => write!(f, "{s:?}"),
        }
    }
}

impl Id {
    fn from_value(v: &Value) -> Result<Id, &'static str> {
        match v {
            Value::String(s) if s.chars().count() <= MAX_ID_LEN => Ok(Id::String(s.clone())),
            Value::String(_) => Err("id is longer than 128 characters"),
            Value::Number(n) => n.as_i64().map(Id::Number).ok_or("id must be an integer in the signed 64-bit range"),
            _ => Err("id must be a string or an integer"),
        }
    }
}

/// A parsed, valid request: an id and a typed call.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    /// Echoed in the response.
    pub id: Id,
    /// Method and typed params.
    pub call: Call,
}

impl Request {
    /// A request (for clients and tests).
    pub fn new(id: Id, call: Call) -> Self {
        Request { id, call }
    }

    /// The JSON text a client sends.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        #[derive(Serialize)]
        struct Wire<'a> {
            jsonrpc: Version2,
            id: &'a Id,
            method: &'static str,
            params: Value,
        }
        serde_json::to_string(&Wire {
            jsonrpc: Version2,
            id: &self.id,
            method: self.call.method().name(),
            params: self.call.params_value()?,
        })
    }
}

/// Why a text frame was refused, with the id to answer to (`null` when the id itself
/// could not be read).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestError {
    /// The request's id, when it was readable.
    pub id: Option<Id>,
    /// The error to send (boxed: keeps `Result<Request, _>` small).
    pub error: Box<ErrorObject>,
}

impl RequestError {
    fn new(id: Option<Id>, code: impl Into<RpcCode>, detail: impl Into<String>) -> Self {
        RequestError { id, error: Box::new(ErrorObject::new(code, detail)) }
    }

    /// The code, for matching.
    pub fn code(&self) -> i32 {
        self.error.code
    }

    /// The response to send back.
    pub fn into_response(self) -> Response {
        Response { id: self.id, outcome: Err(*self.error) }
    }
}

/// Parse one text frame into a request, strictly:
///
/// 1. more than `max_len` bytes → `1005 input_too_large` (before any parsing);
/// 2. not UTF-8 JSON → -32700 (a number out of every range, such as `1e400`, is
///    valid JSON: -32600);
/// 3. not an object (a batch array included: batches are not supported), no `id`
///    (notifications are not accepted), an id that is not a string or integer, a member
///    other than `jsonrpc`/`id`/`method`/`params`, `jsonrpc` other than `"2.0"`, a
///    non-string `method`, or `params` that is neither object nor array → -32600;
/// 4. an unknown method → -32601;
/// 5. positional (array) params, or params that do not fit the method's schema
///    (unknown fields included) → -32602.
///
/// `params` may be omitted for methods whose params are all optional.
pub fn parse_request(bytes: &[u8], max_len: usize) -> Result<Request, RequestError> {
    if bytes.len() > max_len {
        return Err(RequestError::new(
            None,
            ErrorCode::InputTooLarge,
            format!("message of {} bytes exceeds the limit of {max_len} bytes", bytes.len()),
        ));
    }
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        // `1e400` is valid JSON (RFC 8259 sets no range) that no request can hold: an
        // invalid request, not a parse error.
        if e.is_syntax() && e.to_string().starts_with("number out of range") {
            RequestError::new(None, ProtocolError::InvalidRequest, format!("{e} (ids are integers in the signed 64-bit range)"))
        } else {
            RequestError::new(None, ProtocolError::ParseError, e.to_string())
        }
    })?;
    let mut obj: Map<String, Value> = match value {
        Value::Object(o) => o,
        Value::Array(_) => {
            return Err(RequestError::new(None, ProtocolError::InvalidRequest, "batch requests are not supported"));
        }
        _ => return Err(RequestError::new(None, ProtocolError::InvalidRequest, "a request must be a JSON object")),
    };
    let invalid = |id: &Option<Id>, detail: String| RequestError::new(id.clone(), ProtocolError::InvalidRequest, detail);
    let id = match obj.get("id") {
        None => return Err(invalid(&None, "notifications are not accepted: every request needs an id".into())),
        Some(v) => Id::from_value(v).map_err(|e| invalid(&None, e.into()))?,
    };
    let request_id = id;
    let id = Some(request_id.clone());
    if let Some(k) = obj.keys().find(|k| !matches!(k.as_str(), "jsonrpc" | "id" | "method" | "params")) {
        return Err(invalid(&id, format!("unknown member {k:?}")));
    }
    match obj.get("jsonrpc") {
        Some(Value::String(v)) if v == "2.0" => {}
        _ => return Err(invalid(&id, "\"jsonrpc\" must be \"2.0\"".into())),
    }
    let method = match obj.remove("method") {
        Some(Value::String(m)) => m,
        _ => return Err(invalid(&id, "\"method\" must be a string".into())),
    };
    let params = match obj.remove("params") {
        None => Value::Object(Map::new()),
        Some(p @ Value::Object(_)) => p,
        Some(Value::Array(_)) => {
            return Err(RequestError::new(id, ProtocolError::InvalidParams, "params must be an object (by name)"));
        }
        Some(_) => return Err(invalid(&id, "\"params\" must be an object".into())),
    };
    let Some(m) = Method::from_name(&method) else {
        let shown: String = method.chars().take(64).collect();
        return Err(RequestError::new(id, ProtocolError::MethodNotFound, format!("no method {shown:?}")));
    };
    let call = m.parse_params(params).map_err(|e| RequestError::new(id, ProtocolError::InvalidParams, e.to_string()))?;
    Ok(Request { id: request_id, call })
}

/// A response: the request's id (or `null`) and a result or an error.
#[derive(Clone, Debug, PartialEq)]
pub struct Response {
    /// The request's id; `None` serializes as `null` (the id could not be read).
    pub id: Option<Id>,
    /// `result` or `error`.
    pub outcome: Result<Value, ErrorObject>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireResponse {
    jsonrpc: Version2,
    id: Option<Id>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<ErrorObject>,
}

impl Response {
    /// A success with a typed result. A result that cannot be serialized (a bug) becomes
    /// a `9999 internal` error.
    pub fn ok(id: Id, result: &impl Serialize) -> Self {
        let outcome = serde_json::to_value(result).map_err(|e| ErrorObject::new(ErrorCode::Internal, e.to_string()));
        Response { id: Some(id), outcome }
    }

    /// The JSON text the server sends.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }

    /// A failure.
    pub fn err(id: Option<Id>, error: ErrorObject) -> Self {
        Response { id, outcome: Err(error) }
    }
}

impl Serialize for Response {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (result, error) = match &self.outcome {
            Ok(v) => (Some(v.clone()), None),
            Err(e) => (None, Some(e.clone())),
        };
        WireResponse { jsonrpc: Version2, id: self.id.clone(), result, error }.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Response {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = WireResponse::deserialize(d)?;
        let outcome = match (w.result, w.error) {
            (Some(r), None) => Ok(r),
            (None, Some(e)) => Err(e),
            // `"result": null` is absent to serde's Option: a unit result.
            (None, None) => Ok(Value::Null),
            (Some(_), Some(_)) => return Err(D::Error::custom("a response has either result or error, not both")),
        };
        Ok(Response { id: w.id, outcome })
    }
}

/// Server → client events. Sent as JSON-RPC notifications (no id).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", content = "params")]
pub enum Event {
    /// A key medium was plugged in or became ready (subscription `device.added`).
    #[serde(rename = "device.added")]
    DeviceAdded {
        /// The medium.
        device: kb_types::DeviceInfo,
    },
    /// A key medium went away (subscription `device.removed`).
    #[serde(rename = "device.removed")]
    DeviceRemoved {
        /// Its id.
        device: kb_types::DeviceId,
    },
    /// Certificates on a medium changed: installed, deleted, renewed
    /// (subscription `certificates.changed`).
    #[serde(rename = "certificates.changed")]
    CertificatesChanged {
        /// The medium.
        device: kb_types::DeviceId,
    },
    /// A known medium went out of reach — a phone or BLE key that disconnected
    /// (subscription `device.offline`). It stays listed; operations on it fail with
    /// `4015 medium_offline` until `device.online`.
    #[serde(rename = "device.offline")]
    DeviceOffline {
        /// Its id.
        device: kb_types::DeviceId,
    },
    /// A medium that was offline is reachable again (subscription `device.online`).
    #[serde(rename = "device.online")]
    DeviceOnline {
        /// Its id.
        device: kb_types::DeviceId,
    },
    /// What a request is waiting for (always sent to the requesting connection, no
    /// subscription): the user typing the PIN in KeyBridge's dialog, the user confirming
    /// on the medium itself (a phone, a PIN pad), or the medium working.
    #[serde(rename = "operation.status")]
    OperationStatus {
        /// The id of the request.
        request: Id,
        /// `waiting_for_pin`, `waiting_for_medium` or `working`.
        status: OperationState,
        /// For `waiting_for_medium`: the medium, in the user's words.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        medium: Option<String>,
    },
    /// Progress of a streaming request (always sent, no subscription).
    #[serde(rename = "progress")]
    Progress {
        /// The id of the request making progress.
        request: Id,
        /// Bytes processed so far.
        done: u64,
        /// Total bytes, when known (the stream's declared length).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        total: Option<u64>,
    },
}

impl Event {
    /// The notification's method name.
    pub fn name(&self) -> &'static str {
        match self {
            Event::DeviceAdded { .. } => "device.added",
            Event::DeviceRemoved { .. } => "device.removed",
            Event::CertificatesChanged { .. } => "certificates.changed",
            Event::DeviceOffline { .. } => "device.offline",
            Event::DeviceOnline { .. } => "device.online",
            Event::OperationStatus { .. } => "operation.status",
            Event::Progress { .. } => "progress",
        }
    }

    /// Every event name.
    pub const NAMES: [&'static str; 7] = [
        "device.added",
        "device.removed",
        "certificates.changed",
        "device.offline",
        "device.online",
        "operation.status",
        "progress",
    ];
}

/// What a request is waiting for (`operation.status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperationState {
    /// KeyBridge's PIN dialog is open (the PIN never travels over the socket).
    WaitingForPin,
    /// The user must verify on the medium itself: the phone, the reader's PIN pad.
    WaitingForMedium,
    /// The medium is working on it.
    Working,
}

/// A notification: `{"jsonrpc":"2.0","method":…,"params":…}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// Always `"2.0"`.
    pub jsonrpc: Version2,
    /// The event (its `method` and `params`).
    #[serde(flatten)]
    pub event: Event,
}

impl From<Event> for Notification {
    fn from(event: Event) -> Self {
        Notification { jsonrpc: Version2, event }
    }
}
