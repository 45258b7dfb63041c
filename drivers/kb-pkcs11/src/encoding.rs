//! DER around PKCS#11 attributes: public keys from `CKA_MODULUS`/`CKA_PUBLIC_EXPONENT` or
//! `CKA_EC_PARAMS`/`CKA_EC_POINT`, raw `r ‖ s` signatures, certificate serial numbers.

use der::asn1::{Any, BitString, ObjectIdentifier, OctetString, UintRef};
use der::{Decode, Encode, Sequence};
use kb_crypto::PublicKey;
use kb_crypto::keys::oid;
use kb_token::{Result, TokenError};
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};

/// `SEQUENCE { INTEGER, INTEGER }`: both an RSAPublicKey and an Ecdsa-Sig-Value.
#[derive(Sequence)]
struct TwoIntegers<'a> {
    a: UintRef<'a>,
    b: UintRef<'a>,
}

fn bad(what: &str) -> TokenError {
    TokenError::Corrupt(format!("the token returned a malformed {what}"))
}

/// DER `SEQUENCE { INTEGER a, INTEGER b }` from two unsigned big-endian numbers.
pub(crate) fn two_integers(a: &[u8], b: &[u8]) -> Result<Vec<u8>> {
    let a = UintRef::new(a).map_err(|_| bad("integer"))?;
    let b = UintRef::new(b).map_err(|_| bad("integer"))?;
    TwoIntegers { a, b }.to_der().map_err(|_| bad("integer pair"))
}

fn spki(algorithm: ObjectIdentifier, parameters: Any, key: &[u8]) -> Result<PublicKey> {
    let spki = SubjectPublicKeyInfoOwned {
        algorithm: AlgorithmIdentifierOwned { oid: algorithm, parameters: Some(parameters) },
        subject_public_key: BitString::from_bytes(key).map_err(|_| bad("public key"))?,
    };
    let der = spki.to_der().map_err(|_| bad("public key"))?;
    Ok(PublicKey::from_spki_der(&der)?)
}

/// An RSA public key from its modulus and public exponent.
pub(crate) fn rsa_public_key(modulus: &[u8], exponent: &[u8]) -> Result<PublicKey> {
    spki(oid::RSA, Any::null(), &two_integers(modulus, exponent)?)
}

/// An EC public key (P-256 or SM2) from `CKA_EC_PARAMS` (a DER OID) and `CKA_EC_POINT`
/// (a DER OCTET STRING holding the uncompressed point; some modules return the bare point).
pub(crate) fn ec_public_key(params: &[u8], point: &[u8]) -> Result<PublicKey> {
    let curve: ObjectIdentifier = ObjectIdentifier::from_der(params).map_err(|_| bad("CKA_EC_PARAMS"))?;
    let wrapped = OctetString::from_der(point).ok();
    let point = wrapped.as_ref().map_or(point, |os| os.as_bytes());
    let parameters = Any::encode_from(&curve).map_err(|_| bad("CKA_EC_PARAMS"))?;
    spki(oid::EC_PUBLIC_KEY, parameters, point)
}

/// `CKA_EC_PARAMS` for P-256.
pub(crate) fn p256_params() -> Result<Vec<u8>> {
    oid::P256.to_der().map_err(|_| bad("curve"))
}

/// A certificate serial number (content bytes) as the DER INTEGER `CKA_SERIAL_NUMBER` holds.
pub(crate) fn serial_number_der(content: &[u8]) -> Result<Vec<u8>> {
    der::asn1::IntRef::new(content).and_then(|i| i.to_der()).map_err(|_| bad("serial number"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kb_crypto::PrivateKey;
    use kb_types::Algorithm;

    #[test]
    fn ec_points_in_both_forms() {
        let k = PrivateKey::generate(Algorithm::EcdsaP256).unwrap().public_key();
        let spki = k.to_spki_der().unwrap();
        let point = &spki[spki.len() - 65..];
        let wrapped = OctetString::new(point).unwrap().to_der().unwrap();
        assert_eq!(ec_public_key(&p256_params().unwrap(), &wrapped).unwrap(), k);
        assert_eq!(ec_public_key(&p256_params().unwrap(), point).unwrap(), k);
        assert!(ec_public_key(b"junk", point).is_err());
    }

    #[test]
    fn serial_numbers() {
        assert_eq!(serial_number_der(&[0x01, 0x02]).unwrap(), vec![0x02, 0x02, 0x01, 0x02]);
        assert_eq!(serial_number_der(&[0x00, 0x80]).unwrap(), vec![0x02, 0x02, 0x00, 0x80]);
    }
}
