//! The window process: started by the core on demand, told to come forward, watched.

use crate::args::{CORE_GL_OFF, WINDOW_EXE};
use crate::link::{CoreChannel, ToWindow, WindowWatch};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

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

/// Starts and tracks the window process (`keybridge-desktop --window SOCKET`).
pub struct WindowHost {
    window_exe: PathBuf,
    channel: OnceLock<Arc<CoreChannel>>,
    state: Mutex<WindowState>,
    has_tray: AtomicBool,
    quit: Box<dyn Fn(i32) + Send + Sync>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl WindowHost {
    /// A host starting `window_exe`; `quit` ends the core (closing the window with no
    /// tray to come back from).
    pub fn new(window_exe: PathBuf, quit: impl Fn(i32) + Send + Sync + 'static) -> Arc<Self> {
        Arc::new(WindowHost {
            window_exe,
            channel: OnceLock::new(),
            state: Mutex::default(),
            has_tray: AtomicBool::new(false),
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
            Err(e) => tracing::warn!("the window process {} could not be started: {e}", self.window_exe.display()),
        }
    }

    fn spawn(&self, channel: &CoreChannel) -> std::io::Result<Child> {
        let token = channel.new_token()?;
        let mut cmd = Command::new(&self.window_exe);
        cmd.arg("--window").arg(channel.path()).stdin(Stdio::piped()).env_remove(WINDOW_EXE);
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
        } else if closing && !self.has_tray.load(Ordering::Relaxed) {
            // No tray to come back from: closing the window quits.
            (self.quit)(0);
        }
    }
}

impl WindowWatch for WindowHost {
    fn closing(&self) {
        lock(&self.state).closing = true;
    }
}
