//! Sign an update manifest for the app's update check (what the release server publishes).
//!
//! ```sh
//! cargo run -p kb-desktop --example sign_update_manifest -- release-key.pem manifest.json > latest.json
//! ```
//!
//! `release-key.pem`: the PKCS#8 PEM private key whose public half is pinned in the app
//! (`bridge/kb-desktop/keys/update-release.pem`; SM2 or P-256), e.g. made with
//! `openssl genpkey -algorithm SM2 -out release-key.pem` and
//! `openssl pkey -in release-key.pem -pubout`. `manifest.json`: `{"version": …, "notes": …,
//! "url": …, "sha256": …}`, signed byte for byte as it is.
#![allow(clippy::print_stdout)]

use kb_desktop::update::SignedManifest;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [key, manifest] = args.as_slice() else {
        return Err("usage: sign_update_manifest <release-key.pem> <manifest.json>".into());
    };
    let key = kb_crypto::PrivateKey::from_pkcs8_pem(&std::fs::read_to_string(key)?)?;
    let signed = SignedManifest::sign(&std::fs::read(manifest)?, &key)?;
    println!("{}", serde_json::to_string_pretty(&signed)?);
    Ok(())
}
