//! Private-key commands on a medium: `sign` and `decrypt`. Content is streamed; the
//! medium only ever sees a digest or a content key.

use crate::ctx::{App, CLIENT, DeviceSel, Devices, describe_medium, open_file, write_atomic, write_atomic_with};
use crate::device_cmd::no_certificate;
use crate::input::{CMS, open_der};
use crate::output::{CliError, CliResult};
use clap::{Args, ValueEnum};
use kb_crypto::{Hasher, SignatureScheme};
use kb_pki::cms::envelope::{EnvelopeHeader, RecipientId, StreamReaderHandle};
use kb_pki::cms::{SignOptions, envelope};
use kb_pki::{Certificate, Signer};
use kb_types::{Algorithm, DeviceId, DeviceInfo, ErrorCode, KeyUsage};
use serde::Serialize;
use std::io::{BufReader, BufWriter, Read};
use std::path::PathBuf;

/// Signature formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum SignFormat {
    /// PKCS#7/CMS SignedData with the content inside (GM/T 0010 for SM2).
    CmsAttached,
    /// PKCS#7/CMS SignedData without the content (any size: the file is streamed).
    CmsDetached,
    /// The bare signature over the file (SM2: DER r,s with the ID's ZA).
    Raw,
}

#[derive(Args)]
pub(crate) struct SignArgs {
    /// The file to sign.
    #[arg(long = "in")]
    input: PathBuf,
    /// Where to write the signature.
    #[arg(long)]
    out: PathBuf,
    /// Signature format.
    #[arg(long, value_enum, default_value_t = SignFormat::CmsAttached)]
    format: SignFormat,
    /// SM2 distinguishing ID for raw signatures (default 1234567812345678). CMS
    /// signatures always use the default ID (GM/T 0010).
    #[arg(long, value_name = "SM2ID")]
    id: Option<String>,
    #[command(flatten)]
    sel: DeviceSel,
}

/// Feed a whole reader into a hasher.
pub(crate) fn hash_stream(r: impl Read, mut h: Hasher, what: &std::path::Path) -> CliResult<Vec<u8>> {
    std::io::copy(&mut BufReader::with_capacity(1 << 16, r), &mut h).map_err(|e| CliError::io(&what.display().to_string(), e))?;
    Ok(h.finish())
}

/// `keybridge sign`.
pub(crate) fn sign(app: &App, a: SignArgs) -> CliResult {
    let d = app.devices()?;
    let (dev, container, usage) = d.slot(&a.sel, KeyUsage::Sign)?;
    let mut signer = d.manager.signer(&dev.id, &container, usage, CLIENT)?;
    if let Some(id) = &a.id {
        if a.format != SignFormat::Raw {
            return Err(CliError::input("--id applies to raw signatures; CMS SM2 signatures use the default ID (GM/T 0010)"));
        }
        if signer.public_key().algorithm() != Algorithm::Sm2 {
            return Err(CliError::input("--id applies to SM2 keys only"));
        }
        if id.is_empty() || id.len() > kb_crypto::sm2::MAX_ID_LEN {
            return Err(CliError::input("the SM2 ID must be 1 to 8191 bytes"));
        }
        signer = signer.with_scheme(SignatureScheme::Sm2Sm3 { id: id.as_bytes().to_vec() });
    }
    let (file, len) = open_file(&a.input)?;
    let bar = app.term.progress(len, app.out.json(), app.out.t("签名", "signing"));
    let reader = bar.wrap_read(file);
    let certificate = || signer.certificate().cloned().ok_or_else(|| no_certificate(&dev.id, &container, usage));
    let signed = match a.format {
        SignFormat::CmsAttached => {
            let cert = certificate()?;
            let mut content = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
            BufReader::new(reader).read_to_end(&mut content).map_err(|e| CliError::io(&a.input.display().to_string(), e))?;
            kb_pki::cms::sign(&content, &signer, &cert, &SignOptions::default()).map_err(|e| signer.service_error(e))
        }
        SignFormat::CmsDetached => {
            let cert = certificate()?;
            let digest = hash_stream(reader, Hasher::new(signer.scheme().hash()), &a.input)?;
            let opts = SignOptions { detached: true, ..SignOptions::default() };
            kb_pki::cms::sign_detached_digest(&digest, &signer, &cert, &opts).map_err(|e| signer.service_error(e))
        }
        SignFormat::Raw => {
            let digest = hash_stream(reader, signer.public_key().hasher(signer.scheme())?, &a.input)?;
            signer.sign_digest(&digest).map_err(|e| signer.service_error(e))
        }
    };
    app.term.progress_done(&bar);
    let signed = signed?;
    write_atomic(&a.out, &signed)?;
    tracing::info!(device = %dev.id, container = %container, format = ?a.format, bytes = len, "signed");
    #[derive(Serialize)]
    struct Signed {
        out: String,
        format: SignFormat,
        device: DeviceId,
        container: String,
        usage: KeyUsage,
        algorithm: Algorithm,
        signer: Option<String>,
        sm2_id: Option<String>,
        bytes_in: u64,
        bytes_out: usize,
    }
    let s = Signed {
        out: a.out.display().to_string(),
        format: a.format,
        device: dev.id.clone(),
        container,
        usage,
        algorithm: signer.public_key().algorithm(),
        signer: signer.certificate().map(kb_pki::Certificate::subject),
        sm2_id: a.id.clone(),
        bytes_in: len,
        bytes_out: signed.len(),
    };
    let o = &app.out;
    o.show(&s, || {
        format!(
            "{} {} ({} bytes) → {} ({}, {} bytes){}",
            o.t("已签名", "signed"),
            a.input.display(),
            s.bytes_in,
            s.out,
            s.format.to_possible_value().map(|v| v.get_name().to_string()).unwrap_or_default(),
            s.bytes_out,
            s.signer.as_deref().map(|n| format!("\n  {} {n}", o.t("签名人", "signer"))).unwrap_or_default()
        )
    });
    Ok(())
}

#[derive(Args)]
pub(crate) struct DecryptArgs {
    /// The digital envelope (CMS EnvelopedData: DER, BER, PEM or base64).
    #[arg(long = "in")]
    input: PathBuf,
    /// Where to write the content. Written only if decryption succeeds.
    #[arg(long)]
    out: PathBuf,
    /// The medium, container and key pair to open it with. Left out, they are found from
    /// the envelope: the certificate it is addressed to, on any medium present.
    #[command(flatten)]
    sel: DeviceSel,
    /// Open it even with a certificate known to be revoked (old data). Without it a
    /// revoked certificate is refused (3030).
    #[arg(long)]
    allow_revoked: bool,
}

/// A recipient as people read it.
fn recipient_text(r: &RecipientId) -> String {
    match r {
        RecipientId::IssuerSerial { issuer, serial, .. } => format!("serial {serial} from {issuer}"),
        RecipientId::KeyId(k) => format!("key id {k}"),
    }
}

/// The slot that can open an envelope for `recipients`, found with public data only —
/// before anything asks for a PIN: a certificate on the medium the envelope is
/// addressed to, whose key pair is one for decryption and whose algorithm the medium
/// supports. `--device`, `--container` and `--usage` narrow the search.
fn recipient_slot(
    d: &Devices,
    sel: &DeviceSel,
    recipients: &[RecipientId],
    allow_revoked: bool,
) -> CliResult<(DeviceInfo, String, KeyUsage)> {
    let (trust, checker) = (kb_service::trust::user_store(&d.home.paths), d.home.revocation());
    let mut revoked = None;
    let media = d.candidates(sel.device.as_deref())?;
    if let Some(name) = &sel.container
        && let [one] = &media[..]
    {
        d.container(&one.id, Some(name))?;
    }
    let mut held = Vec::new();
    for dev in &media {
        for c in d.manager.containers(&dev.id, CLIENT)? {
            if sel.container.as_ref().is_some_and(|n| *n != c.name) {
                continue;
            }
            let slots = [&c.sign, &c.encrypt].into_iter().flatten();
            for slot in slots.filter(|s| sel.usage.is_none_or(|u| u.key_usage() == s.usage)) {
                let Some(cert) = slot.certificate.as_deref().and_then(|der| Certificate::from_der(der).ok()) else { continue };
                if !recipients.iter().any(|r| r.matches(&cert)) {
                    held.push(format!("{} / {} / {}: {}", dev.id, c.name, slot.usage, cert.subject()));
                    continue;
                }
                let at = format!("{} / {} / {}", dev.id, c.name, slot.usage);
                if cert.usage() == KeyUsage::Sign {
                    return Err(CliError::new(
                        ErrorCode::CertificateUsageMismatch,
                        format!(
                            "the envelope is addressed to the signing certificate {} ({at}); a signing key pair does not decrypt",
                            cert.subject()
                        ),
                    ));
                }
                let alg = cert.public_key()?.algorithm();
                if !dev.capabilities.algorithms.is_empty() && !dev.capabilities.algorithms.contains(&alg) {
                    return Err(CliError::new(
                        ErrorCode::NotSupported,
                        format!("{} cannot decrypt with {alg} keys ({at})", describe_medium(dev)),
                    ));
                }
                let r = checker.summary(&cert, &[], &trust, &[], kb_pki::time::UnixTime::now());
                if r.is_revoked() && !allow_revoked {
                    revoked.get_or_insert(CliError::new(
                        ErrorCode::CertificateRevoked,
                        format!(
                            "{} ({at}) {}; to open old data with it, add --allow-revoked",
                            cert.subject(),
                            kb_service::revocation::text(&r, d.home.settings.language)
                        ),
                    ));
                    continue;
                }
                return Ok((d.choose(dev.clone()), c.name, slot.usage));
            }
        }
    }
    if let Some(e) = revoked {
        return Err(e);
    }
    let media_text = media.iter().map(describe_medium).collect::<Vec<_>>().join(", ");
    Err(CliError::new(
        ErrorCode::CmsNoRecipient,
        format!(
            "the envelope is for {}; {media_text} {} ({})",
            recipients.iter().map(recipient_text).collect::<Vec<_>>().join("; "),
            if sel.container.is_some() || sel.usage.is_some() {
                "has no such certificate in the chosen slots"
            } else {
                "holds none of them"
            },
            if held.is_empty() { "no certificates".to_string() } else { held.join("; ") }
        ),
    ))
}

/// `keybridge decrypt`.
pub(crate) fn decrypt(app: &App, a: DecryptArgs) -> CliResult {
    // Who the envelope is for, read before any medium is asked for anything.
    let recipients = {
        let (mut r, _) = open_der(&a.input, &CMS)?;
        let header = EnvelopeHeader::read(&mut StreamReaderHandle::new(&mut r));
        header.map_err(|e| r.take_error().unwrap_or_else(|| e.into()))?.recipients
    };
    let d = app.devices()?;
    let (dev, container, usage) = recipient_slot(&d, &a.sel, &recipients, a.allow_revoked)?;
    let decrypter = d.manager.decrypter(&dev.id, &container, usage, CLIENT)?;
    let (mut reader, len) = open_der(&a.input, &CMS)?;
    let bar = app.term.progress(len, app.out.json(), app.out.t("解密", "decrypting"));
    let written = write_atomic_with(&a.out, |f| {
        let r = envelope::decrypt(bar.wrap_read(&mut reader), BufWriter::new(f), &decrypter);
        r.map_err(|e| reader.take_error().unwrap_or_else(|| CliError::from(decrypter.service_error(e))))
    });
    app.term.progress_done(&bar);
    let written = written?;
    tracing::info!(device = %dev.id, container = %container, bytes = written, "decrypted");
    #[derive(Serialize)]
    struct Opened {
        out: String,
        device: DeviceId,
        container: String,
        bytes_in: u64,
        bytes_out: u64,
    }
    let s = Opened { out: a.out.display().to_string(), device: dev.id.clone(), container, bytes_in: len, bytes_out: written };
    let o = &app.out;
    o.show(&s, || format!("{} {} → {} ({} bytes)", o.t("已解密", "decrypted"), a.input.display(), s.out, s.bytes_out));
    Ok(())
}
