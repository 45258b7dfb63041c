//! What the device service costs on top of the signature itself: SM2 signatures per
//! second through the service (operation context, device actor, cached PIN, login, the
//! signature verified against the slot's public key, and an audit record in the real
//! SQLite audit log on disk) against direct `kb_crypto` signing with the same key, in
//! the same run. A third column signs and verifies directly, so the verification every
//! signature gets before it leaves the service (a security rule) is shown apart from
//! the service's own machinery.
//!
//! It also prints the parts: one audit record into SQLite alone, SM2 verification alone,
//! and a service round trip without crypto. (The device actor and its callers used to
//! spin briefly before sleeping; with the real audit sink that measured no faster, so
//! they sleep at once: see docs/benchmarks.md.)
//!
//! `cargo bench -p kb-service --bench service_overhead` (optionally `-- <seconds>` per
//! measurement round; default 0.5). Rounds alternate between the two sides, and the
//! best round of each is reported, so a busy machine hurts both alike.

#![allow(clippy::print_stdout)]

use kb_crypto::{PrivateKey, SignatureScheme};
use kb_service::audit::AuditLog;
use kb_service::devices::{DeviceEvent, DeviceManager};
use kb_service::pin_cache::PinCachePolicy;
use kb_service::prompter::ScriptedPrompter;
use kb_token::memory::MemoryTransport;
use kb_types::{Algorithm, KeyUsage, PinKind, TransportKind};
use std::error::Error;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

const PIN: &str = "12345678";
const ROUNDS: usize = 7;

/// Operations per second of `op`, run for about `round`.
fn rate(round: Duration, mut op: impl FnMut() -> Result<(), Box<dyn Error>>) -> Result<f64, Box<dyn Error>> {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < round {
        for _ in 0..16 {
            op()?;
        }
        n += 16;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

type Op<'a> = Box<dyn FnMut() -> Result<(), Box<dyn Error>> + 'a>;

/// Best rate of each side over alternating rounds.
fn compare(round: Duration, mut sides: [Op<'_>; 3]) -> Result<[f64; 3], Box<dyn Error>> {
    let mut best = [0f64; 3];
    for _ in 0..ROUNDS {
        for (b, op) in best.iter_mut().zip(sides.iter_mut()) {
            *b = b.max(rate(round, op)?);
        }
    }
    Ok(best)
}

fn report(what: &str, [direct, checked, service]: [f64; 3]) {
    // Overhead as extra time per signature, relative to the signature alone (and to a
    // signature verified right after, which the service also does).
    let all = (direct / service - 1.0) * 100.0;
    let machinery = (checked / service - 1.0) * 100.0;
    println!("{what:<34} {direct:>8.0} {checked:>10.0} {service:>8.0} {all:>9.1}% {machinery:>10.1}%");
}

fn main() -> Result<(), Box<dyn Error>> {
    let secs: f64 = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(0.5);
    let round = Duration::from_secs_f64(secs);

    let key = PrivateKey::generate(Algorithm::Sm2)?;
    let public = key.public_key();
    let transport = MemoryTransport::new(TransportKind::Pcsc);
    let token = transport.new_token("BENCH", PIN, "admin-pin-0");
    token.put_key("c1", KeyUsage::Sign, key.clone());
    let prompter = Arc::new(ScriptedPrompter::new());
    prompter.push_pin(PIN);
    let dir = tempfile::tempdir()?;
    let audit = Arc::new(AuditLog::open(dir.path().join("audit.db"))?);
    let mgr = DeviceManager::new(prompter.clone(), audit.clone(), PinCachePolicy::default());
    let events = mgr.subscribe();
    let id = transport.insert(token.clone());
    mgr.add_transport(Arc::new(transport))?;
    while !matches!(events.recv_timeout(Duration::from_secs(10))?, DeviceEvent::Added(_)) {}

    let scheme = SignatureScheme::sm2_default();
    let msg = b"20-byte message here";
    let digest = public.message_digest(&scheme, msg)?;
    // The first signature prompts; every later one uses the cached PIN.
    mgr.sign_digest(&id, "c1", KeyUsage::Sign, &scheme, &digest, "bench")?;

    println!("SM2 signatures per second, best of {ROUNDS} alternating rounds of {secs} s; audit: SQLite (WAL) on disk");
    println!("{:<34} {:>8} {:>10} {:>8} {:>10} {:>11}", "", "direct", "+verify", "service", "vs direct", "vs +verify");
    let digests = compare(
        round,
        [
            Box::new(|| {
                black_box(key.sign_digest(&scheme, black_box(&digest))?);
                Ok(())
            }),
            Box::new(|| {
                let sig = key.sign_digest(&scheme, black_box(&digest))?;
                public.verify_digest(&scheme, &digest, &sig)?;
                black_box(sig);
                Ok(())
            }),
            Box::new(|| {
                black_box(mgr.sign_digest(&id, "c1", KeyUsage::Sign, &scheme, black_box(&digest), "bench")?);
                Ok(())
            }),
        ],
    )?;
    report("sign digest (e precomputed)", digests);
    let messages = compare(
        round,
        [
            Box::new(|| {
                black_box(key.sign(&scheme, black_box(msg))?);
                Ok(())
            }),
            Box::new(|| {
                let sig = key.sign(&scheme, black_box(msg))?;
                public.verify(&scheme, msg, &sig)?;
                black_box(sig);
                Ok(())
            }),
            Box::new(|| {
                black_box(mgr.sign_message(&id, "c1", KeyUsage::Sign, &scheme, black_box(msg), "bench")?);
                Ok(())
            }),
        ],
    )?;
    report("sign message (ZA + SM3 + sign)", messages);

    let records = rate(round, || {
        use kb_service::audit::AuditSink;
        let rec = kb_service::audit::AuditRecord {
            time_ms: kb_service::audit::now_ms(),
            client: "bench".into(),
            operation: "sign".into(),
            device_id: id.clone(),
            device_type: TransportKind::Pcsc,
            device_model: "Virtual".into(),
            certificate: String::new(),
            ok: true,
            error: None,
            auth: kb_service::audit::AuthType::PinCached,
        };
        audit.record(&rec)?;
        Ok(())
    })?;
    println!("one audit record into SQLite alone: {:.1} us", 1e6 / records);
    let verifies = rate(round, || {
        let sig = key.sign_digest(&scheme, &digest)?;
        public.verify_digest(&scheme, &digest, &sig)?;
        Ok(())
    })?;
    let signs = rate(round, || {
        black_box(key.sign_digest(&scheme, black_box(&digest))?);
        Ok(())
    })?;
    println!("SM2 verification alone: {:.1} us (signature {:.1} us)", 1e6 / verifies - 1e6 / signs, 1e6 / signs);
    let trip = rate(round, || {
        black_box(mgr.pin_info(&id, PinKind::User, "bench")?);
        Ok(())
    })?;
    println!("service round trip without crypto (pin_info): {:.1} us", 1e6 / trip);

    if prompter.pin_requests().len() != 1 || token.reentries() != 0 {
        return Err("expected exactly one PIN prompt and no re-entry".into());
    }
    let written = audit.count(&kb_service::audit::AuditQuery::default())?;
    println!("audit records written to SQLite: {written}");
    Ok(())
}
