//! KeyBridge's own SKF module (`kb-skf-module`, built by cargo as a real shared library)
//! listed and used through the device service next to a file key, with the transports
//! chosen by `media::standard_transports` from the settings — what every front end does.
//! Moved here from `kb-skf-module`'s tests so that no crate in `drivers/` depends on the
//! service. The module finds its keys through `KEYBRIDGE_SKF_KEY_DIR`; setting it
//! in-process would need `unsafe`, so the test body runs in a child process of its own.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use kb_crypto::SignatureScheme;
use kb_filekey::{CreateOptions, FileToken};
use kb_service::audit::AuditLog;
use kb_service::devices::DeviceManager;
use kb_service::pin_cache::PinCachePolicy;
use kb_service::prompter::ScriptedPrompter;
use kb_service::settings::Settings;
use kb_token::Token;
use kb_types::{Algorithm, DeviceId, ErrorCode, HasErrorCode, KeyUsage, Pin, TransportKind};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

const USER: &str = "11112222";
const RIG_ENV: &str = "KB_SKF_SERVICE_TEST_RIG";

/// `libkb_skf_module.so` as cargo built it for this run (a dev-dependency of this crate):
/// cargo writes a dependency's cdylib into the `deps/` directory of the test executable.
fn module_path() -> PathBuf {
    let name = format!("{}kb_skf_module{}", std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX);
    std::env::current_exe().unwrap().with_file_name(name)
}

/// A file key `<dir>/<name>.kbkey` with container `main` and an SM2 signing pair.
fn make_key(dir: &Path, name: &str) -> (String, kb_crypto::PublicKey) {
    let serial = format!("KBF-SKF-{name}");
    let opts = CreateOptions { serial: Some(serial.clone()), ..CreateOptions::weak_for_tests() };
    let mut t = FileToken::create(dir.join(format!("{name}.kbkey")), name, &Pin::new(USER), &Pin::new("33334444"), opts).unwrap();
    let mut s = t.login(&Pin::new(USER)).unwrap();
    s.create_container("main").unwrap();
    let public = s.generate_key_pair("main", KeyUsage::Sign, Algorithm::Sm2).unwrap();
    (serial, public)
}

#[test]
fn skf_module_listed_and_used_through_the_device_service() {
    const NAME: &str = "skf_module_listed_and_used_through_the_device_service";
    let dir = match std::env::var_os(RIG_ENV) {
        Some(d) => PathBuf::from(d),
        None => {
            let dir = tempfile::tempdir().unwrap();
            let out = Command::new(std::env::current_exe().unwrap())
                .args([NAME, "--exact", "--nocapture", "--test-threads=1"])
                .env("KEYBRIDGE_SKF_KEY_DIR", dir.path())
                .env(RIG_ENV, dir.path())
                .output()
                .unwrap();
            let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            assert!(out.status.success() && text.contains("1 passed"), "the child process failed:\n{text}");
            return;
        }
    };
    let (serial, public) = make_key(&dir, "epsilon");
    let file_keys = tempfile::tempdir().unwrap();
    make_key(file_keys.path(), "plain");

    let mut settings = Settings::default();
    settings.set("skf_modules", &format!("[\"{}\"]", module_path().display())).unwrap();
    let prompter = Arc::new(ScriptedPrompter::new());
    let mgr = DeviceManager::new(prompter.clone(), Arc::new(AuditLog::open_in_memory().unwrap()), PinCachePolicy::default());
    for t in kb_service::media::standard_transports(&settings, file_keys.path()) {
        mgr.add_transport(t).unwrap();
    }
    assert!(mgr.wait_enumerated(Duration::from_secs(30)));
    let devices = mgr.devices();
    let skf = devices.iter().find(|d| d.transport == TransportKind::Skf).unwrap_or_else(|| panic!("{devices:?}"));
    assert!(devices.iter().any(|d| d.transport == TransportKind::File), "{devices:?}");
    assert_eq!(skf.id, DeviceId::new(TransportKind::Skf, &serial));
    let containers = mgr.containers(&skf.id, "test").unwrap();
    assert_eq!(containers.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["main"]);

    let scheme = SignatureScheme::sm2_default();
    prompter.push_pin(USER);
    let sig = mgr.sign_message(&skf.id, "main", KeyUsage::Sign, &scheme, b"bid", "test").unwrap();
    public.verify(&scheme, b"bid", &sig).unwrap();
    mgr.pin_cache().clear();
    prompter.push_pin("000000");
    let e = mgr.sign_message(&skf.id, "main", KeyUsage::Sign, &scheme, b"x", "test").unwrap_err();
    assert_eq!(e.code(), ErrorCode::WrongPin);
}
