//! The OpenPGP card's data objects as plain values: application related data (`6E`),
//! algorithm attributes (`C1`–`C3`), PW status bytes (`C4`), public keys (`7F49`).
//! Parsing only; no I/O.

use kb_apdu::tlv::{self, Tag, Tlv};
use kb_crypto::PublicKey;
use kb_token::TokenError;
use kb_types::Algorithm;

/// The OpenPGP application's registered identifier prefix (RID `D276000124`, PIX `01`).
pub const AID_PREFIX: [u8; 6] = [0xD2, 0x76, 0x00, 0x01, 0x24, 0x01];

/// The DER content of the P-256 curve OID (1.2.840.10045.3.1.7), as algorithm attributes carry it.
const OID_P256: [u8; 8] = [0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07];

fn corrupt(what: &str) -> TokenError {
    TokenError::Corrupt(format!("OpenPGP card data: {what}"))
}

/// A key algorithm as the card describes it (`C1`/`C2`/`C3`, spec 4.4.3.9).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyAttributes {
    /// RSA with this modulus size.
    Rsa {
        /// Modulus bits.
        bits: u16,
    },
    /// ECDSA (`13`) with this curve OID.
    Ecdsa {
        /// The curve OID's DER content.
        curve: Vec<u8>,
    },
    /// ECDH (`12`) with this curve OID.
    Ecdh {
        /// The curve OID's DER content.
        curve: Vec<u8>,
    },
    /// Any other algorithm id (EdDSA `16`, …).
    Other(u8),
}

impl KeyAttributes {
    /// Parse the value of `C1`/`C2`/`C3`.
    pub fn parse(v: &[u8]) -> Result<Self, TokenError> {
        // An optional trailing `FF` ("with public key" import format) is not part of the OID.
        let oid = |rest: &[u8]| rest.strip_suffix(&[0xFF]).unwrap_or(rest).to_vec();
        match v {
            [0x01, hi, lo, ..] => Ok(KeyAttributes::Rsa { bits: u16::from_be_bytes([*hi, *lo]) }),
            [0x13, rest @ ..] if !rest.is_empty() => Ok(KeyAttributes::Ecdsa { curve: oid(rest) }),
            [0x12, rest @ ..] if !rest.is_empty() => Ok(KeyAttributes::Ecdh { curve: oid(rest) }),
            [id, ..] => Ok(KeyAttributes::Other(*id)),
            [] => Err(corrupt("empty algorithm attributes")),
        }
    }

    /// The attributes to PUT for a KeyBridge algorithm in a slot. RSA uses a 32-bit
    /// public exponent field and the standard import format; P-256 is ECDSA for signing
    /// keys (an ECDH decryption key cannot serve KeyBridge's `decrypt`).
    pub fn for_algorithm(alg: Algorithm, signing: bool) -> Result<Self, TokenError> {
        match alg {
            Algorithm::Rsa { bits } if matches!(bits, 2048 | 3072 | 4096) => Ok(KeyAttributes::Rsa { bits: bits as u16 }),
            Algorithm::EcdsaP256 if signing => Ok(KeyAttributes::Ecdsa { curve: OID_P256.to_vec() }),
            other => Err(TokenError::NotSupported(format!(
                "{other} keys for {} on an OpenPGP card",
                if signing { "signing" } else { "decryption" }
            ))),
        }
    }

    /// The encoding for PUT DATA `C1`/`C2`.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            KeyAttributes::Rsa { bits } => {
                let [hi, lo] = bits.to_be_bytes();
                vec![0x01, hi, lo, 0x00, 0x20, 0x00]
            }
            KeyAttributes::Ecdsa { curve } => [&[0x13][..], curve].concat(),
            KeyAttributes::Ecdh { curve } => [&[0x12][..], curve].concat(),
            KeyAttributes::Other(id) => vec![*id],
        }
    }

    /// The KeyBridge algorithm, if KeyBridge can use such a key.
    pub fn algorithm(&self) -> Option<Algorithm> {
        match self {
            KeyAttributes::Rsa { bits } => Some(Algorithm::Rsa { bits: u32::from(*bits) }),
            KeyAttributes::Ecdsa { curve } if curve[..] == OID_P256 => Some(Algorithm::EcdsaP256),
            _ => None,
        }
    }
}

/// PW status bytes (`C4`, spec 4.4.3.2): maximum lengths and retry counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PwStatus {
    /// PW1 stays valid for several signatures.
    pub pw1_multiple_signatures: bool,
    /// Maximum PW1 length (format bit masked off).
    pub pw1_max_len: u8,
    /// Maximum PW3 length.
    pub pw3_max_len: u8,
    /// Tries left for PW1.
    pub pw1_retries: u8,
    /// Tries left for the resetting code.
    pub rc_retries: u8,
    /// Tries left for PW3.
    pub pw3_retries: u8,
}

impl PwStatus {
    /// Parse the 7 bytes of `C4`.
    pub fn parse(v: &[u8]) -> Result<Self, TokenError> {
        match v {
            [multi, pw1_max, _rc_max, pw3_max, pw1, rc, pw3, ..] => Ok(PwStatus {
                pw1_multiple_signatures: *multi != 0,
                pw1_max_len: pw1_max & 0x7F,
                pw3_max_len: pw3_max & 0x7F,
                pw1_retries: *pw1,
                rc_retries: *rc,
                pw3_retries: *pw3,
            }),
            _ => Err(corrupt("PW status bytes shorter than 7 bytes")),
        }
    }
}

/// What `GET DATA 6E` says about the application.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppData {
    /// The full AID (`4F`, 16 bytes).
    pub aid: Vec<u8>,
    /// Extended Lc/Le supported (from the historical bytes' card capabilities or `7F66`).
    pub extended_length: bool,
    /// Signature key attributes (`C1`).
    pub sig: KeyAttributes,
    /// Decryption key attributes (`C2`).
    pub dec: KeyAttributes,
    /// PW status (`C4`).
    pub pw: PwStatus,
}

impl AppData {
    /// Parse the value of `6E` (cards answer either the `6E` template or its content).
    pub fn parse(bytes: &[u8]) -> Result<Self, TokenError> {
        let tlvs = Tlv::parse_all(bytes).map_err(|e| corrupt(&e.to_string()))?;
        let get = |tag: u32| tlv::find(&tlvs, Tag(tag)).map(Tlv::value);
        let aid = get(0x4F).ok_or_else(|| corrupt("no AID (4F)"))?;
        if aid.len() != 16 || !aid.starts_with(&AID_PREFIX) {
            return Err(corrupt("the AID is not an OpenPGP AID"));
        }
        // Historical bytes: category 00, compact TLVs, 3 status bytes at the end. Tag 7
        // (`73`) is card capabilities; its third byte bit 0x40 = extended Lc/Le.
        let hist_ext = get(0x5F52).is_some_and(|h| {
            let body = h.get(1..h.len().saturating_sub(3)).unwrap_or(&[]);
            compact_find(body, 0x7).is_some_and(|caps| caps.get(2).is_some_and(|b| b & 0x40 != 0))
        });
        let sig = KeyAttributes::parse(get(0xC1).ok_or_else(|| corrupt("no signature key attributes (C1)"))?)?;
        let dec = KeyAttributes::parse(get(0xC2).ok_or_else(|| corrupt("no decryption key attributes (C2)"))?)?;
        let pw = PwStatus::parse(get(0xC4).ok_or_else(|| corrupt("no PW status bytes (C4)"))?)?;
        Ok(AppData { aid: aid.to_vec(), extended_length: hist_ext || get(0x7F66).is_some(), sig, dec, pw })
    }

    /// Specification version (major, minor) from the AID.
    pub fn version(&self) -> (u8, u8) {
        (self.aid[6], self.aid[7])
    }

    /// Manufacturer id from the AID.
    pub fn manufacturer_id(&self) -> u16 {
        u16::from_be_bytes([self.aid[8], self.aid[9]])
    }

    /// Serial number from the AID.
    pub fn serial(&self) -> u32 {
        u32::from_be_bytes([self.aid[10], self.aid[11], self.aid[12], self.aid[13]])
    }
}

/// Find a compact-TLV (tag nibble, length nibble) object in historical bytes.
fn compact_find(mut b: &[u8], tag: u8) -> Option<&[u8]> {
    while let [head, rest @ ..] = b {
        let len = usize::from(head & 0x0F);
        let value = rest.get(..len)?;
        if head >> 4 == tag {
            return Some(value);
        }
        b = &rest[len..];
    }
    None
}

/// Manufacturer names by the AID's manufacturer id, as GnuPG's `scd/app-openpgp.c`
/// (`app_openpgp_manufacturer`) lists them.
pub fn manufacturer_name(id: u16) -> &'static str {
    match id {
        0x0001 => "PPC Card Systems",
        0x0002 => "Prism",
        0x0003 => "OpenFortress",
        0x0004 => "Wewid",
        0x0005 => "ZeitControl",
        0x0006 => "Yubico",
        0x0007 => "OpenKMS",
        0x0008 => "LogoEmail",
        0x0009 => "Fidesmo",
        0x000A => "VivoKey",
        0x000B => "Feitian Technologies",
        0x000D => "Dangerous Things",
        0x000E => "Excelsecu",
        0x002A => "Magrathea",
        0x0042 => "GnuPG e.V.",
        0xF517 => "FSIJ",
        0x0000 | 0xFFFF => "test card",
        n if n & 0xFF00 == 0xFF00 => "unmanaged serial number range (emulator or test card)",
        _ => "unknown manufacturer",
    }
}

/// A public key from a `7F49` template (GENERATE ASYMMETRIC KEY PAIR's answer), for the
/// slot's attributes. `None` for algorithms KeyBridge cannot use (Curve25519, brainpool…).
pub fn public_key(template: &[u8], attrs: &KeyAttributes) -> Result<Option<PublicKey>, TokenError> {
    let tlvs = Tlv::parse_all(template).map_err(|e| corrupt(&e.to_string()))?;
    let get = |tag: u32| tlv::find(&tlvs, Tag(tag)).map(Tlv::value);
    let spki = match attrs.algorithm() {
        Some(Algorithm::Rsa { .. }) => {
            let n = get(0x81).ok_or_else(|| corrupt("RSA public key without modulus (81)"))?;
            let e = get(0x82).ok_or_else(|| corrupt("RSA public key without exponent (82)"))?;
            spki::rsa(n, e)?
        }
        Some(Algorithm::EcdsaP256) => spki::p256(get(0x86).ok_or_else(|| corrupt("EC public key without point (86)"))?)?,
        _ => return Ok(None),
    };
    PublicKey::from_spki_der(&spki).map(Some).map_err(|e| corrupt(&format!("public key: {e}")))
}

/// SubjectPublicKeyInfo DER for the card's raw key components.
mod spki {
    use super::corrupt;
    use der::asn1::{BitString, ObjectIdentifier, UintRef};
    use der::{Any, Encode, Sequence};
    use kb_crypto::keys::oid;
    use kb_token::TokenError;
    use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};

    #[derive(Sequence)]
    struct RsaPublicKey<'a> {
        modulus: UintRef<'a>,
        public_exponent: UintRef<'a>,
    }

    fn der_err(_: der::Error) -> TokenError {
        corrupt("public key encoding")
    }

    fn wrap(alg: ObjectIdentifier, params: Any, key: &[u8]) -> Result<Vec<u8>, TokenError> {
        SubjectPublicKeyInfoOwned {
            algorithm: AlgorithmIdentifierOwned { oid: alg, parameters: Some(params) },
            subject_public_key: BitString::from_bytes(key).map_err(der_err)?,
        }
        .to_der()
        .map_err(der_err)
    }

    pub(super) fn rsa(n: &[u8], e: &[u8]) -> Result<Vec<u8>, TokenError> {
        let key = RsaPublicKey { modulus: UintRef::new(n).map_err(der_err)?, public_exponent: UintRef::new(e).map_err(der_err)? };
        wrap(oid::RSA, Any::null(), &key.to_der().map_err(der_err)?)
    }

    pub(super) fn p256(point: &[u8]) -> Result<Vec<u8>, TokenError> {
        wrap(oid::EC_PUBLIC_KEY, Any::encode_from(&oid::P256).map_err(der_err)?, point)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `6E` content as the PyPI `smartcard-app-openpgp` 0.4.0 emulator answers it (its
    /// default RSA-2048 / X25519 / RSA-2048 attributes), recorded over PC/SC.
    const EMULATOR_6E: &str = "7381EE4F10D276000124010341FFEA6D0F3B9900005F520A0031E473FB11FF0590007F66080202FFFF0202FFFFC00A7D00FFFFFFFFFFFF0001C106010800002000C20B122B060104019755010501C306010800002000C407007F7F7F030003C53C000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000C63C000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000CD0C000000000000000000000000DE06000001000200";

    #[test]
    fn parses_the_emulator_application_data() {
        let raw = hex::decode(EMULATOR_6E).unwrap();
        let d = AppData::parse(&raw).unwrap();
        assert_eq!(d.version(), (0x03, 0x41)); // the emulator writes 3.4.1 as 03 41
        assert_eq!(d.manufacturer_id(), 0xFFEA);
        assert_eq!(d.serial(), 0x6D0F3B99);
        assert!(d.extended_length);
        assert_eq!(d.sig, KeyAttributes::Rsa { bits: 2048 });
        assert!(matches!(d.dec, KeyAttributes::Ecdh { .. }));
        assert_eq!(d.dec.algorithm(), None);
        assert_eq!(
            d.pw,
            PwStatus {
                pw1_multiple_signatures: false,
                pw1_max_len: 127,
                pw3_max_len: 127,
                pw1_retries: 3,
                rc_retries: 0,
                pw3_retries: 3
            }
        );
        assert_eq!(manufacturer_name(d.manufacturer_id()), "unmanaged serial number range (emulator or test card)");
        assert_eq!(manufacturer_name(0x0006), "Yubico");
    }

    #[test]
    fn rejects_bad_application_data() {
        assert!(AppData::parse(&[]).is_err());
        assert!(AppData::parse(&hex::decode("4F03010203").unwrap()).is_err());
        let raw = hex::decode(EMULATOR_6E).unwrap();
        for cut in [1, 10, 100, raw.len() - 1] {
            assert!(AppData::parse(&raw[..cut]).is_err(), "{cut}");
        }
    }

    #[test]
    fn attributes_round_trip() {
        for (alg, sign) in
            [(Algorithm::Rsa { bits: 2048 }, true), (Algorithm::EcdsaP256, true), (Algorithm::Rsa { bits: 4096 }, false)]
        {
            let a = KeyAttributes::for_algorithm(alg, sign).unwrap();
            assert_eq!(KeyAttributes::parse(&a.encode()).unwrap(), a);
            assert_eq!(a.algorithm(), Some(alg));
        }
        assert_eq!(
            hex::encode_upper(KeyAttributes::for_algorithm(Algorithm::EcdsaP256, true).unwrap().encode()),
            "132A8648CE3D030107"
        );
        assert!(KeyAttributes::for_algorithm(Algorithm::EcdsaP256, false).is_err());
        assert!(KeyAttributes::for_algorithm(Algorithm::Sm2, true).is_err());
        // The "with public key" import-format byte is not part of the curve.
        assert_eq!(
            KeyAttributes::parse(&hex::decode("132A8648CE3D030107FF").unwrap()).unwrap().algorithm(),
            Some(Algorithm::EcdsaP256)
        );
        assert!(KeyAttributes::parse(&[]).is_err());
        assert_eq!(KeyAttributes::parse(&[0x16, 1]).unwrap(), KeyAttributes::Other(0x16));
    }

    #[test]
    fn p256_public_key_from_template() {
        let k = kb_crypto::PrivateKey::generate(Algorithm::EcdsaP256).unwrap().public_key();
        let spki = k.to_spki_der().unwrap();
        let point = &spki[spki.len() - 65..];
        let t = [&[0x7F, 0x49, 0x43, 0x86, 0x41][..], point].concat();
        let attrs = KeyAttributes::Ecdsa { curve: OID_P256.to_vec() };
        assert_eq!(public_key(&t, &attrs).unwrap(), Some(k));
        assert!(public_key(&t[..20], &attrs).is_err());
        assert_eq!(public_key(&t, &KeyAttributes::Other(0x16)).unwrap(), None);
    }
}
