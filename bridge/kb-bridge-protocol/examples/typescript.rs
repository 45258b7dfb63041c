//! Prints `bridge/sdk-js/src/generated.ts`: the TypeScript SDK's constants (schema
//! version, port, method, capability and event names, frame layout, every error code
//! with its messages), generated from this crate and `kb-types` so the SDK cannot drift
//! from the Rust contract. `tests/typescript.rs` runs [`generate`] and fails when the
//! checked-in file differs.
//!
//! ```sh
//! cargo run -q -p kb-bridge-protocol --example typescript > bridge/sdk-js/src/generated.ts
//! ```
#![allow(clippy::print_stdout)]

use kb_bridge_protocol::frame::{FLAG_ABORT, FLAG_FIN, FRAME_VERSION, HEADER_LEN};
use kb_bridge_protocol::{
    DEFAULT_MAX_CHUNK_BYTES, DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_PORT, Event, EventKind, MAX_ID_LEN, MIN_SCHEMA_VERSION, Method,
    ProtocolError, SCHEMA_VERSION, capability,
};
use kb_types::{ErrorCode, Lang, TransportKind};
use serde::Serialize;

fn main() {
    match generate() {
        Ok(text) => print!("{text}"),
        Err(e) => {
            eprintln!("typescript: {e}");
            std::process::exit(1);
        }
    }
}

/// A JSON value is a valid TypeScript literal (strings escaped the JSON way).
fn lit<T: Serialize + ?Sized>(v: &T) -> Result<String, serde_json::Error> {
    serde_json::to_string(v)
}

/// `export const NAME = [..] as const;` and `export type TYPE = (typeof NAME)[number];`
fn name_list(out: &mut String, doc: &str, name: &str, ty: &str, items: &[&str]) -> Result<(), serde_json::Error> {
    out.push_str(&format!("/** {doc} */\nexport const {name} = [\n"));
    for item in items {
        out.push_str(&format!("  {},\n", lit(item)?));
    }
    out.push_str(&format!("] as const;\n/** One of {{@link {name}}}. */\nexport type {ty} = (typeof {name})[number];\n\n"));
    Ok(())
}

/// `name: { code, [category,] messages },` for one row of an error table.
fn error_row(name: &str, code: i64, category: Option<String>, zh: &str, en: &str) -> Result<String, serde_json::Error> {
    let category = category.map(|c| format!(" category: {c},")).unwrap_or_default();
    Ok(format!("  {name}: {{ code: {code},{category} messages: {{ \"zh-CN\": {}, en: {} }} }},\n", lit(zh)?, lit(en)?))
}

/// The whole of `generated.ts`.
pub(crate) fn generate() -> Result<String, serde_json::Error> {
    let mut out = String::from(
        "// Generated from Rust by bridge/kb-bridge-protocol/examples/typescript.rs: do not edit.\n\
         // Regenerate with\n\
         //   cargo run -q -p kb-bridge-protocol --example typescript > bridge/sdk-js/src/generated.ts\n\
         // `cargo test -p kb-bridge-protocol --test typescript` fails when this file is stale.\n\n",
    );
    for (doc, name, value) in [
        ("The schema version this SDK speaks; sent in `hello`.", "SCHEMA_VERSION", u64::from(SCHEMA_VERSION)),
        ("The oldest client schema version a server still serves.", "MIN_SCHEMA_VERSION", u64::from(MIN_SCHEMA_VERSION)),
        ("Default TCP port on 127.0.0.1 (settings key `bridge_port`).", "DEFAULT_PORT", u64::from(DEFAULT_PORT)),
        ("Default cap on one text frame, in bytes.", "DEFAULT_MAX_MESSAGE_BYTES", DEFAULT_MAX_MESSAGE_BYTES as u64),
        ("Default cap on one binary frame's payload, in bytes.", "DEFAULT_MAX_CHUNK_BYTES", DEFAULT_MAX_CHUNK_BYTES as u64),
        ("Longest string request id, in characters.", "MAX_ID_LEN", MAX_ID_LEN as u64),
        ("Binary frame format version (header byte 0).", "FRAME_VERSION", u64::from(FRAME_VERSION)),
        ("Binary frame header length in bytes.", "FRAME_HEADER_LEN", HEADER_LEN as u64),
        ("Frame flag: last frame of the stream.", "FLAG_FIN", u64::from(FLAG_FIN)),
        ("Frame flag: the sender abandons the stream.", "FLAG_ABORT", u64::from(FLAG_ABORT)),
    ] {
        out.push_str(&format!("/** {doc} */\nexport const {name} = {value};\n"));
    }
    out.push('\n');

    let methods: Vec<&str> = Method::ALL.iter().map(|m| m.name()).collect();
    name_list(&mut out, "Every method, in document order.", "METHODS", "MethodName", &methods)?;
    name_list(&mut out, "Capability names announced in `hello`.", "CAPABILITIES", "Capability", &capability::ALL)?;
    name_list(&mut out, "Every server notification (event) name.", "EVENTS", "EventName", &Event::NAMES)?;
    // The subscribable events are the event names that parse as an `EventKind`.
    let subscribable: Vec<&str> =
        Event::NAMES.into_iter().filter(|n| serde_json::from_value::<EventKind>(serde_json::Value::from(*n)).is_ok()).collect();
    name_list(
        &mut out,
        "Events a connection subscribes to (`progress` needs no subscription).",
        "SUBSCRIBABLE_EVENTS",
        "EventKind",
        &subscribable,
    )?;
    let transports: Vec<&str> = TransportKind::ALL.iter().map(|t| t.name()).collect();
    name_list(&mut out, "How a medium is reached (`DeviceInfo.transport`).", "TRANSPORTS", "TransportKind", &transports)?;

    out.push_str(
        "/**\n * Every KeyBridge error code by stable name: `error.code` on the wire is `code`\n \
         * (positive), `error.data.name` is the key. Numbers never change meaning.\n */\n\
         export const ERROR_CODES = {\n",
    );
    for c in ErrorCode::ALL {
        let category = Some(lit(&c.category())?);
        out.push_str(&error_row(c.name(), c.number().into(), category, c.message(Lang::ZhCn), c.message(Lang::En))?);
    }
    out.push_str("} as const;\n\n");
    out.push_str(
        "/** The four standard JSON-RPC failures (negative codes), by stable name. */\nexport const PROTOCOL_ERRORS = {\n",
    );
    for p in ProtocolError::ALL {
        out.push_str(&error_row(p.name(), p.code().into(), None, p.message(Lang::ZhCn), p.message(Lang::En))?);
    }
    out.push_str("} as const;\n\n");
    out.push_str(
        "/** A KeyBridge error name (positive code). */\nexport type KeyBridgeErrorName = keyof typeof ERROR_CODES;\n\
         /** A JSON-RPC protocol error name (negative code). */\nexport type ProtocolErrorName = keyof typeof PROTOCOL_ERRORS;\n\
         /** Any stable error name a response can carry in `error.data.name`. */\n\
         export type ErrorName = KeyBridgeErrorName | ProtocolErrorName;\n",
    );
    Ok(out)
}
