//! A real `nats-server` on loopback, run with the relay configuration the installer ships
//! (`installer/relay/`): only the listen addresses (free ports on 127.0.0.1) and the routes
//! are rewritten. Shared by tests/relay.rs and benches/relay.rs.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kb_phonelink::relay::Credentials;

/// The passwords the tests give the shipped configuration's users.
pub(crate) const PC_PASSWORD: &str = "test-pc-secret";
pub(crate) const PHONE_PASSWORD: &str = "test-phone-secret";

pub(crate) fn pc_credentials() -> Credentials {
    Credentials { user: "kb-pc".into(), password: PC_PASSWORD.into() }
}

pub(crate) fn phone_credentials() -> Credentials {
    Credentials { user: "kb-phone".into(), password: PHONE_PASSWORD.into() }
}

fn installer_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../installer/relay")
}

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Replaces the value of the variable `name` defined at the start of a line.
fn set_var(conf: &str, name: &str, value: &str) -> String {
    let prefix = format!("{name}:");
    let mut found = false;
    let out: Vec<String> = conf
        .lines()
        .map(|l| {
            if l.starts_with(&prefix) {
                found = true;
                format!("{name}: {value}")
            } else {
                l.to_string()
            }
        })
        .collect();
    assert!(found, "the shipped configuration has no variable {name}");
    out.join("\n") + "\n"
}

fn var(conf: &str, name: &str) -> String {
    let prefix = format!("{name}:");
    conf.lines().find_map(|l| l.strip_prefix(&prefix)).expect("variable").trim().to_string()
}

/// One nats-server process.
pub(crate) struct NatsServer {
    child: Option<Child>,
    conf: PathBuf,
    _dir: tempfile::TempDir,
    /// The client (TCP) port.
    pub(crate) port: u16,
    /// The WebSocket port.
    pub(crate) ws_port: u16,
    /// The cluster (route) port, for a cluster node.
    pub(crate) cluster_port: Option<u16>,
}

impl NatsServer {
    /// One server with installer/relay/nats-relay.conf.
    pub(crate) fn single() -> NatsServer {
        Self::with_config("nats-relay.conf", |c, _| c.to_string(), None)
    }

    /// A cluster node with installer/relay/nats-relay-cluster.conf, its route port given
    /// and routes to the others' route ports.
    pub(crate) fn cluster_node(name: &str, cluster_port: u16, routes: &[u16]) -> NatsServer {
        Self::with_config(
            "nats-relay-cluster.conf",
            |c, _| {
                // Keep the shipped route user and secret; only the addresses change.
                let shipped = var(c, "RELAY_ROUTES");
                let (userinfo, _) = shipped.split_once('@').expect("route credentials");
                let userinfo = userinfo.trim_start_matches(['[', '"']);
                let routes: Vec<String> = routes.iter().map(|p| format!("\"{userinfo}@127.0.0.1:{p}\"")).collect();
                let c = set_var(c, "RELAY_NAME", name);
                let c = set_var(&c, "RELAY_CLUSTER_LISTEN", &format!("\"127.0.0.1:{cluster_port}\""));
                set_var(&c, "RELAY_ROUTES", &format!("[{}]", routes.join(", ")))
            },
            Some(cluster_port),
        )
    }

    fn with_config(file: &str, edit: impl Fn(&str, u16) -> String, cluster_port: Option<u16>) -> NatsServer {
        let dir = tempfile::tempdir().unwrap();
        let (port, ws_port) = (free_port(), free_port());
        for f in ["kb-relay-common.conf", file] {
            let mut c = std::fs::read_to_string(installer_dir().join(f)).unwrap();
            if f == file {
                c = set_var(&c, "RELAY_LISTEN", &format!("\"127.0.0.1:{port}\""));
                c = set_var(&c, "RELAY_WS_LISTEN", &format!("\"127.0.0.1:{ws_port}\""));
                c = edit(&c, port);
            }
            std::fs::write(dir.path().join(f), c).unwrap();
        }
        let mut s = NatsServer { child: None, conf: dir.path().join(file), _dir: dir, port, ws_port, cluster_port };
        s.start();
        s
    }

    /// Starts the process (again, on the same ports) and waits until it accepts clients.
    pub(crate) fn start(&mut self) {
        assert!(self.child.is_none());
        // The benchmark opens thousands of connections: the server gets the hard limit.
        let log = self.conf.with_extension("log");
        let script = "ulimit -n $(ulimit -Hn) 2>/dev/null; exec nats-server -c \"$0\"";
        let child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg(&self.conf)
            .env("KB_RELAY_PC_PASSWORD", PC_PASSWORD)
            .env("KB_RELAY_PHONE_PASSWORD", PHONE_PASSWORD)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("nats-server (installer/bootstrap.sh installs it)");
        self.child = Some(child);
        // Ready when *this* process says so: a port that accepts could be another
        // server's if this one failed to bind.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            if log.contains("Server is ready") {
                break;
            }
            let exited = self.child.as_mut().unwrap().try_wait().unwrap();
            assert!(exited.is_none(), "nats-server exited ({exited:?}):\n{log}");
            assert!(Instant::now() < deadline, "nats-server did not start:\n{log}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the process (SIGKILL, by its id) and reaps it.
    pub(crate) fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The process id (`exec` keeps the shell's).
    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// The server's version, from its log.
    pub(crate) fn version(&self) -> String {
        let log = std::fs::read_to_string(self.conf.with_extension("log")).unwrap_or_default();
        log.lines().find_map(|l| l.split_once("Version:").map(|(_, v)| v.trim().to_string())).unwrap_or_else(|| "?".into())
    }

    /// The server's resident memory, KiB (VmRSS from /proc).
    pub(crate) fn rss_kib(&self) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let line = s.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// `nats://127.0.0.1:PORT` (the PC's way in).
    pub(crate) fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// `ws://127.0.0.1:PORT` (the phone's way in).
    pub(crate) fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.ws_port)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}
