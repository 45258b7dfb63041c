//! Certificates and keys on a token, grouped into containers by `CKA_ID`.
//!
//! A PKCS#11 token has no containers: it has objects. Objects sharing a `CKA_ID` (a
//! certificate, a public key, a private key) are one key pair with its certificate, so
//! each distinct `CKA_ID` is a container holding one key slot. The container's name is
//! the objects' `CKA_LABEL` (certificate first, then public, then private key) when it is
//! set and unique on the token, else the `CKA_ID` in hex. The slot's usage comes from the
//! certificate's keyUsage, else the private key's `CKA_SIGN`/`CKA_DECRYPT` (visible only
//! after login on most tokens), else the public key's `CKA_VERIFY`/`CKA_ENCRYPT`.
//! Objects without a `CKA_ID` cannot be paired and are not shown.

use crate::encoding::{ec_public_key, rsa_public_key};
use crate::error::token_error;
use cryptoki::object::{Attribute, AttributeType, CertificateType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use kb_crypto::PublicKey;
use kb_pki::Certificate;
use kb_token::{Result, TokenError};
use kb_types::{Algorithm, ContainerInfo, KeySlot, KeyUsage};
use std::collections::BTreeMap;

/// One key pair (and certificate) on the token.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub(crate) id: Vec<u8>,
    pub(crate) name: String,
    pub(crate) label: Option<String>,
    pub(crate) usage: KeyUsage,
    pub(crate) algorithm: Algorithm,
    pub(crate) public: Option<PublicKey>,
    pub(crate) certificate: Option<Certificate>,
}

impl Entry {
    /// As the Token model shows it: one slot, the signing one unless encryption-only.
    pub(crate) fn container(&self) -> ContainerInfo {
        let slot = KeySlot {
            usage: self.usage,
            algorithm: self.algorithm,
            certificate: self.certificate.as_ref().map(|c| c.der().to_vec()),
        };
        let (sign, encrypt) = if self.usage == KeyUsage::Encrypt { (None, Some(slot)) } else { (Some(slot), None) };
        ContainerInfo { name: self.name.clone(), sign, encrypt }
    }

    /// The key's public key, from the public-key object or the certificate.
    pub(crate) fn public_key(&self) -> Result<PublicKey> {
        match (&self.public, &self.certificate) {
            (Some(k), _) => Ok(k.clone()),
            (None, Some(c)) => Ok(c.public_key()?),
            (None, None) => Err(TokenError::NotFound(format!("public key of container {}", self.name))),
        }
    }
}

/// Everything this crate reads about an object, whatever its class.
#[derive(Default)]
struct Objects {
    label: Option<String>,
    certificate: Option<Certificate>,
    public: Option<PublicKey>,
    private_algorithm: Option<Algorithm>,
    /// (CKA_VERIFY, CKA_ENCRYPT) of the public key.
    public_usage: Option<(bool, bool)>,
    /// (CKA_SIGN, CKA_DECRYPT) of the private key.
    private_usage: Option<(bool, bool)>,
}

fn find(session: &Session, template: &[Attribute]) -> Result<Vec<ObjectHandle>> {
    session.find_objects(template).map_err(token_error)
}

/// Objects of `class` with this `CKA_ID`.
pub(crate) fn find_by_id(session: &Session, class: ObjectClass, id: &[u8]) -> Result<Vec<ObjectHandle>> {
    find(session, &[Attribute::Class(class), Attribute::Id(id.to_vec())])
}

/// Every object with this `CKA_ID`, of the classes a container holds.
pub(crate) fn all_by_id(session: &Session, id: &[u8]) -> Result<Vec<ObjectHandle>> {
    let mut out = Vec::new();
    for class in [ObjectClass::CERTIFICATE, ObjectClass::PUBLIC_KEY, ObjectClass::PRIVATE_KEY] {
        out.extend(find_by_id(session, class, id)?);
    }
    Ok(out)
}

fn attributes(session: &Session, h: ObjectHandle, types: &[AttributeType]) -> Result<Vec<Attribute>> {
    session.get_attributes(h, types).map_err(token_error)
}

/// The public key held by a public-key object.
pub(crate) fn public_key_of(session: &Session, h: ObjectHandle) -> Result<Option<PublicKey>> {
    let attrs = attributes(
        session,
        h,
        &[
            AttributeType::KeyType,
            AttributeType::Modulus,
            AttributeType::PublicExponent,
            AttributeType::EcParams,
            AttributeType::EcPoint,
        ],
    )?;
    Ok(key_from(&attrs, true)?.and_then(|(_, k)| k))
}

/// The algorithm and (for a public-key object) the public key from key attributes.
/// Unknown key types (DSA, vendor keys without EC parameters…) give `None`.
fn key_from(attrs: &[Attribute], public: bool) -> Result<Option<(Algorithm, Option<PublicKey>)>> {
    let mut key_type = None;
    let (mut n, mut e, mut params, mut point) = (None, None, None, None);
    for a in attrs {
        match a {
            Attribute::KeyType(t) => key_type = Some(*t),
            Attribute::Modulus(v) => n = Some(v.as_slice()),
            Attribute::PublicExponent(v) => e = Some(v.as_slice()),
            Attribute::EcParams(v) => params = Some(v.as_slice()),
            Attribute::EcPoint(v) => point = Some(v.as_slice()),
            _ => {}
        }
    }
    if key_type == Some(KeyType::RSA) {
        let Some(n) = n else { return Ok(None) };
        let bits = (n.iter().skip_while(|b| **b == 0).count() * 8) as u32;
        let key = match (public, e) {
            (true, Some(e)) => Some(rsa_public_key(n, e)?),
            _ => None,
        };
        return Ok(Some((Algorithm::Rsa { bits }, key)));
    }
    // EC keys, including vendor SM2 key types that carry the SM2 curve in CKA_EC_PARAMS.
    let Some(params) = params else { return Ok(None) };
    match (public, point) {
        (true, Some(point)) => {
            let k = ec_public_key(params, point)?;
            Ok(Some((k.algorithm(), Some(k))))
        }
        _ => {
            let curve: Option<der::asn1::ObjectIdentifier> = der::Decode::from_der(params).ok();
            Ok(curve.map(|c| (if c == kb_crypto::keys::oid::SM2_CURVE { Algorithm::Sm2 } else { Algorithm::EcdsaP256 }, None)))
        }
    }
}

/// Every container on the token, in `CKA_ID` order.
pub(crate) fn scan(session: &Session) -> Result<Vec<Entry>> {
    let mut groups: BTreeMap<Vec<u8>, Objects> = BTreeMap::new();
    let label_of = |attrs: &[Attribute]| {
        attrs.iter().find_map(|a| match a {
            Attribute::Label(l) if !l.is_empty() => Some(String::from_utf8_lossy(l).trim().to_string()),
            _ => None,
        })
    };
    let id_of = |attrs: &[Attribute]| {
        attrs.iter().find_map(|a| match a {
            Attribute::Id(id) if !id.is_empty() => Some(id.clone()),
            _ => None,
        })
    };
    let flag = |attrs: &[Attribute], t: AttributeType| {
        attrs.iter().any(|a| match a {
            Attribute::Sign(v) | Attribute::Decrypt(v) | Attribute::Verify(v) | Attribute::Encrypt(v) => {
                *v && a.attribute_type() == t
            }
            _ => false,
        })
    };

    for h in find(session, &[Attribute::Class(ObjectClass::CERTIFICATE), Attribute::CertificateType(CertificateType::X_509)])? {
        let attrs = attributes(session, h, &[AttributeType::Id, AttributeType::Label, AttributeType::Value])?;
        let Some(id) = id_of(&attrs) else { continue };
        let value = attrs.iter().find_map(|a| if let Attribute::Value(v) = a { Some(v.as_slice()) } else { None });
        // A certificate we cannot parse is not shown rather than breaking the listing.
        let Some(cert) = value.and_then(|v| Certificate::from_der(v).ok()) else { continue };
        let g = groups.entry(id).or_default();
        g.label = g.label.take().or_else(|| label_of(&attrs));
        g.certificate.get_or_insert(cert);
    }
    let key_attrs = |usage: [AttributeType; 2]| {
        [
            AttributeType::Id,
            AttributeType::Label,
            AttributeType::KeyType,
            AttributeType::Modulus,
            AttributeType::PublicExponent,
            AttributeType::EcParams,
            AttributeType::EcPoint,
            usage[0],
            usage[1],
        ]
    };
    for h in find(session, &[Attribute::Class(ObjectClass::PUBLIC_KEY)])? {
        let attrs = attributes(session, h, &key_attrs([AttributeType::Verify, AttributeType::Encrypt]))?;
        let Some(id) = id_of(&attrs) else { continue };
        let g = groups.entry(id).or_default();
        g.label = g.label.take().or_else(|| label_of(&attrs));
        if let Some((_, Some(k))) = key_from(&attrs, true)? {
            g.public.get_or_insert(k);
        }
        g.public_usage = Some((flag(&attrs, AttributeType::Verify), flag(&attrs, AttributeType::Encrypt)));
    }
    // Private keys: only their usage flags and algorithm, never a value (none is readable).
    for h in find(session, &[Attribute::Class(ObjectClass::PRIVATE_KEY)])? {
        let attrs = attributes(
            session,
            h,
            &[
                AttributeType::Id,
                AttributeType::Label,
                AttributeType::KeyType,
                AttributeType::Modulus,
                AttributeType::EcParams,
                AttributeType::Sign,
                AttributeType::Decrypt,
            ],
        )?;
        let Some(id) = id_of(&attrs) else { continue };
        let g = groups.entry(id).or_default();
        g.label = g.label.take().or_else(|| label_of(&attrs));
        g.private_algorithm = key_from(&attrs, false)?.map(|(a, _)| a);
        g.private_usage = Some((flag(&attrs, AttributeType::Sign), flag(&attrs, AttributeType::Decrypt)));
    }

    let mut label_count: BTreeMap<String, usize> = BTreeMap::new();
    for g in groups.values() {
        if let Some(l) = &g.label {
            *label_count.entry(l.clone()).or_default() += 1;
        }
    }
    let mut out = Vec::new();
    for (id, g) in groups {
        let public = g.public.clone().or_else(|| g.certificate.as_ref().and_then(|c| c.public_key().ok()));
        let Some(algorithm) = public.as_ref().map(|k| k.algorithm()).or(g.private_algorithm) else { continue };
        let name = match &g.label {
            Some(l) if label_count.get(l) == Some(&1) => l.clone(),
            _ => hex::encode(&id),
        };
        let usage = match (&g.certificate, g.private_usage, g.public_usage) {
            (Some(c), _, _) => c.usage(),
            (None, Some(u), _) | (None, None, Some(u)) => usage_from_flags(u),
            (None, None, None) => KeyUsage::Both,
        };
        // Only RSA (or SM2) keys decrypt; an EC key is a signing key whatever its flags say.
        let usage = if algorithm == Algorithm::EcdsaP256 { KeyUsage::Sign } else { usage };
        out.push(Entry { id, name, label: g.label, usage, algorithm, public, certificate: g.certificate });
    }
    Ok(out)
}

fn usage_from_flags((sign, decrypt): (bool, bool)) -> KeyUsage {
    match (sign, decrypt) {
        (true, false) => KeyUsage::Sign,
        (false, true) => KeyUsage::Encrypt,
        _ => KeyUsage::Both,
    }
}

/// The entry named `container` that has a key slot for `usage`.
pub(crate) fn entry_for(entries: Vec<Entry>, container: &str, usage: KeyUsage) -> Result<Entry> {
    let e = entries
        .into_iter()
        .find(|e| e.name == container)
        .ok_or_else(|| TokenError::NotFound(format!("container {container}")))?;
    if e.container().slot(usage).is_none() {
        return Err(TokenError::NotFound(format!("{usage} key pair in container {container}")));
    }
    Ok(e)
}
