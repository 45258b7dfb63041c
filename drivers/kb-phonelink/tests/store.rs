//! The pairing store's secrets: in the OS keyring (Secret Service, here gnome-keyring
//! under a private `dbus-run-session`) with no secret in any file, or — without a session
//! bus — in a reported 0600 file.
//!
//! Each check runs in a child process of this test binary (an `#[ignore]`d test selected
//! by name) so the D-Bus environment it needs never leaks into other tests. The parent
//! starts and stops the peers (dbus-run-session, gnome-keyring-daemon) itself.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stdout)]

use kb_phonelink::handshake::peer_id;
use kb_phonelink::store::Lookup;
use kb_phonelink::{BackendChoice, PairingStore, SecretBackend, StaticKey};
use std::path::Path;
use std::process::Command;

const CHILD: &str = "KB_STORE_TEST_CHILD";
const SECRET: [u8; 32] = [0xA7; 32];

fn child(name: &str) -> Command {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args(["--exact", name, "--ignored", "--nocapture", "--test-threads=1"]);
    c
}

fn on_path(bin: &str) -> bool {
    Command::new("sh").args(["-c", &format!("command -v {bin}")]).output().map(|o| o.status.success()).unwrap_or(false)
}

/// Every file under `dir` (recursively).
fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() { out.extend(files(&p)) } else { out.push(p) }
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Pair a fake phone and return its key (the body both children share).
fn exercise(store: &PairingStore) -> (StaticKey, StaticKey) {
    let pc = store.pc_key().unwrap();
    let phone = StaticKey::generate().unwrap();
    let peer = store.add(phone.public(), "test phone", &SECRET).unwrap();
    assert_eq!(peer, peer_id(phone.public()));
    match store.lookup(phone.public()).unwrap() {
        Lookup::Paired { link_secret, .. } => assert_eq!(*link_secret, SECRET),
        other => panic!("{other:?}"),
    }
    (pc, phone)
}

#[test]
fn file_fallback_without_a_session_bus() {
    let dir = tempfile::tempdir().unwrap();
    let out = child("child_file_fallback")
        .env(CHILD, dir.path())
        .env("DBUS_SESSION_BUS_ADDRESS", format!("unix:path={}/no-bus", dir.path().display()))
        .env_remove("DISPLAY")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && log.contains("1 passed"), "{log}");
}

#[test]
#[ignore = "child of file_fallback_without_a_session_bus"]
fn child_file_fallback() {
    let Some(dir) = std::env::var_os(CHILD) else { return };
    let dir = Path::new(&dir).join("store");
    let store = PairingStore::open(&dir, BackendChoice::Auto).unwrap();
    let SecretBackend::File { path, reason } = store.backend().clone() else {
        panic!("expected the file fallback, got {:?}", store.backend())
    };
    assert!(!reason.is_empty(), "the fallback says why");
    let (pc, _) = exercise(&store);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "secrets file mode");
    }
    let secrets = std::fs::read(&path).unwrap();
    assert!(contains(&secrets, hex::encode(SECRET).as_bytes()));
    let phones = std::fs::read(dir.join("phones.json")).unwrap();
    assert!(!contains(&phones, hex::encode(SECRET).as_bytes()));
    assert!(!contains(&phones, hex::encode(&pc.private_bytes()[..]).as_bytes()));
    // The PC key persists.
    let again = PairingStore::open(&dir, BackendChoice::Auto).unwrap();
    assert_eq!(again.pc_key().unwrap().public(), pc.public());
}

#[test]
fn secrets_land_in_the_keyring_under_a_private_session() {
    for bin in ["dbus-run-session", "gnome-keyring-daemon", "dbus-send"] {
        if !on_path(bin) {
            println!("SKIPPED: {bin} not installed (installer/bootstrap.sh installs gnome-keyring and dbus)");
            return;
        }
    }
    let root = tempfile::tempdir().unwrap();
    let home = root.path().join("home");
    let run = root.path().join("run");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::create_dir_all(&run).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    // The session script: start gnome-keyring (password on stdin), wait until it owns
    // its bus name, run the child, stop the daemon by its pid.
    let script = root.path().join("session.sh");
    std::fs::write(
        &script,
        r#"set -u
printf 'kb-test-password' | gnome-keyring-daemon --foreground --unlock --components=secrets >"$KB_ROOT/keyring.log" 2>&1 &
keyring=$!
ok=0
for _ in $(seq 1 300); do
  if dbus-send --session --print-reply --dest=org.freedesktop.DBus /org/freedesktop/DBus \
       org.freedesktop.DBus.NameHasOwner string:org.freedesktop.secrets 2>/dev/null | grep -q 'boolean true'; then
    ok=1; break
  fi
  kill -0 "$keyring" 2>/dev/null || break
  sleep 0.1
done
if [ "$ok" != 1 ]; then echo "gnome-keyring did not start"; cat "$KB_ROOT/keyring.log"; kill "$keyring" 2>/dev/null; exit 3; fi
"$@"
rc=$?
kill "$keyring"
wait "$keyring" 2>/dev/null
exit $rc
"#,
    )
    .unwrap();
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("dbus-run-session")
        .arg("--")
        .arg("bash")
        .arg(&script)
        .arg(&exe)
        .args(["--exact", "child_keyring", "--ignored", "--nocapture", "--test-threads=1"])
        .env(CHILD, root.path())
        .env("KB_ROOT", root.path())
        .env("HOME", &home)
        .env("XDG_DATA_HOME", home.join(".local/share"))
        .env("XDG_RUNTIME_DIR", &run)
        .env_remove("DISPLAY")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && log.contains("1 passed"), "{log}");
    // No secret in any file anywhere under the test's root (store dir, HOME, keyring files
    // — gnome-keyring encrypts its own).
    let secret_hex = hex::encode(SECRET);
    for f in files(root.path()) {
        let b = std::fs::read(&f).unwrap_or_default();
        assert!(!contains(&b, &SECRET) && !contains(&b, secret_hex.as_bytes()), "secret in {}", f.display());
    }
    assert!(home.join(".local/share/keyrings").exists(), "gnome-keyring stored its collection under the test HOME");
}

#[test]
#[ignore = "child of secrets_land_in_the_keyring_under_a_private_session"]
fn child_keyring() {
    let Some(root) = std::env::var_os(CHILD) else { return };
    let dir = Path::new(&root).join("store");
    let store = PairingStore::open(&dir, BackendChoice::Auto).unwrap();
    assert_eq!(store.backend(), &SecretBackend::Keyring, "the keyring is used when it answers");
    let (pc, phone) = exercise(&store);
    assert!(!dir.join("secrets.json").exists(), "no secrets file when the keyring works");
    let pc_hex = hex::encode(&pc.private_bytes()[..]);
    for f in files(&dir) {
        let b = std::fs::read(&f).unwrap();
        assert!(!contains(&b, pc_hex.as_bytes()), "the PC key in {}", f.display());
    }
    // Reopened: the same PC key and link secret come back from the keyring.
    let again = PairingStore::open(&dir, BackendChoice::Keyring).unwrap();
    assert_eq!(again.pc_key().unwrap().public(), pc.public());
    assert!(matches!(again.lookup(phone.public()).unwrap(), Lookup::Paired { .. }));
    // Revoking deletes the link secret from the keyring.
    again.revoke(&peer_id(phone.public())).unwrap();
    assert!(matches!(again.lookup(phone.public()).unwrap(), Lookup::Revoked));
}
