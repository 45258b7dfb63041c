//! Reading the structured files a command is given — certificates, CMS signatures,
//! digital envelopes — in whatever form the user has them: DER/BER, PEM, or bare
//! base64 (what many Chinese CA middleware APIs hand out). Every command reads such
//! input through [`DerReader`], so they all accept the same forms.
//!
//! The form is told from the content, not the file name: a file starting with
//! `-----BEGIN ` is PEM (its label is checked), one starting with a DER SEQUENCE is
//! binary, and one that is nothing but base64 text is decoded. PEM and base64 are
//! decoded as they stream, so a PEM envelope of hundreds of MB never sits in memory.

use crate::output::{CliError, CliResult};
use base64ct::{Base64, Encoding};
use kb_pki::Certificate;
use kb_types::ErrorCode;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

/// What a file is expected to hold: its PEM labels, and the error code when it holds
/// something else.
pub(crate) struct Kind {
    labels: &'static [&'static str],
    code: ErrorCode,
}

/// A certificate.
pub(crate) const CERTIFICATE: Kind = Kind { labels: &["CERTIFICATE", "X509 CERTIFICATE"], code: ErrorCode::CertificateMalformed };
/// CMS / PKCS#7 content (signed data, envelopes), with the PEM labels OpenSSL and others
/// write.
pub(crate) const CMS: Kind = Kind { labels: &["CMS", "PKCS7", "PKCS #7 SIGNED DATA"], code: ErrorCode::CmsMalformed };

/// How much of a file is looked at to tell bare base64 text from binary.
const SNIFF: usize = 512;

/// Upper bound on a PEM `-----BEGIN …-----` line.
const MAX_PEM_LINE: usize = 128;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Form {
    Binary,
    /// Base64 text, ending at the end of the input (`pem == false`) or at the PEM
    /// `-----END` line (`pem == true`).
    Text {
        pem: bool,
    },
}

fn is_b64(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'=')
}

/// The DER inside a file, whichever form the file holds (see the module docs).
pub(crate) struct DerReader<R> {
    inner: R,
    form: Form,
    /// Base64 characters read but not yet decoded (fewer than 4, or waiting for more).
    pending: Vec<u8>,
    /// Decoded bytes not yet handed out.
    out: Vec<u8>,
    out_pos: usize,
    /// The text form's end was reached (END line or end of input).
    done: bool,
    /// What is read (a path), for errors.
    what: String,
    /// Error code for content that is not what was expected.
    code: ErrorCode,
    /// Why the last read failed, with its code (a `Read` error only carries text).
    error: Option<CliError>,
}

impl<R: BufRead> DerReader<R> {
    /// Tell the form from the start of `inner`; for PEM, read the BEGIN line and check
    /// its label against `labels`.
    pub(crate) fn new(mut inner: R, kind: &Kind, what: &str) -> CliResult<Self> {
        let io = |e: std::io::Error| CliError::io(what, e);
        // A UTF-8 byte-order mark and leading blank lines (text editors) are skipped.
        loop {
            let buf = inner.fill_buf().map_err(io)?;
            let skip =
                if buf.starts_with(b"\xEF\xBB\xBF") { 3 } else { buf.iter().take_while(|c| c.is_ascii_whitespace()).count() };
            if skip == 0 {
                break;
            }
            inner.consume(skip);
        }
        let head = inner.fill_buf().map_err(io)?;
        let form = if head.starts_with(b"-----BEGIN ") {
            Form::Text { pem: true }
        } else if head.first() == Some(&0x30) || head.is_empty() {
            Form::Binary
        } else if head.iter().take(SNIFF).all(|&c| is_b64(c) || c.is_ascii_whitespace()) {
            Form::Text { pem: false }
        } else {
            // Let the parser say what is wrong with it.
            Form::Binary
        };
        let mut r = DerReader {
            inner,
            form,
            pending: Vec::new(),
            out: Vec::new(),
            out_pos: 0,
            done: false,
            what: what.into(),
            code: kind.code,
            error: None,
        };
        if form == (Form::Text { pem: true }) {
            r.begin_line(kind.labels)?;
        }
        Ok(r)
    }

    /// Why the last read failed, if the content was at fault (not the disk).
    pub(crate) fn take_error(&mut self) -> Option<CliError> {
        self.error.take()
    }

    fn malformed(&self, why: impl std::fmt::Display) -> CliError {
        CliError::new(self.code, format!("{}: {why}", self.what))
    }

    /// Read `-----BEGIN LABEL-----` and check the label.
    fn begin_line(&mut self, labels: &[&str]) -> CliResult {
        let mut line = Vec::new();
        (&mut self.inner).take(MAX_PEM_LINE as u64).read_until(b'\n', &mut line).map_err(|e| CliError::io(&self.what, e))?;
        let text = String::from_utf8_lossy(&line);
        let label = text.trim().strip_prefix("-----BEGIN ").and_then(|l| l.strip_suffix("-----"));
        match label {
            Some(l) if labels.contains(&l) => Ok(()),
            Some(l) => Err(self.malformed(format!("PEM label \"{l}\", expected {}", labels.join(" or ")))),
            None => Err(self.malformed("malformed PEM BEGIN line")),
        }
    }

    /// Decode the next stretch of base64 text into `out`; false at the end.
    fn refill(&mut self) -> CliResult<bool> {
        while !self.done {
            let buf = self.inner.fill_buf().map_err(|e| CliError::io(&self.what, e))?;
            if buf.is_empty() {
                if self.form == (Form::Text { pem: true }) {
                    return Err(self.malformed("PEM without its END line"));
                }
                self.done = true;
                break;
            }
            let mut used = 0;
            let mut bad = None;
            for &c in buf {
                if c == b'-' && self.form == (Form::Text { pem: true }) {
                    // The END line: nothing after it belongs to this block.
                    self.done = true;
                    break;
                }
                used += 1;
                if is_b64(c) {
                    self.pending.push(c);
                } else if !c.is_ascii_whitespace() {
                    bad = Some(c);
                    break;
                }
            }
            self.inner.consume(used);
            if let Some(c) = bad {
                return Err(self.malformed(format!("byte 0x{c:02x} in base64 text")));
            }
            // Decode whole quads; keep the rest (and, until the end, the last quad,
            // which may carry the padding).
            let whole = self.pending.len() / 4 * 4;
            let upto = if self.done { self.pending.len() } else { whole.saturating_sub(4) };
            if upto > 0 {
                self.decode(upto)?;
                return Ok(true);
            }
        }
        if self.pending.is_empty() {
            return Ok(false);
        }
        self.decode(self.pending.len())?;
        Ok(true)
    }

    fn decode(&mut self, upto: usize) -> CliResult {
        self.out.clear();
        self.out_pos = 0;
        let text = &self.pending[..upto];
        let decoded = Base64::decode_vec(std::str::from_utf8(text).unwrap_or_default());
        self.out = decoded.map_err(|_| self.malformed("invalid base64"))?;
        self.pending.drain(..upto);
        Ok(())
    }
}

impl<R: BufRead> Read for DerReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.form == Form::Binary {
            return self.inner.read(buf);
        }
        while self.out_pos == self.out.len() {
            match self.refill() {
                Ok(true) => {}
                Ok(false) => return Ok(0),
                Err(e) => {
                    let io = std::io::Error::new(std::io::ErrorKind::InvalidData, e.detail.clone());
                    self.error = Some(e);
                    return Err(io);
                }
            }
        }
        let n = buf.len().min(self.out.len() - self.out_pos);
        buf[..n].copy_from_slice(&self.out[self.out_pos..self.out_pos + n]);
        self.out_pos += n;
        Ok(n)
    }
}

/// Open `path` as a stream of DER (see [`DerReader`]), with the file's size.
pub(crate) fn open_der(path: &Path, kind: &Kind) -> CliResult<(DerReader<BufReader<std::fs::File>>, u64)> {
    let (file, len) = crate::ctx::open_file(path)?;
    Ok((DerReader::new(BufReader::with_capacity(1 << 16, file), kind, &path.display().to_string())?, len))
}

/// The DER of one object in `bytes` (DER, PEM or base64).
fn der_of(bytes: &[u8], kind: &Kind, what: &str) -> CliResult<Vec<u8>> {
    let mut der = Vec::with_capacity(bytes.len());
    let mut r = DerReader::new(bytes, kind, what)?;
    r.read_to_end(&mut der).map_err(|e| r.take_error().unwrap_or_else(|| CliError::io(what, e)))?;
    Ok(der)
}

/// Read a whole file holding one object: its DER.
pub(crate) fn read_der(path: &Path, kind: &Kind) -> CliResult<Vec<u8>> {
    der_of(&crate::ctx::read_file(path)?, kind, &path.display().to_string())
}

/// Every certificate in a file: one (DER, PEM or base64), or a PEM bundle — text
/// around the blocks (as `openssl x509 -text` writes it) is ignored.
pub(crate) fn read_certificates(path: &Path) -> CliResult<Vec<Certificate>> {
    let bytes = crate::ctx::read_file(path)?;
    let what = path.display().to_string();
    let starts: Vec<usize> = bytes.windows(11).enumerate().filter(|(_, w)| w == b"-----BEGIN ").map(|(i, _)| i).collect();
    let ders = if starts.is_empty() {
        vec![der_of(&bytes, &CERTIFICATE, &what)?]
    } else {
        starts.iter().map(|&i| der_of(&bytes[i..], &CERTIFICATE, &what)).collect::<CliResult<Vec<_>>>()?
    };
    ders.iter().map(|d| Certificate::from_der(d).map_err(|e| CliError::from(e).context(&what))).collect()
}

/// The one certificate in a file (DER, PEM or base64).
pub(crate) fn read_certificate(path: &Path) -> CliResult<Certificate> {
    let mut all = read_certificates(path)?;
    match all.len() {
        1 => Ok(all.remove(0)),
        n => Err(CliError::input(format!("{} holds {n} certificates; give a file with one", path.display()))),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn pem(label: &str, der: &[u8], width: usize) -> String {
        let b64 = Base64::encode_string(der);
        let lines: Vec<&str> = b64.as_bytes().chunks(width).map(|c| std::str::from_utf8(c).unwrap()).collect();
        format!("-----BEGIN {label}-----\r\n{}\r\n-----END {label}-----\n", lines.join("\r\n"))
    }

    fn read(bytes: &[u8], kind: &Kind) -> CliResult<Vec<u8>> {
        der_of(bytes, kind, "test")
    }

    #[test]
    fn binary_pem_and_base64_give_the_same_der() {
        for len in [1usize, 2, 3, 4, 5, 47, 48, 49, 100_000] {
            let der: Vec<u8> = std::iter::once(0x30).chain((0..len).map(|i| (i * 7 % 251) as u8)).collect();
            assert_eq!(read(&der, &CMS).unwrap(), der);
            for width in [64, 76, 1 << 20] {
                assert_eq!(read(pem("CMS", &der, width).as_bytes(), &CMS).unwrap(), der, "{len} {width}");
            }
            let mut text = b"\xEF\xBB\xBF\n".to_vec();
            text.extend_from_slice(Base64::encode_string(&der).as_bytes());
            text.extend_from_slice(b"\n");
            assert_eq!(read(&text, &CMS).unwrap(), der, "{len}");
        }
    }

    #[test]
    fn wrong_label_bad_text_and_missing_end_are_errors() {
        let der = [0x30, 0x03, 0x02, 0x01, 0x05];
        let e = read(pem("PRIVATE KEY", &der, 64).as_bytes(), &CMS).unwrap_err();
        assert!(e.detail.contains("PRIVATE KEY"), "{}", e.detail);
        assert_eq!(e.code, ErrorCode::CmsMalformed);
        let cut = pem("CMS", &der, 64);
        assert_eq!(read(&cut.as_bytes()[..cut.find("-----END").unwrap()], &CMS).unwrap_err().code, ErrorCode::CmsMalformed);
        assert!(read(b"-----BEGIN CMS-----\nMAMCAQU*\n-----END CMS-----\n", &CMS).is_err());
        assert_eq!(read(b"QUJD=QUJD", &CERTIFICATE).unwrap_err().code, ErrorCode::CertificateMalformed);
    }
}
