//! Chain building and verification against configured trust anchors.
//!
//! Path building is by exact issuer-name match (preferring a matching key identifier),
//! every signature is checked with the issuer's key (SM2-with-SM3, RSA, ECDSA), every
//! certificate must be within its validity at the verification time, and every issuer
//! must be a CA allowed to sign certificates, within its path-length limit. The first
//! failure is reported with its reason and the certificate it concerns.

use crate::cert::Certificate;
use crate::time::UnixTime;
use crate::{PkiError, Result};
use x509_cert::ext::pkix::KeyUsages;

/// Maximum chain length (leaf + intermediates + anchor) we will build.
pub const MAX_DEPTH: usize = 8;

/// Trust anchors (root certificates the user or the product trusts).
#[derive(Clone, Debug, Default)]
pub struct TrustStore {
    anchors: Vec<Certificate>,
}

impl TrustStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// From a list of certificates.
    pub fn from_certs(anchors: impl IntoIterator<Item = Certificate>) -> Self {
        Self { anchors: anchors.into_iter().collect() }
    }

    /// From a PEM bundle (any number of `CERTIFICATE` blocks), e.g. a CA's root file or
    /// the product's configured anchors. An empty bundle is an error, not an empty store.
    pub fn from_pem_bundle(pem: &str) -> Result<Self> {
        let certs = Certificate::load_pem_chain(pem)?;
        if certs.is_empty() {
            return Err(PkiError::CertificateMalformed("no certificate in the trust bundle".into()));
        }
        Ok(Self::from_certs(certs))
    }

    /// Add an anchor.
    pub fn add(&mut self, c: Certificate) {
        if !self.anchors.contains(&c) {
            self.anchors.push(c);
        }
    }

    /// The anchors.
    pub fn anchors(&self) -> &[Certificate] {
        &self.anchors
    }

    fn is_anchor(&self, c: &Certificate) -> bool {
        self.anchors.contains(c)
    }
}

/// A verified chain, leaf first, anchor last.
#[derive(Clone, Debug)]
pub struct VerifiedChain {
    /// The certificates, leaf → anchor.
    pub certificates: Vec<Certificate>,
}

impl VerifiedChain {
    /// The trust anchor that terminated the chain.
    pub fn anchor(&self) -> Option<&Certificate> {
        self.certificates.last()
    }
}

/// Build and verify a chain for `leaf` at time `at`.
pub fn verify_chain(
    leaf: &Certificate,
    intermediates: &[Certificate],
    trust: &TrustStore,
    at: UnixTime,
) -> Result<VerifiedChain> {
    let mut chain = vec![leaf.clone()];
    leaf.check_validity(at)?;
    if trust.is_anchor(leaf) {
        return Ok(VerifiedChain { certificates: chain });
    }
    let mut current = leaf.clone();
    loop {
        if chain.len() >= MAX_DEPTH {
            return Err(PkiError::ChainTooLong(MAX_DEPTH));
        }
        let issuer_name = current.issuer_der();
        let mut candidates: Vec<(&Certificate, bool)> = trust
            .anchors()
            .iter()
            .map(|c| (c, true))
            .chain(intermediates.iter().map(|c| (c, false)))
            .filter(|(c, _)| c.subject_der() == issuer_name && !chain.contains(c))
            .collect();
        // Prefer candidates whose SKI matches the AKI, then anchors.
        let aki = current.authority_key_id();
        candidates.sort_by_key(|(c, anchor)| (aki.is_some() && c.subject_key_id() != aki, !anchor));
        if candidates.is_empty() {
            return Err(PkiError::UnknownIssuer { subject: current.subject(), issuer: current.issuer() });
        }
        let mut found = None;
        let mut first_err = None;
        for (cand, is_anchor) in candidates {
            let key = match cand.public_key() {
                Ok(k) => k,
                Err(e) => {
                    first_err.get_or_insert(e);
                    continue;
                }
            };
            match current.verify_signature(&key) {
                Ok(()) => {
                    found = Some((cand.clone(), is_anchor));
                    break;
                }
                Err(_) => {
                    first_err
                        .get_or_insert(PkiError::BadCertificateSignature { subject: current.subject(), issuer: cand.subject() });
                }
            }
        }
        let Some((issuer, is_anchor)) = found else {
            return Err(first_err.unwrap_or(PkiError::UnknownIssuer { subject: current.subject(), issuer: current.issuer() }));
        };
        // The issuer must be a CA allowed to sign certificates. Version-1 anchors (no
        // extensions at all) are accepted as anchors, as OpenSSL does.
        let v1_anchor = is_anchor && issuer.x509().tbs_certificate().extensions().is_none();
        if !v1_anchor && (!issuer.is_ca() || !issuer.allows(KeyUsages::KeyCertSign)) {
            return Err(PkiError::NotCa { subject: issuer.subject() });
        }
        // RFC 5280 §4.2.1.9: pathLenConstraint counts the non-self-issued
        // intermediates below this issuer (the leaf does not count).
        let intermediates_below = chain[1..].iter().filter(|c| !c.is_self_issued()).count();
        if let Some((_, Some(max))) = issuer.basic_constraints()
            && intermediates_below > max as usize
        {
            return Err(PkiError::ChainTooLong(max as usize + 1));
        }
        issuer.check_validity(at)?;
        chain.push(issuer.clone());
        if is_anchor {
            return Ok(VerifiedChain { certificates: chain });
        }
        current = issuer;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::issue::{CertKind, CertificateParams, issue, self_signed};
    use crate::signer::{LocalSigner, Signer};
    use crate::time::DAY;
    use kb_crypto::PrivateKey;
    use kb_types::{Algorithm, ErrorCode, HasErrorCode, KeyUsage};

    struct Pki {
        root: Certificate,
        mid: Certificate,
        leaf: Certificate,
        root_s: LocalSigner,
        mid_s: LocalSigner,
    }

    fn s(alg: Algorithm) -> LocalSigner {
        LocalSigner::new(PrivateKey::generate(alg).unwrap_or_else(|e| panic!("{e}")))
    }

    fn pki(alg: Algorithm, now: UnixTime) -> Pki {
        let root_s = s(alg);
        let root =
            self_signed(&CertificateParams::new("CN=Root", CertKind::Root { path_len: None }, now.plus_days(-10), 3650), &root_s)
                .unwrap_or_else(|e| panic!("{e}"));
        let mid_s = s(alg);
        let mid = issue(
            &CertificateParams::new("CN=Mid", CertKind::Intermediate { path_len: Some(0) }, now.plus_days(-10), 1000),
            mid_s.public_key(),
            Some(&root),
            &root_s,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let leaf = issue(
            &CertificateParams::leaf("CN=Leaf", KeyUsage::Sign, now.plus_days(-1), 30),
            s(alg).public_key(),
            Some(&mid),
            &mid_s,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        Pki { root, mid, leaf, root_s, mid_s }
    }

    #[test]
    fn good_chains_verify_for_every_algorithm() {
        let now = UnixTime::now();
        for alg in [Algorithm::Sm2, Algorithm::EcdsaP256, Algorithm::Rsa { bits: 2048 }] {
            let p = pki(alg, now);
            let trust = TrustStore::from_certs([p.root.clone()]);
            let c = verify_chain(&p.leaf, std::slice::from_ref(&p.mid), &trust, now).unwrap_or_else(|e| panic!("{alg}: {e}"));
            assert_eq!(c.certificates.len(), 3);
            assert_eq!(c.anchor(), Some(&p.root));
        }
    }

    #[test]
    fn each_failure_has_its_reason() {
        let now = UnixTime::now();
        let p = pki(Algorithm::Sm2, now);
        let trust = TrustStore::from_certs([p.root.clone()]);
        let code = |r: Result<VerifiedChain>| r.err().map(|e| e.code());

        // Expired / not yet valid.
        assert_eq!(
            code(verify_chain(&p.leaf, std::slice::from_ref(&p.mid), &trust, now.plus_days(40))),
            Some(ErrorCode::CertificateExpired)
        );
        assert_eq!(
            code(verify_chain(&p.leaf, std::slice::from_ref(&p.mid), &trust, now.plus_days(-5))),
            Some(ErrorCode::CertificateNotYetValid)
        );
        // Missing intermediate, or no trust anchor at all.
        assert_eq!(code(verify_chain(&p.leaf, &[], &trust, now)), Some(ErrorCode::UnknownIssuer));
        assert_eq!(
            code(verify_chain(&p.leaf, std::slice::from_ref(&p.mid), &TrustStore::new(), now)),
            Some(ErrorCode::UnknownIssuer)
        );
        // A different CA with the same name: signature does not verify.
        let fake_s = s(Algorithm::Sm2);
        let fake_mid = issue(
            &CertificateParams::new("CN=Mid", CertKind::Intermediate { path_len: None }, now.plus_days(-1), 10),
            fake_s.public_key(),
            Some(&p.root),
            &p.root_s,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(code(verify_chain(&p.leaf, &[fake_mid], &trust, now)), Some(ErrorCode::CertificateSignatureInvalid));
        // A leaf used as an issuer.
        let leaf_s = s(Algorithm::Sm2);
        let leaf_as_ca = issue(
            &CertificateParams::leaf("CN=NotCA", KeyUsage::Sign, now.plus_days(-1), 10),
            leaf_s.public_key(),
            Some(&p.mid),
            &p.mid_s,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        // A certificate signed with the non-CA leaf's key (made via a throw-away CA cert
        // of the same name and key) must be refused because its issuer is not a CA.
        let disguise =
            self_signed(&CertificateParams::new("CN=NotCA", CertKind::Root { path_len: None }, now.plus_days(-1), 10), &leaf_s)
                .unwrap_or_else(|e| panic!("{e}"));
        let victim = issue(
            &CertificateParams::leaf("CN=Victim", KeyUsage::Sign, now.plus_days(-1), 10),
            s(Algorithm::Sm2).public_key(),
            Some(&disguise),
            &leaf_s,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(code(verify_chain(&victim, &[leaf_as_ca, p.mid.clone()], &trust, now)), Some(ErrorCode::IssuerNotCa));
        // pathLen 0 on Mid forbids another intermediate under it.
        let sub_s = s(Algorithm::Sm2);
        let sub = issue(
            &CertificateParams::new("CN=Sub", CertKind::Intermediate { path_len: None }, now.plus_days(-1), 10),
            sub_s.public_key(),
            Some(&p.mid),
            &p.mid_s,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let deep = issue(
            &CertificateParams::leaf("CN=Deep", KeyUsage::Sign, now.plus_days(-1), 5),
            s(Algorithm::Sm2).public_key(),
            Some(&sub),
            &sub_s,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(code(verify_chain(&deep, &[p.mid.clone(), sub], &trust, now)), Some(ErrorCode::ChainTooLong));
        // Anchors configured as a PEM bundle behave the same; an empty bundle is refused.
        let bundle = format!("{}\n{}", p.root.to_pem(), p.mid.to_pem());
        let from_pem = TrustStore::from_pem_bundle(&bundle).unwrap();
        assert_eq!(from_pem.anchors().len(), 2);
        assert_eq!(verify_chain(&p.leaf, &[], &from_pem, now).unwrap().certificates.len(), 2);
        assert_eq!(code(TrustStore::from_pem_bundle("").map(|_| unreachable!())), Some(ErrorCode::CertificateMalformed));
        // The leaf itself as an anchor is trusted directly.
        assert!(verify_chain(&p.leaf, &[], &TrustStore::from_certs([p.leaf.clone()]), now).is_ok());
        assert!(now.0 > DAY);
    }
}
