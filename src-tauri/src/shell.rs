//! The two processes of the desktop app.
//!
//! The **core** (`keybridge-desktop`): the tray icon with the device count and quick
//! actions, one instance only, desktop notifications, the device service and the bridge.
//! It never builds a webview. It starts the **window** (`keybridge-desktop --window
//! SOCKET`) when the user opens it (tray menu, tray click, a second start) or a PIN,
//! consent or QR question comes, and tells a running window to come forward. Closing the
//! window ends its process (and WebKit's); the core stays in the tray. Without a tray
//! host, closing the window quits. If the window process dies, the core lives on and
//! starts a new one on the next request.

use crate::link::{ToWindow, WindowWatch};
use crate::{AppControl, PaintReport, Shell, attach_window, runtime_dir, start_core, with_commands};
use kb_desktop::{Desktop, DesktopOptions};
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use tauri::menu::{Menu, MenuItem, PredefinedMenuItem};
use tauri::tray::{MouseButton, MouseButtonState, TrayIconBuilder, TrayIconEvent};
use tauri::{AppHandle, Manager, Runtime, WebviewUrl, WebviewWindowBuilder, WindowEvent, Wry};

/// The main window's label.
pub const MAIN: &str = "main";
const TRAY: &str = "keybridge-tray";
const MENU_COUNT: &str = "tray-count";
/// Set by the core on itself (see [`run`]): GDK's OpenGL is off in the core, not in the
/// window it starts.
const CORE_GL_OFF: &str = "KEYBRIDGE_CORE_GL_OFF";

/// Command-line options of `keybridge-desktop`.
#[derive(Debug, Default)]
pub struct Args {
    /// `--home DIR` (else `$KEYBRIDGE_HOME`, else the per-user directories).
    pub home: Option<PathBuf>,
    /// `--hidden`: start in the tray (login auto-start).
    pub hidden: bool,
    /// `--exit-after-paint` (quit once the window has painted: start-up measurement) or
    /// `--report-paints` (print `painted` whenever a window has painted: reopening).
    pub paints: PaintReport,
    /// `--window SOCKET`: be the window of the core listening at SOCKET (started by the
    /// core, which writes the one-time token on stdin).
    pub window: Option<PathBuf>,
}

impl Args {
    /// Parse `std::env::args`.
    pub fn parse() -> Result<Self, String> {
        let mut a = Args { home: std::env::var_os("KEYBRIDGE_HOME").map(PathBuf::from), ..Args::default() };
        let mut it = std::env::args().skip(1);
        while let Some(arg) = it.next() {
            match arg.as_str() {
                "--home" => a.home = Some(it.next().ok_or("--home needs a directory")?.into()),
                "--hidden" => a.hidden = true,
                "--exit-after-paint" => a.paints = PaintReport::PrintAndExit,
                "--report-paints" => a.paints = PaintReport::Print,
                "--window" => a.window = Some(it.next().ok_or("--window needs the core's socket")?.into()),
                "--version" => {
                    return Err(format!("keybridge-desktop {}", env!("CARGO_PKG_VERSION")));
                }
                // WebKitWebDriver may add its own flag when it launches the app.
                a if a.starts_with("--automation") => {}
                other => return Err(format!("unknown argument {other}; usage: keybridge-desktop [--home DIR] [--hidden]")),
            }
        }
        Ok(a)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

// ---------------------------------------------------------------------------------------
// the window process
// ---------------------------------------------------------------------------------------

/// Bring the main window forward (from any thread; the work runs on the main thread).
fn show_main<R: Runtime>(app: &AppHandle<R>) {
    let h = app.clone();
    let shown = app.run_on_main_thread(move || {
        if let Some(w) = h.get_webview_window(MAIN) {
            let _ = w.unminimize();
            let _ = w.show();
            let _ = w.set_focus();
        }
    });
    if let Err(e) = shown {
        tracing::warn!("the window could not be shown: {e}");
    }
}

/// The core and the window in one app (the tests' mock runtime): bring the window
/// forward, building it when there is none.
pub fn show_in_process<R: Runtime>(app: &AppHandle<R>) {
    let h = app.clone();
    let shown = app.run_on_main_thread(move || {
        if h.get_webview_window(MAIN).is_none()
            && let Err(e) = WebviewWindowBuilder::new(&h, MAIN, WebviewUrl::App("index.html".into())).build()
        {
            tracing::warn!("the window could not be built: {e}");
        }
    });
    if let Err(e) = shown {
        tracing::warn!("the window could not be shown: {e}");
    }
    show_main(app);
}

/// The main window: the UI page, software rendering; closing it tells the core and ends
/// the window process (its last window).
fn build_main<R: Runtime>(app: &AppHandle<R>, link: Arc<crate::link::WindowLink>) -> tauri::Result<tauri::WebviewWindow<R>> {
    let w = WebviewWindowBuilder::new(app, MAIN, WebviewUrl::App("index.html".into()))
        .title("KeyBridge 安全客户端")
        .inner_size(1040.0, 700.0)
        .min_inner_size(860.0, 560.0)
        .build()?;
    software_rendering(&w);
    w.on_window_event(move |e| {
        if let WindowEvent::CloseRequested { .. } = e {
            tracing::info!("window closed: the window process ends");
            link.closing();
        }
    });
    Ok(w)
}

/// Forms and lists need no GPU compositing: without it WebKitGTK's web process needs
/// about 74 MiB less and the first paint comes sooner (tests/desktop/measure.sh).
/// `KEYBRIDGE_WEBKIT_GPU=1` keeps WebKit's default policy.
fn software_rendering<R: Runtime>(w: &tauri::WebviewWindow<R>) {
    #[cfg(target_os = "linux")]
    if std::env::var_os("KEYBRIDGE_WEBKIT_GPU").is_none() {
        let _ = w.with_webview(|wv| {
            use webkit2gtk::{HardwareAccelerationPolicy, SettingsExt, WebViewExt};
            if let Some(s) = WebViewExt::settings(&wv.inner()) {
                s.set_hardware_acceleration_policy(HardwareAccelerationPolicy::Never);
            }
        });
    }
}

/// The window process: read the token, connect to the core, build the window; end when
/// the window closes or the core goes.
fn run_window(socket: PathBuf) -> Result<(), String> {
    let mut token = String::new();
    std::io::stdin().lock().read_line(&mut token).map_err(|e| format!("keybridge-desktop --window: no token on stdin: {e}"))?;
    let token = token.trim().to_owned();
    let builder = tauri::Builder::default().plugin(tauri_plugin_dialog::init());
    let (builder, specta) = with_commands(builder);
    let app = builder
        .setup(move |app| {
            let handle = app.handle().clone();
            let link = attach_window(&handle, &specta, &socket, &token, show_main, |h| {
                tracing::info!("the core is gone: the window closes");
                h.exit(0);
            })?;
            build_main(&handle, link)?;
            Ok(())
        })
        .build(tauri::generate_context!())
        .map_err(|e| format!("KeyBridge's window could not start: {e}"))?;
    app.run(|_, _| {});
    Ok(())
}

// ---------------------------------------------------------------------------------------
// the core process
// ---------------------------------------------------------------------------------------

/// Where the window process is in its life.
#[derive(Debug, Default)]
struct WindowState {
    /// A window process runs (starting, open or closing).
    running: bool,
    /// The user closed it; the process is ending.
    closing: bool,
    /// A request to show came while it was closing: start a new one once it is gone.
    reopen: bool,
}

/// Starts and tracks the window process.
pub struct WindowHost {
    app: AppHandle<Wry>,
    channel: OnceLock<Arc<crate::link::CoreChannel>>,
    state: Mutex<WindowState>,
}

impl WindowHost {
    /// Bring the window forward, starting its process when there is none. From any thread.
    pub fn show(self: &Arc<Self>) {
        let Some(channel) = self.channel.get() else { return };
        let mut s = lock(&self.state);
        if s.running {
            if s.closing {
                tracing::info!("the window is closing: started again once it is gone");
                s.reopen = true;
            } else if !channel.send(&ToWindow::Show) {
                tracing::info!("the window is starting: it shows itself");
            }
            return;
        }
        match self.spawn(channel) {
            Ok(child) => {
                s.running = true;
                drop(s);
                let host = self.clone();
                let waiter = std::thread::Builder::new().name("kb-window-wait".into()).spawn(move || {
                    let mut child = child;
                    let status = child.wait();
                    host.exited(status);
                });
                if let Err(e) = waiter {
                    tracing::warn!("no thread to watch the window process: {e}");
                }
            }
            Err(e) => tracing::warn!("the window process could not be started: {e}"),
        }
    }

    fn spawn(&self, channel: &crate::link::CoreChannel) -> std::io::Result<Child> {
        let token = channel.new_token()?;
        let exe = std::env::current_exe()?;
        let mut cmd = Command::new(exe);
        cmd.arg("--window").arg(channel.path()).stdin(Stdio::piped());
        if std::env::var_os(CORE_GL_OFF).is_some() {
            cmd.env_remove("GDK_GL").env_remove(CORE_GL_OFF);
        }
        tracing::info!("starting the window process");
        let mut child = cmd.spawn()?;
        if let Some(mut stdin) = child.stdin.take() {
            writeln!(stdin, "{token}")?;
        }
        Ok(child)
    }

    fn exited(self: &Arc<Self>, status: std::io::Result<ExitStatus>) {
        let mut s = lock(&self.state);
        s.running = false;
        let closing = std::mem::take(&mut s.closing);
        let reopen = std::mem::take(&mut s.reopen);
        drop(s);
        match &status {
            Ok(st) if st.success() => tracing::info!("the window process ended"),
            other => tracing::warn!("the window process ended unexpectedly ({other:?}); KeyBridge keeps running"),
        }
        if reopen {
            self.show();
        } else if closing && self.app.tray_by_id(TRAY).is_none() {
            // No tray to come back from: closing the window quits.
            self.app.exit(0);
        }
    }
}

impl WindowWatch for WindowHost {
    fn closing(&self) {
        lock(&self.state).closing = true;
    }
}

fn show_window(app: &AppHandle<Wry>) {
    if let Some(host) = app.try_state::<Arc<WindowHost>>() {
        host.show();
    }
}

/// The core's shell: the window host, notifications, the tray's count.
struct CoreShell {
    app: AppHandle<Wry>,
    host: Arc<WindowHost>,
}

impl Shell for CoreShell {
    fn show_window(&self) {
        self.host.show();
    }
    fn notify(&self, title: &str, body: &str) {
        use tauri_plugin_notification::NotificationExt;
        if let Err(e) = self.app.notification().builder().title(title).body(body).show() {
            tracing::warn!("notification not shown: {e}");
        }
    }
    fn media_count_changed(&self) {
        media_count_changed(&self.app);
    }
}

fn count_text<R: Runtime>(app: &AppHandle<R>) -> String {
    let n = app.try_state::<Arc<Desktop>>().map(|d| d.manager().devices().len()).unwrap_or(0);
    format!("已连接介质：{n} 个 · {n} key(s)")
}

/// Refresh the tray's device count (called on every media event).
fn media_count_changed<R: Runtime>(app: &AppHandle<R>) {
    let text = count_text(app);
    if let Some(tray) = app.tray_by_id(TRAY) {
        let _ = tray.set_tooltip(Some(&format!("KeyBridge — {text}")));
    }
    if let Some(item) = app.try_state::<MenuItem<R>>() {
        let _ = item.set_text(&text);
    }
}

fn tray(app: &AppHandle<Wry>) -> tauri::Result<()> {
    let count = MenuItem::with_id(app, MENU_COUNT, count_text(app), false, None::<&str>)?;
    let open = MenuItem::with_id(app, "tray-open", "打开 KeyBridge · Open", true, None::<&str>)?;
    let clear = MenuItem::with_id(app, "tray-clear-pins", "清除已缓存的 PIN · Clear cached PINs", true, None::<&str>)?;
    let quit = MenuItem::with_id(app, "tray-quit", "退出 · Quit", true, None::<&str>)?;
    let menu = Menu::with_items(app, &[&count, &PredefinedMenuItem::separator(app)?, &open, &clear, &quit])?;
    app.manage(count);
    let mut b = TrayIconBuilder::with_id(TRAY)
        .tooltip(format!("KeyBridge — {}", count_text(app)))
        .menu(&menu)
        .on_menu_event(|app, ev| match ev.id().as_ref() {
            "tray-open" => show_window(app),
            "tray-clear-pins" => {
                if let Some(d) = app.try_state::<Arc<Desktop>>() {
                    d.clear_pin_cache();
                }
            }
            "tray-quit" => app.exit(0),
            _ => {}
        })
        .on_tray_icon_event(|tray, ev| {
            if let TrayIconEvent::Click { button: MouseButton::Left, button_state: MouseButtonState::Up, .. } = ev {
                show_window(tray.app_handle());
            }
        });
    if let Some(icon) = app.default_window_icon() {
        b = b.icon(icon.clone());
    }
    b.build(app)?;
    Ok(())
}

/// The core process: tray, one instance, notifications, the device service and bridge,
/// the window channel; the window started unless `--hidden`.
fn run_core(args: Args) -> Result<(), String> {
    let opts = DesktopOptions { home: args.home.clone(), ..DesktopOptions::default() };
    let builder = tauri::Builder::default()
        // A second start only brings the window forward (starting it if needed).
        .plugin(tauri_plugin_single_instance::init(|app, _argv, _cwd| show_window(app)))
        .plugin(tauri_plugin_notification::init());
    let paints = args.paints;
    let hidden = args.hidden;
    let app = builder
        .setup(move |app| {
            let handle = app.handle().clone();
            let host = Arc::new(WindowHost { app: handle.clone(), channel: OnceLock::new(), state: Mutex::default() });
            let exit = handle.clone();
            let control = AppControl { exit: Box::new(move |code| exit.exit(code)), paints };
            let shell = Arc::new(CoreShell { app: handle.clone(), host: host.clone() });
            let core = start_core(opts, &runtime_dir(), control, shell, host.clone())?;
            let _ = host.channel.set(core.channel.clone());
            app.manage(core.desktop.clone());
            app.manage(host.clone());
            app.manage(core);
            if let Err(e) = tray(&handle) {
                // No tray host (a bare X server): the window still works; closing it quits.
                tracing::warn!("no tray icon: {e}");
            }
            // `--hidden` (login auto-start) starts no window: the tray holds KeyBridge
            // until the user, a prompt or a second start opens it.
            if !hidden {
                host.show();
            }
            Ok(())
        })
        .build(tauri::generate_context!())
        .map_err(|e| format!("KeyBridge could not start: {e}"))?;
    app.run(|app, e| match e {
        // The core has no windows of its own; it quits only when asked with a code.
        tauri::RunEvent::ExitRequested { code: None, api, .. } => api.prevent_exit(),
        // Scans stop and BLE links close on the way out (btleplug does not do it itself).
        tauri::RunEvent::Exit => {
            if let Some(d) = app.try_state::<Arc<Desktop>>() {
                d.shutdown();
            }
            if let Some(core) = app.try_state::<crate::Core>() {
                core.channel.remove_files();
            }
        }
        _ => {}
    });
    Ok(())
}

/// Run the app (the `keybridge-desktop` binary): the core, or with `--window` the window.
pub fn run() -> Result<(), String> {
    let args = Args::parse()?;
    // Without a display GTK cannot start (it would panic deep in the toolkit): say what
    // to do instead.
    #[cfg(target_os = "linux")]
    if std::env::var_os("DISPLAY").is_none() && std::env::var_os("WAYLAND_DISPLAY").is_none() {
        return Err("KeyBridge 桌面客户端需要图形界面（未设置 DISPLAY / WAYLAND_DISPLAY）。在服务器上请使用命令行：keybridge demo、keybridge serve。\n\
                    The KeyBridge window needs a graphical display (DISPLAY / WAYLAND_DISPLAY are unset). \
                    On a server use the command line: keybridge demo, keybridge serve."
            .into());
    }
    if let Some(socket) = args.window {
        return run_window(socket);
    }
    // GTK 3 probes OpenGL (GLX) when it opens the display, which loads Mesa and, with its
    // software renderer, LLVM: ~50 MiB in a process that draws no GL. The core draws
    // nothing, so it starts itself again with GDK's GL off (`GDK_GL=disable`, read
    // before GTK starts; a variable the user set is left alone) and clears it for the
    // window it starts.
    #[cfg(target_os = "linux")]
    if std::env::var_os("GDK_GL").is_none() && std::env::var_os(CORE_GL_OFF).is_none() {
        use std::os::unix::process::CommandExt;
        let exe = std::env::current_exe().map_err(|e| format!("KeyBridge could not start: {e}"))?;
        let err = Command::new(exe).args(std::env::args_os().skip(1)).env("GDK_GL", "disable").env(CORE_GL_OFF, "1").exec();
        return Err(format!("KeyBridge could not start: {err}"));
    }
    run_core(args)
}
