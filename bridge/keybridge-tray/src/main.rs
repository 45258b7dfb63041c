//! `keybridge-tray`: KeyBridge's long-lived core, without WebKit. The tray icon and its
//! menu (`tray-icon`/`muda` over GTK and libayatana-appindicator: a StatusNotifierItem
//! whose menu a tray host reads over D-Bus as `com.canonical.dbusmenu`), one instance per
//! user (a name on the session bus), desktop notifications (`org.freedesktop.Notifications`
//! through notify-rust), the device service, the local bridge and every prompt. The window
//! is `keybridge-desktop --window SOCKET`, started on demand.
//!
//! Users start `keybridge-desktop` (the desktop entry, login auto-start, a launcher): it
//! replaces itself with this binary before initialising anything.
#![allow(clippy::print_stdout, clippy::print_stderr)]

#[cfg(target_os = "linux")]
mod linux;

fn main() {
    #[cfg(target_os = "linux")]
    let result = linux::run();
    #[cfg(not(target_os = "linux"))]
    let result: Result<i32, String> = Err("keybridge-tray runs on Linux only; elsewhere keybridge-desktop is the app".into());
    match result {
        Ok(code) => std::process::exit(code),
        // `--version` ends the run early with the version, which is no error.
        Err(e) if e.starts_with("keybridge-tray ") => println!("{e}"),
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    }
}
