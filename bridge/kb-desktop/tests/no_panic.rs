//! The update check's response parser never panics and keeps its invariants, whatever a
//! server sends: the libFuzzer target's body (`tests/fuzz/src/update.rs`) over the
//! committed seeds (which must all be accepted) and 5,000 mutations of them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

#[allow(unreachable_pub, dead_code)]
#[path = "../../../tests/fuzz/src/update.rs"]
mod harness;
#[allow(unreachable_pub, dead_code)]
#[path = "../../../tests/fuzz/src/mutator.rs"]
mod mutator;

#[test]
fn update_responses_never_panic() {
    mutator::run(env!("CARGO_MANIFEST_DIR"), "update_manifest", harness::update_manifest, 5_000);
}

/// `KB_REGEN=1 cargo test -p kb-desktop --test no_panic` re-signs the seeds: a seed whose
/// body is a bare manifest gets the signed form, made with the fuzzing key.
#[test]
fn seeds_are_signed_on_request() {
    if std::env::var_os("KB_REGEN").is_none() {
        return;
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fuzz/seeds/update_manifest");
    for e in std::fs::read_dir(&dir).unwrap() {
        let path = e.unwrap().path();
        let raw = std::fs::read(&path).unwrap();
        let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let body: serde_json::Value = serde_json::from_slice(&raw[split..]).unwrap();
        if body.get("signature").is_some() {
            continue;
        }
        let signed = kb_desktop::update::SignedManifest::sign(&raw[split..], &harness::fuzz_key()).unwrap();
        let mut out = raw[..split].to_vec();
        out.extend(serde_json::to_vec(&signed).unwrap());
        std::fs::write(&path, out).unwrap();
    }
}
