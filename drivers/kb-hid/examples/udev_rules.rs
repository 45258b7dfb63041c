//! Print the installer's udev rules for the built-in media registry:
//! `cargo run -q -p kb-hid --example udev_rules > installer/udev/70-keybridge.rules`.

#![allow(clippy::print_stdout)]

fn main() -> Result<(), kb_registry::RegistryError> {
    print!("{}", kb_hid::udev::rules(&kb_registry::Registry::builtin()?));
    Ok(())
}
