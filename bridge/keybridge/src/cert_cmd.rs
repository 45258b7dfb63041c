//! Certificates and signatures: `cert show` / `cert export` (a file or a medium's
//! slot), `verify` (CMS, or raw with a certificate), `encrypt` (to certificate files
//! and/or a medium's encryption certificate).

use crate::ctx::{App, CLIENT, DeviceSel, read_file, write_atomic};
use crate::input::{CMS, read_certificate, read_certificates, read_der};
use crate::output::{CliError, CliResult};
use clap::{Args, Subcommand, ValueEnum};
use kb_pki::chain::{TrustStore, verify_chain};
use kb_pki::cms::SignedMessage;
use kb_pki::cms::envelope::{self, EnvelopeOptions};
use kb_pki::time::UnixTime;
use kb_pki::{Certificate, cert::DEFAULT_WARN_DAYS};
use kb_service::revocation::RevocationSummary;
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
    /// Show a certificate — a file (DER, PEM or base64) or a medium's (--device
    /// --container --usage, default the signing one): subject, issuer, validity, usage,
    /// extensions, thumbprints, chain.
    Show {
        /// The certificate file (instead of a medium).
        #[arg(long, conflicts_with = "device")]
        file: Option<PathBuf>,
        #[command(flatten)]
        sel: DeviceSel,
        /// Thumbprint algorithm(s) to show (default SHA-1).
        #[arg(long, value_enum, default_values_t = [Thumb::Sha1])]
        thumbprint: Vec<Thumb>,
        /// Check the chain against these trust anchors (PEM bundle).
        #[arg(long)]
        ca: Option<PathBuf>,
        /// Intermediate certificates (PEM bundle).
        #[arg(long)]
        intermediates: Option<PathBuf>,
        /// Near-expiry window in days (default: the settings' near_expiry_warning_days for
        /// a medium's certificate, 90 for a file).
        #[arg(long)]
        warn_days: Option<i64>,
    },
    /// Save a medium's certificate to a file (DER, or PEM with --pem).
    Export {
        #[command(flatten)]
        sel: DeviceSel,
        /// Where to write it.
        #[arg(long)]
        out: PathBuf,
        /// PEM instead of DER.
        #[arg(long)]
        pem: bool,
    },
}

/// A medium's certificate for a selector (usage defaults to the signing one).
pub(crate) fn device_certificate(app: &App, sel: &DeviceSel, default: kb_types::KeyUsage) -> CliResult<(Certificate, i64)> {
    let d = app.devices()?;
    let (dev, container, usage) = d.slot(sel, default)?;
    let cert = d
        .manager
        .certificate(&dev.id, &container, usage, CLIENT)?
        .ok_or_else(|| crate::device_cmd::no_certificate(&dev.id, &container, usage))?;
    Ok((cert, d.home.warn_days()))
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

fn load_bundle(path: &Option<PathBuf>) -> CliResult<Vec<Certificate>> {
    match path {
        None => Ok(Vec::new()),
        Some(p) => read_certificates(p),
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

pub(crate) fn cert(app: &App, args: CertArgs) -> CliResult {
    let out = &app.out;
    match args.cmd {
        CertCmd::Export { sel, out: path, pem } => {
            let (cert, _) = device_certificate(app, &sel, kb_types::KeyUsage::Sign)?;
            if pem {
                write_atomic(&path, cert.to_pem().as_bytes())?;
            } else {
                write_atomic(&path, cert.der())?;
            }
            #[derive(Serialize)]
            struct Exported {
                out: String,
                subject: String,
                serial: String,
                format: &'static str,
            }
            let e = Exported {
                out: path.display().to_string(),
                subject: cert.subject(),
                serial: cert.serial_hex(),
                format: if pem { "pem" } else { "der" },
            };
            out.show(&e, || format!("{} {} → {} ({})", out.t("已导出证书", "certificate saved"), e.subject, e.out, e.format));
            Ok(())
        }
        CertCmd::Show { file, sel, thumbprint, ca, intermediates, warn_days } => {
            let (cert, default_warn) = match &file {
                Some(f) => (read_certificate(f)?, DEFAULT_WARN_DAYS),
                None => device_certificate(app, &sel, kb_types::KeyUsage::Sign)?,
            };
            let info = cert.info(UnixTime::now(), warn_days.unwrap_or(default_warn));
            let thumbs: Vec<(String, String)> =
                thumbprint.iter().map(|t| (t.alg().name().to_string(), cert.thumbprint(t.alg()))).collect();
            let chain = chain_status(&cert, &ca, &intermediates, out.lang())?;
            // Revocation: against the chain given (--ca), else the home's trust anchors.
            let home = app.home()?;
            let trust = match &ca {
                Some(_) => TrustStore::from_certs(load_bundle(&ca)?),
                None => kb_service::trust::user_store(&home.paths),
            };
            let mids = load_bundle(&intermediates)?;
            let revocation = home.revocation().summary(&cert, &mids, &trust, &[], UnixTime::now());
            #[derive(Serialize)]
            struct Shown<'a> {
                #[serde(flatten)]
                info: &'a kb_pki::cert::CertificateInfo,
                thumbprints: std::collections::BTreeMap<String, String>,
                chain: Option<ChainStatus>,
                revocation: RevocationSummary,
            }
            let shown = Shown { info: &info, thumbprints: thumbs.iter().cloned().collect(), chain, revocation };
            out.show(&shown, || {
                let mut s = String::new();
                let mut line = |k: &str, v: &str| s.push_str(&format!("{}{v}\n", crate::output::pad(k, 22)));
                line("主题 subject", &info.subject);
                line("颁发者 issuer", &info.issuer);
                line("序列号 serial", &info.serial);
                line("有效期 validity", &format!("{} → {}", info.not_before, info.not_after));
                line(
                    "状态 status",
                    &format!(
                        "{} ({:?}), {} days left",
                        crate::device_cmd::status_text(out.lang(), info.status),
                        info.status,
                        info.days_left
                    ),
                );
                line("公钥 public key", &info.public_key_description);
                line("签名算法 signature", &info.signature_algorithm);
                line("类型 usage", &format!("{} [{}]", info.role, info.key_usage.join(", ")));
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
                line("吊销状态 revocation", &kb_service::revocation::text(&shown.revocation, out.lang()));
                s.trim_end().to_string()
            });
            match shown.chain {
                Some(ChainStatus { ok: false, code: Some(n), reason, .. }) => Err(CliError::new(
                    kb_types::ErrorCode::from_number(n).unwrap_or(kb_types::ErrorCode::Internal),
                    reason.unwrap_or_default(),
                )),
                _ => Ok(()),
            }
        }
    }
}

#[derive(Args)]
pub(crate) struct VerifyArgs {
    /// The signature: CMS/PKCS#7 (DER, BER or PEM), or with --raw a bare signature.
    #[arg(long)]
    sig: PathBuf,
    /// The signed content, for a detached or raw signature (streamed, any size).
    #[arg(long = "in")]
    input: Option<PathBuf>,
    /// Trust anchors (PEM bundle) to check the signer's chain against.
    #[arg(long)]
    ca: Option<PathBuf>,
    /// A raw signature (SM2 DER or r‖s, ECDSA, RSA PKCS#1) over --in, checked with the
    /// signer's certificate (--cert) or a medium's (--device --container --usage).
    #[arg(long)]
    raw: bool,
    /// The signer's certificate, for --raw.
    #[arg(long, requires = "raw", conflicts_with = "device")]
    cert: Option<PathBuf>,
    /// SM2 distinguishing ID, for --raw (default 1234567812345678).
    #[arg(long, requires = "raw", value_name = "SM2ID")]
    id: Option<String>,
    #[command(flatten)]
    sel: DeviceSel,
}

fn verify_raw(app: &App, args: VerifyArgs) -> CliResult {
    use kb_crypto::SignatureScheme;
    let input = args.input.as_ref().ok_or_else(|| CliError::input("--raw needs --in (the signed file)"))?;
    let (public, cert) = match &args.cert {
        Some(p) => {
            let c = read_certificate(p)?;
            (c.public_key()?, Some(c))
        }
        None => {
            let d = app.devices()?;
            let (dev, container, usage) = d.slot(&args.sel, kb_types::KeyUsage::Sign)?;
            match d.manager.certificate(&dev.id, &container, usage, CLIENT)? {
                Some(c) => (c.public_key()?, Some(c)),
                None => (d.manager.public_key(&dev.id, &container, usage, CLIENT)?, None),
            }
        }
    };
    let scheme = match (public.algorithm(), &args.id) {
        (kb_types::Algorithm::Sm2, Some(id)) => SignatureScheme::Sm2Sm3 { id: id.as_bytes().to_vec() },
        (_, Some(_)) => return Err(CliError::input("--id applies to SM2 keys only")),
        (alg, None) => SignatureScheme::default_for(alg),
    };
    let sig = read_file(&args.sig)?;
    let (file, _) = crate::ctx::open_file(input)?;
    let digest = crate::crypto_cmd::hash_stream(file, public.hasher(&scheme)?, input)?;
    public.verify_digest(&scheme, &digest, &sig)?;
    let chain = match &cert {
        Some(c) => chain_status(c, &args.ca, &None, app.out.lang())?,
        None => None,
    };
    let revocation = match (&cert, &chain) {
        (Some(c), Some(ChainStatus { ok: true, .. })) => {
            let trust = TrustStore::from_certs(load_bundle(&args.ca)?);
            Some(app.home()?.revocation().summary(c, &[], &trust, &[], UnixTime::now()))
        }
        _ => None,
    };
    #[derive(Serialize)]
    struct RawVerified {
        ok: bool,
        raw: bool,
        algorithm: kb_types::Algorithm,
        sm2_id: Option<String>,
        subject: Option<String>,
        serial: Option<String>,
        chain: Option<ChainStatus>,
        revocation: Option<RevocationSummary>,
    }
    let chain_failed = chain.as_ref().is_some_and(|c| !c.ok);
    let revoked = revocation.as_ref().is_some_and(RevocationSummary::is_revoked);
    let v = RawVerified {
        ok: !chain_failed && !revoked,
        raw: true,
        algorithm: public.algorithm(),
        sm2_id: args.id.clone(),
        subject: cert.as_ref().map(Certificate::subject),
        serial: cert.as_ref().map(Certificate::serial_hex),
        chain,
        revocation,
    };
    let out = &app.out;
    out.show(&v, || {
        let mut s = String::from(if v.ok {
            "签名有效 signature OK"
        } else if revoked {
            "签名无效：签名者证书已吊销 signature INVALID: the signer's certificate is revoked"
        } else {
            "签名有效，但证书链验证失败 signature OK, chain FAILED"
        });
        if let Some(subj) = &v.subject {
            s.push_str(&format!("\n  signer {subj} (serial {})", v.serial.as_deref().unwrap_or("-")));
        }
        if let Some(c) = &v.chain {
            s.push_str(&format!("\n  chain {}", if c.ok { "OK".to_string() } else { c.reason.clone().unwrap_or_default() }));
        }
        if let Some(r) = &v.revocation {
            s.push_str(&format!("\n  {} {}", out.t("吊销状态", "revocation"), kb_service::revocation::text(r, out.lang())));
        }
        s
    });
    if let (Some(c), Some(r)) = (&cert, v.revocation.as_ref().filter(|r| r.is_revoked())) {
        return Err(revoked_signer(c, r, out.lang()));
    }
    match v.chain {
        Some(ChainStatus { ok: false, code: Some(n), reason, .. }) => Err(CliError::new(
            kb_types::ErrorCode::from_number(n).unwrap_or(kb_types::ErrorCode::Internal),
            reason.unwrap_or_default(),
        )),
        _ => Ok(()),
    }
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
    /// Checked when the chain is (`--ca`) and verifies.
    revocation: Option<RevocationSummary>,
}

/// A revoked signer fails verification: nothing inside a signature (its signing time is
/// the signer's own claim) proves it was made before the revocation.
fn revoked_signer(cert: &Certificate, r: &RevocationSummary, lang: kb_types::Lang) -> CliError {
    CliError::new(
        kb_types::ErrorCode::CertificateRevoked,
        format!("{}: {}", cert.subject(), kb_service::revocation::text(r, lang)),
    )
}

pub(crate) fn verify(app: &App, args: VerifyArgs) -> CliResult {
    if args.raw {
        return verify_raw(app, args);
    }
    if args.sel.device.is_some() || args.sel.container.is_some() || args.sel.usage.is_some() {
        return Err(CliError::input("--device/--container/--usage choose the signer of a --raw signature"));
    }
    let out = &app.out;
    let msg = SignedMessage::from_der(&read_der(&args.sig, &CMS)?)?;
    let reports = match (&args.input, msg.is_detached()) {
        (Some(p), true) => msg.verify_reader(File::open(p).map_err(|e| CliError::io(&p.display().to_string(), e))?, &[])?,
        (Some(p), false) => {
            // Attached: the given file must equal the embedded content.
            let given = read_file(p)?;
            if msg.content() != Some(&given[..]) {
                return Err(kb_pki::PkiError::CmsDigestMismatch.into());
            }
            msg.verify(None, &[])?
        }
        (None, _) => msg.verify(None, &[])?,
    };
    let mut signers = Vec::new();
    let mut chain_failed = None;
    let checker = app.home()?.revocation();
    let carried = msg.crls();
    for r in &reports {
        let mut revocation = None;
        let chain = match &args.ca {
            Some(_) => {
                let trust = TrustStore::from_certs(load_bundle(&args.ca)?);
                let at = r.signing_time.unwrap_or_else(UnixTime::now);
                Some(match verify_chain(&r.signer, msg.certificates(), &trust, at) {
                    Ok(c) => {
                        let rev =
                            checker.summary_for_chain_at(&r.signer, msg.certificates(), &trust, &carried, at, UnixTime::now());
                        if rev.is_revoked() {
                            chain_failed.get_or_insert(revoked_signer(&r.signer, &rev, out.lang()));
                        }
                        revocation = Some(rev);
                        ChainStatus { ok: true, code: None, reason: None, length: c.certificates.len() }
                    }
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
            revocation,
        });
    }
    let v = Verified { ok: chain_failed.is_none(), signers, detached: msg.is_detached() };
    let any_revoked = v.signers.iter().any(|g| g.revocation.as_ref().is_some_and(RevocationSummary::is_revoked));
    out.show(&v, || {
        let mut s = String::from(if v.ok {
            "签名有效 signature OK\n"
        } else if any_revoked {
            "签名无效：签名者证书已吊销 signature INVALID: the signer's certificate is revoked\n"
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
            if let Some(r) = &g.revocation {
                s.push_str(&format!("  {} {}\n", out.t("吊销状态", "revocation"), kb_service::revocation::text(r, out.lang())));
            }
        }
        s.trim_end().to_string()
    });
    chain_failed.map_or(Ok(()), Err)
}

#[derive(Args)]
pub(crate) struct EncryptArgs {
    /// Recipient encryption certificate file(s) (repeat for several).
    #[arg(long = "to", required_unless_present = "to_device")]
    to: Vec<PathBuf>,
    /// Also encrypt to a medium's encryption certificate (chosen with --device
    /// --container; --usage defaults to encrypt).
    #[arg(long)]
    to_device: bool,
    #[command(flatten)]
    sel: DeviceSel,
    /// The file to seal (streamed, any size).
    #[arg(long = "in")]
    input: PathBuf,
    /// Where to write the envelope (DER).
    #[arg(long)]
    out: PathBuf,
}

pub(crate) fn encrypt(app: &App, args: EncryptArgs) -> CliResult {
    let out = &app.out;
    let mut recipients = args.to.iter().map(|p| read_certificate(p)).collect::<CliResult<Vec<_>>>()?;
    if args.to_device {
        recipients.push(device_certificate(app, &args.sel, kb_types::KeyUsage::Encrypt)?.0);
    } else if args.sel.device.is_some() || args.sel.container.is_some() || args.sel.usage.is_some() {
        return Err(CliError::input("--device/--container/--usage need --to-device"));
    }
    let src = File::open(&args.input).map_err(|e| CliError::io(&args.input.display().to_string(), e))?;
    let len = src.metadata().map_err(|e| CliError::io("input", e))?.len();
    // Write next to the destination and rename, so a failure never leaves half an envelope.
    let tmp = args.out.with_extension("kbtmp");
    let dst = File::create(&tmp).map_err(|e| CliError::io(&tmp.display().to_string(), e))?;
    let bar = app.term.progress(len, out.json(), out.t("加密", "encrypting"));
    let written = envelope::encrypt(
        std::io::BufReader::new(bar.wrap_read(src)),
        std::io::BufWriter::new(dst),
        Some(len),
        &recipients,
        &EnvelopeOptions::default(),
    );
    app.term.progress_done(&bar);
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
