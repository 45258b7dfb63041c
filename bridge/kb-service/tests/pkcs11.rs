//! A PKCS#11 token (SoftHSM2) listed and used through the device service next to a file
//! key, with the transports chosen by `media::standard_transports` from the settings —
//! what every front end does. Skips loudly without SoftHSM2 unless `KB_INTEROP_REQUIRED=1`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use kb_crypto::{HashAlgorithm, SignatureScheme};
use kb_filekey::{CreateOptions, FileToken, KdfParams};
use kb_interop::softhsm::SoftHsm;
use kb_service::audit::AuditLog;
use kb_service::devices::DeviceManager;
use kb_service::pin_cache::PinCachePolicy;
use kb_service::prompter::ScriptedPrompter;
use kb_service::settings::Settings;
use kb_token::Token;
use kb_types::{Algorithm, HasErrorCode, KeyUsage, Pin, TransportKind};
use std::sync::Arc;
use std::time::Duration;

#[test]
fn pkcs11_token_listed_and_signing_next_to_a_file_key() {
    let Some(rig) = SoftHsm::enter("pkcs11_token_listed_and_signing_next_to_a_file_key") else { return };
    rig.init_token("kb-service", "123456", "87654321");
    rig.tool_ok(
        "kb-service",
        &["--login", "--pin", "123456", "--keypairgen", "--key-type", "EC:prime256v1", "--id", "0a", "--label", "p11-sign"],
    );
    let keys = tempfile::tempdir().unwrap();
    let opts = CreateOptions { kdf: KdfParams::weak_for_tests(), ..Default::default() };
    let mut file =
        FileToken::create(keys.path().join("demo.kbkey"), "Demo", &Pin::new("11112222"), &Pin::new("33334444"), opts).unwrap();
    {
        let mut s = file.login(&Pin::new("11112222")).unwrap();
        s.create_container("c").unwrap();
        s.generate_key_pair("c", KeyUsage::Sign, Algorithm::Sm2).unwrap();
    }
    drop(file);

    let mut settings = Settings::default();
    settings.set("pkcs11_modules", &format!("[\"{}\"]", rig.module().display())).unwrap();
    let prompter = Arc::new(ScriptedPrompter::new());
    let mgr = DeviceManager::new(prompter.clone(), Arc::new(AuditLog::open_in_memory().unwrap()), PinCachePolicy::default());
    for t in kb_service::media::standard_transports(&settings, keys.path()) {
        mgr.add_transport(t).unwrap();
    }
    assert!(mgr.wait_enumerated(Duration::from_secs(10)));
    let devices = mgr.devices();
    let kinds: Vec<TransportKind> = devices.iter().map(|d| d.transport).collect();
    assert!(kinds.contains(&TransportKind::File) && kinds.contains(&TransportKind::Pkcs11), "{devices:?}");
    let p11 = devices.iter().find(|d| d.transport == TransportKind::Pkcs11).unwrap();
    assert_eq!(p11.label, "kb-service");
    let containers = mgr.containers(&p11.id, "test").unwrap();
    assert_eq!(containers.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["p11-sign"]);

    // Sign on both media through the service (PIN from the prompter), verify each.
    let file_id = devices.iter().find(|d| d.transport == TransportKind::File).unwrap().id.clone();
    for (id, container, pin, scheme) in [
        (&p11.id, "p11-sign", "123456", SignatureScheme::Ecdsa(HashAlgorithm::Sha256)),
        (&file_id, "c", "11112222", SignatureScheme::sm2_default()),
    ] {
        prompter.push_pin(pin);
        let sig = mgr.sign_message(id, container, KeyUsage::Sign, &scheme, b"bid", "test").unwrap();
        mgr.public_key(id, container, KeyUsage::Sign, "test").unwrap().verify(&scheme, b"bid", &sig).unwrap();
    }
    // A wrong PIN on the PKCS#11 medium keeps its stable code through the service.
    mgr.pin_cache().clear();
    prompter.push_pin("000000");
    let e = mgr.sign_message(&p11.id, "p11-sign", KeyUsage::Sign, &SignatureScheme::Ecdsa(HashAlgorithm::Sha256), b"x", "test");
    assert_eq!(e.unwrap_err().code(), kb_types::ErrorCode::WrongPin);

    // Removed at run time: the service forgets it and keeps serving the file key.
    rig.delete_token("kb-service");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while mgr.devices().iter().any(|d| d.transport == TransportKind::Pkcs11) {
        assert!(std::time::Instant::now() < deadline, "PKCS#11 token still listed");
        std::thread::sleep(Duration::from_millis(50));
    }
    prompter.push_pin("11112222");
    mgr.sign_message(&file_id, "c", KeyUsage::Sign, &SignatureScheme::sm2_default(), b"still here", "test").unwrap();
}
