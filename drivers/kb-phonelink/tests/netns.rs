//! The direct transport across a real (virtual) LAN: two network namespaces this test
//! creates, joined by a veth pair (10.231.0.1 = PC, 10.231.0.2 = phone). The PC and the
//! phone are child processes of this test binary run with `ip netns exec`; they exchange
//! only the offer string and the shown code through files (the user's eyes). Nothing
//! touches this machine's own interfaces or addresses. The PC listens on every interface
//! of its namespace (`0.0.0.0`), so the offer's LAN address discovery is what is tested. Skipped, with the reason printed,
//! only when `ip netns add` fails (not root, no netns support).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stdout)]

mod common;
use common::*;
use kb_phonelink::{BackendChoice, LinkRuntime, PairingStore, PcConfig, PcEndpoint, PcEvent};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const DIR: &str = "KB_NETNS_DIR";
const PC_ADDR: &str = "10.231.0.1";
const PHONE_ADDR: &str = "10.231.0.2";

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip").args(args).output().map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// Deletes the namespaces (and with them the veth pair) however the test ends.
struct Namespaces(Vec<String>);

impl Drop for Namespaces {
    fn drop(&mut self) {
        for n in &self.0 {
            let _ = ip(&["netns", "del", n]);
        }
    }
}

fn wait_file(p: &Path) -> String {
    let end = Instant::now() + WAIT;
    loop {
        if let Ok(s) = std::fs::read_to_string(p)
            && !s.is_empty()
        {
            return s;
        }
        assert!(Instant::now() < end, "{} never appeared", p.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn write_file(p: &Path, s: &str) {
    let tmp = p.with_extension("tmp");
    std::fs::write(&tmp, s).unwrap();
    std::fs::rename(tmp, p).unwrap();
}

fn spawn_in(ns: &str, test: &str, dir: &Path) -> Child {
    Command::new("ip")
        .args(["netns", "exec", ns])
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", test, "--ignored", "--nocapture", "--test-threads=1"])
        .env(DIR, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Wait for a child within [`WAIT`] (killing it by pid after that); its output.
fn finish(mut c: Child, name: &str) -> String {
    let end = Instant::now() + WAIT * 2;
    while c.try_wait().unwrap().is_none() {
        if Instant::now() > end {
            let _ = c.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = c.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && log.contains("1 passed"), "{name} child failed:\n{log}");
    log
}

#[test]
fn pair_and_talk_across_a_veth_pair() {
    let tag = std::process::id() % 100_000;
    let (pc_ns, phone_ns) = (format!("kbpl-pc-{tag}"), format!("kbpl-ph-{tag}"));
    if let Err(why) = ip(&["netns", "add", &pc_ns]) {
        println!("SKIPPED: cannot create a network namespace ({why})");
        return;
    }
    let mut guard = Namespaces(vec![pc_ns.clone()]);
    ip(&["netns", "add", &phone_ns]).unwrap();
    guard.0.push(phone_ns.clone());
    let (pc_if, phone_if) = (format!("kbpc{tag}"), format!("kbph{tag}"));
    // The pair is created straight inside the two namespaces.
    ip(&["link", "add", "name", &pc_if, "netns", &pc_ns, "type", "veth", "peer", "name", &phone_if, "netns", &phone_ns]).unwrap();
    for (ns, dev, addr) in [(&pc_ns, &pc_if, PC_ADDR), (&phone_ns, &phone_if, PHONE_ADDR)] {
        ip(&["-n", ns, "addr", "add", &format!("{addr}/30"), "dev", dev]).unwrap();
        ip(&["-n", ns, "link", "set", dev, "up"]).unwrap();
        ip(&["-n", ns, "link", "set", "lo", "up"]).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let pc = spawn_in(&pc_ns, "child_pc", dir.path());
    let phone = spawn_in(&phone_ns, "child_phone", dir.path());
    finish(phone, "phone");
    finish(pc, "pc");
    drop(guard);
}

fn child_dir() -> Option<PathBuf> {
    std::env::var_os(DIR).map(PathBuf::from)
}

#[test]
#[ignore = "child of pair_and_talk_across_a_veth_pair (runs in the PC's namespace)"]
fn child_pc() {
    let Some(dir) = child_dir() else { return };
    let store = Arc::new(PairingStore::open(&dir.join("pc-store"), BackendChoice::File).unwrap());
    let pc = PcEndpoint::new(store, PcConfig { link: link_cfg(), ..PcConfig::default() }, LinkRuntime::new().unwrap()).unwrap();
    // Listening on every interface, as a PC on a LAN does: the offer names the PC's LAN
    // address (the veth's), not `0.0.0.0` and not loopback.
    let bound = pc.open_direct(&["0.0.0.0:0".parse().unwrap()]).unwrap();
    assert!(bound[0].ip().is_unspecified());
    let offer = pc.start_pairing(&[]).unwrap();
    assert_eq!(offer.endpoints, [kb_phonelink::Endpoint::Direct(format!("{PC_ADDR}:{}", bound[0].port()).parse().unwrap())]);
    write_file(&dir.join("offer"), &offer.text);
    let rig = Rig { dir: tempfile::tempdir().unwrap(), pc, rt: LinkRuntime::new().unwrap(), stash: Default::default() };
    let PcEvent::PairingRequest { request, code, .. } =
        wait_event(&rig, "pairing request", |e| matches!(e, PcEvent::PairingRequest { .. }))
    else {
        unreachable!()
    };
    assert_eq!(wait_file(&dir.join("phone-code")), code, "the user compares the codes");
    rig.pc.confirm(request).unwrap();
    let PcEvent::Connected { conn, .. } = wait_event(&rig, "connected", |e| matches!(e, PcEvent::Connected { .. })) else {
        unreachable!()
    };
    let msg = conn.recv(Some(WAIT)).unwrap();
    conn.send(&[b"echo: ".as_slice(), &msg].concat()).unwrap();
    assert_eq!(wait_closed(&*conn), kb_phonelink::LinkError::Closed);
    write_file(&dir.join("pc-done"), "closed");
}

#[test]
#[ignore = "child of pair_and_talk_across_a_veth_pair (runs in the phone's namespace)"]
fn child_phone() {
    let Some(dir) = child_dir() else { return };
    let text = wait_file(&dir.join("offer"));
    let offer = kb_phonelink::Offer::parse(&text).unwrap();
    assert_eq!(offer.endpoints, [kb_phonelink::Endpoint::Direct(offer.endpoints[0].clone().direct_addr())]);
    let p = phone("phone across the LAN");
    let pending = p.pair(&text).unwrap();
    write_file(&dir.join("phone-code"), &pending.code);
    let (_pairing, conn) = p.wait_confirmed(pending).unwrap();
    conn.send(b"hello across namespaces").unwrap();
    assert_eq!(conn.recv(Some(WAIT)).unwrap(), b"echo: hello across namespaces");
    conn.close();
    // Stay up until the PC saw the close (a process that exits at once may lose it).
    wait_file(&dir.join("pc-done"));
}

trait DirectAddr {
    fn direct_addr(self) -> std::net::SocketAddr;
}

impl DirectAddr for kb_phonelink::Endpoint {
    fn direct_addr(self) -> std::net::SocketAddr {
        match self {
            kb_phonelink::Endpoint::Direct(a) if a.ip().to_string() == PC_ADDR => a,
            other => panic!("the offer should name the PC's veth address, not {other:?}"),
        }
    }
}
