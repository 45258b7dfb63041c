//! SoftHSM2, a real PKCS#11 module, with OpenSC's `pkcs11-tool` as the independent peer.
//!
//! SoftHSM2 reads `SOFTHSM2_CONF` once, at `C_Initialize`, and a process can initialise a
//! module only once; setting the variable in-process would need `unsafe`. So each test
//! runs in a child process of its own: [`SoftHsm::enter`] in the parent makes a private
//! token directory and configuration, re-runs the current test binary for just that test
//! with `SOFTHSM2_CONF` pointing there, and checks the child passed; in the child it
//! returns the rig. Tests stay isolated and can run in parallel.

use crate::unavailable;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const RIG_ENV: &str = "KB_SOFTHSM_RIG";

/// Where Debian and others install the module (`$KB_SOFTHSM2_MODULE` first).
pub fn module_path() -> Option<PathBuf> {
    let env = std::env::var_os("KB_SOFTHSM2_MODULE").map(PathBuf::from);
    env.into_iter()
        .chain(
            [
                "/usr/lib/softhsm/libsofthsm2.so",
                "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
                "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
                "/usr/local/lib/softhsm/libsofthsm2.so",
            ]
            .map(PathBuf::from),
        )
        .find(|p| p.is_file())
}

fn on_path(tool: &str) -> bool {
    Command::new(tool).arg("--help").output().is_ok()
}

/// A private SoftHSM2 token directory, inside the child process that uses it.
#[derive(Debug)]
pub struct SoftHsm {
    dir: PathBuf,
    module: PathBuf,
}

impl SoftHsm {
    /// Call first in a test named `test_name` (its path inside the test binary, e.g.
    /// `sign_ecdsa`). `Some` in the child process that runs the test body; `None` in the
    /// parent (after the child passed) or when SoftHSM2 / `pkcs11-tool` are missing and
    /// `KB_INTEROP_REQUIRED` is not `1` (then a loud SKIP is printed).
    pub fn enter(test_name: &str) -> Option<SoftHsm> {
        let Some(module) = module_path() else {
            return unavailable("softhsm2", "libsofthsm2.so not found (Debian package softhsm2)");
        };
        for (tool, package) in [("softhsm2-util", "softhsm2"), ("pkcs11-tool", "opensc")] {
            if !on_path(tool) {
                return unavailable(tool, &format!("not on PATH (Debian package {package})"));
            }
        }
        if let Some(dir) = std::env::var_os(RIG_ENV) {
            return Some(SoftHsm { dir: PathBuf::from(dir), module });
        }
        let dir = crate::tempdir();
        let tokens = dir.path().join("tokens");
        std::fs::create_dir_all(&tokens).unwrap();
        let conf = dir.path().join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!("directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n", tokens.display()),
        )
        .unwrap();
        let exe = std::env::current_exe().unwrap();
        let out = Command::new(exe)
            .args([test_name, "--exact", "--nocapture", "--test-threads=1"])
            .env("SOFTHSM2_CONF", &conf)
            .env(RIG_ENV, dir.path())
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "SoftHSM2 test {test_name} failed in its child process:\n{text}");
        // A filter that matched nothing would pass silently: make sure the test ran.
        assert!(text.contains("1 passed"), "SoftHSM2 test {test_name} did not run in the child:\n{text}");
        None
    }

    /// The module's path.
    pub fn module(&self) -> &Path {
        &self.module
    }

    /// The rig's private directory (scratch files may go here too).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Initialise a new token in a free slot.
    pub fn init_token(&self, label: &str, user_pin: &str, so_pin: &str) {
        self.util(&["--init-token", "--free", "--label", label, "--pin", user_pin, "--so-pin", so_pin]);
    }

    /// Delete a token (its files go; the module sees it gone).
    pub fn delete_token(&self, label: &str) {
        self.util(&["--delete-token", "--token", label]);
    }

    fn util(&self, args: &[&str]) {
        let out = Command::new("softhsm2-util").args(args).output().unwrap();
        assert!(out.status.success(), "softhsm2-util {args:?}: {}", crate::describe(&out));
    }

    /// Run `pkcs11-tool --module <softhsm2> --token-label <token> <args>`.
    pub fn tool(&self, token: &str, args: &[&str]) -> Output {
        Command::new("pkcs11-tool").arg("--module").arg(&self.module).args(["--token-label", token]).args(args).output().unwrap()
    }

    /// Like [`SoftHsm::tool`], asserting success; returns stdout.
    pub fn tool_ok(&self, token: &str, args: &[&str]) -> String {
        let out = self.tool(token, args);
        assert!(out.status.success(), "pkcs11-tool {args:?}: {}", crate::describe(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}
