//! BER-TLV as ISO 7816-4 uses it: tags of 1–4 bytes, definite lengths of 1–4 length
//! bytes, constructed values nested to at most [`MAX_DEPTH`] levels. Parsing never
//! panics and never allocates more than the input's size.

use std::fmt;

/// Deepest nesting of constructed values accepted.
pub const MAX_DEPTH: usize = 16;

/// Why bytes are not BER-TLV.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlvError {
    /// The input ends inside a tag, a length or a value.
    #[error("TLV truncated")]
    Truncated,
    /// A tag longer than 4 bytes.
    #[error("TLV tag longer than 4 bytes")]
    TagTooLong,
    /// `80`: indefinite length (not used by ISO 7816-4 cards).
    #[error("TLV indefinite length")]
    IndefiniteLength,
    /// A length field of more than 4 bytes (`85`..`FF`).
    #[error("TLV length field too long")]
    LengthTooLong,
    /// Constructed values nested deeper than [`MAX_DEPTH`].
    #[error("TLV nested too deeply")]
    TooDeep,
    /// A value too long to encode (over 4 GiB).
    #[error("TLV value too long")]
    ValueTooLong,
}

/// A BER tag, its bytes as a big-endian number (`0x5F50`, `0x7F49`, `0x6E`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(pub u32);

impl Tag {
    /// The tag bytes, without leading zero bytes (a tag of 0 is one `00` byte).
    pub fn to_bytes(self) -> Vec<u8> {
        let b = self.0.to_be_bytes();
        let skip = b.iter().take(3).take_while(|&&x| x == 0).count();
        b[skip..].to_vec()
    }

    /// Whether the constructed bit (`0x20` of the first byte) is set.
    pub fn is_constructed(self) -> bool {
        self.to_bytes().first().is_some_and(|b| b & 0x20 != 0)
    }
}

impl fmt::Debug for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tag({:02X})", self.0)
    }
}

/// One TLV. A constructed TLV also holds its parsed children; `value` is always the raw
/// content bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Tlv {
    tag: Tag,
    value: Vec<u8>,
    children: Vec<Tlv>,
}

impl Tlv {
    /// A primitive TLV.
    pub fn primitive(tag: Tag, value: impl Into<Vec<u8>>) -> Self {
        Tlv { tag, value: value.into(), children: Vec::new() }
    }

    /// A constructed TLV from its children (the tag should have the constructed bit).
    pub fn constructed(tag: Tag, children: Vec<Tlv>) -> Result<Self, TlvError> {
        let mut value = Vec::new();
        for c in &children {
            c.encode_into(&mut value)?;
        }
        Ok(Tlv { tag, value, children })
    }

    /// The tag.
    pub fn tag(&self) -> Tag {
        self.tag
    }

    /// The content bytes.
    pub fn value(&self) -> &[u8] {
        &self.value
    }

    /// The children of a constructed TLV (empty for a primitive one).
    pub fn children(&self) -> &[Tlv] {
        &self.children
    }

    /// Parse one TLV from the front of `input`; returns it and the rest.
    pub fn parse(input: &[u8]) -> Result<(Tlv, &[u8]), TlvError> {
        parse_one(input, 0)
    }

    /// Parse a whole buffer as a sequence of TLVs (empty input is an empty list).
    pub fn parse_all(input: &[u8]) -> Result<Vec<Tlv>, TlvError> {
        parse_seq(input, 0)
    }

    /// Depth-first search of this TLV and its descendants.
    pub fn find(&self, tag: Tag) -> Option<&Tlv> {
        if self.tag == tag {
            return Some(self);
        }
        find(&self.children, tag)
    }

    /// The encoding: tag ‖ minimal definite length ‖ value.
    pub fn to_bytes(&self) -> Result<Vec<u8>, TlvError> {
        let mut out = Vec::with_capacity(self.value.len() + 8);
        self.encode_into(&mut out)?;
        Ok(out)
    }

    fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), TlvError> {
        out.extend_from_slice(&self.tag.to_bytes());
        encode_length(self.value.len(), out)?;
        out.extend_from_slice(&self.value);
        Ok(())
    }
}

impl fmt::Debug for Tlv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.children.is_empty() {
            write!(f, "{:?}[{}]", self.tag, crate::command::hex(&self.value))
        } else {
            write!(f, "{:?}", self.tag)?;
            f.debug_list().entries(&self.children).finish()
        }
    }
}

/// Depth-first search through a list of TLVs and their descendants.
pub fn find(tlvs: &[Tlv], tag: Tag) -> Option<&Tlv> {
    tlvs.iter().find_map(|t| t.find(tag))
}

/// Encode a sequence of TLVs.
pub fn encode_all(tlvs: &[Tlv]) -> Result<Vec<u8>, TlvError> {
    let mut out = Vec::new();
    for t in tlvs {
        t.encode_into(&mut out)?;
    }
    Ok(out)
}

fn encode_length(n: usize, out: &mut Vec<u8>) -> Result<(), TlvError> {
    let n = u32::try_from(n).map_err(|_| TlvError::ValueTooLong)?;
    match n {
        0..=0x7F => out.push(n as u8),
        0x80..=0xFF => out.extend_from_slice(&[0x81, n as u8]),
        0x100..=0xFFFF => {
            out.push(0x82);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        0x1_0000..=0xFF_FFFF => {
            out.push(0x83);
            out.extend_from_slice(&n.to_be_bytes()[1..]);
        }
        _ => {
            out.push(0x84);
            out.extend_from_slice(&n.to_be_bytes());
        }
    }
    Ok(())
}

fn parse_seq(mut input: &[u8], depth: usize) -> Result<Vec<Tlv>, TlvError> {
    let mut out = Vec::new();
    while !input.is_empty() {
        let (tlv, rest) = parse_one(input, depth)?;
        out.push(tlv);
        input = rest;
    }
    Ok(out)
}

fn parse_one(input: &[u8], depth: usize) -> Result<(Tlv, &[u8]), TlvError> {
    let (&first, mut rest) = input.split_first().ok_or(TlvError::Truncated)?;
    let mut tag = first as u32;
    if first & 0x1F == 0x1F {
        // Subsequent tag bytes: bit 8 set means another follows.
        let mut n = 1;
        loop {
            let (&b, r) = rest.split_first().ok_or(TlvError::Truncated)?;
            rest = r;
            n += 1;
            if n > 4 {
                return Err(TlvError::TagTooLong);
            }
            tag = (tag << 8) | b as u32;
            if b & 0x80 == 0 {
                break;
            }
        }
    }
    let (&l0, r) = rest.split_first().ok_or(TlvError::Truncated)?;
    rest = r;
    let len = match l0 {
        0x00..=0x7F => l0 as usize,
        0x80 => return Err(TlvError::IndefiniteLength),
        0x81..=0x84 => {
            let n = (l0 & 0x7F) as usize;
            if rest.len() < n {
                return Err(TlvError::Truncated);
            }
            let (lb, r) = rest.split_at(n);
            rest = r;
            lb.iter().fold(0usize, |acc, &b| (acc << 8) | b as usize)
        }
        _ => return Err(TlvError::LengthTooLong),
    };
    if rest.len() < len {
        return Err(TlvError::Truncated);
    }
    let (value, rest) = rest.split_at(len);
    let tag = Tag(tag);
    let children = if first & 0x20 != 0 {
        if depth >= MAX_DEPTH {
            return Err(TlvError::TooDeep);
        }
        parse_seq(value, depth + 1)?
    } else {
        Vec::new()
    };
    Ok((Tlv { tag, value: value.to_vec(), children }, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    #[test]
    fn nested_multibyte_tags_and_lengths() {
        // 7F49 (public key) { 86 (EC point) }, then 5F50 URL, then 6E { 73 { C0 } }.
        let bytes = h("7F49 05 86 03 04AABB  5F50 03 616263  6E 07 73 05 C0 03 010203");
        let all = Tlv::parse_all(&bytes).unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(all[0].tag(), Tag(0x7F49));
        assert!(all[0].tag().is_constructed());
        assert_eq!(find(&all, Tag(0x86)).unwrap().value(), &h("04AABB")[..]);
        assert_eq!(find(&all, Tag(0x5F50)).unwrap().value(), b"abc");
        assert_eq!(find(&all, Tag(0xC0)).unwrap().value(), &[1, 2, 3]);
        assert!(find(&all, Tag(0xC1)).is_none());
        assert_eq!(encode_all(&all).unwrap(), bytes);
        assert_eq!(Tag(0x7F49).to_bytes(), vec![0x7F, 0x49]);
        assert_eq!(Tag(0).to_bytes(), vec![0]);
        assert_eq!(format!("{:?}", all[2]), "Tag(6E)[Tag(73)[Tag(C0)[010203]]]");
    }

    #[test]
    fn long_lengths_round_trip() {
        for n in [0usize, 1, 0x7F, 0x80, 0xFF, 0x100, 0xFFFF, 0x1_0000] {
            let t = Tlv::primitive(Tag(0x5F2D), vec![0xA5; n]);
            let b = t.to_bytes().unwrap();
            let hdr = match n {
                0..=0x7F => 1,
                0x80..=0xFF => 2,
                0x100..=0xFFFF => 3,
                _ => 4,
            };
            assert_eq!(b.len(), 2 + hdr + n, "{n}");
            let (back, rest) = Tlv::parse(&b).unwrap();
            assert!(rest.is_empty());
            assert_eq!(back, t);
        }
        // 84 (four length bytes) and non-minimal 81 05 are accepted.
        let (t, _) = Tlv::parse(&h("C1 8400000002 ABCD")).unwrap();
        assert_eq!(t.value(), &[0xAB, 0xCD]);
        let (t, _) = Tlv::parse(&h("C1 8102 ABCD")).unwrap();
        assert_eq!(t.to_bytes().unwrap(), h("C102ABCD"));
        // Built constructed values encode their children.
        let c = Tlv::constructed(Tag(0x7F49), vec![Tlv::primitive(Tag(0x86), vec![4])]).unwrap();
        assert_eq!(c.to_bytes().unwrap(), h("7F49 03 860104"));
        assert_eq!(c.find(Tag(0x86)).unwrap().value(), &[4]);
        assert_eq!(c.children().len(), 1);
        // Three-byte tag.
        let (t, _) = Tlv::parse(&h("5F8101 01 00")).unwrap();
        assert_eq!(t.tag(), Tag(0x5F8101));
        assert_eq!(t.to_bytes().unwrap(), h("5F81010100"));
    }

    #[test]
    fn malformed() {
        let cases: &[(&str, TlvError)] = &[
            ("", TlvError::Truncated),
            ("5F", TlvError::Truncated),
            ("5F81", TlvError::Truncated),
            ("C1", TlvError::Truncated),
            ("C1 05 0102", TlvError::Truncated),
            ("C1 82 01", TlvError::Truncated),
            ("C1 80 0000", TlvError::IndefiniteLength),
            ("C1 85 0000000001 00", TlvError::LengthTooLong),
            ("C1 FF", TlvError::LengthTooLong),
            ("5F818181 01 00", TlvError::TagTooLong),
            ("C1 84FFFFFFFF 00", TlvError::Truncated),
            // A child that overruns its parent.
            ("6E 03 73 05 C0", TlvError::Truncated),
        ];
        for (s, e) in cases {
            assert_eq!(Tlv::parse(&h(s)).map(|_| ()), Err(*e), "{s}");
        }
        assert_eq!(Tlv::parse_all(&h("C10100 C1")), Err(TlvError::Truncated));
        assert_eq!(Tlv::parse_all(&[]), Ok(vec![]));
    }

    #[test]
    fn depth_limit() {
        // MAX_DEPTH + 1 nested 'A0' around an empty primitive.
        let mut inner = h("8100");
        for _ in 0..=MAX_DEPTH {
            let mut outer = vec![0xA0, inner.len() as u8];
            outer.extend_from_slice(&inner);
            inner = outer;
        }
        assert_eq!(Tlv::parse(&inner).map(|_| ()), Err(TlvError::TooDeep));
        // One level less is fine.
        let ok = &inner[2..];
        assert!(Tlv::parse(ok).is_ok());
    }
}
