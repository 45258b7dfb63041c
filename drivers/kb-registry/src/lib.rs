//! The media registry (`drivers/registry/media.toml`): ATR patterns and USB VID:PID →
//! which driver or card application serves the medium, or what the user must install.
//! Data, not code: the file is compiled in and can be replaced with [`Registry::parse`].
//!
//! Shared by the transports that recognise media before any driver claims them: PC/SC
//! (ATRs, `kb-pcsc`) and HID (USB VID:PIDs of vendor-protocol keys, `kb-hid`, which also
//! generates the installer's udev rules from it).

#![cfg_attr(test, allow(clippy::panic, clippy::unwrap_used, clippy::expect_used))]

use serde::Deserialize;
use std::fmt;

/// The registry shipped with KeyBridge.
pub const BUILTIN: &str = include_str!("../../registry/media.toml");

/// Card applications KeyBridge implements (values of `app` for cards and CCID keys).
pub const KNOWN_APPS: &[&str] = &["openpgp"];

/// HID protocol drivers KeyBridge implements (values of `app` for `interface = "vendor"`
/// keys). None yet: no Chinese GM key's HID protocol is publicly documented, so every
/// vendor key is listed with `needs`. A build that adds a driver names it here (or passes
/// it to [`Registry::parse_with_hid_drivers`]).
pub const KNOWN_HID_DRIVERS: &[&str] = &[];

/// Why a registry file is not valid. Names the entry.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("media registry: {0}")]
pub struct RegistryError(String);

/// What serves a medium.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Served {
    /// A card application KeyBridge implements (`"openpgp"`).
    App(String),
    /// Something the user must install first (a vendor module, a driver).
    Needs(String),
}

/// One `[[card]]` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CardEntry {
    /// Product name.
    pub name: String,
    /// Vendor.
    pub vendor: String,
    /// ATR bytes.
    pub atr: Vec<u8>,
    /// Mask bytes (all `FF` when the file gives none).
    pub mask: Vec<u8>,
    /// What serves it.
    pub served: Served,
    /// Where the entry comes from.
    pub source: String,
}

impl CardEntry {
    /// Whether a card's ATR matches this entry.
    pub fn matches(&self, atr: &[u8]) -> bool {
        atr.len() == self.atr.len() && atr.iter().zip(&self.atr).zip(&self.mask).all(|((a, b), m)| a & m == b & m)
    }
}

/// How a USB key talks to the computer, which decides who sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UsbInterface {
    /// A CCID smart-card reader (or a key that is one): pcscd and libccid serve it, the
    /// PC/SC transport sees its card, and libccid's own udev rules give pcscd access.
    Ccid,
    /// A vendor protocol over HID or vendor-specific USB, spoken by a vendor module (SKF,
    /// PKCS#11) or a KeyBridge HID driver: the HID transport reports it, and KeyBridge's
    /// udev rules give the desktop user access to its `hidraw` and `usb` device nodes.
    Vendor,
}

impl UsbInterface {
    /// The value in the registry file.
    pub const fn name(self) -> &'static str {
        match self {
            UsbInterface::Ccid => "ccid",
            UsbInterface::Vendor => "vendor",
        }
    }
}

/// One `[[usb]]` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsbEntry {
    /// USB vendor id.
    pub vid: u16,
    /// USB product id.
    pub pid: u16,
    /// Vendor.
    pub vendor: String,
    /// Model.
    pub model: String,
    /// How it talks to the computer.
    pub interface: UsbInterface,
    /// What serves it.
    pub served: Served,
    /// Where the entry comes from.
    pub source: String,
}

/// One `[[ble]]` entry: a BLE key recognised by a GATT service it advertises.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BleEntry {
    /// The advertised service UUID, lower case with dashes.
    pub service: String,
    /// Vendor.
    pub vendor: String,
    /// Model.
    pub model: String,
    /// What serves it (BLE keys KeyBridge drives advertise KeyBridge's own service, so an
    /// entry here is always `needs`).
    pub served: Served,
    /// Where the entry comes from.
    pub source: String,
}

/// The parsed registry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Registry {
    cards: Vec<CardEntry>,
    usb: Vec<UsbEntry>,
    ble: Vec<BleEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    card: Vec<RawCard>,
    #[serde(default)]
    usb: Vec<RawUsb>,
    #[serde(default)]
    ble: Vec<RawBle>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBle {
    service: String,
    vendor: String,
    model: String,
    needs: String,
    source: String,
}

/// `0000fffd-0000-1000-8000-00805f9b34fb`, or a 16-bit `fffd` expanded with the
/// Bluetooth base UUID; `None` when it is neither.
fn ble_uuid(s: &str) -> Option<String> {
    let s = s.trim().to_ascii_lowercase();
    let hex = |t: &str| t.chars().all(|c| c.is_ascii_hexdigit());
    if s.len() == 4 && hex(&s) {
        return Some(format!("0000{s}-0000-1000-8000-00805f9b34fb"));
    }
    let parts: Vec<&str> = s.split('-').collect();
    let ok = parts.len() == 5 && parts.iter().zip([8, 4, 4, 4, 12]).all(|(p, n)| p.len() == n && hex(p));
    ok.then_some(s)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCard {
    name: String,
    vendor: String,
    atr: String,
    mask: Option<String>,
    app: Option<String>,
    needs: Option<String>,
    source: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUsb {
    vid: String,
    pid: String,
    vendor: String,
    model: String,
    interface: Option<String>,
    app: Option<String>,
    needs: Option<String>,
    source: String,
}

fn hex_bytes(s: &str) -> Option<Vec<u8>> {
    let digits: String = s.chars().filter(|c| !matches!(c, ':' | ' ')).collect();
    hex::decode(digits).ok().filter(|b| !b.is_empty())
}

fn served(app: Option<String>, needs: Option<String>, at: &str, known: &[&str]) -> Result<Served, RegistryError> {
    match (app, needs) {
        (Some(a), None) if known.contains(&a.as_str()) => Ok(Served::App(a)),
        (Some(a), None) => {
            let list = if known.is_empty() { "none".to_owned() } else { known.join(", ") };
            Err(RegistryError(format!("{at}: unknown app \"{a}\" (known here: {list})")))
        }
        (None, Some(n)) if !n.trim().is_empty() => Ok(Served::Needs(n)),
        _ => Err(RegistryError(format!("{at}: give exactly one of `app` and `needs`"))),
    }
}

fn usb_id(s: &str, at: &str) -> Result<u16, RegistryError> {
    (s.len() == 4)
        .then(|| u16::from_str_radix(s, 16).ok())
        .flatten()
        .ok_or_else(|| RegistryError(format!("{at}: \"{s}\" is not 4 hex digits")))
}

impl Registry {
    /// The registry shipped with KeyBridge.
    pub fn builtin() -> Result<Self, RegistryError> {
        Self::parse(BUILTIN)
    }

    /// The built-in registry, or — if it does not parse, which its tests rule out — an
    /// empty one and the error, for a transport to report instead of failing.
    pub fn builtin_or_empty() -> (Self, Option<RegistryError>) {
        match Self::builtin() {
            Ok(r) => (r, None),
            Err(e) => (Registry::default(), Some(e)),
        }
    }

    /// Parse and check a registry file.
    pub fn parse(text: &str) -> Result<Self, RegistryError> {
        Self::parse_with_hid_drivers(text, KNOWN_HID_DRIVERS)
    }

    /// Parse and check a registry file whose vendor-interface keys may name these HID
    /// drivers as their `app` (the built-in ones are [`KNOWN_HID_DRIVERS`]).
    pub fn parse_with_hid_drivers(text: &str, hid_drivers: &[&str]) -> Result<Self, RegistryError> {
        let file: File = toml::from_str(text).map_err(|e| RegistryError(e.to_string()))?;
        let mut cards = Vec::new();
        for (i, c) in file.card.into_iter().enumerate() {
            let at = format!("card #{} ({})", i + 1, c.name);
            let atr = hex_bytes(&c.atr).ok_or_else(|| RegistryError(format!("{at}: atr is not hex bytes")))?;
            let mask = match &c.mask {
                None => vec![0xFF; atr.len()],
                Some(m) => hex_bytes(m)
                    .filter(|m| m.len() == atr.len())
                    .ok_or_else(|| RegistryError(format!("{at}: mask must be hex bytes of the ATR's length ({})", atr.len())))?,
            };
            let served = served(c.app, c.needs, &at, KNOWN_APPS)?;
            cards.push(CardEntry { name: c.name, vendor: c.vendor, atr, mask, served, source: c.source });
        }
        let mut usb: Vec<UsbEntry> = Vec::new();
        for (i, u) in file.usb.into_iter().enumerate() {
            let at = format!("usb #{} ({} {})", i + 1, u.vendor, u.model);
            let (vid, pid) = (usb_id(&u.vid, &at)?, usb_id(&u.pid, &at)?);
            if usb.iter().any(|e| (e.vid, e.pid) == (vid, pid)) {
                return Err(RegistryError(format!("{at}: {vid:04X}:{pid:04X} listed twice")));
            }
            let (interface, apps) = match u.interface.as_deref() {
                None | Some("ccid") => (UsbInterface::Ccid, KNOWN_APPS),
                Some("vendor") => (UsbInterface::Vendor, hid_drivers),
                Some(other) => return Err(RegistryError(format!("{at}: unknown interface \"{other}\" (ccid, vendor)"))),
            };
            let served = served(u.app, u.needs, &at, apps)?;
            usb.push(UsbEntry { vid, pid, vendor: u.vendor, model: u.model, interface, served, source: u.source });
        }
        let mut ble: Vec<BleEntry> = Vec::new();
        for (i, b) in file.ble.into_iter().enumerate() {
            let at = format!("ble #{} ({} {})", i + 1, b.vendor, b.model);
            let service = ble_uuid(&b.service).ok_or_else(|| RegistryError(format!("{at}: \"{}\" is not a UUID", b.service)))?;
            if ble.iter().any(|e| e.service == service) {
                return Err(RegistryError(format!("{at}: service {service} listed twice")));
            }
            let served = served(None, Some(b.needs), &at, &[])?;
            ble.push(BleEntry { service, vendor: b.vendor, model: b.model, served, source: b.source });
        }
        Ok(Registry { cards, usb, ble })
    }

    /// The first card entry whose ATR pattern matches.
    pub fn match_atr(&self, atr: &[u8]) -> Option<&CardEntry> {
        self.cards.iter().find(|c| c.matches(atr))
    }

    /// The entry for a BLE key advertising one of `services` (UUIDs, any case).
    pub fn match_ble(&self, services: &[String]) -> Option<&BleEntry> {
        let wanted: Vec<String> = services.iter().filter_map(|s| ble_uuid(s)).collect();
        self.ble.iter().find(|b| wanted.contains(&b.service))
    }

    /// Every BLE entry.
    pub fn ble(&self) -> &[BleEntry] {
        &self.ble
    }

    /// The entry for a USB device.
    pub fn match_usb(&self, vid: u16, pid: u16) -> Option<&UsbEntry> {
        self.usb.iter().find(|u| u.vid == vid && u.pid == pid)
    }

    /// Every card entry.
    pub fn cards(&self) -> &[CardEntry] {
        &self.cards
    }

    /// Every USB entry.
    pub fn usb(&self) -> &[UsbEntry] {
        &self.usb
    }
}

/// An ATR as the user sees it: `3B:DA:…`.
pub struct AtrDisplay<'a>(pub &'a [u8]);

impl fmt::Display for AtrDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|b| format!("{b:02X}")).collect();
        f.write_str(&parts.join(":"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex_bytes(s).unwrap()
    }

    #[test]
    fn ble_entries_match_by_advertised_service_in_any_form() {
        let r = Registry::builtin().unwrap();
        let fido = r.match_ble(&["0000FFFD-0000-1000-8000-00805F9B34FB".into()]).unwrap();
        assert!(matches!(&fido.served, Served::Needs(n) if n.contains("WebAuthn")), "{fido:?}");
        assert_eq!(r.match_ble(&["fffd".into()]), Some(fido));
        // KeyBridge's own service is not "needs": those keys are driven.
        assert!(r.match_ble(&["6b62a5d0-7e3c-4d0b-9a43-2f1c0b5e0001".into()]).is_none());
        assert!(r.match_ble(&[]).is_none());
        for bad in ["service = \"not-a-uuid\"", "service = \"fffd\"\nservice2 = 1"] {
            let text = format!("[[ble]]\n{bad}\nvendor = \"v\"\nmodel = \"m\"\nneeds = \"x\"\nsource = \"s\"\n");
            assert!(Registry::parse(&text).is_err(), "{text}");
        }
        let twice = "[[ble]]\nservice = \"fffd\"\nvendor = \"a\"\nmodel = \"m\"\nneeds = \"x\"\nsource = \"s\"\n\
                     [[ble]]\nservice = \"0000fffd-0000-1000-8000-00805f9b34fb\"\nvendor = \"b\"\nmodel = \"m\"\nneeds = \"x\"\nsource = \"s\"\n";
        assert!(Registry::parse(twice).unwrap_err().to_string().contains("listed twice"));
        let empty_needs = "[[ble]]\nservice = \"fffd\"\nvendor = \"a\"\nmodel = \"m\"\nneeds = \" \"\nsource = \"s\"\n";
        assert!(Registry::parse(empty_needs).is_err());
    }

    #[test]
    fn builtin_parses_and_matches() {
        let r = Registry::builtin().unwrap();
        assert!(r.cards().len() >= 7 && r.usb().len() >= 5);
        assert!(r.cards().iter().all(|c| !c.source.is_empty()) && r.usb().iter().all(|u| !u.source.is_empty()));
        let y5 = r.match_atr(&h("3b:fd:13:00:00:81:31:fe:15:80:73:c0:21:c0:57:59:75:62:69:4b:65:79:40")).unwrap();
        assert_eq!((y5.vendor.as_str(), &y5.served), ("Yubico", &Served::App("openpgp".into())));
        // Gnuk's mask ignores byte 17 and the checksum.
        let gnuk = r.match_atr(&h("3b:da:11:ff:81:b1:fe:55:1f:03:00:31:84:73:80:01:80:77:90:00:12")).unwrap();
        assert_eq!(gnuk.vendor, "FSIJ");
        // The emulator used by tests/pcsc.
        assert!(r.match_atr(&h("3BDA11FF81B1FE551F030031C873FB11DF0190009D")).is_some());
        assert!(r.match_atr(&h("3b:00")).is_none());
        assert!(r.match_atr(&[]).is_none());
        let ft = r.match_usb(0x096E, 0x0807).unwrap();
        assert!(matches!(&ft.served, Served::Needs(n) if n.contains("SKF")));
        assert_eq!(r.match_usb(0x1050, 0x0407).unwrap().served, Served::App("openpgp".into()));
        assert!(r.match_usb(0x1234, 0x5678).is_none());
        assert_eq!(r.match_usb(0x1050, 0x0407).unwrap().interface, UsbInterface::Ccid);
        let gm = r.match_usb(0x096E, 0x0309).unwrap();
        assert_eq!((gm.model.as_str(), gm.interface), ("ePass3000GM", UsbInterface::Vendor));
        assert!(r.usb().iter().filter(|u| u.interface == UsbInterface::Vendor).all(|u| u.source.starts_with("usb.ids")));
    }

    #[test]
    fn rejects_bad_entries_naming_them() {
        let card = |extra: &str| format!("[[card]]\nname = \"X\"\nvendor = \"V\"\nsource = \"s\"\n{extra}");
        for (text, want) in [
            (card("atr = \"3b:zz\"\napp = \"openpgp\""), "card #1 (X): atr"),
            (card("atr = \"3b:00\"\nmask = \"ff\"\napp = \"openpgp\""), "mask"),
            (card("atr = \"3b:00\"\napp = \"piv\""), "unknown app"),
            (card("atr = \"3b:00\""), "exactly one"),
            (card("atr = \"3b:00\"\napp = \"openpgp\"\nneeds = \"x\""), "exactly one"),
            (card("atr = \"3b:00\"\napp = \"openpgp\"\ncolour = 1"), "colour"),
            ("[[usb]]\nvid = \"96E\"\npid = \"0807\"\nvendor = \"F\"\nmodel = \"M\"\nneeds = \"x\"\nsource = \"s\"".into(), "not 4 hex"),
            (
                "[[usb]]\nvid = \"096E\"\npid = \"0807\"\nvendor = \"F\"\nmodel = \"M\"\nneeds = \"x\"\nsource = \"s\"\n[[usb]]\nvid = \"096e\"\npid = \"0807\"\nvendor = \"F\"\nmodel = \"N\"\nneeds = \"x\"\nsource = \"s\"".into(),
                "listed twice",
            ),
        ] {
            let e = Registry::parse(&text).unwrap_err().to_string();
            assert!(e.contains(want), "{e} / {text}");
        }
        assert_eq!(Registry::parse("").unwrap(), Registry::default());
    }

    #[test]
    fn usb_interfaces() {
        let usb = |extra: &str| {
            format!("[[usb]]\nvid = \"096E\"\npid = \"0309\"\nvendor = \"F\"\nmodel = \"M\"\nsource = \"s\"\n{extra}")
        };
        let r = Registry::parse(&usb("needs = \"x\"")).unwrap();
        assert_eq!(r.usb()[0].interface, UsbInterface::Ccid, "absent means ccid");
        let r = Registry::parse(&usb("interface = \"vendor\"\nneeds = \"x\"")).unwrap();
        assert_eq!(r.usb()[0].interface, UsbInterface::Vendor);
        assert_eq!(UsbInterface::Vendor.name(), "vendor");
        for (text, want) in [
            (usb("interface = \"hid\"\nneeds = \"x\""), "unknown interface \"hid\""),
            // Card applications are not HID drivers, and no HID driver is built in.
            (usb("interface = \"vendor\"\napp = \"openpgp\""), "known here: none"),
        ] {
            let e = Registry::parse(&text).unwrap_err().to_string();
            assert!(e.contains(want), "{e} / {text}");
        }
        let r = Registry::parse_with_hid_drivers(&usb("interface = \"vendor\"\napp = \"acme-hid\""), &["acme-hid"]).unwrap();
        assert_eq!(r.usb()[0].served, Served::App("acme-hid".into()));
        assert!(Registry::parse_with_hid_drivers(&usb("app = \"acme-hid\""), &["acme-hid"]).is_err(), "ccid keys name card apps");
    }

    #[test]
    fn mask_semantics() {
        let r = Registry::parse(
            "[[card]]\nname = \"M\"\nvendor = \"V\"\natr = \"3B 10 20\"\nmask = \"FF F0 00\"\nneeds = \"module M\"\nsource = \"s\"",
        )
        .unwrap();
        assert!(r.match_atr(&[0x3B, 0x1F, 0x99]).is_some());
        assert!(r.match_atr(&[0x3B, 0x20, 0x20]).is_none());
        assert!(r.match_atr(&[0x3B, 0x10]).is_none());
        assert_eq!(AtrDisplay(&[0x3B, 0x0A]).to_string(), "3B:0A");
    }
}
