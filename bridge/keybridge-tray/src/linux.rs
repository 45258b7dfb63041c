//! The core process on Linux: GTK's main loop on the main thread for the tray; the device
//! service, the bridge and the window channel on their own threads.

use kb_desktop::{Desktop, DesktopOptions};
use keybridge_tray::args::{self, Args};
use keybridge_tray::host::{MenuIntent, WindowHost};
use keybridge_tray::{AppControl, Shell, runtime_dir, start_core};
use std::cell::RefCell;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use tray_icon::menu::{Menu, MenuEvent, MenuItem, PredefinedMenuItem};
use tray_icon::{Icon, TrayIcon, TrayIconBuilder};

const TRAY: &str = "keybridge-tray";
const MENU_OPEN: &str = "tray-open";
const MENU_CLEAR: &str = "tray-clear-pins";
const MENU_QUIT: &str = "tray-quit";
/// The one-instance name on the session bus, and its object: those of Tauri's
/// single-instance plugin for the app's identifier (the core was a Tauri app before), so
/// a start of either hands over to a running one of the other.
const INSTANCE_NAME: &str = "cn.keybridge.desktop.SingleInstance";
const INSTANCE_PATH: &str = "/cn/keybridge/desktop/SingleInstance";
const INSTANCE_IFACE: &str = "org.SingleInstance.DBus";
/// The tray's icon (the app's, 128 px: the tray host scales it).
const ICON_PNG: &[u8] = include_bytes!("../../../src-tauri/icons/128x128.png");

/// The exit code `gtk::main` returns with.
static EXIT_CODE: AtomicI32 = AtomicI32::new(0);

thread_local! {
    /// The tray icon and its count item (GTK objects: main thread only).
    static TRAY_ICON: RefCell<Option<(TrayIcon, MenuItem)>> = const { RefCell::new(None) };
}

/// Quit the core with `code` (from any thread): GTK's loop ends, then the service stops.
fn quit(code: i32) {
    EXIT_CODE.store(code, Ordering::Relaxed);
    glib::idle_add_once(gtk::main_quit);
}

fn count_text(desktop: Option<&Desktop>) -> String {
    let n = desktop.map(|d| d.manager().devices().len()).unwrap_or(0);
    format!("已连接介质：{n} 个 · {n} key(s)")
}

/// The core's shell: the window host, notifications, the tray's count.
struct TrayShell {
    host: Arc<WindowHost>,
    desktop: OnceLock<Weak<Desktop>>,
}

impl TrayShell {
    fn desktop(&self) -> Option<Arc<Desktop>> {
        self.desktop.get().and_then(Weak::upgrade)
    }
}

impl Shell for TrayShell {
    fn show_window(&self) {
        self.host.show();
    }
    fn notify(&self, title: &str, body: &str) {
        let shown = notify_rust::Notification::new().appname("KeyBridge").summary(title).body(body).auto_icon().show();
        if let Err(e) = shown {
            tracing::warn!("notification not shown: {e}");
        }
    }
    fn media_count_changed(&self) {
        let text = count_text(self.desktop().as_deref());
        glib::idle_add_once(move || {
            TRAY_ICON.with_borrow(|t| {
                if let Some((tray, count)) = t {
                    let _ = tray.set_tooltip(Some(format!("KeyBridge — {text}")));
                    count.set_text(&text);
                }
            });
        });
    }
}

fn icon() -> Result<Icon, String> {
    let mut reader = png::Decoder::new(std::io::Cursor::new(ICON_PNG)).read_info().map_err(|e| e.to_string())?;
    let mut buf = vec![0; reader.output_buffer_size().ok_or("icon too large")?];
    let info = reader.next_frame(&mut buf).map_err(|e| e.to_string())?;
    if info.color_type != png::ColorType::Rgba || info.bit_depth != png::BitDepth::Eight {
        return Err(format!("the tray icon is not 8-bit RGBA: {:?}", info.color_type));
    }
    buf.truncate(info.buffer_size());
    Icon::from_rgba(buf, info.width, info.height).map_err(|e| e.to_string())
}

/// The tray icon with its menu: the device count, 打开 KeyBridge, clear the cached PINs,
/// quit. On the main (GTK) thread.
fn build_tray(text: &str) -> Result<(TrayIcon, MenuItem), String> {
    let count = MenuItem::with_id("tray-count", text, false, None);
    let open = MenuItem::with_id(MENU_OPEN, "打开 KeyBridge · Open", true, None);
    let clear = MenuItem::with_id(MENU_CLEAR, "清除已缓存的 PIN · Clear cached PINs", true, None);
    let quit = MenuItem::with_id(MENU_QUIT, "退出 · Quit", true, None);
    let menu = Menu::with_items(&[&count, &PredefinedMenuItem::separator(), &open, &clear, &quit]).map_err(|e| e.to_string())?;
    let tray = TrayIconBuilder::new()
        .with_id(TRAY)
        .with_tooltip(format!("KeyBridge — {text}"))
        .with_menu(Box::new(menu))
        .with_icon(icon()?)
        .build()
        .map_err(|e| e.to_string())?;
    Ok((tray, count))
}

/// The tray menu's D-Bus interface (libayatana-appindicator exports the menu with
/// libdbusmenu on the session bus; the tray host draws it).
const DBUSMENU: &str = "com.canonical.dbusmenu";

/// What a call from the tray host to the menu says about the menu opening or closing: a
/// host calls `AboutToShow`/`AboutToShowGroup` on the items it is about to draw, and
/// reports `opened`/`closed` with `Event`/`EventGroup`.
fn menu_intent(member: &str, body: Option<&glib::Variant>) -> Option<MenuIntent> {
    let event_name = |v: &glib::Variant| -> Option<MenuIntent> {
        match v.try_child_value(1)?.str()? {
            "opened" => Some(MenuIntent::Opened),
            "closed" => Some(MenuIntent::Closed),
            _ => None,
        }
    };
    let body = body?;
    match member {
        "AboutToShow" | "AboutToShowGroup" => Some(MenuIntent::Opened),
        // (i s v u): id, event name, data, time.
        "Event" => event_name(body),
        // (a(isvu)): the first opened/closed in the group.
        "EventGroup" => {
            let group = body.try_child_value(0).filter(glib::Variant::is_container)?;
            group.iter().find_map(|e| event_name(&e))
        }
        _ => None,
    }
}

/// Call `on_menu` when the tray host opens or closes the menu: a filter on the session
/// bus connection libdbusmenu serves the menu on (GIO's shared one) sees the host's calls
/// before they are dispatched, and passes them on unchanged. Runs on GDBus's worker
/// thread: `on_menu` must not block.
fn watch_menu(on_menu: impl Fn(MenuIntent) + Send + Sync + 'static) -> Option<(gio::DBusConnection, gio::FilterId)> {
    let conn = match gio::bus_get_sync(gio::BusType::Session, gio::Cancellable::NONE) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!("the tray menu's opening is not watched (no session bus): {e}");
            return None;
        }
    };
    let id = conn.add_filter(move |_, msg, incoming| {
        if incoming
            && msg.message_type() == gio::DBusMessageType::MethodCall
            && msg.interface().as_deref() == Some(DBUSMENU)
            && let Some(intent) = msg.member().and_then(|m| menu_intent(&m, msg.body().as_ref()))
        {
            on_menu(intent);
        }
        Some(msg.clone())
    });
    Some((conn, id))
}

/// The one-instance name's object: a second start calls it, and the window comes forward.
struct Instance {
    host: Arc<OnceLock<Arc<WindowHost>>>,
}

#[zbus::interface(name = "org.SingleInstance.DBus")]
impl Instance {
    fn execute_callback(&self, _argv: Vec<String>, _cwd: String) {
        // A second start only brings the window forward (starting it if needed).
        if let Some(host) = self.host.get() {
            host.show();
        }
    }
}

/// What the one-instance name said.
enum Claim {
    /// This is the one instance (the connection holds the name; `None`: no session bus,
    /// so one instance cannot be ensured, and KeyBridge runs anyway).
    Held(Option<zbus::blocking::Connection>),
    /// Another instance holds it and was told to bring its window forward.
    HandedOver,
}

/// Take the one-instance name, or hand over to the instance that holds it.
fn claim_instance(host: Arc<OnceLock<Arc<WindowHost>>>) -> Claim {
    let built = zbus::blocking::connection::Builder::session()
        .and_then(|b| b.name(INSTANCE_NAME))
        .map(|b| b.replace_existing_names(false).allow_name_replacements(false))
        .and_then(|b| b.serve_at(INSTANCE_PATH, Instance { host }))
        .and_then(|b| b.build());
    match built {
        Ok(conn) => Claim::Held(Some(conn)),
        Err(zbus::Error::NameTaken) => {
            let argv: Vec<String> = std::env::args().collect();
            let cwd = std::env::current_dir().unwrap_or_default().to_string_lossy().into_owned();
            let called = zbus::blocking::Connection::session().and_then(|c| {
                c.call_method(Some(INSTANCE_NAME), INSTANCE_PATH, Some(INSTANCE_IFACE), "ExecuteCallback", &(argv, cwd))
            });
            if let Err(e) = called {
                tracing::warn!("the running KeyBridge did not answer: {e}");
            }
            Claim::HandedOver
        }
        Err(e) => {
            tracing::warn!("no one-instance lock on the session bus: {e}");
            Claim::Held(None)
        }
    }
}

/// The core process: tray, one instance, notifications, the device service and bridge,
/// the window channel; the window started unless `--hidden`. Returns the exit code.
pub(crate) fn run() -> Result<i32, String> {
    let args = Args::parse(args::CORE_BIN)?;
    if args.window.is_some() {
        return Err(format!(
            "KeyBridge's core ({}) has no --window: the window is {} --window",
            args::CORE_BIN,
            args::WINDOW_BIN
        ));
    }
    args::need_display()?;
    if args::core_needs_gl_off() {
        let me = std::env::current_exe().map_err(|e| format!("KeyBridge could not start: {e}"))?;
        let window = WindowHost::default_window_exe().map_err(|e| format!("KeyBridge could not start: {e}"))?;
        return Err(args::exec_core(&me, &window));
    }
    gtk::init().map_err(|e| format!("KeyBridge could not start: {e}"))?;
    let host_slot: Arc<OnceLock<Arc<WindowHost>>> = Arc::default();
    let Claim::Held(instance) = claim_instance(host_slot.clone()) else { return Ok(0) };
    let window_exe = WindowHost::default_window_exe().map_err(|e| format!("KeyBridge could not start: {e}"))?;
    let host = WindowHost::new(window_exe, quit);
    let _ = host_slot.set(host.clone());
    let shell = Arc::new(TrayShell { host: host.clone(), desktop: OnceLock::new() });
    let control = AppControl { exit: Box::new(quit), paints: args.paints };
    let opts = DesktopOptions { home: args.home.clone(), ..DesktopOptions::default() };
    let core = start_core(opts, &runtime_dir(), control, shell.clone(), host.clone())
        .map_err(|e| format!("KeyBridge could not start: {e}"))?;
    let _ = shell.desktop.set(Arc::downgrade(&core.desktop));
    host.set_channel(core.channel.clone());

    // A missing libayatana-appindicator makes tray-icon panic: no tray then.
    let text = count_text(Some(&core.desktop));
    match std::panic::catch_unwind(|| build_tray(&text)) {
        Ok(Ok(tray)) => {
            TRAY_ICON.set(Some(tray));
            host.set_has_tray(true);
        }
        // No tray host (a bare X server): the window still works; closing it quits.
        Ok(Err(e)) => tracing::warn!("no tray icon: {e}"),
        Err(_) => tracing::warn!("no tray icon: the tray library could not be loaded"),
    }
    // The menu opening starts the window hidden, so that 打开 only has to map it.
    let warm_host = host.clone();
    let menu_watch = TRAY_ICON.with_borrow(Option::is_some).then(|| {
        watch_menu(move |intent| {
            // Off GDBus's thread: starting a process is not for a message filter.
            let host = warm_host.clone();
            let _ = std::thread::Builder::new().name("kb-window-prewarm".into()).spawn(move || host.prewarm(intent));
        })
    });
    let (menu_host, desktop) = (host.clone(), Arc::downgrade(&core.desktop));
    MenuEvent::set_event_handler(Some(move |e: MenuEvent| match e.id.as_ref() {
        MENU_OPEN => menu_host.show(),
        MENU_CLEAR => {
            if let Some(d) = desktop.upgrade() {
                d.clear_pin_cache();
            }
        }
        MENU_QUIT => quit(0),
        _ => {}
    }));
    // `--hidden` (login auto-start) starts no window: the tray holds KeyBridge until the
    // user, a prompt or a second start opens it.
    if !args.hidden {
        host.show();
    }
    gtk::main();

    // Scans stop and BLE links close on the way out (btleplug does not do it itself).
    MenuEvent::set_event_handler(None::<fn(MenuEvent)>);
    if let Some((conn, id)) = menu_watch.flatten() {
        conn.remove_filter(id);
    }
    TRAY_ICON.set(None);
    core.desktop.shutdown();
    core.channel.remove_files();
    drop(instance);
    Ok(EXIT_CODE.load(Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use glib::prelude::*;

    fn event(id: i32, name: &str) -> glib::Variant {
        (id, name, 0i32.to_variant(), 0u32).to_variant()
    }

    #[test]
    fn the_menu_opening_and_closing_are_read_from_the_hosts_calls() {
        assert_eq!(menu_intent("AboutToShow", Some(&(0i32,).to_variant())), Some(MenuIntent::Opened));
        assert_eq!(menu_intent("AboutToShowGroup", Some(&(vec![0i32, 3],).to_variant())), Some(MenuIntent::Opened));
        assert_eq!(menu_intent("Event", Some(&event(0, "opened"))), Some(MenuIntent::Opened));
        assert_eq!(menu_intent("Event", Some(&event(0, "closed"))), Some(MenuIntent::Closed));
        // A click is not an opening (the click itself opens the window).
        assert_eq!(menu_intent("Event", Some(&event(3, "clicked"))), None);
        let group = (vec![(3i32, "hovered", 0i32.to_variant(), 0u32), (0, "closed", 0i32.to_variant(), 0)],).to_variant();
        assert_eq!(menu_intent("EventGroup", Some(&group)), Some(MenuIntent::Closed));
        assert_eq!(menu_intent("GetLayout", Some(&(0i32, -1i32, Vec::<String>::new()).to_variant())), None);
        // Malformed bodies are ignored, not a panic.
        assert_eq!(menu_intent("Event", Some(&(0i32,).to_variant())), None);
        assert_eq!(menu_intent("EventGroup", Some(&(7u8,).to_variant())), None);
        assert_eq!(menu_intent("Event", None), None);
    }
}
