//! `kb-devca`: run the development CA (or decide an application) from a directory.
//!
//! ```text
//! kb-devca serve [--dir DIR] [--port 8443] [--dual]
//! kb-devca approve --dir DIR APPLICATION
//! kb-devca reject --dir DIR APPLICATION REASON
//! ```
//!
//! `--dual`: issue SM2 dual certificates (an encryption pair delivered as a GM/T 0009
//! enveloped key with every SM2 signing certificate renewed; [`DevCa::set_dual_certificates`]).
#![allow(clippy::print_stdout)]

use kb_devca::{Config, DevCa, Server, SystemClock};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

fn main() {
    if let Err(e) = run(std::env::args().skip(1).collect()) {
        eprintln!("kb-devca: {e}");
        std::process::exit(1);
    }
}

fn run(args: Vec<String>) -> Result<(), String> {
    let mut dir = PathBuf::from("devca");
    let mut port = 8443u16;
    let mut dual = false;
    let mut rest = Vec::new();
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--dir" => dir = it.next().ok_or("--dir needs a value")?.into(),
            "--port" => port = it.next().ok_or("--port needs a value")?.parse().map_err(|_| "bad --port")?,
            "--dual" => dual = true,
            _ => rest.push(a),
        }
    }
    let (root, signer) = kb_devca::root_in(&dir).map_err(|e| e.to_string())?;
    let config =
        Config { name: kb_devca::SERVICE_NAME.into(), public_url: String::new(), operator_key: kb_devca::new_operator_key() };
    let ca =
        Arc::new(DevCa::open(&dir.join("devca.sqlite"), root, signer, Arc::new(SystemClock), config).map_err(|e| e.to_string())?);
    ca.set_dual_certificates(dual);
    match rest.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["serve"] | [] => {
            let server =
                Server::start(Arc::clone(&ca), SocketAddr::from(([127, 0, 0, 1], port)), false).map_err(|e| e.to_string())?;
            println!("KeyBridge dev CA (development only) at {}", server.url());
            println!("root certificate: {}", dir.join("root.pem").display());
            println!("operator page: {}/op?key={}", server.url(), ca.config().operator_key);
            server.wait();
            Ok(())
        }
        ["approve", id] => ca.decide(id, true, "").map_err(|e| e.to_string()),
        ["reject", id, reason] => ca.decide(id, false, reason).map_err(|e| e.to_string()),
        _ => Err("usage: kb-devca [serve|approve ID|reject ID REASON] [--dir DIR] [--port N] [--dual]".into()),
    }
}
