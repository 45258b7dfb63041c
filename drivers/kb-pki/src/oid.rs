//! Object identifiers, with the GM/T 0006 / GM/T 0010 ones next to their RFC twins.

use der::asn1::ObjectIdentifier as Oid;
use kb_crypto::{HashAlgorithm, SignatureScheme};

pub use kb_crypto::keys::oid::{EC_PUBLIC_KEY, P256, RSA, SM2_CURVE};

/// SM2 signature with SM3 (GM/T 0006).
pub const SM2_WITH_SM3: Oid = Oid::new_unwrap("1.2.156.10197.1.501");
/// SM2-1 signature algorithm (used in GM/T 0010 SignerInfo.digestEncryptionAlgorithm).
pub const SM2_SIGN: Oid = Oid::new_unwrap("1.2.156.10197.1.301.1");
/// SM2-3 public-key encryption (GM/T 0010 key transport).
pub const SM2_ENCRYPT: Oid = Oid::new_unwrap("1.2.156.10197.1.301.3");
/// SM2-2 key exchange (GM/T 0006). GmSSL 3 calls it "sm2encrypt" and writes it for SM2
/// key transport in CMS RecipientInfos; accepted there on input (docs/sm2-cms.md).
pub const SM2_KEY_EXCHANGE: Oid = Oid::new_unwrap("1.2.156.10197.1.301.2");
/// SM3.
pub const SM3: Oid = Oid::new_unwrap("1.2.156.10197.1.401");
/// SM4 (GM/T 0006 "SM4 algorithm"; some vendors use it for CBC).
pub const SM4: Oid = Oid::new_unwrap("1.2.156.10197.1.104");
/// SM4-ECB.
pub const SM4_ECB: Oid = Oid::new_unwrap("1.2.156.10197.1.104.1");
/// SM4-CBC.
pub const SM4_CBC: Oid = Oid::new_unwrap("1.2.156.10197.1.104.2");

/// sha1WithRSAEncryption.
pub const SHA1_WITH_RSA: Oid = Oid::new_unwrap("1.2.840.113549.1.1.5");
/// sha256WithRSAEncryption.
pub const SHA256_WITH_RSA: Oid = Oid::new_unwrap("1.2.840.113549.1.1.11");
/// sha384WithRSAEncryption.
pub const SHA384_WITH_RSA: Oid = Oid::new_unwrap("1.2.840.113549.1.1.12");
/// sha512WithRSAEncryption.
pub const SHA512_WITH_RSA: Oid = Oid::new_unwrap("1.2.840.113549.1.1.13");
/// RSASSA-PSS.
pub const RSA_PSS: Oid = Oid::new_unwrap("1.2.840.113549.1.1.10");
/// RSAES-OAEP.
pub const RSA_OAEP: Oid = Oid::new_unwrap("1.2.840.113549.1.1.7");
/// ecdsa-with-SHA256.
pub const ECDSA_WITH_SHA256: Oid = Oid::new_unwrap("1.2.840.10045.4.3.2");
/// ecdsa-with-SHA384.
pub const ECDSA_WITH_SHA384: Oid = Oid::new_unwrap("1.2.840.10045.4.3.3");

/// SHA-1.
pub const SHA1: Oid = Oid::new_unwrap("1.3.14.3.2.26");
/// SHA-256.
pub const SHA256: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.2.1");
/// SHA-384.
pub const SHA384: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.2.2");
/// SHA-512.
pub const SHA512: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.2.3");
/// MD5.
pub const MD5: Oid = Oid::new_unwrap("1.2.840.113549.2.5");

/// AES-128-CBC / AES-256-CBC (recognised in envelopes made by others).
pub const AES128_CBC: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.1.2");
/// AES-256-CBC.
pub const AES256_CBC: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.1.42");

/// The hash behind a digest-algorithm OID.
pub fn hash_from_oid(oid: &Oid) -> Option<HashAlgorithm> {
    Some(match *oid {
        SM3 => HashAlgorithm::Sm3,
        SHA1 => HashAlgorithm::Sha1,
        SHA256 => HashAlgorithm::Sha256,
        SHA384 => HashAlgorithm::Sha384,
        SHA512 => HashAlgorithm::Sha512,
        MD5 => HashAlgorithm::Md5,
        _ => return None,
    })
}

/// The digest-algorithm OID of a hash.
pub fn hash_oid(h: HashAlgorithm) -> Oid {
    match h {
        HashAlgorithm::Sm3 => SM3,
        HashAlgorithm::Sha1 => SHA1,
        HashAlgorithm::Sha256 => SHA256,
        HashAlgorithm::Sha384 => SHA384,
        HashAlgorithm::Sha512 => SHA512,
        HashAlgorithm::Md5 => MD5,
    }
}

/// The signature scheme an X.509/PKCS#10 `signatureAlgorithm` OID names. SM2 uses the
/// default ID, as GM/T 0015 requires for certificates.
pub fn scheme_from_sig_oid(oid: &Oid) -> Option<SignatureScheme> {
    Some(match *oid {
        SM2_WITH_SM3 | SM2_SIGN => SignatureScheme::sm2_default(),
        SHA1_WITH_RSA => SignatureScheme::RsaPkcs1(HashAlgorithm::Sha1),
        SHA256_WITH_RSA => SignatureScheme::RsaPkcs1(HashAlgorithm::Sha256),
        SHA384_WITH_RSA => SignatureScheme::RsaPkcs1(HashAlgorithm::Sha384),
        SHA512_WITH_RSA => SignatureScheme::RsaPkcs1(HashAlgorithm::Sha512),
        ECDSA_WITH_SHA256 => SignatureScheme::Ecdsa(HashAlgorithm::Sha256),
        ECDSA_WITH_SHA384 => SignatureScheme::Ecdsa(HashAlgorithm::Sha384),
        _ => return None,
    })
}

/// The `signatureAlgorithm` OID for a scheme, and whether it carries NULL parameters
/// (RSA PKCS#1 does; SM2 and ECDSA omit them).
pub fn sig_oid(scheme: &SignatureScheme) -> Option<(Oid, bool)> {
    Some(match scheme {
        SignatureScheme::Sm2Sm3 { .. } => (SM2_WITH_SM3, false),
        SignatureScheme::RsaPkcs1(HashAlgorithm::Sha1) => (SHA1_WITH_RSA, true),
        SignatureScheme::RsaPkcs1(HashAlgorithm::Sha256) => (SHA256_WITH_RSA, true),
        SignatureScheme::RsaPkcs1(HashAlgorithm::Sha384) => (SHA384_WITH_RSA, true),
        SignatureScheme::RsaPkcs1(HashAlgorithm::Sha512) => (SHA512_WITH_RSA, true),
        SignatureScheme::Ecdsa(HashAlgorithm::Sha256) => (ECDSA_WITH_SHA256, false),
        SignatureScheme::Ecdsa(HashAlgorithm::Sha384) => (ECDSA_WITH_SHA384, false),
        _ => return None,
    })
}

/// Human name of a well-known OID (extensions, attributes, algorithms), or `None`.
pub fn name(oid: &Oid) -> Option<&'static str> {
    Some(match oid.to_string().as_str() {
        "2.5.29.14" => "subjectKeyIdentifier",
        "2.5.29.15" => "keyUsage",
        "2.5.29.17" => "subjectAltName",
        "2.5.29.19" => "basicConstraints",
        "2.5.29.31" => "cRLDistributionPoints",
        "2.5.29.32" => "certificatePolicies",
        "2.5.29.35" => "authorityKeyIdentifier",
        "2.5.29.37" => "extKeyUsage",
        "1.3.6.1.5.5.7.1.1" => "authorityInfoAccess",
        "1.2.156.10197.1.501" => "SM2-with-SM3",
        "1.2.156.10197.1.301" => "SM2",
        "1.2.156.10197.1.301.1" => "SM2-1 (signature)",
        "1.2.156.10197.1.301.2" => "SM2-2 (GmSSL sm2encrypt)",
        "1.2.156.10197.1.301.3" => "SM2-3 (encryption)",
        "1.2.156.10197.1.401" => "SM3",
        "1.2.840.113549.1.1.1" => "rsaEncryption",
        "1.2.840.113549.1.1.11" => "sha256WithRSAEncryption",
        "1.2.840.10045.2.1" => "id-ecPublicKey",
        "1.2.840.10045.4.3.2" => "ecdsa-with-SHA256",
        "1.2.156.10197.6.1.4.2.1" => "GM/T 0010 data",
        "1.2.156.10197.6.1.4.2.2" => "GM/T 0010 signedData",
        "1.2.156.10197.6.1.4.2.3" => "GM/T 0010 envelopedData",
        // Chinese CA private extensions commonly seen in SM2 certificates.
        "1.2.156.10260.4.1.1" => "identityCode (GM/T 0015 个人身份标识码)",
        "1.2.156.10260.4.1.3" => "insuranceNumber (个人社会保险号)",
        "1.2.156.10260.4.1.4" => "organizationCode (企业组织机构代码)",
        "1.2.156.10260.4.1.5" => "icRegistrationNumber (企业工商注册号)",
        "1.2.156.10260.4.1.6" => "taxationNumber (企业税号)",
        _ => return None,
    })
}
