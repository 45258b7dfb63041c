//! The command line both binaries share, and how the core is started.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::PaintReport;

/// The core's binary, installed beside `keybridge-desktop`.
pub const CORE_BIN: &str = "keybridge-tray";
/// The window's binary (Tauri), installed beside the core.
pub const WINDOW_BIN: &str = "keybridge-desktop";
/// Set on the core by whoever starts it (see [`exec_core`]): GDK's OpenGL is off in the
/// core, and in the window it starts unless that window uses the GPU ([`WEBKIT_GPU`]).
pub const CORE_GL_OFF: &str = "KEYBRIDGE_CORE_GL_OFF";
/// Set by the user: the window keeps WebKit's default (GPU) rendering policy, and GDK's
/// OpenGL with it. Unset, the window renders in software and GDK's OpenGL stays off.
pub const WEBKIT_GPU: &str = "KEYBRIDGE_WEBKIT_GPU";
/// The window binary's path, handed to the core by `keybridge-desktop` when it replaces
/// itself with the core (so a renamed or relocated app still starts its own window).
pub const WINDOW_EXE: &str = "KEYBRIDGE_WINDOW_EXE";

/// Command-line options of `keybridge-desktop` and `keybridge-tray`.
#[derive(Debug, Default)]
pub struct Args {
    /// `--home DIR` (else `$KEYBRIDGE_HOME`, else the per-user directories).
    pub home: Option<PathBuf>,
    /// `--hidden`: start in the tray (login auto-start); with `--window`, build the window
    /// unmapped until the core asks to show it (the core starting it ahead of an open).
    pub hidden: bool,
    /// `--exit-after-paint` (quit once the window has painted: start-up measurement) or
    /// `--report-paints` (print `painted` whenever a window has painted: reopening).
    pub paints: PaintReport,
    /// `--window SOCKET`: be the window of the core listening at SOCKET (started by the
    /// core, which writes the one-time token on stdin).
    pub window: Option<PathBuf>,
}

impl Args {
    /// Parse `std::env::args` for the binary `program`. `Err` carries the message to
    /// print; `--version` ends early with `"{program} VERSION"`, which is no error.
    pub fn parse(program: &str) -> Result<Self, String> {
        Self::parse_from(program, std::env::args().skip(1))
    }

    /// Parse `args` (without the program name).
    pub fn parse_from(program: &str, args: impl IntoIterator<Item = String>) -> Result<Self, String> {
        let mut a = Args { home: std::env::var_os("KEYBRIDGE_HOME").map(PathBuf::from), ..Args::default() };
        let mut it = args.into_iter();
        while let Some(arg) = it.next() {
            match arg.as_str() {
                "--home" => a.home = Some(it.next().ok_or("--home needs a directory")?.into()),
                "--hidden" => a.hidden = true,
                "--exit-after-paint" => a.paints = PaintReport::PrintAndExit,
                "--report-paints" => a.paints = PaintReport::Print,
                "--window" => a.window = Some(it.next().ok_or("--window needs the core's socket")?.into()),
                "--version" => return Err(format!("{program} {}", env!("CARGO_PKG_VERSION"))),
                // WebKitWebDriver may add its own flag when it launches the app.
                a if a.starts_with("--automation") => {}
                other => return Err(format!("unknown argument {other}; usage: {program} [--home DIR] [--hidden]")),
            }
        }
        Ok(a)
    }
}

/// Without a display GTK cannot start (it would panic deep in the toolkit): say what to
/// do instead.
pub fn need_display() -> Result<(), String> {
    #[cfg(target_os = "linux")]
    if std::env::var_os("DISPLAY").is_none() && std::env::var_os("WAYLAND_DISPLAY").is_none() {
        return Err("KeyBridge 桌面客户端需要图形界面（未设置 DISPLAY / WAYLAND_DISPLAY）。在服务器上请使用命令行：keybridge demo、keybridge serve。\n\
                    The KeyBridge window needs a graphical display (DISPLAY / WAYLAND_DISPLAY are unset). \
                    On a server use the command line: keybridge demo, keybridge serve."
            .into());
    }
    Ok(())
}

/// Whether the core, started directly, must first start itself again with GDK's GL off
/// (see [`exec_core`]): not when whoever started it did so, nor when the user set
/// `GDK_GL` themselves.
pub fn core_needs_gl_off() -> bool {
    cfg!(target_os = "linux") && std::env::var_os("GDK_GL").is_none() && std::env::var_os(CORE_GL_OFF).is_none()
}

/// The binary `name` installed beside this process's own.
pub fn beside_me(name: &str) -> std::io::Result<PathBuf> {
    Ok(std::env::current_exe()?.with_file_name(name))
}

/// Replace this process (same pid) with the core `core_exe`, with this process's
/// arguments and `window_exe` as the window binary. GTK 3 probes OpenGL (GLX) when it
/// opens the display, which loads Mesa and, with its software renderer, LLVM: ~50 MiB in
/// a process that draws no GL. The core draws nothing, so it runs with GDK's GL off
/// (`GDK_GL=disable`, read before GTK starts; a value the user set is left alone). The
/// window it starts keeps it off too, unless the user asked for GPU rendering
/// ([`WEBKIT_GPU`]): a software-rendered WebKit view never composites through GDK's GL,
/// and the probe cost the window ~40 ms of its start (docs/desktop-performance.md).
/// Returns only on failure, with the message.
pub fn exec_core(core_exe: &Path, window_exe: &Path) -> String {
    let mut cmd = Command::new(core_exe);
    cmd.args(std::env::args_os().skip(1)).env(WINDOW_EXE, window_exe);
    if std::env::var_os("GDK_GL").is_none() {
        cmd.env("GDK_GL", "disable").env(CORE_GL_OFF, "1");
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        let err = cmd.exec();
        let hint = if err.kind() == std::io::ErrorKind::NotFound { " (built with: cargo build -p keybridge-tray)" } else { "" };
        format!("KeyBridge could not start its core {}: {err}{hint}", core_exe.display())
    }
    #[cfg(not(unix))]
    {
        format!("KeyBridge's core {} runs on Unix only", core_exe.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, String> {
        Args::parse_from("keybridge-tray", args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn arguments() {
        let a = parse(&["--home", "/h", "--hidden", "--report-paints"]).unwrap();
        assert_eq!(a.home.as_deref(), Some(Path::new("/h")));
        assert!(a.hidden && a.window.is_none());
        assert_eq!(a.paints, PaintReport::Print);
        assert_eq!(parse(&["--exit-after-paint"]).unwrap().paints, PaintReport::PrintAndExit);
        assert_eq!(parse(&["--window", "/s"]).unwrap().window.as_deref(), Some(Path::new("/s")));
        let warm = parse(&["--window", "/s", "--hidden"]).unwrap();
        assert!(warm.hidden && warm.window.is_some());
        assert!(parse(&["--automation"]).is_ok());
        assert_eq!(parse(&["--version"]).unwrap_err(), format!("keybridge-tray {}", env!("CARGO_PKG_VERSION")));
        assert!(parse(&["--frob"]).unwrap_err().contains("unknown argument --frob"));
        assert!(parse(&["--home"]).unwrap_err().contains("--home needs a directory"));
    }
}
