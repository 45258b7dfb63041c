//! The desktop shell around the core: the main window, the tray icon with the device
//! count and quick actions, one instance only, desktop notifications, and closing to
//! the tray.

use crate::{PaintReport, WindowEvents, install, with_commands};
use kb_desktop::{Desktop, DesktopOptions};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tauri::menu::{Menu, MenuItem, PredefinedMenuItem};
use tauri::tray::{MouseButton, MouseButtonState, TrayIconBuilder, TrayIconEvent};
use tauri::{AppHandle, Manager, Runtime, WebviewUrl, WebviewWindowBuilder, WindowEvent};

/// The main window's label.
pub const MAIN: &str = "main";
const TRAY: &str = "keybridge-tray";
const MENU_COUNT: &str = "tray-count";

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

/// Where the main window is in its life. A window closed to the tray is destroyed, not
/// hidden, so WebKit's web process goes and the tray idles small; `closing` runs from the
/// close request to the window's destruction, and a request to show it in between
/// (a bridge prompt, the tray, a second start) reopens it once it is gone.
#[derive(Debug, Default)]
struct MainWindowLife {
    closing: bool,
    reopen: bool,
}

fn life<R: Runtime>(app: &AppHandle<R>) -> Option<std::sync::MutexGuard<'_, MainWindowLife>> {
    app.try_state::<Mutex<MainWindowLife>>().map(|s| s.inner().lock().unwrap_or_else(std::sync::PoisonError::into_inner))
}

/// Bring the main window forward, building it again when it was released to the tray
/// (or never built: `--hidden`). Callable from any thread: the work runs on the main
/// thread, where windows are made and destroyed, so two callers never build two windows.
pub fn show_main<R: Runtime>(app: &AppHandle<R>) {
    let h = app.clone();
    if let Err(e) = app.run_on_main_thread(move || show_main_now(&h)) {
        tracing::warn!("the window could not be shown: {e}");
    }
}

fn show_main_now<R: Runtime>(app: &AppHandle<R>) {
    if let Some(mut l) = life(app)
        && l.closing
    {
        tracing::info!("the window is closing: built again once it is gone");
        l.reopen = true;
        return;
    }
    if let Some(w) = app.get_webview_window(MAIN) {
        let _ = w.unminimize();
        let _ = w.show();
        let _ = w.set_focus();
        return;
    }
    tracing::info!("building the window again");
    match build_main(app) {
        Ok(w) => {
            let _ = w.set_focus();
        }
        Err(e) => tracing::warn!("the window could not be built: {e}"),
    }
}

/// The main window: the UI page, software rendering, and closing to the tray.
fn build_main<R: Runtime>(app: &AppHandle<R>) -> tauri::Result<tauri::WebviewWindow<R>> {
    let w = WebviewWindowBuilder::new(app, MAIN, WebviewUrl::App("index.html".into()))
        .title("KeyBridge 安全客户端")
        .inner_size(1040.0, 700.0)
        .min_inner_size(860.0, 560.0)
        .build()?;
    software_rendering(&w);
    // Closing the window keeps KeyBridge in the tray (the bridge runs; its PIN and consent
    // questions build the window again) and releases the webview; Quit is in the tray
    // menu. Without a tray host, closing the window quits.
    let h = app.clone();
    w.on_window_event(move |e| match e {
        WindowEvent::CloseRequested { .. } => {
            if h.tray_by_id(TRAY).is_some()
                && let Some(mut l) = life(&h)
            {
                tracing::info!("window closed to the tray: releasing the webview");
                l.closing = true;
            }
        }
        WindowEvent::Destroyed => {
            tracing::info!("window destroyed");
            let reopen = life(&h).is_some_and(|mut l| {
                l.closing = false;
                std::mem::take(&mut l.reopen)
            });
            if reopen {
                show_main(&h);
            }
        }
        _ => {}
    });
    Ok(w)
}

fn count_text<R: Runtime>(app: &AppHandle<R>) -> String {
    let n = app.try_state::<Arc<Desktop>>().map(|d| d.manager().devices().len()).unwrap_or(0);
    format!("已连接介质：{n} 个 · {n} key(s)")
}

/// Refresh the tray's device count (called on every media event).
pub fn media_count_changed<R: Runtime>(app: &AppHandle<R>) {
    let text = count_text(app);
    if let Some(tray) = app.tray_by_id(TRAY) {
        let _ = tray.set_tooltip(Some(&format!("KeyBridge — {text}")));
    }
    if let Some(item) = app.try_state::<MenuItem<R>>() {
        let _ = item.set_text(&text);
    }
}

fn tray<R: Runtime>(app: &AppHandle<R>) -> tauri::Result<()> {
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
            "tray-open" => show_main(app),
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
                show_main(tray.app_handle());
            }
        });
    if let Some(icon) = app.default_window_icon() {
        b = b.icon(icon.clone());
    }
    b.build(app)?;
    Ok(())
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

/// Run the app (the `keybridge-desktop` binary).
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
    let opts = DesktopOptions { home: args.home.clone(), ..DesktopOptions::default() };
    let builder = tauri::Builder::default()
        // A second start only brings the running window forward.
        .plugin(tauri_plugin_single_instance::init(|app, _argv, _cwd| show_main(app)))
        .plugin(tauri_plugin_notification::init())
        .plugin(tauri_plugin_dialog::init());
    let (builder, specta) = with_commands(builder);
    let paints = args.paints;
    let hidden = args.hidden;
    let app = builder
        .setup(move |app| {
            install(app, &specta, opts, paints, |app| {
                let mut ev = WindowEvents::new(app);
                ev.notify = Some(Box::new(|app: &AppHandle, title: &str, body: &str| {
                    use tauri_plugin_notification::NotificationExt;
                    if let Err(e) = app.notification().builder().title(title).body(body).show() {
                        tracing::warn!("notification not shown: {e}");
                    }
                }));
                ev
            })?;
            let handle = app.handle().clone();
            app.manage(Mutex::new(MainWindowLife::default()));
            // `--hidden` (login auto-start) builds no window: the tray holds KeyBridge
            // until the user, a prompt or a second start opens it.
            if !hidden {
                build_main(&handle)?;
            }
            if let Err(e) = tray(&handle) {
                // No tray host (a bare X server): the window still works; closing it quits.
                tracing::warn!("no tray icon: {e}");
            }
            Ok(())
        })
        .build(tauri::generate_context!())
        .map_err(|e| format!("KeyBridge could not start: {e}"))?;
    app.run(|app, e| match e {
        // The last window closed (to the tray): KeyBridge stays; Quit asks with a code.
        tauri::RunEvent::ExitRequested { code: None, api, .. } if app.tray_by_id(TRAY).is_some() => api.prevent_exit(),
        // Scans stop and BLE links close on the way out (btleplug does not do it itself).
        tauri::RunEvent::Exit => {
            if let Some(d) = app.try_state::<Arc<Desktop>>() {
                d.shutdown();
            }
        }
        _ => {}
    });
    Ok(())
}
