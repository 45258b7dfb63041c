//! The window process: started by the core on demand, told to come forward, watched.

use crate::args::{CORE_GL_OFF, WEBKIT_GPU, WINDOW_EXE};
use crate::link::{CoreChannel, ToWindow, WindowWatch};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

/// Where the window process is in its life.
#[derive(Debug, Default)]
struct WindowState {
    /// A window process runs (starting, open or closing).
    running: bool,
    /// The user closed it, or the core ended it unused; the process is ending.
    closing: bool,
    /// A request to show came while it was closing: start a new one once it is gone.
    reopen: bool,
    /// The running process was started hidden ahead of a likely open ([`WindowHost::prewarm`])
    /// and nothing has asked it to show yet.
    warm: bool,
    /// Counts prewarm requests: a linger timer ends the warm window only if no later
    /// request (a menu opened again) came after the one that armed it.
    warm_gen: u64,
    /// A show was asked before the window had connected: sent when it does.
    show_on_connect: bool,
}

/// Why the core starts or keeps a hidden window: the tray's menu opened (the user may
/// be about to pick 打开 KeyBridge), or it closed without that.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MenuIntent {
    /// The tray host opened the menu.
    Opened,
    /// The tray host closed the menu.
    Closed,
}

/// How long a warm (hidden, never shown) window waits for its open before the core ends it.
#[derive(Debug, Clone, Copy)]
pub struct Linger {
    /// After the menu opened (the user may read it a while).
    pub menu_open: Duration,
    /// After the menu closed (some hosts report the close before the click on an item).
    pub menu_closed: Duration,
}

impl Default for Linger {
    fn default() -> Self {
        Linger { menu_open: Duration::from_secs(30), menu_closed: Duration::from_secs(3) }
    }
}

/// Starts and tracks the window process (`keybridge-desktop --window SOCKET`).
pub struct WindowHost {
    window_exe: PathBuf,
    channel: OnceLock<Arc<CoreChannel>>,
    state: Mutex<WindowState>,
    has_tray: AtomicBool,
    linger: Linger,
    quit: Box<dyn Fn(i32) + Send + Sync>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl WindowHost {
    /// A host starting `window_exe`; `quit` ends the core (closing the window with no
    /// tray to come back from).
    pub fn new(window_exe: PathBuf, quit: impl Fn(i32) + Send + Sync + 'static) -> Arc<Self> {
        Self::with_linger(window_exe, Linger::default(), quit)
    }

    /// [`WindowHost::new`] with its own lingering times for warm windows.
    pub fn with_linger(window_exe: PathBuf, linger: Linger, quit: impl Fn(i32) + Send + Sync + 'static) -> Arc<Self> {
        Arc::new(WindowHost {
            window_exe,
            channel: OnceLock::new(),
            state: Mutex::default(),
            has_tray: AtomicBool::new(false),
            linger,
            quit: Box::new(quit),
        })
    }

    /// The window binary: the one `keybridge-desktop` named when it started the core,
    /// else `keybridge-desktop` beside the core.
    pub fn default_window_exe() -> std::io::Result<PathBuf> {
        match std::env::var_os(WINDOW_EXE) {
            Some(p) => Ok(p.into()),
            None => crate::args::beside_me(crate::args::WINDOW_BIN),
        }
    }

    /// The channel the windows connect to (once the core has started).
    pub fn set_channel(&self, channel: Arc<CoreChannel>) {
        let _ = self.channel.set(channel);
    }

    /// A tray icon exists: closing the window leaves KeyBridge in the tray (without one,
    /// closing the window quits).
    pub fn set_has_tray(&self, yes: bool) {
        self.has_tray.store(yes, Ordering::Relaxed);
    }

    /// Bring the window forward, starting its process when there is none. From any thread.
    pub fn show(self: &Arc<Self>) {
        let Some(channel) = self.channel.get() else { return };
        let mut s = lock(&self.state);
        if s.running {
            if s.closing {
                tracing::info!("the window is closing: started again once it is gone");
                s.reopen = true;
            } else {
                s.warm = false;
                if !channel.send(&ToWindow::Show) {
                    tracing::info!("the window is starting: shown once it connects");
                    s.show_on_connect = true;
                }
            }
            return;
        }
        self.start(&mut s, channel, false);
    }

    /// The tray's menu opened or closed. Opening the window takes about a second: its
    /// process loads GTK and WebKit, WebKit starts its own processes, the page loads and
    /// asks the core for its first screen. A menu that opens is the moment the user may be
    /// about to pick 打开 KeyBridge, so the core starts the window process then, hidden
    /// (`--window SOCKET --hidden`): it loads its page unmapped, and the click only maps
    /// it. If no open comes, the core ends it [`Linger::menu_open`] after the menu opened,
    /// or [`Linger::menu_closed`] after it closed, whichever comes first; the tray's idle
    /// memory is back to the core alone then. A window already running is left as it is.
    pub fn prewarm(self: &Arc<Self>, intent: MenuIntent) {
        let Some(channel) = self.channel.get() else { return };
        let mut s = lock(&self.state);
        match intent {
            MenuIntent::Opened if !s.running => {
                if !self.start(&mut s, channel, true) {
                    return;
                }
            }
            // Opened again while a warm window waits: it waits longer. Closed: it waits less.
            _ if s.running && s.warm && !s.closing => {}
            _ => return,
        }
        s.warm_gen += 1;
        let generation = s.warm_gen;
        drop(s);
        let wait = match intent {
            MenuIntent::Opened => self.linger.menu_open,
            MenuIntent::Closed => self.linger.menu_closed,
        };
        let host = self.clone();
        let timer =
            std::thread::Builder::new().name("kb-window-linger".into()).spawn(move || host.linger_then_end(generation, wait));
        if let Err(e) = timer {
            tracing::warn!("no thread to end an unused window: {e}");
        }
    }

    /// After `wait`, end the warm window armed by prewarm request `generation`, unless it
    /// was shown, or a later request re-armed it. A window still starting is given time
    /// to connect (it can only be told to end over the channel).
    fn linger_then_end(self: Arc<Self>, generation: u64, mut wait: Duration) {
        let Some(channel) = self.channel.get() else { return };
        loop {
            std::thread::sleep(wait);
            let mut s = lock(&self.state);
            if !(s.running && s.warm && !s.closing && s.warm_gen == generation) {
                return;
            }
            if channel.send(&ToWindow::Close) {
                tracing::info!("the tray menu closed without 打开: the hidden window ends");
                s.closing = true;
                return;
            }
            wait = self.linger.menu_closed;
        }
    }

    /// Start a window process (hidden: for [`WindowHost::prewarm`]) and a thread that
    /// waits for its end. Under the state lock; `false` if it could not start.
    fn start(self: &Arc<Self>, s: &mut WindowState, channel: &CoreChannel, hidden: bool) -> bool {
        let child = match self.spawn(channel, hidden) {
            Ok(child) => child,
            Err(e) => {
                tracing::warn!("the window process {} could not be started: {e}", self.window_exe.display());
                return false;
            }
        };
        s.running = true;
        s.warm = hidden;
        let host = self.clone();
        let waiter = std::thread::Builder::new().name("kb-window-wait".into()).spawn(move || {
            let mut child = child;
            let status = child.wait();
            host.exited(status);
        });
        if let Err(e) = waiter {
            tracing::warn!("no thread to watch the window process: {e}");
        }
        true
    }

    fn spawn(&self, channel: &CoreChannel, hidden: bool) -> std::io::Result<Child> {
        let token = channel.new_token()?;
        let mut cmd = Command::new(&self.window_exe);
        cmd.arg("--window").arg(channel.path()).stdin(Stdio::piped()).env_remove(WINDOW_EXE);
        if hidden {
            cmd.arg("--hidden");
        }
        if std::env::var_os(CORE_GL_OFF).is_some() {
            // GDK's GL was turned off by us, not the user: a software-rendered window
            // keeps it off (no GLX probe), a GPU one gets it back.
            cmd.env_remove(CORE_GL_OFF);
            if std::env::var_os(WEBKIT_GPU).is_some() {
                cmd.env_remove("GDK_GL");
            }
        }
        tracing::info!("starting the window process{}", if hidden { ", hidden (the tray menu opened)" } else { "" });
        let mut child = cmd.spawn()?;
        if let Some(mut stdin) = child.stdin.take() {
            writeln!(stdin, "{token}")?;
        }
        Ok(child)
    }

    fn exited(self: &Arc<Self>, status: std::io::Result<ExitStatus>) {
        let mut s = lock(&self.state);
        s.running = false;
        s.warm = false;
        s.show_on_connect = false;
        let closing = std::mem::take(&mut s.closing);
        let reopen = std::mem::take(&mut s.reopen);
        drop(s);
        match &status {
            Ok(st) if st.success() => tracing::info!("the window process ended"),
            other => tracing::warn!("the window process ended unexpectedly ({other:?}); KeyBridge keeps running"),
        }
        if reopen {
            self.show();
        } else if closing && !self.has_tray.load(Ordering::Relaxed) {
            // No tray to come back from: closing the window quits.
            (self.quit)(0);
        }
    }
}

impl WindowWatch for WindowHost {
    fn connected(&self) {
        let mut s = lock(&self.state);
        if std::mem::take(&mut s.show_on_connect)
            && let Some(channel) = self.channel.get()
        {
            channel.send(&ToWindow::Show);
        }
    }
    fn closing(&self) {
        lock(&self.state).closing = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::Dispatch;
    use kb_types::Lang;
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;
    use std::time::Instant;

    /// A stand-in for `keybridge-desktop --window`: reads the token, waits `delay_s`,
    /// connects and says hello as the window does, then notes in `log` (one line each,
    /// prefixed with its pid) whether it was started hidden and every message the core
    /// sends; it exits on `close` or when the core hangs up.
    fn fake_window(dir: &Path, log: &Path, delay_s: f64) -> PathBuf {
        let script = format!(
            r#"#!/usr/bin/env python3
import json, os, socket, struct, sys, time
args = sys.argv[1:]
def note(what):
    with open({log:?}, "a") as f:
        f.write(f"{{os.getpid()}} {{what}}\n")
token = sys.stdin.readline().strip()
note("hidden" if "--hidden" in args else "visible")
time.sleep({delay_s})
s = socket.socket(socket.AF_UNIX)
s.connect(args[args.index("--window") + 1])
def send(m):
    b = json.dumps(m).encode()
    s.sendall(struct.pack(">I", len(b)) + b)
def exactly(n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            return None
        b += c
    return b
def recv():
    h = exactly(4)
    return None if h is None else json.loads(exactly(struct.unpack(">I", h)[0]))
send({{"t": "hello", "token": token}})
assert recv()["t"] == "welcome"
note("connected")
while True:
    m = recv()
    if m is None:
        break
    note(m["t"])
    if m["t"] == "close":
        break
"#,
            log = log.to_str().unwrap()
        );
        let path = dir.join("fake-window");
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    struct Rig {
        _dir: tempfile::TempDir,
        log: PathBuf,
        host: Arc<WindowHost>,
        _channel: Arc<CoreChannel>,
    }

    fn rig(delay_s: f64, linger: Linger) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("window.log");
        let exe = fake_window(dir.path(), &log, delay_s);
        let host = WindowHost::with_linger(exe, linger, |_| {});
        host.set_has_tray(true);
        let dispatch: Arc<Dispatch> = Arc::new(|_: &str, _| Ok(serde_json::Value::Null));
        let channel = CoreChannel::listen(dir.path(), dispatch, host.clone(), || Lang::En).unwrap();
        host.set_channel(channel.clone());
        Rig { _dir: dir, log, host, _channel: channel }
    }

    impl Rig {
        /// The fake windows' notes: (pid, what).
        fn notes(&self) -> Vec<(u32, String)> {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            text.lines().filter_map(|l| l.split_once(' ')).map(|(pid, what)| (pid.parse().unwrap(), what.to_owned())).collect()
        }
        /// Wait until `what` has been noted `n` times (the limit only catches a hang).
        fn wait_for(&self, what: &str, n: usize) -> Vec<u32> {
            let until = Instant::now() + Duration::from_secs(60);
            loop {
                let pids: Vec<u32> = self.notes().into_iter().filter(|(_, w)| w == what).map(|(p, _)| p).collect();
                if pids.len() >= n {
                    return pids;
                }
                assert!(Instant::now() < until, "no {n} × {what:?} in {:?}", self.notes());
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        fn running(&self) -> bool {
            lock(&self.host.state).running
        }
        fn wait_not_running(&self) {
            let until = Instant::now() + Duration::from_secs(60);
            while self.running() {
                assert!(Instant::now() < until, "the window process did not end: {:?}", self.notes());
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    const SHORT: Linger = Linger { menu_open: Duration::from_secs(600), menu_closed: Duration::from_millis(200) };

    #[test]
    fn a_menu_opening_starts_the_window_hidden_and_open_shows_that_process() {
        let r = rig(0.0, SHORT);
        r.host.prewarm(MenuIntent::Opened);
        let [warm] = r.wait_for("hidden", 1)[..] else { panic!() };
        r.wait_for("connected", 1);
        // Opened again: still the one process.
        r.host.prewarm(MenuIntent::Opened);
        r.host.show();
        assert_eq!(r.wait_for("show", 1), [warm], "the warm window is the one shown");
        // The menu closes after the click: a shown window is not ended.
        r.host.prewarm(MenuIntent::Closed);
        std::thread::sleep(SHORT.menu_closed * 3);
        assert!(r.running());
        assert!(!r.notes().iter().any(|(_, w)| w == "close"), "{:?}", r.notes());
        assert_eq!(r.wait_for("hidden", 1).len(), 1, "no second process: {:?}", r.notes());
    }

    #[test]
    fn a_menu_closed_without_open_ends_the_hidden_window_and_the_next_opening_starts_another() {
        let r = rig(0.0, SHORT);
        r.host.prewarm(MenuIntent::Opened);
        r.wait_for("connected", 1);
        r.host.prewarm(MenuIntent::Closed);
        let [first] = r.wait_for("close", 1)[..] else { panic!() };
        r.wait_not_running();
        // A closed menu with no window: nothing starts.
        r.host.prewarm(MenuIntent::Closed);
        std::thread::sleep(Duration::from_millis(300));
        assert!(!r.running());
        r.host.prewarm(MenuIntent::Opened);
        let hidden = r.wait_for("hidden", 2);
        assert_ne!(hidden[1], first, "a new process");
    }

    #[test]
    fn a_show_before_the_hidden_window_connects_is_delivered_when_it_does() {
        // The window takes a while to connect; the click comes first.
        let r = rig(0.5, SHORT);
        r.host.prewarm(MenuIntent::Opened);
        r.wait_for("hidden", 1);
        r.host.show();
        r.host.prewarm(MenuIntent::Closed);
        r.wait_for("show", 1);
        std::thread::sleep(SHORT.menu_closed * 3);
        assert!(r.running(), "shown, so not ended: {:?}", r.notes());
    }

    #[test]
    fn a_hidden_window_still_starting_is_ended_once_it_connects() {
        let r = rig(0.6, Linger { menu_open: Duration::from_millis(100), menu_closed: Duration::from_millis(100) });
        r.host.prewarm(MenuIntent::Opened);
        r.wait_for("close", 1);
        r.wait_not_running();
    }

    #[test]
    fn a_show_while_the_unused_window_is_ending_starts_a_new_one() {
        let r = rig(0.0, SHORT);
        r.host.prewarm(MenuIntent::Opened);
        r.wait_for("connected", 1);
        r.host.prewarm(MenuIntent::Closed);
        r.wait_for("close", 1);
        // The click comes just as the core ended it: a window still comes.
        r.host.show();
        let started = r.wait_for("visible", 1);
        assert_eq!(started.len(), 1);
        r.wait_for("connected", 2);
    }
}
