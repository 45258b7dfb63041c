//! SignedData (RFC 5652 §5, GM/T 0010 §8).

use super::ber::{self, Tlv, tag};
use super::{Profile, content_type};
use crate::cert::Certificate;
use crate::signer::Signer;
use crate::time::UnixTime;
use crate::{PkiError, Result, oid};
use der::asn1::ObjectIdentifier as Oid;
use der::{Decode, Encode};
use kb_crypto::{HashAlgorithm, Hasher, SignatureScheme};
use std::io::Read;

const ATTR_CONTENT_TYPE: Oid = Oid::new_unwrap("1.2.840.113549.1.9.3");
const ATTR_MESSAGE_DIGEST: Oid = Oid::new_unwrap("1.2.840.113549.1.9.4");
const ATTR_SIGNING_TIME: Oid = Oid::new_unwrap("1.2.840.113549.1.9.5");

/// How to sign.
#[derive(Clone, Debug)]
pub struct SignOptions {
    /// OIDs to use; `None` picks GM/T 0010 for SM2 keys and RFC 5652 otherwise.
    pub profile: Option<Profile>,
    /// Leave the content out (detached signature).
    pub detached: bool,
    /// signingTime attribute; `None` = now.
    pub signing_time: Option<UnixTime>,
    /// Include the signer's certificate (default true).
    pub include_certificate: bool,
    /// Further certificates to include (intermediates).
    pub extra_certificates: Vec<Certificate>,
    /// CRLs to carry in the message (RFC 5652 `crls`), so a verifier offline can tell
    /// the signer's certificate was not revoked when it signed.
    pub crls: Vec<crate::revocation::Crl>,
}

impl Default for SignOptions {
    fn default() -> Self {
        Self {
            profile: None,
            detached: false,
            signing_time: None,
            include_certificate: true,
            extra_certificates: Vec::new(),
            crls: Vec::new(),
        }
    }
}

/// Sign `content` (in memory). For large files use [`sign_detached_digest`].
pub fn sign(content: &[u8], signer: &dyn Signer, cert: &Certificate, opts: &SignOptions) -> Result<Vec<u8>> {
    let mut h = Hasher::new(signer.scheme().hash());
    h.update(content);
    build(&h.finish(), if opts.detached { None } else { Some(content) }, signer, cert, opts)
}

/// Detached SignedData from the plain content digest (computed by the caller with
/// `signer.scheme().hash()` — SM3 for SM2 — over the content, without any ZA).
pub fn sign_detached_digest(
    content_digest: &[u8],
    signer: &dyn Signer,
    cert: &Certificate,
    opts: &SignOptions,
) -> Result<Vec<u8>> {
    if content_digest.len() != signer.scheme().hash().output_len() {
        return Err(PkiError::Crypto(kb_crypto::CryptoError::InvalidParameter("content digest length does not match the hash")));
    }
    build(content_digest, None, signer, cert, opts)
}

fn attribute(oid_: &Oid, value: &[u8]) -> Vec<u8> {
    ber::seq(&[&ber::oid(oid_), &ber::set_of(vec![value.to_vec()])])
}

fn build(digest: &[u8], content: Option<&[u8]>, signer: &dyn Signer, cert: &Certificate, opts: &SignOptions) -> Result<Vec<u8>> {
    if &cert.public_key()? != signer.public_key() {
        return Err(PkiError::UsageMismatch("signing: the certificate does not belong to this key"));
    }
    if cert.usage() == kb_types::KeyUsage::Encrypt {
        return Err(PkiError::UsageMismatch("signing (this is an encryption certificate)"));
    }
    let scheme = signer.scheme();
    let profile = opts.profile.unwrap_or_else(|| Profile::for_algorithm(signer.public_key().algorithm()));
    let hash = scheme.hash();
    let data_oid = profile.data();

    let time = opts.signing_time.unwrap_or_else(UnixTime::now).to_x509()?;
    let time_der = time.to_der().map_err(|e| ber::err(e.to_string()))?;
    let attrs = vec![
        attribute(&ATTR_CONTENT_TYPE, &ber::oid(&data_oid)),
        attribute(&ATTR_SIGNING_TIME, &time_der),
        attribute(&ATTR_MESSAGE_DIGEST, &ber::octet_string(digest)),
    ];
    let signed_attrs = ber::set_of(attrs); // 0x31 …: exactly what is signed
    let signature = signer.sign_message(&signed_attrs)?;

    let digest_alg = ber::alg_id(&oid::hash_oid(hash), None);
    let sig_alg = match scheme {
        SignatureScheme::Sm2Sm3 { .. } => match profile {
            Profile::Gm => ber::alg_id(&oid::SM2_SIGN, None),
            Profile::Rfc5652 => ber::alg_id(&oid::SM2_WITH_SM3, None),
        },
        SignatureScheme::RsaPkcs1(_) => ber::alg_id(&oid::RSA, Some(&[tag::NULL, 0])),
        SignatureScheme::Ecdsa(h) => {
            let (o, _) = oid::sig_oid(&SignatureScheme::Ecdsa(*h)).ok_or_else(|| ber::err("ECDSA hash not supported in CMS"))?;
            ber::alg_id(&o, None)
        }
        SignatureScheme::RsaPss(_) => return Err(ber::err("RSA-PSS SignerInfo is not supported; use PKCS#1 v1.5")),
    };
    let sid = ber::seq(&[&cert.issuer_der(), &ber::tlv(tag::INTEGER, cert.serial_bytes())]);
    let mut signed_attrs_implicit = signed_attrs.clone();
    signed_attrs_implicit[0] = tag::CTX0_C;
    let signer_info =
        ber::seq(&[&ber::small_int(1), &sid, &digest_alg, &signed_attrs_implicit, &sig_alg, &ber::octet_string(&signature)]);

    let encap = match content {
        Some(c) => ber::seq(&[&ber::oid(&data_oid), &ber::tlv(tag::CTX0_C, &ber::octet_string(c))]),
        None => ber::seq(&[&ber::oid(&data_oid)]),
    };
    let mut certs: Vec<Vec<u8>> = Vec::new();
    if opts.include_certificate {
        certs.push(cert.der().to_vec());
    }
    certs.extend(opts.extra_certificates.iter().map(|c| c.der().to_vec()));
    let mut parts = vec![ber::small_int(1), ber::set_of(vec![digest_alg.clone()]), encap];
    if !certs.is_empty() {
        let mut set = ber::set_of(certs);
        set[0] = tag::CTX0_C;
        parts.push(set);
    }
    if !opts.crls.is_empty() {
        let mut set = ber::set_of(opts.crls.iter().map(|c| c.der().to_vec()).collect());
        set[0] = tag::CTX1_C;
        parts.push(set);
    }
    parts.push(ber::set_of(vec![signer_info]));
    let refs: Vec<&[u8]> = parts.iter().map(|p| p.as_slice()).collect();
    let signed_data = ber::seq(&refs);
    Ok(ber::seq(&[&ber::oid(&profile.signed_data()), &ber::tlv(tag::CTX0_C, &signed_data)]))
}

/// One SignerInfo, parsed.
#[derive(Clone, Debug)]
struct SignerInfo {
    /// `(issuer DER, serial INTEGER contents)` or a subjectKeyIdentifier.
    sid: Sid,
    digest: HashAlgorithm,
    /// DER of the signed attributes re-tagged as SET (what was signed), if present.
    signed_attrs: Option<Vec<u8>>,
    message_digest: Option<Vec<u8>>,
    content_type: Option<Oid>,
    signing_time: Option<UnixTime>,
    sig_alg: Oid,
    signature: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Sid {
    IssuerSerial(Vec<u8>, Vec<u8>),
    KeyId(Vec<u8>),
}

/// A parsed SignedData.
#[derive(Clone, Debug)]
pub struct SignedMessage {
    profile: Profile,
    content_type: Oid,
    content: Option<Vec<u8>>,
    /// The encapsulated ContentInfo as received (only for diagnosing non-standard signatures).
    encap: Vec<u8>,
    certificates: Vec<Certificate>,
    /// The `crls` field's CertificateList entries as received (other revocation info
    /// choices, such as OCSP, are tagged and left out).
    crls: Vec<Vec<u8>>,
    signers: Vec<SignerInfo>,
}

/// The outcome for one signer whose signature verified.
#[derive(Clone, Debug)]
pub struct SignatureReport {
    /// The signer's certificate (check its chain with [`crate::chain::verify_chain`]).
    pub signer: Certificate,
    /// signingTime attribute, if present.
    pub signing_time: Option<UnixTime>,
    /// Digest algorithm.
    pub digest_algorithm: HashAlgorithm,
}

fn time_from_attr(v: &Tlv<'_>) -> Option<UnixTime> {
    let t = match v.tag {
        tag::UTC_TIME => der::asn1::UtcTime::from_der(v.raw).ok().map(x509_cert::time::Time::UtcTime),
        tag::GENERALIZED_TIME => der::asn1::GeneralizedTime::from_der(v.raw).ok().map(x509_cert::time::Time::GeneralTime),
        _ => None,
    }?;
    Some(UnixTime::from_x509(&t))
}

fn parse_signer_info(t: &Tlv<'_>) -> Result<SignerInfo> {
    let f = t.children()?;
    let mut i = 1; // skip version
    let sid_t = f.get(i).ok_or_else(|| ber::err("SignerInfo too short"))?;
    let sid = match sid_t.tag {
        tag::SEQUENCE => {
            let k = sid_t.children()?;
            if k.len() != 2 {
                return Err(ber::err("bad IssuerAndSerialNumber"));
            }
            Sid::IssuerSerial(k[0].raw.to_vec(), k[1].expect(tag::INTEGER)?.value.to_vec())
        }
        tag::CTX0_P => Sid::KeyId(sid_t.value.to_vec()),
        other => return Err(ber::err(format!("bad signer identifier tag 0x{other:02x}"))),
    };
    i += 1;
    let dalg_t = f.get(i).ok_or_else(|| ber::err("SignerInfo too short"))?.expect(tag::SEQUENCE)?;
    let dalg_oid = dalg_t.children()?.first().ok_or_else(|| ber::err("empty AlgorithmIdentifier"))?.oid()?;
    let digest = oid::hash_from_oid(&dalg_oid).ok_or_else(|| ber::err(format!("unsupported digest {dalg_oid}")))?;
    i += 1;
    let (mut signed_attrs, mut message_digest, mut content_type, mut signing_time) = (None, None, None, None);
    if let Some(a) = f.get(i).filter(|a| a.tag == tag::CTX0_C) {
        // Signed over the SET OF encoding with definite length (DER).
        signed_attrs = Some(ber::tlv(tag::SET, a.value));
        if a.indefinite {
            return Err(ber::err("signed attributes must be DER"));
        }
        for attr in a.children()? {
            let kv = attr.children()?;
            let (Some(k), Some(vs)) = (kv.first(), kv.get(1)) else { return Err(ber::err("bad attribute")) };
            let k = k.oid()?;
            let vals = vs.children()?;
            let Some(v) = vals.first() else { return Err(ber::err("attribute without a value")) };
            if k == ATTR_MESSAGE_DIGEST {
                if message_digest.is_some() {
                    return Err(ber::err("duplicate messageDigest"));
                }
                message_digest = Some(v.expect(tag::OCTET_STRING)?.value.to_vec());
            } else if k == ATTR_CONTENT_TYPE {
                content_type = Some(v.oid()?);
            } else if k == ATTR_SIGNING_TIME {
                signing_time = time_from_attr(v);
            }
        }
        i += 1;
    }
    let salg_t = f.get(i).ok_or_else(|| ber::err("SignerInfo too short"))?.expect(tag::SEQUENCE)?;
    let sig_alg = salg_t.children()?.first().ok_or_else(|| ber::err("empty AlgorithmIdentifier"))?.oid()?;
    i += 1;
    let signature =
        f.get(i).ok_or_else(|| ber::err("SignerInfo without signature"))?.octets(tag::OCTET_STRING, tag::OCTET_STRING_C)?;
    Ok(SignerInfo { sid, digest, signed_attrs, message_digest, content_type, signing_time, sig_alg, signature })
}

impl SignedMessage {
    /// Parse DER/BER (or PEM `PKCS7`/`CMS`).
    pub fn from_der(input: &[u8]) -> Result<Self> {
        let input = super::unarmor(input)?;
        let ci = ber::parse_all(&input)?.expect(tag::SEQUENCE)?;
        let f = ci.children()?;
        let ct = f.first().ok_or_else(|| ber::err("empty ContentInfo"))?.oid()?;
        let profile = if ct == content_type::GM_SIGNED_DATA {
            Profile::Gm
        } else if ct == content_type::SIGNED_DATA {
            Profile::Rfc5652
        } else {
            return Err(ber::err(format!("not SignedData (content type {ct})")));
        };
        let explicit = f.get(1).ok_or_else(|| ber::err("ContentInfo without content"))?.expect(tag::CTX0_C)?;
        let sd = explicit.children()?.into_iter().next().ok_or_else(|| ber::err("empty [0]"))?.expect(tag::SEQUENCE)?;
        let s = sd.children()?;
        let mut i = 2; // version, digestAlgorithms
        let encap = s.get(i).ok_or_else(|| ber::err("SignedData too short"))?.expect(tag::SEQUENCE)?;
        let e = encap.children()?;
        let content_type = e.first().ok_or_else(|| ber::err("empty EncapsulatedContentInfo"))?.oid()?;
        let content = match e.get(1) {
            Some(c) => {
                let inner = c.expect(tag::CTX0_C)?.children()?;
                let o = inner.first().ok_or_else(|| ber::err("empty eContent"))?;
                Some(o.octets(tag::OCTET_STRING, tag::OCTET_STRING_C)?)
            }
            None => None,
        };
        i += 1;
        let mut certificates = Vec::new();
        if let Some(c) = s.get(i).filter(|c| c.tag == tag::CTX0_C) {
            for cert in c.children()? {
                // Other certificate choices (attribute certs) are tagged; skip them.
                if cert.tag == tag::SEQUENCE {
                    certificates.push(Certificate::from_der(cert.raw)?);
                }
            }
            i += 1;
        }
        let mut crls = Vec::new();
        if let Some(c) = s.get(i).filter(|c| c.tag == tag::CTX1_C) {
            crls = c.children()?.iter().filter(|c| c.tag == tag::SEQUENCE).map(|c| c.raw.to_vec()).collect();
            i += 1;
        }
        let infos = s.get(i).ok_or_else(|| ber::err("SignedData without signerInfos"))?.expect(tag::SET)?;
        let signers = infos.children()?.iter().map(parse_signer_info).collect::<Result<Vec<_>>>()?;
        Ok(Self { profile, content_type, content, encap: encap.raw.to_vec(), certificates, crls, signers })
    }

    /// GM/T 0010 or RFC 5652 OIDs.
    pub fn profile(&self) -> Profile {
        self.profile
    }

    /// Attached content, if any.
    pub fn content(&self) -> Option<&[u8]> {
        self.content.as_deref()
    }

    /// Whether the content is detached.
    pub fn is_detached(&self) -> bool {
        self.content.is_none()
    }

    /// Certificates carried in the message.
    pub fn certificates(&self) -> &[Certificate] {
        &self.certificates
    }

    /// CRLs carried in the message that parse (one that does not is left out: it is
    /// evidence for nothing, and the signature does not depend on it).
    pub fn crls(&self) -> Vec<crate::revocation::Crl> {
        self.crls.iter().filter_map(|d| crate::revocation::Crl::from_der(d).ok()).collect()
    }

    /// Number of SignerInfos.
    pub fn signer_count(&self) -> usize {
        self.signers.len()
    }

    /// The digest algorithms the signers used (to hash detached content once per algorithm).
    pub fn digest_algorithms(&self) -> Vec<HashAlgorithm> {
        let mut v: Vec<HashAlgorithm> = self.signers.iter().map(|s| s.digest).collect();
        v.dedup();
        v
    }

    /// Verify an attached signature, or a detached one against `detached` content.
    pub fn verify(&self, detached: Option<&[u8]>, extra_certs: &[Certificate]) -> Result<Vec<SignatureReport>> {
        let content = match (&self.content, detached) {
            (Some(c), _) => c.as_slice(),
            (None, Some(d)) => d,
            (None, None) => return Err(PkiError::CmsContentMissing),
        };
        self.verify_inner(&|h| Ok(kb_crypto::digest(h, content)), Some(content), extra_certs)
    }

    /// Verify a detached signature over content read from a stream (constant memory).
    pub fn verify_reader(&self, mut r: impl Read, extra_certs: &[Certificate]) -> Result<Vec<SignatureReport>> {
        let mut hashers: Vec<Hasher> = self.digest_algorithms().into_iter().map(Hasher::new).collect();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = r.read(&mut buf)?;
            if n == 0 {
                break;
            }
            for h in &mut hashers {
                h.update(&buf[..n]);
            }
        }
        let digests: Vec<(HashAlgorithm, Vec<u8>)> = hashers.into_iter().map(|h| (h.algorithm(), h.finish())).collect();
        let lookup = |alg: HashAlgorithm| {
            digests.iter().find(|(a, _)| *a == alg).map(|(_, d)| d.clone()).ok_or(PkiError::CmsContentMissing)
        };
        self.verify_inner(&lookup, None, extra_certs)
    }

    /// Verify against a precomputed content digest (plain hash of the content).
    pub fn verify_digest(&self, alg: HashAlgorithm, digest: &[u8], extra_certs: &[Certificate]) -> Result<Vec<SignatureReport>> {
        let lookup = |a: HashAlgorithm| if a == alg { Ok(digest.to_vec()) } else { Err(PkiError::CmsDigestMismatch) };
        self.verify_inner(&lookup, None, extra_certs)
    }

    fn find_cert<'a>(&'a self, sid: &Sid, extra: &'a [Certificate]) -> Option<&'a Certificate> {
        self.certificates.iter().chain(extra).find(|c| match sid {
            Sid::IssuerSerial(issuer, serial) => &c.issuer_der() == issuer && c.serial_bytes() == serial.as_slice(),
            Sid::KeyId(k) => c.subject_key_id().as_deref() == Some(k.as_slice()),
        })
    }

    fn verify_inner(
        &self,
        digest_of: &dyn Fn(HashAlgorithm) -> Result<Vec<u8>>,
        content: Option<&[u8]>,
        extra: &[Certificate],
    ) -> Result<Vec<SignatureReport>> {
        if self.signers.is_empty() {
            return Err(ber::err("SignedData has no signers"));
        }
        let mut out = Vec::new();
        for si in &self.signers {
            let cert = self.find_cert(&si.sid, extra).ok_or_else(|| PkiError::UnknownIssuer {
                subject: "CMS signer".into(),
                issuer: "signer certificate not included in the message".into(),
            })?;
            let key = cert.public_key()?;
            let scheme = scheme_for(&si.sig_alg, si.digest, &key)?;
            let digest = digest_of(si.digest)?;
            match &si.signed_attrs {
                Some(attrs) => {
                    let md = si.message_digest.as_ref().ok_or_else(|| ber::err("signed attributes without messageDigest"))?;
                    if md != &digest {
                        return Err(PkiError::CmsDigestMismatch);
                    }
                    if si.content_type.as_ref().is_some_and(|ct| ct != &self.content_type) {
                        return Err(ber::err("contentType attribute does not match the content"));
                    }
                    if key.verify(&scheme, attrs, &si.signature).is_err() {
                        return Err(self.diagnose(&key, &scheme, si, content));
                    }
                }
                None => match (&scheme, content) {
                    (_, Some(c)) => {
                        if key.verify(&scheme, c, &si.signature).is_err() {
                            return Err(self.diagnose(&key, &scheme, si, content));
                        }
                    }
                    (SignatureScheme::Sm2Sm3 { .. }, None) => {
                        // SM2 without signed attributes signs SM3(ZA ‖ content): the plain digest is not enough.
                        return Err(PkiError::CmsContentMissing);
                    }
                    (_, None) => key.verify_digest(&scheme, &digest, &si.signature)?,
                },
            }
            out.push(SignatureReport { signer: cert.clone(), signing_time: si.signing_time, digest_algorithm: si.digest });
        }
        Ok(out)
    }
}

impl SignedMessage {
    /// Why an SM2 signature that does not verify the standard way (SM2 over
    /// SM3(ZA ‖ signed attributes), or SM3(ZA ‖ content) without them) fails: GM toolkits
    /// are known to sign SM3 without ZA, or over the whole encapsulated ContentInfo.
    /// These are tried only to name what was found; the result is always an error.
    fn diagnose(
        &self,
        key: &kb_crypto::PublicKey,
        scheme: &SignatureScheme,
        si: &SignerInfo,
        content: Option<&[u8]>,
    ) -> PkiError {
        let bad = PkiError::Crypto(kb_crypto::CryptoError::BadSignature);
        if !matches!(scheme, SignatureScheme::Sm2Sm3 { .. }) {
            return bad;
        }
        let sm3 = |m: &[u8]| kb_crypto::digest(HashAlgorithm::Sm3, m);
        let without_za = |m: &[u8]| key.verify_digest(scheme, &sm3(m), &si.signature).is_ok();
        let with_za = |m: &[u8]| key.verify(scheme, m, &si.signature).is_ok();
        let attached = self.content.is_some();
        let mut found = None;
        if let Some(attrs) = &si.signed_attrs
            && without_za(attrs)
        {
            found = Some("the signature verifies over SM3(signed attributes) without ZA");
        }
        if found.is_none()
            && let Some(c) = content
        {
            if without_za(c) {
                found = Some("the signature verifies over SM3(content) without ZA");
            } else if si.signed_attrs.is_some() && with_za(c) {
                found = Some("the signature verifies over the content, not over the signed attributes");
            }
        }
        if found.is_none() && attached {
            if without_za(&self.encap) {
                found = Some("the signature verifies over SM3(encapsulated ContentInfo) without ZA (as GmSSL 3 signs)");
            } else if with_za(&self.encap) {
                found = Some("the signature verifies over the encapsulated ContentInfo instead of its content");
            }
        }
        match found {
            Some(f) => PkiError::CmsSignatureNonConformant { found: f.to_string() },
            None => bad,
        }
    }
}

fn scheme_for(sig_alg: &Oid, digest: HashAlgorithm, key: &kb_crypto::PublicKey) -> Result<SignatureScheme> {
    use kb_types::Algorithm;
    let s = match (*sig_alg, key.algorithm()) {
        (oid::SM2_SIGN | oid::SM2_WITH_SM3 | oid::SM2_CURVE, Algorithm::Sm2) => SignatureScheme::sm2_default(),
        // Some producers put id-ecPublicKey here for SM2 keys.
        (oid::EC_PUBLIC_KEY, Algorithm::Sm2) => SignatureScheme::sm2_default(),
        (oid::RSA, Algorithm::Rsa { .. }) => SignatureScheme::RsaPkcs1(digest),
        (o, Algorithm::Rsa { .. }) if oid::scheme_from_sig_oid(&o).is_some() => SignatureScheme::RsaPkcs1(digest),
        (oid::EC_PUBLIC_KEY | oid::ECDSA_WITH_SHA256 | oid::ECDSA_WITH_SHA384, Algorithm::EcdsaP256) => {
            SignatureScheme::Ecdsa(digest)
        }
        (o, a) => {
            return Err(PkiError::Crypto(kb_crypto::CryptoError::Unsupported(format!("CMS signature algorithm {o} with {a}"))));
        }
    };
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::issue::TestCa;
    use crate::signer::LocalSigner;
    use kb_crypto::PrivateKey;
    use kb_types::{Algorithm, ErrorCode, HasErrorCode, KeyUsage};

    /// Signs SM3(message) without ZA, as some GM toolkits do.
    struct NoZa(LocalSigner);
    impl Signer for NoZa {
        fn public_key(&self) -> &kb_crypto::PublicKey {
            self.0.public_key()
        }
        fn scheme(&self) -> &SignatureScheme {
            self.0.scheme()
        }
        fn sign_digest(&self, digest: &[u8]) -> Result<Vec<u8>> {
            self.0.sign_digest(digest)
        }
        fn sign_message(&self, msg: &[u8]) -> Result<Vec<u8>> {
            self.0.sign_digest(&kb_crypto::digest(HashAlgorithm::Sm3, msg))
        }
    }

    fn setup() -> (LocalSigner, Certificate) {
        let ca = TestCa::new(Algorithm::Sm2, "CN=CMS CA").unwrap();
        let s = LocalSigner::new(PrivateKey::generate(Algorithm::Sm2).unwrap());
        let cert = ca.leaf("CN=签名者", s.public_key(), KeyUsage::Sign).unwrap();
        (s, cert)
    }

    /// SignedData without signed attributes, GM/T 0010 OIDs, signature `sig` — the shape
    /// GmSSL 3 writes.
    fn without_attrs(content: &[u8], cert: &Certificate, sig: &dyn Fn(&[u8]) -> Vec<u8>) -> Vec<u8> {
        let encap = ber::seq(&[&ber::oid(&content_type::GM_DATA), &ber::tlv(tag::CTX0_C, &ber::octet_string(content))]);
        let sid = ber::seq(&[&cert.issuer_der(), &ber::tlv(tag::INTEGER, cert.serial_bytes())]);
        let digest_alg = ber::alg_id(&oid::SM3, None);
        let si = ber::seq(&[
            &ber::small_int(1),
            &sid,
            &digest_alg,
            &ber::alg_id(&oid::SM2_WITH_SM3, None),
            &ber::octet_string(&sig(&encap)),
        ]);
        let mut certs = ber::set_of(vec![cert.der().to_vec()]);
        certs[0] = tag::CTX0_C;
        let sd = ber::seq(&[&ber::small_int(1), &ber::set_of(vec![digest_alg.clone()]), &encap, &certs, &ber::set_of(vec![si])]);
        ber::seq(&[&ber::oid(&content_type::GM_SIGNED_DATA), &ber::tlv(tag::CTX0_C, &sd)])
    }

    fn found(r: Result<Vec<SignatureReport>>) -> String {
        match r {
            Err(e @ PkiError::CmsSignatureNonConformant { .. }) => {
                assert_eq!(e.code(), ErrorCode::CmsSignatureNonConformant);
                e.to_string()
            }
            other => panic!("expected a non-conformance diagnosis, got {other:?}"),
        }
    }

    #[test]
    fn non_standard_sm2_digests_are_named_and_refused() {
        let (s, cert) = setup();
        let content = "投标文件 bid".as_bytes();
        let sm3 = |m: &[u8]| kb_crypto::digest(HashAlgorithm::Sm3, m);

        // Standard, no signed attributes: SM3(ZA ‖ content) verifies.
        let ok = without_attrs(content, &cert, &|_| s.sign_message(content).unwrap());
        assert_eq!(SignedMessage::from_der(&ok).unwrap().verify(None, &[]).unwrap().len(), 1);

        type SignOver<'a> = Box<dyn Fn(&[u8]) -> Vec<u8> + 'a>;
        let cases: [(&str, SignOver<'_>); 3] = [
            ("SM3(content) without ZA", Box::new(|_| s.sign_digest(&sm3(content)).unwrap())),
            ("SM3(encapsulated ContentInfo) without ZA", Box::new(|encap| s.sign_digest(&sm3(encap)).unwrap())),
            ("over the encapsulated ContentInfo instead of its content", Box::new(|encap| s.sign_message(encap).unwrap())),
        ];
        for (want, sig) in &cases {
            let m = SignedMessage::from_der(&without_attrs(content, &cert, sig.as_ref())).unwrap();
            let msg = found(m.verify(None, &[]));
            assert!(msg.contains(want) && msg.contains("not GM/T 0009/0010 conformant"), "{want}: {msg}");
        }

        // With signed attributes signed without ZA.
        let no_za = NoZa(LocalSigner::new(s.private_key().clone()));
        let m = SignedMessage::from_der(&sign(content, &no_za, &cert, &SignOptions::default()).unwrap()).unwrap();
        assert!(found(m.verify(None, &[])).contains("SM3(signed attributes) without ZA"));
        let d = SignedMessage::from_der(
            &sign(content, &no_za, &cert, &SignOptions { detached: true, ..Default::default() }).unwrap(),
        )
        .unwrap();
        assert!(found(d.verify(Some(content), &[])).contains("SM3(signed attributes) without ZA"));

        // A signature that matches nothing stays a plain bad signature.
        let garbage = without_attrs(content, &cert, &|_| s.sign_message(b"something else").unwrap());
        let e = SignedMessage::from_der(&garbage).unwrap().verify(None, &[]).unwrap_err();
        assert_eq!(e, PkiError::Crypto(kb_crypto::CryptoError::BadSignature));
    }
}
