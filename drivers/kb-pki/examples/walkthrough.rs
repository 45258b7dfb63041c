//! KeyBridge foundation walkthrough: what a user's SM2 key does, end to end, on this
//! machine, with nothing but the library.
//!
//! Creates (in `./keybridge-demo/`, or the directory given as the first argument) a
//! local demo CA, an SM2 dual-certificate pair for a demo bidder, then signs a bid
//! file (CMS detached, GM/T 0010), verifies it with its chain, seals the bid in a
//! digital envelope to the encryption certificate and opens it again. Every artefact
//! is written as a file so it can be checked with OpenSSL (commands are printed).
#![allow(clippy::print_stdout)]

use kb_crypto::{HashAlgorithm, PrivateKey};
use kb_pki::chain::{TrustStore, verify_chain};
use kb_pki::cms::envelope::{self, EnvelopeOptions};
use kb_pki::cms::{LocalDecrypter, SignOptions, SignedMessage, sign_detached_digest};
use kb_pki::issue::{CertKind, CertificateParams, issue_dual, self_signed};
use kb_pki::time::UnixTime;
use kb_pki::{Certificate, LocalSigner, Signer};
use kb_types::{Algorithm, HasErrorCode, Lang};
use std::fs;
use std::path::{Path, PathBuf};

fn main() {
    let dir = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "keybridge-demo".into()));
    if let Err(e) = run(&dir) {
        let code = e.code();
        eprintln!(
            "错误 {} ({}): {}\nerror {}: {e}",
            code.number(),
            code.message(Lang::ZhCn),
            code.message(Lang::En),
            code.name()
        );
        std::process::exit(1);
    }
}

fn show(label: &str, cert: &Certificate) {
    let info = cert.info(UnixTime::now(), kb_pki::cert::DEFAULT_WARN_DAYS);
    println!("  {label}");
    println!("    主题 subject      {}", info.subject);
    println!("    颁发者 issuer     {}", info.issuer);
    println!("    序列号 serial     {}", info.serial);
    println!("    有效期 validity   {} → {} ({} days left, {:?})", info.not_before, info.not_after, info.days_left, info.status);
    println!("    公钥 public key   {}", info.public_key_description);
    println!("    用途 usage        {} [{}]", info.role, info.key_usage.join(", "));
    println!("    SHA-1 thumbprint  {}", info.thumbprint_sha1);
    println!("    SM3 thumbprint    {}", cert.thumbprint(HashAlgorithm::Sm3));
}

fn save(dir: &Path, name: &str, data: impl AsRef<[u8]>) -> kb_pki::Result<String> {
    let p = dir.join(name);
    fs::write(&p, data)?;
    Ok(p.display().to_string())
}

fn run(dir: &Path) -> kb_pki::Result<()> {
    fs::create_dir_all(dir)?;
    let now = UnixTime::now();
    println!("KeyBridge foundation walkthrough — files in {}\n", dir.display());

    println!("1. 本地演示 CA (local demo CA, SM2-with-SM3, clearly not a real CA)");
    let ca_signer = LocalSigner::new(PrivateKey::generate(Algorithm::Sm2)?);
    let ca = self_signed(
        &CertificateParams::new(
            "C=CN,O=KeyBridge 演示 CA (DEMO ONLY),CN=KeyBridge Demo Root",
            CertKind::Root { path_len: Some(0) },
            now,
            3650,
        ),
        &ca_signer,
    )?;
    show("root", &ca);

    println!("\n2. 双证书 (SM2 dual-certificate pair: one signing key, one encryption key)");
    let sign_key = PrivateKey::generate(Algorithm::Sm2)?;
    let enc_key = PrivateKey::generate(Algorithm::Sm2)?;
    let (sign_cert, enc_cert) = issue_dual(
        "C=CN,ST=广东,O=演示建设集团有限公司,OU=投标部,CN=张三",
        now,
        365,
        &sign_key.public_key(),
        &enc_key.public_key(),
        &ca,
        &ca_signer,
    )?;
    show("signing certificate 签名证书", &sign_cert);
    show("encryption certificate 加密证书", &enc_cert);
    let ca_pem = save(dir, "ca.pem", ca.to_pem())?;
    let sign_pem = save(dir, "sign.pem", sign_cert.to_pem())?;
    save(dir, "enc.pem", enc_cert.to_pem())?;

    println!("\n3. 证书链 (chain check against the demo root)");
    let chain = verify_chain(&sign_cert, &[], &TrustStore::from_certs([ca.clone()]), now)?;
    println!("  OK: {} certificates, anchor {}", chain.certificates.len(), ca.subject());

    println!("\n4. 签名 (detached CMS SignedData over a bid file, content hashed as a stream)");
    let bid: Vec<u8> = "投标文件：某某道路工程施工，投标报价 12,345,678.00 元。\n".repeat(20_000).into_bytes();
    let bid_path = save(dir, "bid.txt", &bid)?;
    let signer = LocalSigner::new(sign_key);
    let digest = kb_crypto::hash::digest_reader(signer.scheme().hash(), fs::File::open(&bid_path)?)?;
    let sig = sign_detached_digest(&digest, &signer, &sign_cert, &SignOptions::default())?;
    let sig_path = save(dir, "bid.txt.p7s", &sig)?;
    let msg = SignedMessage::from_der(&sig)?;
    let report = msg.verify_reader(fs::File::open(&bid_path)?, &[])?;
    println!("  signed {} bytes → {sig_path} ({} bytes, {:?} profile)", bid.len(), sig.len(), msg.profile());
    println!(
        "  verified: signer {}, signing time {}",
        report[0].signer.subject(),
        report[0].signing_time.map(|t| t.to_string()).unwrap_or_default()
    );

    println!("\n5. 数字信封 (EnvelopedData: SM4-CBC content, key wrapped with SM2 to the encryption certificate)");
    let env_path = dir.join("bid.txt.p7e");
    let n = envelope::encrypt(
        fs::File::open(&bid_path)?,
        fs::File::create(&env_path)?,
        Some(bid.len() as u64),
        std::slice::from_ref(&enc_cert),
        &EnvelopeOptions::default(),
    )?;
    println!("  sealed → {} ({n} bytes)", env_path.display());
    let opened = dir.join("bid.opened.txt");
    let d = LocalDecrypter::new(enc_key, enc_cert)?;
    envelope::decrypt(fs::File::open(&env_path)?, fs::File::create(&opened)?, &d)?;
    let same = fs::read(&opened)? == bid;
    println!("  opened → {} (identical to the original: {same})", opened.display());
    if !same {
        return Err(kb_pki::PkiError::CmsDigestMismatch);
    }

    println!("\nCheck the certificates yourself with OpenSSL 3 (SM2 needs the ID):");
    println!("  openssl verify -CAfile {ca_pem} -vfyopt distid:1234567812345678 {sign_pem}");
    println!("  openssl x509 -in {sign_pem} -noout -text -nameopt utf8");
    Ok(())
}
