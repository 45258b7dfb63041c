//! A small BER reader and DER writer for CMS.
//!
//! CMS from other implementations is BER, not DER: OpenSSL's `-stream` output and
//! many CA middlewares use indefinite lengths and constructed OCTET STRINGs, which a
//! strict DER decoder rejects. This reader accepts them (single-byte tags only, as
//! every CMS structure uses), with a nesting limit. The writer emits DER.

use crate::{PkiError, Result};
use std::io::Read;

/// Maximum nesting depth accepted.
const MAX_DEPTH: usize = 32;
/// Largest element the streaming reader will buffer in memory (headers, recipients).
pub(crate) const MAX_BUFFERED: u64 = 4 << 20;

pub(crate) fn err(msg: impl Into<String>) -> PkiError {
    PkiError::CmsMalformed(msg.into())
}

pub(crate) mod tag {
    pub(crate) const INTEGER: u8 = 0x02;
    pub(crate) const OCTET_STRING: u8 = 0x04;
    pub(crate) const OCTET_STRING_C: u8 = 0x24;
    pub(crate) const NULL: u8 = 0x05;
    pub(crate) const OID: u8 = 0x06;
    pub(crate) const UTC_TIME: u8 = 0x17;
    pub(crate) const GENERALIZED_TIME: u8 = 0x18;
    pub(crate) const SEQUENCE: u8 = 0x30;
    pub(crate) const SET: u8 = 0x31;
    pub(crate) const CTX0_C: u8 = 0xA0;
    pub(crate) const CTX1_C: u8 = 0xA1;
    pub(crate) const CTX0_P: u8 = 0x80;
}

/// One parsed element.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tlv<'a> {
    pub(crate) tag: u8,
    /// Contents (without end-of-contents octets for indefinite lengths).
    pub(crate) value: &'a [u8],
    /// The whole encoding, header included.
    pub(crate) raw: &'a [u8],
    pub(crate) indefinite: bool,
}

impl<'a> Tlv<'a> {
    pub(crate) fn constructed(&self) -> bool {
        self.tag & 0x20 != 0
    }

    /// Child elements of a constructed element.
    pub(crate) fn children(&self) -> Result<Vec<Tlv<'a>>> {
        if !self.constructed() {
            return Err(err(format!("element 0x{:02x} is not constructed", self.tag)));
        }
        children_at(self.value, 1)
    }

    /// Expect a tag.
    pub(crate) fn expect(self, t: u8) -> Result<Self> {
        if self.tag == t { Ok(self) } else { Err(err(format!("expected tag 0x{t:02x}, found 0x{:02x}", self.tag))) }
    }

    /// The bytes of an OCTET STRING (primitive `prim` or constructed `cons` tag, e.g.
    /// 0x04/0x24 or an implicit [0] 0x80/0xA0), joining BER segments.
    pub(crate) fn octets(&self, prim: u8, cons: u8) -> Result<Vec<u8>> {
        if self.tag == prim {
            return Ok(self.value.to_vec());
        }
        if self.tag != cons {
            return Err(err(format!("expected an octet string, found tag 0x{:02x}", self.tag)));
        }
        let mut out = Vec::new();
        for c in self.children()? {
            out.extend_from_slice(&c.octets(tag::OCTET_STRING, tag::OCTET_STRING_C)?);
        }
        Ok(out)
    }

    /// Re-encode with DER-style definite length (needed when a signature covers an
    /// element we received with an indefinite length).
    pub(crate) fn oid(&self) -> Result<der::asn1::ObjectIdentifier> {
        if self.tag != tag::OID {
            return Err(err("expected an OBJECT IDENTIFIER"));
        }
        der::asn1::ObjectIdentifier::from_bytes(self.value).map_err(|_| err("bad OBJECT IDENTIFIER"))
    }
}

fn read_len(input: &[u8]) -> Result<(Option<usize>, usize)> {
    let first = *input.first().ok_or_else(|| err("truncated length"))?;
    if first < 0x80 {
        return Ok((Some(first as usize), 1));
    }
    if first == 0x80 {
        return Ok((None, 1));
    }
    let n = (first & 0x7f) as usize;
    if n > 8 || input.len() < 1 + n {
        return Err(err("bad or truncated length"));
    }
    let mut len = 0usize;
    for &b in &input[1..1 + n] {
        len = len.checked_mul(256).and_then(|l| l.checked_add(b as usize)).ok_or_else(|| err("length overflow"))?;
    }
    Ok((Some(len), 1 + n))
}

/// Parse one element at the start of `input`, returning it and the rest.
pub(crate) fn parse(input: &[u8]) -> Result<(Tlv<'_>, &[u8])> {
    parse_at(input, 0)
}

fn parse_at(input: &[u8], depth: usize) -> Result<(Tlv<'_>, &[u8])> {
    if depth > MAX_DEPTH {
        return Err(err("nesting too deep"));
    }
    let tag = *input.first().ok_or_else(|| err("truncated: expected an element"))?;
    if tag & 0x1f == 0x1f {
        return Err(err("multi-byte tags are not used in CMS"));
    }
    let (len, lsize) = read_len(&input[1..])?;
    let hdr = 1 + lsize;
    match len {
        Some(l) => {
            let end = hdr.checked_add(l).filter(|&e| e <= input.len()).ok_or_else(|| err("truncated element"))?;
            Ok((Tlv { tag, value: &input[hdr..end], raw: &input[..end], indefinite: false }, &input[end..]))
        }
        None => {
            if tag & 0x20 == 0 {
                return Err(err("indefinite length on a primitive element"));
            }
            let mut rest = &input[hdr..];
            loop {
                if rest.len() >= 2 && rest[0] == 0 && rest[1] == 0 {
                    let consumed = input.len() - rest.len();
                    let value = &input[hdr..consumed];
                    return Ok((Tlv { tag, value, raw: &input[..consumed + 2], indefinite: true }, &rest[2..]));
                }
                let (_, r) = parse_at(rest, depth + 1)?;
                rest = r;
            }
        }
    }
}

fn children_at(mut value: &[u8], depth: usize) -> Result<Vec<Tlv<'_>>> {
    let mut out = Vec::new();
    while !value.is_empty() {
        let (t, r) = parse_at(value, depth)?;
        out.push(t);
        value = r;
    }
    Ok(out)
}

/// Parse exactly one element spanning all of `input`.
pub(crate) fn parse_all(input: &[u8]) -> Result<Tlv<'_>> {
    let (t, rest) = parse(input)?;
    if !rest.is_empty() {
        return Err(err("trailing data after the structure"));
    }
    Ok(t)
}

// ---- DER writing ----

pub(crate) fn header(tag: u8, len: u64) -> Vec<u8> {
    let mut out = vec![tag];
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (8 - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out
}

pub(crate) fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = header(tag, content.len() as u64);
    out.extend_from_slice(content);
    out
}

pub(crate) fn seq(parts: &[&[u8]]) -> Vec<u8> {
    tlv(tag::SEQUENCE, &parts.concat())
}

/// DER SET OF: elements sorted by their encodings.
pub(crate) fn set_of(mut elems: Vec<Vec<u8>>) -> Vec<u8> {
    elems.sort();
    tlv(tag::SET, &elems.concat())
}

pub(crate) fn oid(o: &der::asn1::ObjectIdentifier) -> Vec<u8> {
    tlv(tag::OID, o.as_bytes())
}

pub(crate) fn small_int(v: u8) -> Vec<u8> {
    if v < 0x80 { vec![tag::INTEGER, 1, v] } else { vec![tag::INTEGER, 2, 0, v] }
}

pub(crate) fn octet_string(b: &[u8]) -> Vec<u8> {
    tlv(tag::OCTET_STRING, b)
}

/// AlgorithmIdentifier with optional raw parameters.
pub(crate) fn alg_id(o: &der::asn1::ObjectIdentifier, params: Option<&[u8]>) -> Vec<u8> {
    match params {
        Some(p) => seq(&[&oid(o), p]),
        None => seq(&[&oid(o)]),
    }
}

// ---- streaming reader (envelopes of any size) ----

/// Reads BER headers and small elements from a stream, tracking the position.
pub(crate) struct StreamReader<R> {
    inner: R,
    pub(crate) pos: u64,
}

impl<R: Read> StreamReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        Self { inner, pos: 0 }
    }

    pub(crate) fn byte(&mut self) -> Result<u8> {
        let mut b = [0u8; 1];
        self.exact(&mut b)?;
        Ok(b[0])
    }

    pub(crate) fn exact(&mut self, buf: &mut [u8]) -> Result<()> {
        self.inner.read_exact(buf).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof { err("truncated input") } else { PkiError::from(e) }
        })?;
        self.pos += buf.len() as u64;
        Ok(())
    }

    /// Read part of the content into `buf`; returns the count (0 at end of stream).
    pub(crate) fn some(&mut self, buf: &mut [u8]) -> Result<usize> {
        let n = self.inner.read(buf).map_err(PkiError::from)?;
        self.pos += n as u64;
        Ok(n)
    }

    /// A header: tag and length (`None` = indefinite). Returns the encoded header too.
    pub(crate) fn header(&mut self) -> Result<(u8, Option<u64>, Vec<u8>)> {
        let tag = self.byte()?;
        if tag & 0x1f == 0x1f {
            return Err(err("multi-byte tags are not used in CMS"));
        }
        let first = self.byte()?;
        let mut raw = vec![tag, first];
        let len = if first < 0x80 {
            Some(first as u64)
        } else if first == 0x80 {
            if tag & 0x20 == 0 {
                return Err(err("indefinite length on a primitive element"));
            }
            None
        } else {
            let n = (first & 0x7f) as usize;
            if n > 8 {
                return Err(err("length too long"));
            }
            let mut l = 0u64;
            for _ in 0..n {
                let b = self.byte()?;
                raw.push(b);
                l = l.checked_mul(256).and_then(|v| v.checked_add(b as u64)).ok_or_else(|| err("length overflow"))?;
            }
            Some(l)
        };
        Ok((tag, len, raw))
    }

    /// A whole element, buffered (bounded by [`MAX_BUFFERED`]).
    pub(crate) fn element(&mut self) -> Result<Vec<u8>> {
        let (tag, len, mut raw) = self.header()?;
        self.rest_of_element(tag, len, &mut raw, 0)?;
        Ok(raw)
    }

    /// The rest of an element whose header was already read into `raw`.
    pub(crate) fn rest_of_element(&mut self, tag: u8, len: Option<u64>, raw: &mut Vec<u8>, depth: usize) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err(err("nesting too deep"));
        }
        match len {
            Some(l) => {
                if raw.len() as u64 + l > MAX_BUFFERED {
                    return Err(err("element too large"));
                }
                let start = raw.len();
                raw.resize(start + l as usize, 0);
                self.exact(&mut raw[start..])
            }
            None => {
                let _ = tag;
                loop {
                    let (t, l, h) = self.header()?;
                    raw.extend_from_slice(&h);
                    if t == 0 && l == Some(0) {
                        return Ok(());
                    }
                    if raw.len() as u64 > MAX_BUFFERED {
                        return Err(err("element too large"));
                    }
                    self.rest_of_element(t, l, raw, depth + 1)?;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definite_and_indefinite() {
        // SEQUENCE (indefinite) { OCTET STRING "ab", [constructed OCTET STRING indefinite] { "c", "d" } }
        let ber = [0x30, 0x80, 0x04, 0x02, b'a', b'b', 0x24, 0x80, 0x04, 0x01, b'c', 0x04, 0x01, b'd', 0, 0, 0, 0];
        let t = parse_all(&ber).unwrap_or_else(|e| panic!("{e}"));
        assert!(t.indefinite);
        let kids = t.children().unwrap_or_default();
        assert_eq!(kids.len(), 2);
        assert_eq!(kids[0].octets(0x04, 0x24).unwrap_or_default(), b"ab");
        assert_eq!(kids[1].octets(0x04, 0x24).unwrap_or_default(), b"cd");
        // The streaming reader buffers the same element identically.
        let mut r = StreamReader::new(&ber[..]);
        assert_eq!(r.element().unwrap_or_default(), ber.to_vec());
    }

    #[test]
    fn malformed_inputs_are_errors() {
        for bad in [
            &[][..],
            &[0x30],
            &[0x30, 0x05, 0x00],
            &[0x04, 0x80, 0x00, 0x00],
            &[0x30, 0x80, 0x04, 0x01],
            &[0x1f, 0x01, 0x00],
            &[0x30, 0x89, 1, 2, 3, 4, 5, 6, 7, 8, 9],
        ] {
            assert!(parse_all(bad).is_err(), "{bad:?}");
            assert!(StreamReader::new(bad).element().is_err(), "{bad:?}");
        }
        // Deep nesting is refused, not a stack overflow.
        let mut deep = Vec::new();
        for _ in 0..1000 {
            deep.extend_from_slice(&[0x30, 0x80]);
        }
        assert!(parse_all(&deep).is_err());
        assert!(StreamReader::new(&deep[..]).element().is_err());
    }

    #[test]
    fn der_lengths() {
        assert_eq!(header(0x04, 5), vec![0x04, 5]);
        assert_eq!(header(0x04, 200), vec![0x04, 0x81, 200]);
        assert_eq!(header(0x04, 70000), vec![0x04, 0x83, 0x01, 0x11, 0x70]);
        let s = set_of(vec![vec![0x02, 1, 9], vec![0x02, 1, 1]]);
        assert_eq!(s, vec![0x31, 6, 0x02, 1, 1, 0x02, 1, 9]);
    }
}
