//! Commands over certificate and signature files: `cert show`, `verify`, `encrypt`.

use crate::output::{CliError, CliResult, Out};
use clap::{Args, Subcommand, ValueEnum};
use kb_pki::chain::{TrustStore, verify_chain};
use kb_pki::cms::SignedMessage;
use kb_pki::cms::envelope::{self, EnvelopeOptions};
use kb_pki::time::UnixTime;
use kb_pki::{Certificate, cert::DEFAULT_WARN_DAYS};
use kb_types::HashAlgorithm;
use serde::Serialize;
use std::fs::File;
use std::path::PathBuf;

#[derive(Args)]
pub(crate) struct CertArgs {
    #[command(subcommand)]
    cmd: CertCmd,
}

#[derive(Subcommand)]
enum CertCmd {
    /// Show a certificate file (DER, PEM or base64): subject, issuer, validity, usage, extensions.
    Show {
        /// The certificate file.
        #[arg(long)]
        file: PathBuf,
        /// Thumbprint algorithm(s) to show (default SHA-1).
        #[arg(long, value_enum, default_values_t = [Thumb::Sha1])]
        thumbprint: Vec<Thumb>,
        /// Check the chain against these trust anchors (PEM bundle).
        #[arg(long)]
        ca: Option<PathBuf>,
        /// Intermediate certificates (PEM bundle).
        #[arg(long)]
        intermediates: Option<PathBuf>,
        /// Near-expiry window in days.
        #[arg(long, default_value_t = DEFAULT_WARN_DAYS)]
        warn_days: i64,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum Thumb {
    Sha1,
    Sm3,
    Sha256,
    Md5,
}

impl Thumb {
    fn alg(self) -> HashAlgorithm {
        match self {
            Thumb::Sha1 => HashAlgorithm::Sha1,
            Thumb::Sm3 => HashAlgorithm::Sm3,
            Thumb::Sha256 => HashAlgorithm::Sha256,
            Thumb::Md5 => HashAlgorithm::Md5,
        }
    }
}

fn read(path: &PathBuf) -> CliResult<Vec<u8>> {
    std::fs::read(path).map_err(|e| CliError::io(&path.display().to_string(), e))
}

fn load_bundle(path: &Option<PathBuf>) -> CliResult<Vec<Certificate>> {
    match path {
        None => Ok(Vec::new()),
        Some(p) => {
            let text = String::from_utf8(read(p)?).map_err(|_| CliError::input(format!("{} is not a PEM file", p.display())))?;
            Ok(Certificate::load_pem_chain(&text)?)
        }
    }
}

#[derive(Serialize)]
struct ChainStatus {
    ok: bool,
    code: Option<u32>,
    reason: Option<String>,
    length: usize,
}

fn chain_status(
    cert: &Certificate,
    ca: &Option<PathBuf>,
    mids: &Option<PathBuf>,
    lang: kb_types::Lang,
) -> CliResult<Option<ChainStatus>> {
    if ca.is_none() {
        return Ok(None);
    }
    let trust = TrustStore::from_certs(load_bundle(ca)?);
    let intermediates = load_bundle(mids)?;
    Ok(Some(match verify_chain(cert, &intermediates, &trust, UnixTime::now()) {
        Ok(c) => ChainStatus { ok: true, code: None, reason: None, length: c.certificates.len() },
        Err(e) => {
            use kb_types::HasErrorCode;
            let code = e.code();
            ChainStatus { ok: false, code: Some(code.number()), reason: Some(format!("{} ({e})", code.message(lang))), length: 0 }
        }
    }))
}

pub(crate) fn cert(out: &Out, args: CertArgs) -> CliResult {
    match args.cmd {
        CertCmd::Show { file, thumbprint, ca, intermediates, warn_days } => {
            let cert = Certificate::from_any(&read(&file)?)?;
            let info = cert.info(UnixTime::now(), warn_days);
            let thumbs: Vec<(String, String)> =
                thumbprint.iter().map(|t| (t.alg().name().to_string(), cert.thumbprint(t.alg()))).collect();
            let chain = chain_status(&cert, &ca, &intermediates, out.lang())?;
            #[derive(Serialize)]
            struct Shown<'a> {
                #[serde(flatten)]
                info: &'a kb_pki::cert::CertificateInfo,
                thumbprints: std::collections::BTreeMap<String, String>,
                chain: Option<ChainStatus>,
            }
            let shown = Shown { info: &info, thumbprints: thumbs.iter().cloned().collect(), chain };
            out.show(&shown, || {
                let mut s = String::new();
                let mut line = |k: &str, v: &str| s.push_str(&format!("{k:<22}{v}\n"));
                line("主题 subject", &info.subject);
                line("颁发者 issuer", &info.issuer);
                line("序列号 serial", &info.serial);
                line("有效期 validity", &format!("{} → {}", info.not_before, info.not_after));
                line("状态 status", &format!("{:?}, {} days left", info.status, info.days_left));
                line("公钥 public key", &info.public_key_description);
                line("签名算法 signature", &info.signature_algorithm);
                line("类型 usage", &format!("{} [{}]", info.usage, info.key_usage.join(", ")));
                if !info.extended_key_usage.is_empty() {
                    line("扩展用途 EKU", &info.extended_key_usage.join(", "));
                }
                for (alg, t) in &thumbs {
                    line(&format!("指纹 {alg}"), t);
                }
                for e in &info.extensions {
                    let name = e.name.clone().unwrap_or_else(|| e.oid.clone());
                    line(&format!("扩展 {}", if e.critical { "(critical)" } else { "" }), &format!("{name}: {}", e.value));
                }
                if let Some(c) = &shown.chain {
                    match &c.reason {
                        None => line("证书链 chain", &format!("OK ({} certificates)", c.length)),
                        Some(r) => line("证书链 chain", &format!("FAILED: {r}")),
                    }
                }
                s.trim_end().to_string()
            });
            match shown.chain {
                Some(ChainStatus { ok: false, code: Some(n), reason, .. }) => Err(CliError {
                    code: kb_types::ErrorCode::from_number(n).unwrap_or(kb_types::ErrorCode::Internal),
                    detail: reason.unwrap_or_default(),
                }),
                _ => Ok(()),
            }
        }
    }
}

#[derive(Args)]
pub(crate) struct VerifyArgs {
    /// The signature: CMS/PKCS#7 (DER, BER or PEM).
    #[arg(long)]
    sig: PathBuf,
    /// The signed content, for a detached signature (streamed, any size).
    #[arg(long = "in")]
    input: Option<PathBuf>,
    /// Trust anchors (PEM bundle) to check the signer's chain against.
    #[arg(long)]
    ca: Option<PathBuf>,
}

#[derive(Serialize)]
struct Verified {
    ok: bool,
    signers: Vec<VerifiedSigner>,
    detached: bool,
}

#[derive(Serialize)]
struct VerifiedSigner {
    subject: String,
    serial: String,
    signing_time: Option<String>,
    digest: String,
    chain: Option<ChainStatus>,
}

pub(crate) fn verify(out: &Out, args: VerifyArgs) -> CliResult {
    let msg = SignedMessage::from_der(&read(&args.sig)?)?;
    let reports = match (&args.input, msg.is_detached()) {
        (Some(p), true) => msg.verify_reader(File::open(p).map_err(|e| CliError::io(&p.display().to_string(), e))?, &[])?,
        (Some(p), false) => {
            // Attached: the given file must equal the embedded content.
            let given = read(p)?;
            if msg.content() != Some(&given[..]) {
                return Err(kb_pki::PkiError::CmsDigestMismatch.into());
            }
            msg.verify(None, &[])?
        }
        (None, _) => msg.verify(None, &[])?,
    };
    let mut signers = Vec::new();
    let mut chain_failed = None;
    for r in &reports {
        let chain = match &args.ca {
            Some(_) => {
                let trust = TrustStore::from_certs(load_bundle(&args.ca)?);
                Some(match verify_chain(&r.signer, msg.certificates(), &trust, r.signing_time.unwrap_or_else(UnixTime::now)) {
                    Ok(c) => ChainStatus { ok: true, code: None, reason: None, length: c.certificates.len() },
                    Err(e) => {
                        use kb_types::HasErrorCode;
                        let s = ChainStatus { ok: false, code: Some(e.code().number()), reason: Some(e.to_string()), length: 0 };
                        chain_failed.get_or_insert(CliError::from(e));
                        s
                    }
                })
            }
            None => None,
        };
        signers.push(VerifiedSigner {
            subject: r.signer.subject(),
            serial: r.signer.serial_hex(),
            signing_time: r.signing_time.map(|t| t.to_rfc3339()),
            digest: r.digest_algorithm.name().to_string(),
            chain,
        });
    }
    let v = Verified { ok: chain_failed.is_none(), signers, detached: msg.is_detached() };
    out.show(&v, || {
        let mut s = String::from(if v.ok {
            "签名有效 signature OK\n"
        } else {
            "签名有效，但证书链验证失败 signature OK, chain FAILED\n"
        });
        for g in &v.signers {
            s.push_str(&format!(
                "  signer {} (serial {}), {} , time {}\n",
                g.subject,
                g.serial,
                g.digest,
                g.signing_time.as_deref().unwrap_or("-")
            ));
            if let Some(c) = &g.chain {
                s.push_str(&format!("  chain {}\n", if c.ok { "OK".to_string() } else { c.reason.clone().unwrap_or_default() }));
            }
        }
        s.trim_end().to_string()
    });
    chain_failed.map_or(Ok(()), Err)
}

#[derive(Args)]
pub(crate) struct EncryptArgs {
    /// Recipient encryption certificate(s) (repeat for several).
    #[arg(long = "to", required = true)]
    to: Vec<PathBuf>,
    /// The file to seal (streamed, any size).
    #[arg(long = "in")]
    input: PathBuf,
    /// Where to write the envelope (DER).
    #[arg(long)]
    out: PathBuf,
}

pub(crate) fn encrypt(out: &Out, args: EncryptArgs) -> CliResult {
    let recipients = args.to.iter().map(|p| Ok(Certificate::from_any(&read(p)?)?)).collect::<CliResult<Vec<_>>>()?;
    let src = File::open(&args.input).map_err(|e| CliError::io(&args.input.display().to_string(), e))?;
    let len = src.metadata().map_err(|e| CliError::io("input", e))?.len();
    // Write next to the destination and rename, so a failure never leaves half an envelope.
    let tmp = args.out.with_extension("kbtmp");
    let dst = File::create(&tmp).map_err(|e| CliError::io(&tmp.display().to_string(), e))?;
    let written = envelope::encrypt(
        std::io::BufReader::new(src),
        std::io::BufWriter::new(dst),
        Some(len),
        &recipients,
        &EnvelopeOptions::default(),
    );
    let written = match written {
        Ok(n) => n,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e.into());
        }
    };
    std::fs::rename(&tmp, &args.out).map_err(|e| CliError::io(&args.out.display().to_string(), e))?;
    #[derive(Serialize)]
    struct Sealed {
        out: String,
        bytes_in: u64,
        bytes_out: u64,
        recipients: Vec<String>,
    }
    let s = Sealed {
        out: args.out.display().to_string(),
        bytes_in: len,
        bytes_out: written,
        recipients: recipients.iter().map(Certificate::subject).collect(),
    };
    out.show(&s, || {
        format!("已加密 sealed {} bytes → {} ({} bytes) for {}", s.bytes_in, s.out, s.bytes_out, s.recipients.join("; "))
    });
    Ok(())
}
