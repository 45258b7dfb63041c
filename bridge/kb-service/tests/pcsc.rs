//! The device service over a real PC/SC card: pcscd with vsmartcard's vpcd reader and
//! the independent PyPI OpenPGP card emulator (the rig of `drivers/kb-pcsc/tests/rig`).
//! Lives here, not in kb-pcsc, because drivers never depend on the service above them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stdout)]

#[path = "../../../drivers/kb-pcsc/tests/rig/mod.rs"]
mod rig;

use kb_crypto::{HashAlgorithm, PrivateKey, SignatureScheme};
use kb_openpgp::CONTAINER;
use kb_pcsc::PcscTransport;
use kb_service::audit::{AuditRecord, AuditSink};
use kb_service::devices::{DeviceEvent, DeviceManager};
use kb_service::pin_cache::PinCachePolicy;
use kb_service::prompter::ScriptedPrompter;
use kb_token::memory::MemoryTransport;
use kb_types::{Algorithm, ErrorCode, HasErrorCode, KeyUsage, TransportKind};
use rig::{Rig, USER_PIN};
use std::sync::Arc;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

#[derive(Default)]
struct NoAudit;
impl AuditSink for NoAudit {
    fn record(&self, _: &AuditRecord) -> kb_service::Result<()> {
        Ok(())
    }
}

fn wait_device(rx: &Receiver<DeviceEvent>, within: Duration, pred: impl Fn(&DeviceEvent) -> bool) -> DeviceEvent {
    let deadline = Instant::now() + within;
    let mut seen = Vec::new();
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(e) if pred(&e) => return e,
            Ok(e) => seen.push(e),
            Err(_) => panic!("device event not seen within {within:?}; saw {seen:?}"),
        }
    }
}

/// The card process is killed in the middle of a signature: the signature fails with
/// device_removed at once (not when the card's stall would have ended), the device manager
/// reports Removed, and another medium keeps working.
#[test]
fn card_pulled_mid_signature_fails_fast_and_the_service_keeps_serving() {
    let Some(rig) = Rig::start() else { return };
    // A personalized card stalling 30 s in every PSO:CDS, so the kill lands mid-command and
    // an error that waited for the stall to end is told apart from one caused by the kill
    // however busy the machine is.
    let mut card = rig.insert_personalized_slow("pulled", "00000004", 30.0);
    let prompter = Arc::new(ScriptedPrompter::new());
    let manager = DeviceManager::new(prompter.clone(), Arc::new(NoAudit), PinCachePolicy::Off);
    let events = manager.subscribe();
    let memory = Arc::new(MemoryTransport::new(TransportKind::File));
    let mem = memory.new_token("other", "87654321", "so-pin-0000");
    mem.put_key("c", KeyUsage::Sign, PrivateKey::generate(Algorithm::EcdsaP256).unwrap());
    let mem_id = memory.insert(mem);
    manager.add_transport(memory).unwrap();
    manager.add_transport(Arc::new(PcscTransport::new())).unwrap();
    let id = match wait_device(
        &events,
        Duration::from_secs(5),
        |e| matches!(e, DeviceEvent::Added(i) if i.transport == TransportKind::Pcsc),
    ) {
        DeviceEvent::Added(i) => i.id,
        _ => unreachable!(),
    };
    let pk = manager.public_key(&id, CONTAINER, KeyUsage::Sign, "test").unwrap();
    let scheme = SignatureScheme::Ecdsa(HashAlgorithm::Sha256);
    let digest = pk.message_digest(&scheme, b"pulled mid-signature").unwrap();
    prompter.push_pin(USER_PIN);
    let (m2, id2, scheme2, digest2) = (manager.clone(), id.clone(), scheme.clone(), digest.clone());
    let signing = std::thread::spawn(move || {
        let r = m2.sign_digest(&id2, CONTAINER, KeyUsage::Sign, &scheme2, &digest2, "test");
        (r, Instant::now())
    });
    card.wait_for_log("stalling PSO:CDS", Duration::from_secs(60));
    let pulled = Instant::now();
    card.pull();
    let (r, done) = signing.join().unwrap();
    let err = r.unwrap_err();
    let took = done.saturating_duration_since(pulled);
    println!("card pulled mid-signature -> error {} ({}) after {} ms", err.code().number(), err.code().name(), took.as_millis());
    assert_eq!(err.code(), ErrorCode::DeviceRemoved, "{err}");
    // Not a timing check: the card would have answered after 30 s; an error within 20 s of
    // the kill came from the kill, not from the end of the stall.
    assert!(took < Duration::from_secs(20), "the error waited for the card's stall ({took:?})");
    wait_device(&events, Duration::from_secs(30), |e| e == &DeviceEvent::Removed(id.clone()));
    // The other medium is still served.
    prompter.push_pin("87654321");
    let mpk = manager.public_key(&mem_id, "c", KeyUsage::Sign, "test").unwrap();
    let d = mpk.message_digest(&scheme, b"still here").unwrap();
    let sig = manager.sign_digest(&mem_id, "c", KeyUsage::Sign, &scheme, &d, "test").unwrap();
    mpk.verify_digest(&scheme, &d, &sig).unwrap();
    assert!(manager.devices().iter().all(|d| d.id != id));
}
