//! The installer's udev rules (`installer/udev/70-keybridge.rules`), generated from the
//! media registry, and a syntax check for them.
//!
//! Every `interface = "vendor"` USB entry gets two rules: its USB device node (for vendor
//! modules that use libusb) and its `hidraw` nodes (for hidapi) are tagged `uaccess`, so
//! systemd-logind gives the user of the active local session an ACL on them while they
//! are plugged in. No `MODE`, `GROUP` or `OWNER` is set: nobody else gains access. CCID
//! keys get no rule: pcscd opens them, with libccid's own rules. The file sorts before
//! systemd's `73-seat-late.rules`, which applies the `uaccess` tag.
//!
//! Debian 12's udevadm (systemd 252) has no `udevadm verify` (added in systemd 253), so
//! [`check`] does the checks that matter here itself.

use kb_registry::{Registry, UsbInterface};

/// Where the generated file lives in the repository and where the installer puts it.
pub const FILE_NAME: &str = "70-keybridge.rules";

/// The rules for `registry`.
pub fn rules(registry: &Registry) -> String {
    let mut out = String::from(
        "# KeyBridge: let the user of the active local session open USB keys that speak a\n\
         # vendor protocol (HID or vendor-specific USB), so their vendor SKF/PKCS#11 modules and\n\
         # KeyBridge's HID transport work without root. TAG+=\"uaccess\" makes systemd-logind\n\
         # grant that user an ACL; no MODE/GROUP/OWNER is set, so nobody else gains access.\n\
         # CCID keys are not listed: pcscd opens them, with libccid's own rules.\n\
         #\n\
         # GENERATED from drivers/registry/media.toml by\n\
         #   cargo run -q -p kb-hid --example udev_rules > installer/udev/70-keybridge.rules\n\
         # Do not edit: a test fails when this file and the registry differ.\n\
         \n\
         ACTION==\"remove\", GOTO=\"keybridge_end\"\n",
    );
    for e in registry.usb().iter().filter(|e| e.interface == UsbInterface::Vendor) {
        let (v, p) = (format!("{:04x}", e.vid), format!("{:04x}", e.pid));
        out.push_str(&format!("\n# {} {} — {}\n", e.vendor, e.model, e.source));
        out.push_str(&format!(
            "SUBSYSTEM==\"usb\", ENV{{DEVTYPE}}==\"usb_device\", ATTR{{idVendor}}==\"{v}\", ATTR{{idProduct}}==\"{p}\", TAG+=\"uaccess\"\n"
        ));
        out.push_str(&format!(
            "SUBSYSTEM==\"hidraw\", KERNEL==\"hidraw*\", ATTRS{{idVendor}}==\"{v}\", ATTRS{{idProduct}}==\"{p}\", TAG+=\"uaccess\"\n"
        ));
    }
    out.push_str("\nLABEL=\"keybridge_end\"\n");
    out
}

/// One `KEY{attr}op"value"` of a rule.
struct Pair<'a> {
    key: &'a str,
    attr: Option<&'a str>,
    op: &'a str,
    value: &'a str,
}

/// Split a rule line into its pairs (udev's `KEY[{attr}] op "value"`, comma-separated).
fn pairs(line: &str) -> Result<Vec<Pair<'_>>, String> {
    let mut out = Vec::new();
    let mut rest = line.trim();
    while !rest.is_empty() {
        let key_end = rest.find(|c: char| !(c.is_ascii_uppercase() || c == '_')).unwrap_or(rest.len());
        let key = &rest[..key_end];
        if key.is_empty() {
            return Err(format!("expected a key at \"{rest}\""));
        }
        rest = &rest[key_end..];
        let mut attr = None;
        if let Some(r) = rest.strip_prefix('{') {
            let close = r.find('}').ok_or("unclosed {")?;
            attr = Some(&r[..close]);
            rest = &r[close + 1..];
        }
        let op = ["==", "!=", "+=", "-=", ":=", "="]
            .into_iter()
            .find(|op| rest.starts_with(op))
            .ok_or_else(|| format!("{key}: expected an operator"))?;
        rest = rest[op.len()..].strip_prefix('"').ok_or_else(|| format!("{key}: value must be in double quotes"))?;
        let close = rest.find('"').ok_or_else(|| format!("{key}: unclosed quote"))?;
        let value = &rest[..close];
        rest = rest[close + 1..].trim_start();
        if let Some(r) = rest.strip_prefix(',') {
            rest = r.trim_start();
            if rest.is_empty() {
                return Err("trailing comma".into());
            }
        } else if !rest.is_empty() {
            return Err(format!("expected ',' before \"{rest}\""));
        }
        out.push(Pair { key, attr, op, value });
    }
    Ok(out)
}

/// Check a rules file: udev's pair syntax, keys this file may use with the right
/// operators, 4-digit lower-case hex USB ids, every `GOTO` label defined, and no rule that
/// sets a mode, owner or group (access is granted by `uaccess` only). Names the line.
pub fn check(text: &str) -> Result<(), String> {
    let mut labels = Vec::new();
    let mut gotos = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let at = |m: String| format!("line {}: {m}", n + 1);
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut matches = 0;
        for p in pairs(line).map_err(at)? {
            let matching = matches!(p.op, "==" | "!=");
            match (p.key, p.attr) {
                ("ACTION" | "SUBSYSTEM" | "KERNEL", None) | ("ENV" | "ATTR" | "ATTRS", Some(_)) if matching => matches += 1,
                ("TAG", None) if p.op == "+=" => {
                    if p.value != "uaccess" {
                        return Err(at(format!("unexpected tag \"{}\"", p.value)));
                    }
                }
                ("GOTO", None) if p.op == "=" => gotos.push((n + 1, p.value.to_owned())),
                ("LABEL", None) if p.op == "=" => labels.push(p.value.to_owned()),
                ("MODE" | "OWNER" | "GROUP", _) => {
                    return Err(at(format!("{} is not allowed: grant access with TAG+=\"uaccess\"", p.key)));
                }
                (key, _) => return Err(at(format!("{key} with {} is not expected here", p.op))),
            }
            if matches!(p.attr, Some("idVendor" | "idProduct"))
                && !(p.value.len() == 4 && p.value.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)))
            {
                return Err(at(format!("{} must be 4 lower-case hex digits, not \"{}\"", p.attr.unwrap_or_default(), p.value)));
            }
        }
        if matches == 0 && !line.starts_with("LABEL=") {
            return Err(at("a rule without a match applies to every device".into()));
        }
    }
    for (n, label) in gotos {
        if !labels.contains(&label) {
            return Err(format!("line {n}: GOTO \"{label}\" has no LABEL"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_rules_pass_the_check() {
        let r = Registry::builtin().unwrap();
        check(&rules(&r)).unwrap();
        check(&rules(&Registry::default())).unwrap();
    }

    #[test]
    fn check_rejects_bad_rules() {
        let ok = "SUBSYSTEM==\"hidraw\", ATTRS{idVendor}==\"096e\", TAG+=\"uaccess\"";
        check(ok).unwrap();
        for (bad, want) in [
            ("SUBSYSTEM==\"hidraw\", MODE=\"0666\"", "MODE is not allowed"),
            ("SUBSYSTEM==\"hidraw\", GROUP=\"plugdev\"", "GROUP is not allowed"),
            ("SUBSYSTEM==hidraw, TAG+=\"uaccess\"", "double quotes"),
            ("SUBSYSTEM==\"hidraw\" TAG+=\"uaccess\"", "expected ','"),
            ("SUBSYSTEM==\"hidraw\", TAG+=\"uaccess\",", "trailing comma"),
            ("SUBSYSTEM=\"hidraw\", TAG+=\"uaccess\"", "SUBSYSTEM with ="),
            ("ATTRS{idVendor}==\"096E\", TAG+=\"uaccess\"", "lower-case hex"),
            ("ATTRS{idVendor}==\"96e\", TAG+=\"uaccess\"", "lower-case hex"),
            ("TAG+=\"uaccess\"", "without a match"),
            ("SUBSYSTEM==\"usb\", TAG+=\"seat\"", "unexpected tag"),
            ("ACTION==\"remove\", GOTO=\"nowhere\"", "has no LABEL"),
            ("SUBSYSTEM==\"usb\", RUN+=\"/bin/sh\"", "RUN with +="),
            ("ATTRS{idVendor==\"096e\"", "unclosed {"),
            ("SUBSYSTEM==\"usb, TAG+=\"uaccess\"", "expected"),
        ] {
            let e = check(&format!("# c\n\n{bad}\n")).unwrap_err();
            assert!(e.contains(want) && e.starts_with("line 3:"), "{bad}: {e}");
        }
    }

    #[test]
    fn vendor_entries_only() {
        let r = Registry::parse(
            "[[usb]]\nvid = \"096E\"\npid = \"0309\"\nvendor = \"F\"\nmodel = \"GM\"\ninterface = \"vendor\"\nneeds = \"x\"\nsource = \"s1\"\n\
             [[usb]]\nvid = \"1050\"\npid = \"0407\"\nvendor = \"Y\"\nmodel = \"CCID\"\napp = \"openpgp\"\nsource = \"s2\"\n",
        )
        .unwrap();
        let text = rules(&r);
        assert!(text.contains("ATTR{idVendor}==\"096e\", ATTR{idProduct}==\"0309\""), "{text}");
        assert!(text.contains("ATTRS{idVendor}==\"096e\", ATTRS{idProduct}==\"0309\""), "{text}");
        assert!(text.contains("# F GM — s1"));
        assert!(!text.contains("1050"), "CCID keys get no rule: {text}");
        let rules: Vec<&str> = text.lines().filter(|l| l.contains("TAG+=\"uaccess\"") && !l.starts_with('#')).collect();
        assert_eq!(rules.len(), 2, "{rules:?}");
    }
}
