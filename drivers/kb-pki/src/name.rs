//! Distinguished names: parse `CN=张三,O=某某公司,C=CN`, encode as DER with UTF8String
//! (PrintableString for C and serialNumber, as RFC 5280 requires), and display any
//! name — including the BMPString values older Chinese CAs still issue.

use crate::{PkiError, Result};
use der::asn1::{Any, ObjectIdentifier as Oid};
use der::{Decode, Encode, Tag, Tagged};
use x509_cert::attr::AttributeTypeAndValue;
use x509_cert::name::{Name, RelativeDistinguishedName};

const ATTRS: &[(&str, &str)] = &[
    ("CN", "2.5.4.3"),
    ("SN", "2.5.4.4"),
    ("SERIALNUMBER", "2.5.4.5"),
    ("C", "2.5.4.6"),
    ("L", "2.5.4.7"),
    ("ST", "2.5.4.8"),
    ("STREET", "2.5.4.9"),
    ("O", "2.5.4.10"),
    ("OU", "2.5.4.11"),
    ("T", "2.5.4.12"),
    ("GN", "2.5.4.42"),
    ("E", "1.2.840.113549.1.9.1"),
    ("UID", "0.9.2342.19200300.100.1.1"),
    ("DC", "0.9.2342.19200300.100.1.25"),
];

fn short_name(oid: &Oid) -> Option<&'static str> {
    let s = oid.to_string();
    ATTRS.iter().find(|(_, o)| *o == s).map(|(n, _)| *n)
}

fn attr_oid(key: &str) -> Result<Oid> {
    let k = key.trim().to_ascii_uppercase();
    let k = match k.as_str() {
        "EMAILADDRESS" | "EMAIL" => "E",
        "S" => "ST",
        other => other,
    };
    if let Some((_, o)) = ATTRS.iter().find(|(n, _)| *n == k) {
        return Oid::new(o).map_err(|_| PkiError::CertificateMalformed(format!("bad OID for {key}")));
    }
    // Dotted OIDs are accepted as attribute types.
    Oid::new(key.trim()).map_err(|_| PkiError::CertificateMalformed(format!("unknown name attribute '{key}'")))
}

/// The components of a DN string: split on unescaped `,` (RFC 4514 escaping with `\`),
/// escapes kept, trimmed, empty ones dropped.
fn components(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut esc) = (0, false);
    for (i, c) in s.char_indices() {
        match c {
            _ if esc => esc = false,
            '\\' => esc = true,
            ',' => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out.into_iter().map(str::trim).filter(|p| !p.is_empty()).collect()
}

/// Split on unescaped `,`, escapes removed.
fn split_rdns(s: &str) -> Vec<String> {
    components(s)
        .into_iter()
        .map(|p| {
            let mut cur = String::with_capacity(p.len());
            let mut esc = false;
            for c in p.chars() {
                if esc || c != '\\' {
                    cur.push(c);
                    esc = false;
                } else {
                    esc = true;
                }
            }
            cur.trim().to_string()
        })
        .collect()
}

/// How general an attribute is, for telling which way a DN is written: domain
/// components and country first, the person (CN, E, UID, …) last.
fn generality(component: &str) -> u8 {
    let key = component.split_once('=').map(|(k, _)| k).unwrap_or(component);
    match attr_oid(key).ok().as_ref().and_then(short_name) {
        Some("DC") => 0,
        Some("C") => 1,
        Some("ST") => 2,
        Some("L" | "STREET") => 3,
        Some("O") => 4,
        Some("OU") => 5,
        _ => 6,
    }
}

/// A DN as people write or paste it, in encoding order for [`encode_dn`]. Either order
/// is accepted:
///
/// - the order names are **displayed** in ([`display`], Windows, CA clients): most
///   specific first, `CN=张三, O=某某公司, C=CN`, so a subject copied from a
///   certificate's details can be pasted back;
/// - the **encoding** order, most general first: `C=CN, O=某某公司, CN=张三`.
///
/// The first and last attributes tell which: a string that starts more general than it
/// ends (country before common name) is already in encoding order and is kept; any
/// other string is read as displayed and reversed. Escapes are kept as written.
pub fn in_encoding_order(dn: &str) -> String {
    let mut parts = components(dn);
    if let (Some(first), Some(last)) = (parts.first(), parts.last())
        && generality(first) >= generality(last)
    {
        parts.reverse();
    }
    parts.join(",")
}

/// Encode a DN string as DER. Components are written in the order given (most
/// general first is conventional: `C=CN,O=…,CN=…`; either order is accepted and kept).
pub fn encode_dn(dn: &str) -> Result<Vec<u8>> {
    let mut rdns: Vec<RelativeDistinguishedName> = Vec::new();
    for part in split_rdns(dn) {
        let (k, v) = part.split_once('=').ok_or_else(|| PkiError::CertificateMalformed(format!("'{part}' is not KEY=value")))?;
        let oid = attr_oid(k)?;
        let v = v.trim();
        let printable = matches!(short_name(&oid), Some("C" | "SERIALNUMBER"))
            && v.chars().all(|c| c.is_ascii_alphanumeric() || " '()+,-./:=?".contains(c));
        let ia5 = matches!(short_name(&oid), Some("E" | "DC"));
        let tag = if printable {
            Tag::PrintableString
        } else if ia5 && v.is_ascii() {
            Tag::Ia5String
        } else {
            Tag::Utf8String
        };
        let value = Any::new(tag, v.as_bytes()).map_err(|e| PkiError::CertificateMalformed(format!("name value: {e}")))?;
        let atv = AttributeTypeAndValue { oid, value };
        let rdn = RelativeDistinguishedName::try_from(vec![atv]).map_err(|e| PkiError::CertificateMalformed(format!("{e}")))?;
        rdns.push(rdn);
    }
    rdns.to_der().map_err(|e| PkiError::CertificateMalformed(format!("name: {e}")))
}

/// Parse a DN string into an x509 `Name`.
pub fn parse_dn(dn: &str) -> Result<Name> {
    Name::from_der(&encode_dn(dn)?).map_err(|e| PkiError::CertificateMalformed(format!("name: {e}")))
}

/// Decode an attribute value of any directory-string type to text.
pub fn value_to_string(v: &Any) -> String {
    let b = v.value();
    match v.tag() {
        Tag::Utf8String | Tag::PrintableString | Tag::Ia5String | Tag::VisibleString | Tag::NumericString => {
            String::from_utf8_lossy(b).into_owned()
        }
        // TeletexString: treat as Latin-1, which is what it holds in practice.
        Tag::TeletexString => b.iter().map(|&c| c as char).collect(),
        Tag::BmpString => {
            let units: Vec<u16> = b.chunks(2).map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])).collect();
            String::from_utf16_lossy(&units)
        }
        _ => format!("#{}", hex::encode(v.to_der().unwrap_or_default())),
    }
}

/// One attribute of a name.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct NameAttribute {
    /// Short name (`CN`, `O`, …) or the dotted OID.
    pub key: String,
    /// The OID.
    pub oid: String,
    /// Decoded value.
    pub value: String,
}

/// Every attribute in encoding order.
pub fn attributes(name: &Name) -> Vec<NameAttribute> {
    name.iter_rdn()
        .flat_map(|rdn| rdn.iter())
        .map(|atv| NameAttribute {
            key: short_name(&atv.oid).map(str::to_string).unwrap_or_else(|| atv.oid.to_string()),
            oid: atv.oid.to_string(),
            value: value_to_string(&atv.value),
        })
        .collect()
}

/// Display form, most specific first (`CN=张三, O=某某公司, C=CN`), as Windows and
/// the CA clients our users know show it.
pub fn display(name: &Name) -> String {
    let mut parts: Vec<String> = attributes(name).into_iter().map(|a| format!("{}={}", a.key, escape(&a.value))).collect();
    parts.reverse();
    parts.join(", ")
}

fn escape(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        if matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';') {
            s.push('\\');
        }
        s.push(c);
    }
    s
}

/// The common name, if any.
pub fn common_name(name: &Name) -> Option<String> {
    attributes(name).into_iter().find(|a| a.key == "CN").map(|a| a.value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chinese_names_round_trip() {
        let n =
            parse_dn("C=CN,ST=广东,O=某某建设集团有限公司,OU=投标部,CN=张三,E=zs@example.cn").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(display(&n), "E=zs@example.cn, CN=张三, OU=投标部, O=某某建设集团有限公司, ST=广东, C=CN");
        assert_eq!(common_name(&n).as_deref(), Some("张三"));
        let attrs = attributes(&n);
        assert_eq!(attrs[0].key, "C");
        assert_eq!(attrs.len(), 6);
    }

    #[test]
    fn bmp_string_values_display() {
        // CN as BMPString "测试".
        let bmp: Vec<u8> = "测试".encode_utf16().flat_map(|u| u.to_be_bytes()).collect();
        let any = Any::new(Tag::BmpString, bmp).unwrap_or_else(|_| unreachable!());
        assert_eq!(value_to_string(&any), "测试");
    }

    #[test]
    fn displayed_and_encoding_order_both_encode_general_first() {
        let encoded = encode_dn("C=CN,ST=广东,O=某某公司,OU=投标部,CN=张三,E=zs@example.cn").unwrap_or_else(|e| panic!("{e}"));
        let shown =
            display(&parse_dn("C=CN,ST=广东,O=某某公司,OU=投标部,CN=张三,E=zs@example.cn").unwrap_or_else(|e| panic!("{e}")));
        for written in [shown.as_str(), "C=CN, ST=广东, O=某某公司, OU=投标部, CN=张三, E=zs@example.cn"] {
            let again = encode_dn(&in_encoding_order(written)).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(again, encoded, "{written}");
        }
        // Escapes survive; a single attribute, DC names and names without a country.
        assert_eq!(in_encoding_order(r"CN=Acme\, Inc., C=CN"), r"C=CN,CN=Acme\, Inc.");
        assert_eq!(in_encoding_order("CN=张三"), "CN=张三");
        assert_eq!(in_encoding_order("CN=host, DC=example, DC=cn"), "DC=cn,DC=example,CN=host");
        assert_eq!(in_encoding_order("O=某某公司, CN=张三"), "O=某某公司,CN=张三");
        assert_eq!(in_encoding_order("CN=张三, O=某某公司"), "O=某某公司,CN=张三");
    }

    #[test]
    fn escaping_and_errors() {
        let n = parse_dn(r"CN=Acme\, Inc.,C=CN").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(common_name(&n).as_deref(), Some("Acme, Inc."));
        assert_eq!(display(&n), r"C=CN, CN=Acme\, Inc.");
        assert!(parse_dn("CN").is_err());
        assert!(parse_dn("FOO=bar").is_err());
        assert!(parse_dn("2.5.4.3=dotted").is_ok());
    }
}
