//! `keybridge-desktop`: the KeyBridge window.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

fn main() {
    if let Err(e) = keybridge_desktop::shell::run() {
        #[allow(clippy::print_stderr)]
        {
            eprintln!("{e}");
        }
        std::process::exit(if e.starts_with("keybridge-desktop ") { 0 } else { 2 });
    }
}
