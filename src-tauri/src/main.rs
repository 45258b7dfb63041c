//! `keybridge-desktop`: the KeyBridge window.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]
#![allow(clippy::print_stdout, clippy::print_stderr)]

fn main() {
    if let Err(e) = keybridge_desktop::shell::run() {
        // `--version` ends the run early with the version, which is no error.
        if e.starts_with("keybridge-desktop ") {
            println!("{e}");
            return;
        }
        eprintln!("{e}");
        std::process::exit(2);
    }
}
