//! The SKF module is loaded into other vendors' processes: it must link only what it
//! needs (issue 11, item 5). Checked on the dependency graph cargo resolves, and on the
//! manifests of both SKF crates.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::Path;
use std::process::Command;

/// Crates (or crate-name prefixes) the module must not link: the device service's
/// storage and the other media's system stacks.
const FORBIDDEN: &[&str] =
    &["rusqlite", "libsqlite3-sys", "pcsc", "hidapi", "cryptoki", "kb-service", "kb-pcsc", "kb-hid", "kb-pkcs11"];

/// `cargo tree -e normal` of one crate, one crate per line.
fn normal_tree(krate: &str) -> String {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args(["tree", "--offline", "-e", "normal", "--prefix", "none", "-p", krate])
        .current_dir(workspace_root())
        .output()
        .unwrap();
    assert!(out.status.success(), "cargo tree failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().parent().unwrap()
}

#[test]
fn the_module_links_no_service_and_no_other_media_stacks() {
    let tree = normal_tree("kb-skf-module");
    let crates: Vec<&str> = tree.lines().filter_map(|l| l.split_whitespace().next()).collect();
    assert!(crates.contains(&"kb-skf-module") && crates.contains(&"kb-token"), "{tree}");
    for c in &crates {
        assert!(!FORBIDDEN.iter().any(|f| c.starts_with(f)), "kb-skf-module links {c}:\n{tree}");
    }
}

/// No dependency of any driver crate (normal, dev or build) is a crate under `bridge/`.
#[test]
fn driver_manifests_name_nothing_under_bridge() {
    let root = workspace_root();
    let bridge: Vec<String> = std::fs::read_dir(root.join("bridge"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().join("Cargo.toml").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(bridge.iter().any(|b| b == "kb-service"), "{bridge:?}");
    // Every driver crate, not only the SKF ones: data flows down only (issue 11, item 5).
    let drivers: Vec<String> = std::fs::read_dir(root.join("drivers"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().join("Cargo.toml").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(drivers.len() >= 12, "{drivers:?}");
    for krate in &drivers {
        let manifest: toml::Table =
            std::fs::read_to_string(root.join("drivers").join(krate).join("Cargo.toml")).unwrap().parse().unwrap();
        for section in ["dependencies", "dev-dependencies", "build-dependencies"] {
            let Some(deps) = manifest.get(section).and_then(|d| d.as_table()) else { continue };
            for (name, spec) in deps {
                let path = spec.get("path").and_then(|p| p.as_str()).unwrap_or("");
                assert!(!bridge.contains(name) && !path.contains("bridge/"), "{krate} [{section}] names {name} ({path})");
            }
        }
    }
}

/// The APDU layer stands on its own: below the Token trait, it links no token, file key
/// or PKI crate (kb-token turns its status words into token errors).
#[test]
fn the_apdu_layer_stands_alone() {
    let tree = normal_tree("kb-apdu");
    let kb: Vec<&str> = tree.lines().filter_map(|l| l.split_whitespace().next()).filter(|c| c.starts_with("kb-")).collect();
    assert!(kb.iter().all(|c| *c == "kb-apdu" || *c == "kb-types"), "kb-apdu links {kb:?}:\n{tree}");
}
