//! Command APDUs as plain values: no I/O, encodings only.

use crate::{ApduError, Result};
use kb_types::Pin;
use std::fmt;
use zeroize::Zeroizing;

/// Most data bytes in a short APDU (Lc is one byte).
pub const MAX_SHORT_DATA: usize = 255;
/// Most response bytes a short Le can ask for (`Le = 00` means 256).
pub const MAX_SHORT_NE: usize = 256;
/// Most data bytes in an extended APDU.
pub const MAX_EXTENDED_DATA: usize = 65_535;
/// Most response bytes an extended Le can ask for (`Le = 0000` means 65536).
pub const MAX_EXTENDED_NE: usize = 65_536;

/// How Lc and Le are encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LengthForm {
    /// One-byte Lc/Le: data ≤ 255, Ne ≤ 256.
    Short,
    /// Three-byte Lc/Le (`00 hi lo`, Le two bytes after data): data ≤ 65535, Ne ≤ 65536.
    Extended,
}

/// An ISO 7816-4 command APDU.
///
/// `ne` is the number of response bytes expected (0: no Le field). The data buffer is
/// zeroized on drop; a command marked sensitive (PIN commands, key import) prints its data
/// as `REDACTED`.
#[derive(Clone, PartialEq, Eq)]
pub struct Command {
    cla: u8,
    ins: u8,
    p1: u8,
    p2: u8,
    data: Zeroizing<Vec<u8>>,
    ne: usize,
    sensitive: bool,
}

impl Command {
    /// A command without Le (case 1 or 3). Add one with [`Command::with_ne`].
    pub fn new(cla: u8, ins: u8, p1: u8, p2: u8, data: impl Into<Vec<u8>>) -> Self {
        Command { cla, ins, p1, p2, data: Zeroizing::new(data.into()), ne: 0, sensitive: false }
    }

    /// Expect up to `ne` response bytes (0: none; 256 is short `Le = 00`, 65536 extended `0000`).
    pub fn with_ne(mut self, ne: usize) -> Self {
        self.ne = ne;
        self
    }

    /// Replace the class byte (logical channel, secure messaging, proprietary class).
    pub fn with_cla(mut self, cla: u8) -> Self {
        self.cla = cla;
        self
    }

    /// Mark the data as secret: `Debug` prints `REDACTED`.
    pub fn sensitive(mut self) -> Self {
        self.sensitive = true;
        self
    }

    /// CLA.
    pub fn cla(&self) -> u8 {
        self.cla
    }
    /// INS.
    pub fn ins(&self) -> u8 {
        self.ins
    }
    /// P1.
    pub fn p1(&self) -> u8 {
        self.p1
    }
    /// P2.
    pub fn p2(&self) -> u8 {
        self.p2
    }
    /// The data field.
    pub fn data(&self) -> &[u8] {
        &self.data
    }
    /// Expected response length (0: no Le).
    pub fn ne(&self) -> usize {
        self.ne
    }
    /// Whether the data is secret.
    pub fn is_sensitive(&self) -> bool {
        self.sensitive
    }

    /// Whether the short form can carry this command.
    pub fn fits_short(&self) -> bool {
        self.data.len() <= MAX_SHORT_DATA && self.ne <= MAX_SHORT_NE
    }

    /// The same command with other data (used for chaining); keeps the sensitivity.
    pub(crate) fn with_data(&self, cla: u8, data: &[u8], ne: usize) -> Command {
        Command {
            cla,
            ins: self.ins,
            p1: self.p1,
            p2: self.p2,
            data: Zeroizing::new(data.to_vec()),
            ne,
            sensitive: self.sensitive,
        }
    }

    /// Encode in the short form if it fits, else the extended form.
    pub fn to_bytes(&self) -> Result<Zeroizing<Vec<u8>>> {
        self.encode(if self.fits_short() { LengthForm::Short } else { LengthForm::Extended })
    }

    /// Encode in the given form.
    pub fn encode(&self, form: LengthForm) -> Result<Zeroizing<Vec<u8>>> {
        let n = self.data.len();
        let mut out = Zeroizing::new(Vec::with_capacity(n + 9));
        out.extend_from_slice(&[self.cla, self.ins, self.p1, self.p2]);
        match form {
            LengthForm::Short => {
                if n > MAX_SHORT_DATA {
                    return Err(ApduError::Encoding("data longer than 255 bytes in a short APDU"));
                }
                if self.ne > MAX_SHORT_NE {
                    return Err(ApduError::Encoding("Ne larger than 256 in a short APDU"));
                }
                if n > 0 {
                    out.push(n as u8);
                    out.extend_from_slice(&self.data);
                }
                if self.ne > 0 {
                    out.push(self.ne as u8); // 256 → 00
                }
            }
            LengthForm::Extended => {
                if n > MAX_EXTENDED_DATA {
                    return Err(ApduError::Encoding("data longer than 65535 bytes"));
                }
                if self.ne > MAX_EXTENDED_NE {
                    return Err(ApduError::Encoding("Ne larger than 65536"));
                }
                if n > 0 {
                    out.push(0);
                    out.extend_from_slice(&(n as u16).to_be_bytes());
                    out.extend_from_slice(&self.data);
                }
                if self.ne > 0 {
                    if n == 0 {
                        out.push(0);
                    }
                    out.extend_from_slice(&(self.ne as u16).to_be_bytes()); // 65536 → 0000
                }
            }
        }
        Ok(out)
    }

    /// Decode a command APDU (cases 1, 2S, 3S, 4S, 2E, 3E, 4E). The result is not
    /// marked sensitive; a virtual card uses this to see what it was sent.
    pub fn parse(apdu: &[u8]) -> Result<Command> {
        let [cla, ins, p1, p2, body @ ..] = apdu else {
            return Err(ApduError::MalformedCommand("shorter than a header"));
        };
        let cmd = |data: &[u8], ne: usize| Command::new(*cla, *ins, *p1, *p2, data).with_ne(ne);
        let short_ne = |b: u8| if b == 0 { MAX_SHORT_NE } else { b as usize };
        let ext_ne = |hi: u8, lo: u8| match u16::from_be_bytes([hi, lo]) {
            0 => MAX_EXTENDED_NE,
            v => v as usize,
        };
        match body {
            [] => Ok(cmd(&[], 0)),
            [le] => Ok(cmd(&[], short_ne(*le))),
            [0, hi, lo] => Ok(cmd(&[], ext_ne(*hi, *lo))),
            [0, hi, lo, rest @ ..] => {
                let lc = u16::from_be_bytes([*hi, *lo]) as usize;
                if lc == 0 {
                    return Err(ApduError::MalformedCommand("extended Lc of zero"));
                }
                match rest.len().checked_sub(lc) {
                    Some(0) => Ok(cmd(rest, 0)),
                    Some(2) => Ok(cmd(&rest[..lc], ext_ne(rest[lc], rest[lc + 1]))),
                    _ => Err(ApduError::MalformedCommand("extended Lc does not match the body")),
                }
            }
            [0, ..] => Err(ApduError::MalformedCommand("truncated extended length")),
            [lc, rest @ ..] => {
                let lc = *lc as usize;
                match rest.len().checked_sub(lc) {
                    Some(0) => Ok(cmd(rest, 0)),
                    Some(1) => Ok(cmd(&rest[..lc], short_ne(rest[lc]))),
                    _ => Err(ApduError::MalformedCommand("Lc does not match the body")),
                }
            }
        }
    }

    // --- the commands every card application here needs -------------------------------

    /// SELECT by DF name (AID), first or only occurrence, asking for the FCI (`00 A4 04 00`).
    pub fn select_aid(aid: &[u8]) -> Self {
        Command::new(0x00, 0xA4, 0x04, 0x00, aid).with_ne(MAX_SHORT_NE)
    }

    /// SELECT by AID without a response (`P2 = 0C`), for cards that reject Le on SELECT.
    pub fn select_aid_no_response(aid: &[u8]) -> Self {
        Command::new(0x00, 0xA4, 0x04, 0x0C, aid)
    }

    /// GET DATA for a data object (`00 CA tag`), tag as P1-P2.
    pub fn get_data(tag: u16) -> Self {
        let [p1, p2] = tag.to_be_bytes();
        Command::new(0x00, 0xCA, p1, p2, Vec::new()).with_ne(MAX_SHORT_NE)
    }

    /// GET RESPONSE for `ne` bytes (`00 C0 00 00`).
    pub fn get_response(ne: usize) -> Self {
        Command::new(0x00, 0xC0, 0x00, 0x00, Vec::new()).with_ne(ne)
    }

    /// VERIFY the reference data `p2` (e.g. OpenPGP `81`/`82` user PIN, `83` admin PIN).
    pub fn verify(p2: u8, pin: &Pin) -> Self {
        Command::new(0x00, 0x20, 0x00, p2, pin.expose()).sensitive()
    }

    /// VERIFY with no data: asks the retry counter (`63Cx`) or verification state (`9000`).
    pub fn verify_status(p2: u8) -> Self {
        Command::new(0x00, 0x20, 0x00, p2, Vec::new())
    }

    /// CHANGE REFERENCE DATA: old PIN ‖ new PIN (`00 24 00 p2`).
    pub fn change_reference_data(p2: u8, old: &Pin, new: &Pin) -> Self {
        let mut data = Zeroizing::new(Vec::with_capacity(old.expose().len() + new.expose().len()));
        data.extend_from_slice(old.expose());
        data.extend_from_slice(new.expose());
        Command::new(0x00, 0x24, 0x00, p2, data.as_slice()).sensitive()
    }

    /// RESET RETRY COUNTER with the resetting code (PUK / SO PIN) ‖ new PIN (`00 2C 00 p2`).
    pub fn reset_retry_counter(p2: u8, resetting_code: &Pin, new: &Pin) -> Self {
        let mut data = Zeroizing::new(Vec::with_capacity(resetting_code.expose().len() + new.expose().len()));
        data.extend_from_slice(resetting_code.expose());
        data.extend_from_slice(new.expose());
        Command::new(0x00, 0x2C, 0x00, p2, data.as_slice()).sensitive()
    }

    /// RESET RETRY COUNTER after the admin PIN was verified: new PIN only (`00 2C 02 p2`).
    pub fn reset_retry_counter_verified(p2: u8, new: &Pin) -> Self {
        Command::new(0x00, 0x2C, 0x02, p2, new.expose()).sensitive()
    }

    /// PERFORM SECURITY OPERATION: COMPUTE DIGITAL SIGNATURE over `data` (`00 2A 9E 9A`).
    pub fn compute_digital_signature(data: &[u8]) -> Self {
        Command::new(0x00, 0x2A, 0x9E, 0x9A, data).with_ne(MAX_SHORT_NE)
    }

    /// PERFORM SECURITY OPERATION: DECIPHER `data` (`00 2A 80 86`). The plaintext comes
    /// back in a zeroized [`Response`](crate::Response).
    pub fn decipher(data: &[u8]) -> Self {
        Command::new(0x00, 0x2A, 0x80, 0x86, data).with_ne(MAX_SHORT_NE)
    }

    /// GENERATE ASYMMETRIC KEY PAIR (`00 47 p1 00`): `p1 = 80` generates, `81` reads the
    /// public key; `crt` names the key (e.g. OpenPGP `B6 00` for the signing key).
    pub fn generate_asymmetric_key_pair(p1: u8, crt: &[u8]) -> Self {
        Command::new(0x00, 0x47, p1, 0x00, crt).with_ne(MAX_SHORT_NE)
    }

    /// PUT DATA for a data object (`00 DA tag`). Mark key imports [`Command::sensitive`].
    pub fn put_data(tag: u16, data: &[u8]) -> Self {
        let [p1, p2] = tag.to_be_bytes();
        Command::new(0x00, 0xDA, p1, p2, data)
    }

    /// READ BINARY of the current EF from `offset` (≤ 0x7FFF), `ne` bytes (`00 B0`).
    pub fn read_binary(offset: u16, ne: usize) -> Result<Self> {
        let [p1, p2] = Self::offset(offset)?;
        Ok(Command::new(0x00, 0xB0, p1, p2, Vec::new()).with_ne(ne))
    }

    /// UPDATE BINARY of the current EF at `offset` (≤ 0x7FFF) (`00 D6`).
    pub fn update_binary(offset: u16, data: &[u8]) -> Result<Self> {
        let [p1, p2] = Self::offset(offset)?;
        Ok(Command::new(0x00, 0xD6, p1, p2, data))
    }

    fn offset(offset: u16) -> Result<[u8; 2]> {
        if offset > 0x7FFF {
            return Err(ApduError::Encoding("binary offset above 0x7FFF (P1 bit 8 selects a short EF id)"));
        }
        Ok(offset.to_be_bytes())
    }
}

impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Command");
        d.field("cla", &format_args!("{:02X}", self.cla))
            .field("ins", &format_args!("{:02X}", self.ins))
            .field("p1", &format_args!("{:02X}", self.p1))
            .field("p2", &format_args!("{:02X}", self.p2));
        if self.sensitive {
            d.field("data", &format_args!("REDACTED"));
        } else {
            d.field("data", &format_args!("{}", hex(&self.data)));
        }
        d.field("ne", &self.ne).finish()
    }
}

pub(crate) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02X}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }
    fn enc(c: &Command, form: LengthForm) -> String {
        hex(&c.encode(form).unwrap())
    }

    #[test]
    fn the_seven_cases() {
        let c1 = Command::new(0x00, 0xA4, 0x04, 0x0C, Vec::new());
        assert_eq!(enc(&c1, LengthForm::Short), "00A4040C");
        assert_eq!(enc(&c1, LengthForm::Extended), "00A4040C");
        let c2 = Command::get_data(0x006E);
        assert_eq!(enc(&c2, LengthForm::Short), "00CA006E00"); // Le=00 → 256
        assert_eq!(enc(&c2, LengthForm::Extended), "00CA006E000100");
        let c2max = Command::get_data(0x7F21).with_ne(MAX_EXTENDED_NE);
        assert_eq!(hex(&c2max.to_bytes().unwrap()), "00CA7F21000000"); // Le=0000 → 65536
        let c3 = Command::put_data(0x005B, b"abc");
        assert_eq!(enc(&c3, LengthForm::Short), "00DA005B03616263");
        assert_eq!(enc(&c3, LengthForm::Extended), "00DA005B000003616263");
        let c4 = Command::select_aid(&h("D27600012401"));
        assert_eq!(enc(&c4, LengthForm::Short), "00A4040006D2760001240100");
        assert_eq!(enc(&c4, LengthForm::Extended), "00A40400000006D276000124010100");
        let c4e = Command::compute_digital_signature(&[0x11; 300]).with_ne(MAX_EXTENDED_NE);
        let b = c4e.to_bytes().unwrap();
        assert_eq!(hex(&b[..7]), "002A9E9A00012C");
        assert_eq!(hex(&b[b.len() - 2..]), "0000");
        assert_eq!(b.len(), 4 + 3 + 300 + 2);
        assert_eq!(Command::parse(&b).unwrap(), c4e);
    }

    #[test]
    fn auto_form_and_limits() {
        let short = Command::get_data(0x6E).with_ne(256);
        assert!(short.fits_short());
        assert_eq!(short.to_bytes().unwrap().len(), 5);
        let ext = Command::get_data(0x6E).with_ne(257);
        assert_eq!(hex(&ext.to_bytes().unwrap()), "00CA006E000101");
        assert!(matches!(ext.encode(LengthForm::Short), Err(ApduError::Encoding(_))));
        let big = Command::put_data(1, &[0; 256]);
        assert!(big.encode(LengthForm::Short).is_err());
        assert!(Command::put_data(1, &vec![0; 65_536]).to_bytes().is_err());
        assert!(Command::get_data(1).with_ne(65_537).to_bytes().is_err());
        assert!(Command::read_binary(0x8000, 16).is_err());
        assert_eq!(hex(&Command::read_binary(0x0102, 16).unwrap().to_bytes().unwrap()), "00B0010210");
        assert_eq!(hex(&Command::update_binary(0x7FFF, &[1]).unwrap().to_bytes().unwrap()), "00D67FFF0101");
        assert_eq!(hex(&Command::get_response(0x3B).to_bytes().unwrap()), "00C000003B");
    }

    #[test]
    fn parse_round_trips_and_rejects() {
        for s in [
            "00A4040C",
            "00CA006E00",
            "00CA006E10",
            "00DA005B03616263",
            "00A4040006D2760001240100",
            "00CA7F21000000",
            "00CA7F21000101",
            "00DA005B000003616263",
            "002A9E9A000003616263FFFF",
        ] {
            let c = Command::parse(&h(s)).unwrap();
            let form = if s.len() > 10 && h(s)[4] == 0 { LengthForm::Extended } else { LengthForm::Short };
            assert_eq!(enc(&c, form), s, "{s}");
        }
        assert_eq!(Command::parse(&h("00CA006E00")).unwrap().ne(), 256);
        assert_eq!(Command::parse(&h("00CA006E000000")).unwrap().ne(), 65_536);
        for bad in
            ["", "00", "00A404", "00DA005B0361", "00DA005B036162636465", "00CA006E0000", "00DA005B0000", "00DA005B000003616263FF"]
        {
            assert!(Command::parse(&h(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn pin_commands_are_redacted() {
        let pin = Pin::new("123456");
        let v = Command::verify(0x81, &pin);
        assert_eq!(hex(&v.to_bytes().unwrap()), "0020008106313233343536");
        let dbg = format!("{v:?}");
        assert!(dbg.contains("REDACTED") && !dbg.contains("313233") && !dbg.contains("123456"), "{dbg}");
        let c = Command::change_reference_data(0x81, &pin, &Pin::new("654321"));
        assert_eq!(hex(&c.to_bytes().unwrap()), "002400810C313233343536363534333231");
        assert!(format!("{c:?}").contains("REDACTED"));
        let r = Command::reset_retry_counter(0x81, &Pin::new("12345678"), &pin);
        assert_eq!(hex(&r.to_bytes().unwrap()), "002C00810E3132333435363738313233343536");
        assert!(format!("{r:?}").contains("REDACTED"));
        let r2 = Command::reset_retry_counter_verified(0x81, &pin);
        assert_eq!(hex(&r2.to_bytes().unwrap()), "002C028106313233343536");
        assert!(format!("{r2:?}").contains("REDACTED"));
        // Non-secret commands print their data; any command can opt in.
        assert!(format!("{:?}", Command::put_data(0x5B, b"ab")).contains("6162"));
        assert!(format!("{:?}", Command::put_data(0x5B, b"ab").sensitive()).contains("REDACTED"));
        assert_eq!(hex(&Command::verify_status(0x81).to_bytes().unwrap()), "00200081");
    }

    #[test]
    fn security_operations() {
        assert_eq!(hex(&Command::decipher(&[0x00, 0xAA]).to_bytes().unwrap()), "002A80860200AA00");
        assert_eq!(hex(&Command::generate_asymmetric_key_pair(0x80, &[0xB6, 0x00]).to_bytes().unwrap()), "0047800002B60000");
        assert_eq!(hex(&Command::select_aid_no_response(&[0xA0, 0x00]).to_bytes().unwrap()), "00A4040C02A000");
        assert_eq!(Command::get_data(0x1234).with_cla(0x80).cla(), 0x80);
    }
}
