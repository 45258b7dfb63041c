//! EnvelopedData (RFC 5652 §6, GM/T 0010 §9), streaming in constant memory.
//!
//! Content is SM4-CBC with PKCS#7 padding under a fresh 128-bit key; the key goes to
//! each recipient as a KeyTransRecipientInfo: SM2-encrypted (GM/T 0009 ASN.1 ciphertext,
//! algorithm `1.2.156.10197.1.301.3`, version 0 — or GmSSL's `301.2`, version 1, on
//! request: [`Sm2KeyTransport`]) or RSA (PKCS#1 v1.5 by default, OAEP on request).
//!
//! Decryption accepts every variant peers write (docs/sm2-cms.md): RecipientInfo
//! version 0, 1 or 2; SM2 key transport as `301.3`, `301.2`, `301` or id-ecPublicKey,
//! with or without NULL parameters; GM/T 0010 or RFC 5652 content types.
//!
//! With a known content length the output is DER; with an unknown one (a pipe) it is
//! BER with indefinite lengths and 64 KiB OCTET STRING segments, as OpenSSL `-stream`
//! writes. Decryption reads both.

use super::Profile;
use super::ber::{self, StreamReader, tag};
use super::pipeline;
use crate::cert::Certificate;
use crate::{PkiError, Result, oid};
use der::asn1::ObjectIdentifier as Oid;
use kb_crypto::rsa::RsaPadding;
use kb_crypto::sm4::{CbcEncryptor, Padding, Transform};
use kb_crypto::{HashAlgorithm, PrivateKey, PublicKey};
use std::io::{Read, Write};
use zeroize::Zeroizing;

/// Segment size for indefinite-length output and the streaming buffer.
const CHUNK: usize = 64 * 1024;

/// How to build an envelope.
#[derive(Clone, Debug)]
pub struct EnvelopeOptions {
    /// OIDs; `None` = GM/T 0010 when every recipient is SM2, else RFC 5652.
    pub profile: Option<Profile>,
    /// Key transport padding for RSA recipients.
    pub rsa_padding: RsaPadding,
    /// How SM2 key transport is labelled.
    pub sm2_key_transport: Sm2KeyTransport,
}

impl Default for EnvelopeOptions {
    fn default() -> Self {
        Self { profile: None, rsa_padding: RsaPadding::Pkcs1v15, sm2_key_transport: Sm2KeyTransport::default() }
    }
}

/// How an SM2 recipient's KeyTransRecipientInfo is labelled (docs/sm2-cms.md).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Sm2KeyTransport {
    /// GM/T 0006 SM2-3 public-key encryption `1.2.156.10197.1.301.3`, RecipientInfo
    /// version 0 (PKCS#7 / RFC 5652 for issuerAndSerialNumber). What KeyBridge writes.
    #[default]
    Standard,
    /// `1.2.156.10197.1.301.2` ("sm2encrypt"; GM/T 0006 names it SM2-2 key exchange) with
    /// RecipientInfo version 1, as GmSSL 3 writes: the only form GmSSL 3 decrypts.
    GmSsl,
}

/// Who can open an envelope.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub enum RecipientId {
    /// issuer DER (hex) and serial (upper-case hex).
    IssuerSerial {
        /// Issuer name, display form.
        issuer: String,
        /// Serial, upper-case hex.
        serial: String,
        /// Raw issuer DER (for matching).
        #[serde(skip)]
        issuer_der: Vec<u8>,
        /// Raw serial INTEGER contents (for matching).
        #[serde(skip)]
        serial_raw: Vec<u8>,
    },
    /// subjectKeyIdentifier (hex).
    KeyId(String),
}

impl RecipientId {
    /// Whether `cert` is this recipient.
    pub fn matches(&self, cert: &Certificate) -> bool {
        match self {
            RecipientId::IssuerSerial { issuer_der, serial_raw, .. } => {
                &cert.issuer_der() == issuer_der && cert.serial_bytes() == serial_raw.as_slice()
            }
            RecipientId::KeyId(k) => cert.subject_key_id().map(hex::encode_upper).as_deref() == Some(k.as_str()),
        }
    }
}

/// Decrypts a wrapped content key. Implemented by whatever holds the private key — a
/// software key here, a device later — so the key never leaves its medium.
pub trait KeyDecrypter {
    /// The recipient certificate this decrypter answers for.
    fn certificate(&self) -> &Certificate;
    /// Unwrap `encrypted_key` made with key-encryption algorithm `alg` (with raw DER
    /// parameters, if any).
    fn decrypt_key(&self, alg: &Oid, params: Option<&[u8]>, encrypted_key: &[u8]) -> Result<Zeroizing<Vec<u8>>>;
}

/// A [`KeyDecrypter`] over an in-memory key.
pub struct LocalDecrypter {
    key: PrivateKey,
    cert: Certificate,
}

impl LocalDecrypter {
    /// Pair a private key with its certificate (checked to match).
    pub fn new(key: PrivateKey, cert: Certificate) -> Result<Self> {
        if key.public_key() != cert.public_key()? {
            return Err(PkiError::UsageMismatch("decryption: the certificate does not belong to this key"));
        }
        Ok(Self { key, cert })
    }
}

impl KeyDecrypter for LocalDecrypter {
    fn certificate(&self) -> &Certificate {
        &self.cert
    }
    fn decrypt_key(&self, alg: &Oid, params: Option<&[u8]>, encrypted_key: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        let padding = key_transport_padding(alg, params)?;
        Ok(self.key.decrypt(encrypted_key, padding)?)
    }
}

/// The RSA padding a key-transport AlgorithmIdentifier asks for: PKCS#1 v1.5 for
/// rsaEncryption, OAEP with the hash in RSAES-OAEP-params `[0]` (default SHA-1; MGF1 is
/// assumed to use the same hash). SM2 key transport ignores the padding. Any
/// [`KeyDecrypter`] over a device uses this to tell the device what to do.
pub fn key_transport_padding(alg: &Oid, params: Option<&[u8]>) -> Result<RsaPadding> {
    match *alg {
        oid::SM2_ENCRYPT | oid::SM2_KEY_EXCHANGE | oid::SM2_CURVE | oid::EC_PUBLIC_KEY | oid::RSA => Ok(RsaPadding::Pkcs1v15),
        oid::RSA_OAEP => Ok(RsaPadding::Oaep(oaep_hash(params)?)),
        other => Err(PkiError::Crypto(kb_crypto::CryptoError::Unsupported(format!("key transport {other}")))),
    }
}

fn oaep_hash(params: Option<&[u8]>) -> Result<HashAlgorithm> {
    let Some(p) = params else { return Ok(HashAlgorithm::Sha1) };
    let t = ber::parse_all(p)?;
    if t.tag == tag::NULL {
        return Ok(HashAlgorithm::Sha1);
    }
    for f in t.expect(tag::SEQUENCE)?.children()? {
        if f.tag == tag::CTX0_C {
            let alg = f.children()?.into_iter().next().ok_or_else(|| ber::err("empty OAEP hash"))?;
            let o = alg.children()?.first().ok_or_else(|| ber::err("empty OAEP hash"))?.oid()?;
            return oid::hash_from_oid(&o).ok_or_else(|| ber::err(format!("OAEP hash {o}")));
        }
    }
    Ok(HashAlgorithm::Sha1)
}

fn oaep_params(h: HashAlgorithm) -> Vec<u8> {
    let hash_alg = ber::alg_id(&oid::hash_oid(h), None);
    let mgf = ber::seq(&[&ber::oid(&Oid::new_unwrap("1.2.840.113549.1.1.8")), &hash_alg]);
    ber::seq(&[&ber::tlv(tag::CTX0_C, &hash_alg), &ber::tlv(tag::CTX1_C, &mgf)])
}

fn recipient_info(cert: &Certificate, cek: &[u8], opts: &EnvelopeOptions) -> Result<Vec<u8>> {
    if cert.usage() == kb_types::KeyUsage::Sign {
        return Err(PkiError::UsageMismatch("encryption (this is a signing certificate; use the encryption certificate)"));
    }
    let pk = cert.public_key()?;
    let mut version = 0;
    let (alg, wrapped) = match &pk {
        PublicKey::Sm2(_) => {
            let alg = match opts.sm2_key_transport {
                Sm2KeyTransport::Standard => oid::SM2_ENCRYPT,
                Sm2KeyTransport::GmSsl => {
                    version = 1;
                    oid::SM2_KEY_EXCHANGE
                }
            };
            (ber::alg_id(&alg, None), pk.encrypt(cek, opts.rsa_padding)?)
        }
        PublicKey::Rsa(_) => {
            let alg = match opts.rsa_padding {
                RsaPadding::Pkcs1v15 => ber::alg_id(&oid::RSA, Some(&[tag::NULL, 0])),
                RsaPadding::Oaep(h) => ber::alg_id(&oid::RSA_OAEP, Some(&oaep_params(h))),
            };
            (alg, pk.encrypt(cek, opts.rsa_padding)?)
        }
        PublicKey::EcP256(_) => return Err(PkiError::UsageMismatch("encryption (ECDSA keys cannot receive envelopes)")),
    };
    let rid = ber::seq(&[&cert.issuer_der(), &ber::tlv(tag::INTEGER, cert.serial_bytes())]);
    Ok(ber::seq(&[&ber::small_int(version), &rid, &alg, &ber::octet_string(&wrapped)]))
}

/// Encrypt everything `r` yields to `recipients`, writing the envelope to `w`.
/// `content_len` gives DER output (and is checked against what `r` yields); `None`
/// streams BER with indefinite lengths. Returns the bytes written.
pub fn encrypt(
    r: impl Read,
    w: impl Write,
    content_len: Option<u64>,
    recipients: &[Certificate],
    opts: &EnvelopeOptions,
) -> Result<u64> {
    let plan = Plan::new(recipients, opts)?;
    write_envelope(r, w, content_len, &plan, None)
}

/// [`encrypt`], and hash the same content with `hasher` on a second thread as it is
/// encrypted, in one pass: a signature over the content and its envelope cost the
/// slower of the two (SM4-CBC encryption is sequential), not their sum. The envelope
/// is the same as [`encrypt`] writes; `hasher` has seen every content byte when this
/// returns `Ok`.
pub fn encrypt_hashing(
    r: impl Read,
    w: impl Write,
    content_len: Option<u64>,
    recipients: &[Certificate],
    opts: &EnvelopeOptions,
    hasher: &mut kb_crypto::hash::Hasher,
) -> Result<u64> {
    let plan = Plan::new(recipients, opts)?;
    write_envelope(r, w, content_len, &plan, Some(&mut |b: &[u8]| hasher.update(b)))
}

/// Everything about an envelope but its content: key, IV and the encoded parts.
struct Plan {
    cek: Zeroizing<[u8; 16]>,
    iv: [u8; 16],
    profile: Profile,
    version: Vec<u8>,
    recipient_set: Vec<u8>,
}

impl Plan {
    fn new(recipients: &[Certificate], opts: &EnvelopeOptions) -> Result<Self> {
        if recipients.is_empty() {
            return Err(PkiError::Crypto(kb_crypto::CryptoError::InvalidParameter("an envelope needs at least one recipient")));
        }
        let all_sm2 = recipients.iter().all(|c| matches!(c.public_key(), Ok(PublicKey::Sm2(_))));
        let profile = opts.profile.unwrap_or(if all_sm2 { Profile::Gm } else { Profile::Rfc5652 });
        let cek = Zeroizing::new(kb_crypto::rng::random_array::<16>()?);
        let iv = kb_crypto::rng::random_array::<16>()?;
        let infos = recipients.iter().map(|c| recipient_info(c, &cek[..], opts)).collect::<Result<Vec<_>>>()?;
        // EnvelopedData version: 0 (PKCS#7, RFC 5652 with only version-0 recipients); 1 in
        // GmSSL form, as GmSSL 3 writes it.
        let version = ber::small_int(if opts.sm2_key_transport == Sm2KeyTransport::GmSsl { 1 } else { 0 });
        Ok(Self { cek, iv, profile, version, recipient_set: ber::set_of(infos) })
    }
}

fn write_envelope(
    r: impl Read,
    mut w: impl Write,
    content_len: Option<u64>,
    plan: &Plan,
    tap: Option<pipeline::Tap<'_>>,
) -> Result<u64> {
    let Plan { cek, iv, profile, version, recipient_set } = plan;
    let eci_prefix = [ber::oid(&profile.data()), ber::alg_id(&oid::SM4_CBC, Some(&ber::octet_string(iv)))].concat();
    let mut enc = CbcEncryptor::new(cek, iv, Padding::Pkcs7);
    let mut written = 0u64;
    let mut put = |w: &mut dyn Write, b: &[u8]| -> Result<()> {
        w.write_all(b)?;
        written += b.len() as u64;
        Ok(())
    };
    let mut out = Vec::with_capacity(CHUNK + 32);

    match content_len {
        Some(n) => {
            let padded = (n / 16 + 1) * 16;
            let content_hdr = ber::header(tag::CTX0_P, padded);
            let eci_len = eci_prefix.len() as u64 + content_hdr.len() as u64 + padded;
            let eci_hdr = ber::header(tag::SEQUENCE, eci_len);
            let ed_len = (version.len() + recipient_set.len() + eci_hdr.len()) as u64 + eci_len;
            let ed_hdr = ber::header(tag::SEQUENCE, ed_len);
            let explicit_hdr = ber::header(tag::CTX0_C, ed_hdr.len() as u64 + ed_len);
            let ct_oid = ber::oid(&profile.enveloped_data());
            let ci_hdr = ber::header(tag::SEQUENCE, (ct_oid.len() + explicit_hdr.len()) as u64 + ed_hdr.len() as u64 + ed_len);
            for part in [&ci_hdr, &ct_oid, &explicit_hdr, &ed_hdr, version, recipient_set, &eci_hdr, &eci_prefix, &content_hdr] {
                put(&mut w, part)?;
            }
            let mut seen = 0u64;
            pipeline::for_each_chunk(r, CHUNK, tap, |chunk| {
                out.clear();
                match chunk {
                    Some(c) => {
                        seen += c.len() as u64;
                        if seen > n {
                            return Err(PkiError::Io("content is longer than announced".into()));
                        }
                        enc.update(c, &mut out);
                    }
                    None => {
                        if seen != n {
                            return Err(PkiError::Io("content is shorter than announced".into()));
                        }
                        enc.finish(&mut out)?;
                    }
                }
                put(&mut w, &out)
            })?;
        }
        None => {
            let ind = |t: u8| [t, 0x80];
            put(&mut w, &ind(tag::SEQUENCE))?;
            put(&mut w, &ber::oid(&profile.enveloped_data()))?;
            put(&mut w, &ind(tag::CTX0_C))?;
            put(&mut w, &ind(tag::SEQUENCE))?;
            put(&mut w, version)?;
            put(&mut w, recipient_set)?;
            put(&mut w, &ind(tag::SEQUENCE))?;
            put(&mut w, &eci_prefix)?;
            put(&mut w, &ind(tag::CTX0_C))?;
            pipeline::for_each_chunk(r, CHUNK, tap, |chunk| {
                out.clear();
                match chunk {
                    Some(c) => enc.update(c, &mut out),
                    None => enc.finish(&mut out)?,
                }
                if out.is_empty() { Ok(()) } else { put(&mut w, &ber::tlv(tag::OCTET_STRING, &out)) }
            })?;
            // End-of-contents for [0], EncryptedContentInfo, EnvelopedData, [0], ContentInfo.
            put(&mut w, &[0u8; 10])?;
        }
    }
    w.flush()?;
    Ok(written)
}

/// Encrypt in memory.
pub fn encrypt_bytes(content: &[u8], recipients: &[Certificate], opts: &EnvelopeOptions) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(content.len() + 1024);
    encrypt(content, &mut out, Some(content.len() as u64), recipients, opts)?;
    Ok(out)
}

struct Recipient {
    id: RecipientId,
    alg: Oid,
    params: Option<Vec<u8>>,
    encrypted_key: Vec<u8>,
}

/// What an envelope says about itself before any decryption: profile, recipients and
/// content algorithm. Reading it consumes the stream up to the encrypted content.
#[derive(Debug, serde::Serialize)]
pub struct EnvelopeHeader {
    /// OIDs used.
    pub profile: Profile,
    /// Who can open it.
    pub recipients: Vec<RecipientId>,
    /// Content-encryption algorithm OID.
    pub content_algorithm: String,
    #[serde(skip)]
    keys: Vec<Recipient>,
    #[serde(skip)]
    iv: Vec<u8>,
    #[serde(skip)]
    content_alg: Oid,
}

impl std::fmt::Debug for Recipient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Recipient({:?}, {})", self.id, self.alg)
    }
}

fn parse_recipients(set_der: &[u8]) -> Result<Vec<Recipient>> {
    let set = ber::parse_all(set_der)?.expect(tag::SET)?;
    let mut out = Vec::new();
    for ri in set.children()? {
        if ri.tag != tag::SEQUENCE {
            continue; // KeyAgree/KEK/password recipients are tagged: not supported, skipped
        }
        let f = ri.children()?;
        if f.len() < 4 {
            return Err(ber::err("KeyTransRecipientInfo too short"));
        }
        let id = match f[1].tag {
            tag::SEQUENCE => {
                let k = f[1].children()?;
                if k.len() != 2 {
                    return Err(ber::err("bad IssuerAndSerialNumber"));
                }
                let issuer = x509_cert::name::Name::from_der(k[0].raw).map(|n| crate::name::display(&n)).unwrap_or_default();
                let serial_raw = k[1].expect(tag::INTEGER)?.value.to_vec();
                let trimmed = if serial_raw.len() > 1 && serial_raw[0] == 0 { &serial_raw[1..] } else { &serial_raw[..] };
                RecipientId::IssuerSerial {
                    issuer,
                    serial: hex::encode_upper(trimmed),
                    issuer_der: k[0].raw.to_vec(),
                    serial_raw,
                }
            }
            tag::CTX0_P => RecipientId::KeyId(hex::encode_upper(f[1].value)),
            other => return Err(ber::err(format!("bad recipient identifier tag 0x{other:02x}"))),
        };
        let alg_f = f[2].expect(tag::SEQUENCE)?.children()?;
        let alg = alg_f.first().ok_or_else(|| ber::err("empty AlgorithmIdentifier"))?.oid()?;
        let params = alg_f.get(1).map(|p| p.raw.to_vec());
        let encrypted_key = f[3].octets(tag::OCTET_STRING, tag::OCTET_STRING_C)?;
        out.push(Recipient { id, alg, params, encrypted_key });
    }
    Ok(out)
}

use der::Decode;

impl EnvelopeHeader {
    /// Read the header from a stream positioned at the start of the envelope.
    pub fn read<R: Read>(r: &mut StreamReaderHandle<R>) -> Result<Self> {
        let s = &mut r.0;
        let expect = |got: u8, want: u8, what: &str| -> Result<()> {
            if got == want { Ok(()) } else { Err(ber::err(format!("{what}: expected tag 0x{want:02x}, found 0x{got:02x}"))) }
        };
        let (t, _, _) = s.header()?;
        expect(t, tag::SEQUENCE, "ContentInfo")?;
        let ct = s.element()?;
        let ct = ber::parse_all(&ct)?.oid()?;
        let profile = if ct == super::content_type::GM_ENVELOPED_DATA {
            Profile::Gm
        } else if ct == super::content_type::ENVELOPED_DATA {
            Profile::Rfc5652
        } else {
            return Err(ber::err(format!("not EnvelopedData (content type {ct})")));
        };
        let (t, _, _) = s.header()?;
        expect(t, tag::CTX0_C, "ContentInfo content")?;
        let (t, _, _) = s.header()?;
        expect(t, tag::SEQUENCE, "EnvelopedData")?;
        let v = s.element()?;
        ber::parse_all(&v)?.expect(tag::INTEGER)?;
        let mut el = s.element()?;
        if el.first() == Some(&tag::CTX0_C) {
            el = s.element()?; // originatorInfo: skipped
        }
        let keys = parse_recipients(&el)?;
        let (t, _, _) = s.header()?;
        expect(t, tag::SEQUENCE, "EncryptedContentInfo")?;
        let _content_type = s.element()?;
        let alg = s.element()?;
        let alg_t = ber::parse_all(&alg)?.expect(tag::SEQUENCE)?;
        let f = alg_t.children()?;
        let content_alg = f.first().ok_or_else(|| ber::err("empty AlgorithmIdentifier"))?.oid()?;
        let iv = match f.get(1) {
            Some(p) => p.octets(tag::OCTET_STRING, tag::OCTET_STRING_C)?,
            None => Vec::new(),
        };
        Ok(Self {
            profile,
            recipients: keys.iter().map(|k| k.id.clone()).collect(),
            content_algorithm: oid::name(&content_alg).map(str::to_string).unwrap_or_else(|| content_alg.to_string()),
            keys,
            iv,
            content_alg,
        })
    }
}

/// A stream being read as an envelope (opaque; see [`EnvelopeHeader::read`]).
pub struct StreamReaderHandle<R>(StreamReader<R>);

impl<R: Read> StreamReaderHandle<R> {
    /// Wrap a reader.
    pub fn new(r: R) -> Self {
        Self(StreamReader::new(r))
    }
}

/// Decrypt an envelope from `r` into `w` with `key`. Returns the plaintext bytes written.
///
/// Plaintext is written as it is decrypted (in batches of 1 MiB, decrypted on every
/// core); if this returns an error (bad padding,
/// truncated input) the caller must discard what was written.
pub fn decrypt(r: impl Read, w: impl Write, key: &dyn KeyDecrypter) -> Result<u64> {
    decrypt_choosing(r, w, |_| Ok(key))
}

/// [`decrypt`] with the key chosen once the recipients are known: `choose` gets the
/// envelope's recipients and returns the decrypter to use (e.g. the first certificate
/// present on a medium that matches one), or an error such as
/// [`PkiError::CmsNoRecipient`].
pub fn decrypt_choosing<'k>(
    r: impl Read,
    w: impl Write,
    choose: impl FnOnce(&[RecipientId]) -> Result<&'k dyn KeyDecrypter>,
) -> Result<u64> {
    decrypt_on(r, w, choose, pipeline::threads())
}

/// [`decrypt_choosing`] on `threads` threads.
fn decrypt_on<'k>(
    r: impl Read,
    mut w: impl Write,
    choose: impl FnOnce(&[RecipientId]) -> Result<&'k dyn KeyDecrypter>,
    threads: usize,
) -> Result<u64> {
    let mut h = StreamReaderHandle::new(r);
    let header = EnvelopeHeader::read(&mut h)?;
    let s = &mut h.0;
    if !(header.content_alg == oid::SM4_CBC || header.content_alg == oid::SM4) {
        return Err(PkiError::Crypto(kb_crypto::CryptoError::Unsupported(format!("content encryption {}", header.content_alg))));
    }
    let iv: [u8; 16] = header.iv.as_slice().try_into().map_err(|_| ber::err("SM4-CBC IV must be 16 bytes"))?;
    let key = choose(&header.recipients)?;
    let cert = key.certificate();
    let rec = header.keys.iter().find(|k| k.id.matches(cert)).ok_or(PkiError::CmsNoRecipient)?;
    let cek = key.decrypt_key(&rec.alg, rec.params.as_deref(), &rec.encrypted_key)?;
    let cek: Zeroizing<[u8; 16]> =
        Zeroizing::new(cek.as_slice().try_into().map_err(|_| PkiError::Crypto(kb_crypto::CryptoError::DecryptFailed))?);
    let mut dec = pipeline::CbcOpener::new(&cek, &iv, threads);
    let mut written = 0u64;

    // Stream `len` bytes of ciphertext through the decryptor, read straight into it.
    let mut pump = |s: &mut StreamReader<_>, mut len: u64, w: &mut dyn Write| -> Result<()> {
        while len > 0 {
            let k = s.some(dec.space(usize::try_from(len).unwrap_or(usize::MAX)))?;
            if k == 0 {
                return Err(ber::err("truncated encrypted content"));
            }
            len -= k as u64;
            written += dec.commit(k, w)?;
        }
        Ok(())
    };

    let (t, len, _) = s.header()?;
    match (t, len) {
        (tag::CTX0_P, Some(l)) => pump(s, l, &mut w)?,
        (tag::CTX0_C, outer) => {
            let start = s.pos;
            loop {
                if let Some(l) = outer
                    && s.pos - start >= l
                {
                    break;
                }
                let (t, l, _) = s.header()?;
                match (t, l) {
                    (0, Some(0)) if outer.is_none() => break,
                    (tag::OCTET_STRING, Some(l)) => pump(s, l, &mut w)?,
                    _ => return Err(ber::err(format!("unexpected tag 0x{t:02x} in encrypted content"))),
                }
            }
        }
        _ => return Err(ber::err("EnvelopedData without encrypted content")),
    }
    written += dec.finish(&mut w).map_err(|e| match e {
        PkiError::Crypto(_) => PkiError::Crypto(kb_crypto::CryptoError::DecryptFailed),
        other => other,
    })?;
    w.flush()?;
    Ok(written)
}

/// Decrypt in memory.
pub fn decrypt_bytes(envelope: &[u8], key: &dyn KeyDecrypter) -> Result<Zeroizing<Vec<u8>>> {
    let envelope = super::unarmor(envelope)?;
    let mut out = Zeroizing::new(Vec::with_capacity(envelope.len()));
    decrypt(&envelope[..], &mut *out, key)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::issue::TestCa;

    /// `env` with its single RecipientInfo rewritten (version, key-transport algorithm
    /// and parameters) and both content-type OIDs set to `profile`'s.
    fn rewrite(env: &[u8], version: u8, alg: &Oid, null: bool, profile: Profile) -> Vec<u8> {
        let ci = ber::parse_all(env).unwrap().children().unwrap();
        let ed = ci[1].children().unwrap()[0].children().unwrap();
        let ri = ed[1].children().unwrap()[0].children().unwrap();
        let params: Option<&[u8]> = if null { Some(&[tag::NULL, 0]) } else { None };
        let ri2 = ber::seq(&[&ber::small_int(version), ri[1].raw, &ber::alg_id(alg, params), ri[3].raw]);
        let eci = ed[2].children().unwrap();
        let eci2 = ber::seq(&[&ber::oid(&profile.data()), eci[1].raw, eci[2].raw]);
        let ed2 = ber::seq(&[ed[0].raw, &ber::set_of(vec![ri2]), &eci2]);
        ber::seq(&[&ber::oid(&profile.enveloped_data()), &ber::tlv(tag::CTX0_C, &ed2)])
    }

    /// An SM2 encryption certificate from a test CA, and its decrypter.
    fn sm2_recipient() -> (Certificate, LocalDecrypter) {
        let ca = TestCa::new(kb_types::Algorithm::Sm2, "CN=Envelope CA").unwrap();
        let key = PrivateKey::generate(kb_types::Algorithm::Sm2).unwrap();
        let cert = ca.leaf("CN=收件人", &key.public_key(), kb_types::KeyUsage::Encrypt).unwrap();
        (cert.clone(), LocalDecrypter::new(key, cert).unwrap())
    }

    #[test]
    fn every_sm2_recipient_variant_peers_write_is_opened() {
        let (cert, dec) = sm2_recipient();
        let content = b"bid file".repeat(100);
        let env = encrypt_bytes(&content, std::slice::from_ref(&cert), &EnvelopeOptions::default()).unwrap();
        let mut n = 0;
        for version in [0u8, 1, 2] {
            for alg in [oid::SM2_ENCRYPT, oid::SM2_KEY_EXCHANGE, oid::SM2_CURVE, oid::EC_PUBLIC_KEY] {
                for null in [false, true] {
                    for profile in [Profile::Gm, Profile::Rfc5652] {
                        let v = rewrite(&env, version, &alg, null, profile);
                        let out =
                            decrypt_bytes(&v, &dec).unwrap_or_else(|e| panic!("v{version} {alg} null={null} {profile:?}: {e}"));
                        assert_eq!(&out[..], &content[..]);
                        n += 1;
                    }
                }
            }
        }
        assert_eq!(n, 48);
        // Something that is not SM2 key transport is still refused.
        assert!(decrypt_bytes(&rewrite(&env, 0, &oid::SHA256, false, Profile::Gm), &dec).is_err());
    }

    #[test]
    fn what_we_write_for_sm2_recipients() {
        let (cert, dec) = sm2_recipient();
        for (kt, version, alg) in
            [(Sm2KeyTransport::Standard, 0, oid::SM2_ENCRYPT), (Sm2KeyTransport::GmSsl, 1, oid::SM2_KEY_EXCHANGE)]
        {
            let opts = EnvelopeOptions { sm2_key_transport: kt, ..Default::default() };
            let env = encrypt_bytes(b"x", std::slice::from_ref(&cert), &opts).unwrap();
            let ci = ber::parse_all(&env).unwrap().children().unwrap();
            let ed = ci[1].children().unwrap()[0].children().unwrap();
            let ri = ed[1].children().unwrap()[0].children().unwrap();
            assert_eq!(ri[0].raw, &ber::small_int(version)[..], "{kt:?}");
            assert_eq!(ri[2].raw, &ber::alg_id(&alg, None)[..], "{kt:?}: no parameters");
            assert_eq!(&decrypt_bytes(&env, &dec).unwrap()[..], b"x");
        }
    }

    /// Sizes around every boundary: empty, blocks, read chunks and parallel batches.
    fn odd_sizes() -> Vec<usize> {
        let b = pipeline::BATCH;
        vec![0, 1, 15, 16, 17, CHUNK - 1, CHUNK, CHUNK + 1, b - 16, b - 1, b, b + 1, b + 16, 2 * b + 4097]
    }

    fn content(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i % 253) as u8 ^ (i >> 12) as u8).collect()
    }

    /// `f(content, announced length, envelope)` for every odd size, DER and BER, under
    /// one key and IV.
    fn each_envelope(plan: &Plan, mut f: impl FnMut(&[u8], Option<u64>, Vec<u8>)) {
        for n in odd_sizes() {
            let c = content(n);
            for len in [Some(n as u64), None] {
                let mut env = Vec::new();
                write_envelope(&c[..], &mut env, len, plan, None).unwrap();
                f(&c, len, env);
            }
        }
    }

    #[test]
    fn hashing_while_encrypting_writes_the_same_envelope() {
        let (cert, dec) = sm2_recipient();
        let plan = Plan::new(std::slice::from_ref(&cert), &EnvelopeOptions::default()).unwrap();
        each_envelope(&plan, |c, len, plain| {
            let n = c.len();
            let mut hashed = Vec::new();
            let mut h = kb_crypto::hash::Hasher::new(HashAlgorithm::Sm3);
            write_envelope(c, &mut hashed, len, &plan, Some(&mut |b: &[u8]| h.update(b))).unwrap();
            assert!(plain == hashed, "{n} bytes, length {len:?}");
            assert_eq!(h.finish(), kb_crypto::sm3::sm3(c).to_vec(), "{n} bytes");
            assert!(decrypt_bytes(&hashed, &dec).unwrap()[..] == c[..], "{n} bytes");
        });
        // The public entry point agrees with a one-shot digest too, and a wrong length
        // is refused the same way with or without hashing.
        let c = content(100_000);
        let mut h = kb_crypto::hash::Hasher::new(HashAlgorithm::Sm3);
        let mut env = Vec::new();
        encrypt_hashing(&c[..], &mut env, None, std::slice::from_ref(&cert), &EnvelopeOptions::default(), &mut h).unwrap();
        assert_eq!(h.finish(), kb_crypto::sm3::sm3(&c).to_vec());
        assert!(decrypt_bytes(&env, &dec).unwrap()[..] == c[..]);
        for wrong in [99_999u64, 100_001] {
            let mut h = kb_crypto::hash::Hasher::new(HashAlgorithm::Sm3);
            let e = encrypt_hashing(&c[..], Vec::new(), Some(wrong), std::slice::from_ref(&cert), &Default::default(), &mut h);
            let p = encrypt(&c[..], Vec::new(), Some(wrong), std::slice::from_ref(&cert), &EnvelopeOptions::default());
            assert_eq!(e.map_err(|e| e.to_string()), p.map_err(|e| e.to_string()));
        }
    }

    /// What opening `env` on `threads` threads gives: the plaintext, or the error's
    /// code and message.
    fn open_on(env: &[u8], dec: &LocalDecrypter, threads: usize) -> std::result::Result<Vec<u8>, String> {
        use kb_types::HasErrorCode;
        let mut out = Vec::new();
        decrypt_on(env, &mut out, |_| Ok(dec as &dyn KeyDecrypter), threads)
            .map(|n| {
                assert_eq!(n, out.len() as u64);
                out
            })
            .map_err(|e| format!("{:?}: {e}", e.code()))
    }

    #[test]
    fn parallel_opening_matches_one_thread_on_good_truncated_and_corrupt_envelopes() {
        let (cert, dec) = sm2_recipient();
        let plan = Plan::new(std::slice::from_ref(&cert), &EnvelopeOptions::default()).unwrap();
        each_envelope(&plan, |c, len, env| {
            let n = c.len();
            for threads in [2, 3] {
                assert!(open_on(&env, &dec, threads).as_deref() == Ok(c), "{n} bytes, {len:?}, {threads} threads");
            }
            if n > 70_000 && n != pipeline::BATCH + 1 {
                return; // the big ones are cut and corrupted at one size: debug builds are slow
            }
            let mut cases = Vec::new();
            let l = env.len();
            for cut in [0, 1, l / 2, l - 33, l - 17, l - 16, l - 11, l - 10, l - 2, l - 1] {
                cases.push(env[..cut.min(l)].to_vec());
            }
            for at in [l - 1, l - 12, l - 20, l - 40, l / 2] {
                let mut bad = env.clone();
                bad[at] ^= 0x41;
                cases.push(bad);
            }
            for (i, case) in cases.iter().enumerate() {
                let one = open_on(case, &dec, 1);
                for threads in [2, 3] {
                    assert_eq!(open_on(case, &dec, threads), one, "{n} bytes, {len:?}, case {i}, {threads} threads");
                }
            }
        });
        // The stable codes for the two ways an envelope's content goes bad.
        let env = encrypt_bytes(&content(5000), std::slice::from_ref(&cert), &EnvelopeOptions::default()).unwrap();
        let cut = open_on(&env[..env.len() - 20], &dec, 2).unwrap_err();
        assert!(cut.starts_with("CmsMalformed"), "{cut}");
        let mut bad = env.clone();
        let l = bad.len();
        bad[l - 17] ^= 1; // the block before the last: the padding comes out wrong
        let bad = open_on(&bad, &dec, 2).unwrap_err();
        assert!(bad.starts_with("DecryptionFailed"), "{bad}");
    }

    #[test]
    fn oaep_parameters() {
        assert_eq!(key_transport_padding(&oid::RSA_OAEP, None).ok(), Some(RsaPadding::Oaep(HashAlgorithm::Sha1)));
        assert_eq!(key_transport_padding(&oid::RSA_OAEP, Some(&[0x30, 0x00])).ok(), Some(RsaPadding::Oaep(HashAlgorithm::Sha1)));
        assert_eq!(key_transport_padding(&oid::RSA_OAEP, Some(&[0x05, 0x00])).ok(), Some(RsaPadding::Oaep(HashAlgorithm::Sha1)));
        // SEQUENCE { [0] { SEQUENCE { sha256, NULL } } }
        let p =
            [0x30, 0x11, 0xa0, 0x0f, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00];
        assert_eq!(key_transport_padding(&oid::RSA_OAEP, Some(&p)).ok(), Some(RsaPadding::Oaep(HashAlgorithm::Sha256)));
        assert!(key_transport_padding(&oid::RSA_OAEP, Some(&[0x30, 0x01])).is_err());
        assert_eq!(key_transport_padding(&oid::SM2_ENCRYPT, None).ok(), Some(RsaPadding::Pkcs1v15));
        assert!(key_transport_padding(&oid::SHA256, None).is_err());
        // What we write, we read back.
        let ours = oaep_params(HashAlgorithm::Sha256);
        assert_eq!(key_transport_padding(&oid::RSA_OAEP, Some(&ours)).ok(), Some(RsaPadding::Oaep(HashAlgorithm::Sha256)));
    }
}
