//! Device authentication (GM/T 0016-2012 `SKF_DevAuth`, `SKF_ChangeDevAuthKey`) for file
//! keys.
//!
//! The protocol: the host asks the device for a random (`SKF_GenRandom`, 8 bytes in
//! practice, at most 16), pads it with zero bytes to one 16-byte block, encrypts that
//! block with the device-authentication key in SM4-ECB (`DEVINFO.DevAuthAlgId` =
//! `SGD_SM4_ECB`) — on the host, or through the device's own `SKF_SetSymmKey` +
//! `SKF_EncryptInit` + `SKF_Encrypt` — and hands the 16 bytes to `SKF_DevAuth`, which
//! compares them with its own computation. Each random answers one attempt.
//!
//! The key of a new file key is [`DEFAULT_DEV_AUTH_KEY`], the 16 ASCII bytes
//! `1234567812345678` that SKF vendors ship and open-source SKF tools assume. A file
//! key's format has no field for it (unknown fields are refused, and a new field would
//! be a new format version), so a key changed with `SKF_ChangeDevAuthKey` is kept beside
//! the key file, in `.<name>.kbkey.skf-devauth` (mode 0600, written atomically): one line
//! `KBSKF-DEVAUTH/1 <serial> <32 hex digits>`. It applies only while the key file with
//! that serial is the one at `<name>.kbkey`; for another key of that name (another
//! serial) it is ignored and the default applies. A damaged sidecar is an error, never
//! a silent return to the default. See `docs/skf-module.md`.

use kb_crypto::sm4::Sm4;
use std::io::Write;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// The device-authentication key of a file key until it is changed: `"1234567812345678"`.
pub const DEFAULT_DEV_AUTH_KEY: [u8; 16] = *b"1234567812345678";

/// The first word of the sidecar file (its format version).
const MAGIC: &str = "KBSKF-DEVAUTH/1";

/// Why the stored key cannot be read or written.
#[derive(Debug, PartialEq, Eq)]
pub enum StoreError {
    /// The sidecar exists but is not a valid record (the text says what is wrong).
    Damaged(String),
    /// Reading or writing failed.
    Io(String),
}

/// `<dir>/.<name>.kbkey.skf-devauth` for `<dir>/<name>.kbkey`.
pub fn sidecar(key_file: &Path) -> PathBuf {
    let name = key_file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    key_file.with_file_name(format!(".{name}.skf-devauth"))
}

/// The device-authentication key of the file key `key_file` whose serial is `serial`.
pub fn load(key_file: &Path, serial: &str) -> Result<Zeroizing<[u8; 16]>, StoreError> {
    let path = sidecar(key_file);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => Zeroizing::new(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Zeroizing::new(DEFAULT_DEV_AUTH_KEY)),
        Err(e) => return Err(StoreError::Io(format!("{}: {e}", path.display()))),
    };
    let damaged = |why: &str| StoreError::Damaged(format!("{}: {why}", path.display()));
    let mut words = text.split_ascii_whitespace();
    if words.next() != Some(MAGIC) {
        return Err(damaged("not a KBSKF-DEVAUTH/1 record"));
    }
    let stored_serial = words.next().ok_or_else(|| damaged("no serial"))?;
    let hex = words.next().ok_or_else(|| damaged("no key"))?;
    if words.next().is_some() {
        return Err(damaged("trailing data"));
    }
    let key = parse_key(hex).ok_or_else(|| damaged("the key is not 32 hex digits"))?;
    Ok(if stored_serial == serial { key } else { Zeroizing::new(DEFAULT_DEV_AUTH_KEY) })
}

fn parse_key(hex: &str) -> Option<Zeroizing<[u8; 16]>> {
    if hex.len() != 32 || !hex.is_ascii() {
        return None;
    }
    let mut key = Zeroizing::new([0u8; 16]);
    for (i, b) in key.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(key)
}

/// Keep `key` as the device-authentication key of the file key `key_file` (serial
/// `serial`): a temp file beside it (owner-only), synced, renamed over the sidecar.
pub fn store(key_file: &Path, serial: &str, key: &[u8; 16]) -> Result<(), StoreError> {
    if serial.is_empty() || serial.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(StoreError::Damaged(format!("serial {serial:?} cannot be recorded")));
    }
    let path = sidecar(key_file);
    let io = |e: std::io::Error| StoreError::Io(format!("{}: {e}", path.display()));
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut line = Zeroizing::new(format!("{MAGIC} {serial} "));
    for b in key {
        line.push_str(&format!("{b:02x}"));
    }
    line.push('\n');
    let mut tmp = tempfile::Builder::new().prefix(".skf-devauth.").suffix(".tmp").tempfile_in(dir).map_err(io)?;
    tmp.write_all(line.as_bytes()).map_err(io)?;
    tmp.as_file().sync_all().map_err(io)?;
    tmp.persist(&path).map_err(|e| io(e.error))?;
    #[cfg(unix)]
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
    Ok(())
}

/// What the host must send to `SKF_DevAuth` for `challenge` (the device's random, at
/// most 16 bytes): `SM4-ECB(key, challenge ‖ 00…)` of one block.
pub fn response(key: &[u8; 16], challenge: &[u8]) -> [u8; 16] {
    let mut block = [0u8; 16];
    let n = challenge.len().min(16);
    block[..n].copy_from_slice(&challenge[..n]);
    Sm4::new(key).encrypt_block(&mut block);
    block
}

/// Whether `answer` is the right response, compared in constant time.
pub fn check(key: &[u8; 16], challenge: &[u8], answer: &[u8]) -> bool {
    let want = Zeroizing::new(response(key, challenge));
    answer.len() == 16 && want.iter().zip(answer).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_is_sm4_ecb_of_the_zero_padded_random() {
        // GB/T 32907-2016 Appendix A, example 1: key = plaintext = 0123456789abcdeffedcba9876543210.
        let k: [u8; 16] = [0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54, 0x32, 0x10];
        let want = [0x68, 0x1e, 0xdf, 0x34, 0xd2, 0x06, 0x96, 0x5e, 0x86, 0xb3, 0xe9, 0x4f, 0x53, 0x6e, 0x42, 0x46];
        assert_eq!(response(&k, &k), want);
        // An 8-byte random is padded with zeros.
        let r8 = [1, 2, 3, 4, 5, 6, 7, 8];
        assert_eq!(
            response(&DEFAULT_DEV_AUTH_KEY, &r8),
            response(&DEFAULT_DEV_AUTH_KEY, &[1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 0, 0, 0, 0, 0])
        );
        assert!(check(&DEFAULT_DEV_AUTH_KEY, &r8, &response(&DEFAULT_DEV_AUTH_KEY, &r8)));
        assert!(!check(&DEFAULT_DEV_AUTH_KEY, &r8, &response(b"1234567812345679", &r8)));
        assert!(!check(&DEFAULT_DEV_AUTH_KEY, &r8, &response(&DEFAULT_DEV_AUTH_KEY, &r8)[..15]));
    }

    #[test]
    fn stored_per_serial_and_never_silently_reset() {
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("alpha.kbkey");
        assert_eq!(sidecar(&key_file), dir.path().join(".alpha.kbkey.skf-devauth"));
        assert_eq!(*load(&key_file, "S1").unwrap(), DEFAULT_DEV_AUTH_KEY);
        store(&key_file, "S1", b"abcdefghABCDEFGH").unwrap();
        assert_eq!(*load(&key_file, "S1").unwrap(), *b"abcdefghABCDEFGH");
        // Another key under the same name: the default.
        assert_eq!(*load(&key_file, "S2").unwrap(), DEFAULT_DEV_AUTH_KEY);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(sidecar(&key_file)).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "{mode:o}");
        }
        for bad in ["", "KBSKF-DEVAUTH/1 S1", "KBSKF-DEVAUTH/1 S1 zz", "KBSKF-DEVAUTH/2 S1 6162636465666768414243444546474\n"] {
            std::fs::write(sidecar(&key_file), bad).unwrap();
            assert!(matches!(load(&key_file, "S1"), Err(StoreError::Damaged(_))), "{bad:?}");
        }
        assert!(store(&key_file, "has space", &DEFAULT_DEV_AUTH_KEY).is_err());
    }
}
