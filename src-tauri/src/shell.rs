//! The `keybridge-desktop` binary: KeyBridge's window, or — started without `--window` —
//! the way in to its core.
//!
//! The **core** (`keybridge-tray`, installed beside this binary): the tray icon with the
//! device count and quick actions, one instance only, desktop notifications, the device
//! service and the bridge. It never links WebKit. `keybridge-desktop` without `--window`
//! (a user, the desktop entry, login auto-start) replaces itself with the core before it
//! initialises anything, so the long-lived process is the small one, with the same pid.
//! The core starts the **window** (`keybridge-desktop --window SOCKET`) when the user
//! opens it (tray menu, a second start) or a PIN, consent or QR question comes, and tells
//! a running window to come forward. When the tray menu opens, the core starts the window
//! process hidden (`--window SOCKET --hidden`): its page loads unmapped, 打开 KeyBridge
//! only maps it, and a menu closed without that ends it (`WindowHost::prewarm`).
//! Closing the window ends its process (and WebKit's);
//! the core stays in the tray. Without a tray host, closing the window quits. If the
//! window process dies, the core lives on and starts a new one on the next request.

use crate::{attach_window, with_commands};
use keybridge_tray::args::{self, Args};
use std::io::BufRead;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tauri::{AppHandle, Manager, Runtime, WebviewUrl, WebviewWindowBuilder, WindowEvent};

/// The main window's label.
pub const MAIN: &str = "main";

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

/// When a hidden window may be shown: asked by the core, and its page loaded.
#[derive(Default)]
struct Reveal {
    wanted: AtomicBool,
    loaded: AtomicBool,
}

impl Reveal {
    fn wanted<R: Runtime>(&self, app: &AppHandle<R>) {
        self.wanted.store(true, Ordering::SeqCst);
        if self.loaded.load(Ordering::SeqCst) {
            show_main(app);
        }
    }
    fn loaded<R: Runtime>(&self, app: &AppHandle<R>) {
        self.loaded.store(true, Ordering::SeqCst);
        if self.wanted.load(Ordering::SeqCst) {
            show_main(app);
        }
    }
}

/// The main window: the UI page, software rendering; closing it tells the core and ends
/// the window process (its last window). Not `visible`: the page loads unmapped and the
/// window appears on the core's first show request (the core started it ahead of an open,
/// [`keybridge_tray::host::WindowHost::prewarm`]).
fn build_main<R: Runtime>(
    app: &AppHandle<R>,
    link: Arc<crate::link::WindowLink>,
    visible: bool,
    reveal: Arc<Reveal>,
) -> tauri::Result<tauri::WebviewWindow<R>> {
    let w = WebviewWindowBuilder::new(app, MAIN, WebviewUrl::App("index.html".into()))
        .visible(visible)
        .on_page_load(move |w, load| {
            if load.event() == tauri::webview::PageLoadEvent::Finished {
                reveal.loaded(w.app_handle());
            }
        })
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
/// `KEYBRIDGE_WEBKIT_GPU=1` keeps WebKit's default policy (and GDK's OpenGL, which the
/// core otherwise leaves off for this process: [`keybridge_tray::args::exec_core`]).
fn software_rendering<R: Runtime>(w: &tauri::WebviewWindow<R>) {
    #[cfg(target_os = "linux")]
    if std::env::var_os(args::WEBKIT_GPU).is_none() {
        let _ = w.with_webview(|wv| {
            use webkit2gtk::{HardwareAccelerationPolicy, SettingsExt, WebViewExt};
            if let Some(s) = WebViewExt::settings(&wv.inner()) {
                s.set_hardware_acceleration_policy(HardwareAccelerationPolicy::Never);
            }
        });
    }
}

/// The window process: read the token, connect to the core, build the window (unmapped
/// with `--hidden`, until the core asks to show it); end when the window closes, the core
/// ends it or the core goes.
fn run_window(socket: PathBuf, hidden: bool) -> Result<(), String> {
    let mut token = String::new();
    std::io::stdin().lock().read_line(&mut token).map_err(|e| format!("keybridge-desktop --window: no token on stdin: {e}"))?;
    let token = token.trim().to_owned();
    let builder = tauri::Builder::default().plugin(tauri_plugin_dialog::init());
    let (builder, specta) = with_commands(builder);
    let app = builder
        .setup(move |app| {
            let handle = app.handle().clone();
            // A hidden window is shown on the core's first request once its page has
            // loaded: the request can come before (a click while it starts), and a
            // WebKitGTK view mapped mid-load may stay blank.
            let reveal = Arc::new(Reveal::default());
            let r = reveal.clone();
            let show = move |h: &AppHandle<_>| if hidden { r.wanted(h) } else { show_main(h) };
            let link = attach_window(&handle, &specta, &socket, &token, show, |h| h.exit(0))?;
            build_main(&handle, link, !hidden, reveal)?;
            Ok(())
        })
        .build(tauri::generate_context!())
        .map_err(|e| format!("KeyBridge's window could not start: {e}"))?;
    app.run(|_, _| {});
    Ok(())
}

/// Run the `keybridge-desktop` binary: with `--window` the window; else the core
/// (`keybridge-tray` beside this binary) in this process's place.
pub fn run() -> Result<(), String> {
    let args = Args::parse(args::WINDOW_BIN)?;
    args::need_display()?;
    if let Some(socket) = args.window {
        return run_window(socket, args.hidden);
    }
    let fail = |e: std::io::Error| format!("KeyBridge could not start: {e}");
    let me = std::env::current_exe().map_err(fail)?;
    let core = args::beside_me(args::CORE_BIN).map_err(fail)?;
    Err(args::exec_core(&core, &me))
}
