//! The private channel between KeyBridge's core (the long-lived tray process: device
//! service, bridge, prompts) and its window (a child process that alone loads WebKit).
//!
//! A Unix socket in a directory only the user can enter (0700, the socket 0600), frames of
//! a 4-byte big-endian length and a JSON message, each at most [`MAX_FRAME`]. The core
//! makes a one-time token for each window it starts and hands it over on the child's
//! stdin (never on the command line or in the environment); a peer's first frame must
//! carry it, or the core answers `window_unauthenticated` and hangs up. A token is used
//! once: a second peer presenting it is refused too.
//!
//! The window calls commands by name with JSON arguments ([`crate::commands`] lists them
//! once for both sides); the core answers each on its own thread (a command may wait for
//! a PIN that another command answers) and sends its events and "show yourself" down the
//! same socket.

use kb_desktop::model::AppError;
use kb_types::{ErrorCode, Lang};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// The largest frame either side accepts (a seal image travels base64-encoded).
pub const MAX_FRAME: usize = 32 * 1024 * 1024;
/// How long a new peer has to present its token.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

const DIR_PREFIX: &str = "keybridge-window-";
const SOCKET: &str = "window.sock";

/// Remove the channel directories of cores that are gone (killed, or ended without
/// cleaning up): this user's `keybridge-window-*` directories under `parent` whose socket
/// nobody listens on. `ours` (just made) tells the user.
fn sweep_stale(parent: &Path, ours: &Path) {
    use std::os::unix::fs::MetadataExt;
    let Ok(uid) = std::fs::metadata(ours).map(|m| m.uid()) else { return };
    let Ok(entries) = std::fs::read_dir(parent) else { return };
    for e in entries.flatten() {
        let dir = e.path();
        if dir == ours || !e.file_name().to_string_lossy().starts_with(DIR_PREFIX) {
            continue;
        }
        match std::fs::symlink_metadata(&dir) {
            Ok(m) if m.is_dir() && m.uid() == uid => {}
            _ => continue,
        }
        let sock = dir.join(SOCKET);
        match UnixStream::connect(&sock) {
            // A live core: leave it (it sees a peer that says nothing and drops it).
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::NotFound) => {
                let _ = std::fs::remove_file(&sock);
                // Only an empty directory goes.
                if std::fs::remove_dir(&dir).is_ok() {
                    tracing::info!("removed the channel directory of a core that is gone: {}", dir.display());
                }
            }
            Err(_) => continue,
        }
    }
}

/// What the window sends.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum ToCore {
    /// The first frame: the one-time token from stdin (hex).
    Hello {
        /// The token.
        token: String,
    },
    /// Run a command.
    Call {
        /// Matches the reply.
        id: u64,
        /// The command's name (as the UI invokes it, snake_case).
        cmd: String,
        /// Its arguments by (Rust) name.
        args: Value,
    },
    /// The user closed the window: the process ends in a moment.
    Closing,
}

/// What the core sends.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum ToWindow {
    /// The token was right; the UI language for the window's own errors.
    Welcome {
        /// UI language.
        lang: Lang,
    },
    /// The token was missing or wrong; the core hangs up.
    Refused {
        /// `window_unauthenticated`.
        error: AppError,
    },
    /// A command's answer.
    Reply {
        /// The call's id.
        id: u64,
        /// Its value or error.
        result: Result<Value, AppError>,
    },
    /// An event for the page (`name` as tauri-specta names it).
    Event {
        /// Event name, e.g. `prompt-request`.
        name: String,
        /// Its payload.
        payload: Value,
    },
    /// Bring the window forward (the tray, a second start, a prompt).
    Show,
    /// End the window process: it was started hidden ahead of an open that did not come
    /// (see [`crate::host::WindowHost::prewarm`]).
    Close,
}

fn lost(lang: Lang, detail: impl Into<String>) -> AppError {
    AppError::new(ErrorCode::WindowLinkLost, lang, detail)
}

/// Write one frame.
pub fn write_frame(w: &mut impl Write, msg: &impl Serialize) -> std::io::Result<()> {
    let body = serde_json::to_vec(msg).map_err(std::io::Error::other)?;
    if body.len() > MAX_FRAME {
        return Err(std::io::Error::other(format!("frame of {} bytes exceeds {MAX_FRAME}", body.len())));
    }
    let len = u32::try_from(body.len()).map_err(std::io::Error::other)?;
    let mut frame = Vec::with_capacity(body.len() + 4);
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(&body);
    w.write_all(&frame)?;
    w.flush()
}

/// Read one frame; `Ok(None)` at a clean end of stream.
pub fn read_frame<T: for<'de> Deserialize<'de>>(r: &mut impl Read) -> std::io::Result<Option<T>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("frame of {len} bytes exceeds {MAX_FRAME}")));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    serde_json::from_slice(&body).map(Some).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Equal, in time independent of where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs a command for the window: name, arguments → answer.
pub type Dispatch = dyn Fn(&str, Value) -> Result<Value, AppError> + Send + Sync;

/// What the core's side of the channel tells its owner about the window.
pub trait WindowWatch: Send + Sync {
    /// A window authenticated and is listening.
    fn connected(&self) {}
    /// The user closed the window; its process is ending.
    fn closing(&self) {}
    /// The window's connection ended (it exited, crashed or was killed).
    fn gone(&self) {}
}

/// The window side of a connection as the core sees it.
struct Peer {
    id: u64,
    out: Mutex<UnixStream>,
}

impl Peer {
    fn send(&self, msg: &ToWindow) -> std::io::Result<()> {
        write_frame(&mut *lock(&self.out), msg)
    }
}

/// The core's end: a listening socket, the current window (at most one), the token that
/// admits the next one.
pub struct CoreChannel {
    dir: PathBuf,
    path: PathBuf,
    token: Mutex<Option<Vec<u8>>>,
    window: Mutex<Option<Arc<Peer>>>,
    next_peer: AtomicU64,
    lang: Box<dyn Fn() -> Lang + Send + Sync>,
}

impl std::fmt::Debug for CoreChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CoreChannel").field("path", &self.path).finish_non_exhaustive()
    }
}

impl CoreChannel {
    /// Listen in a new private directory under `parent` (the user's runtime directory);
    /// serve commands with `dispatch`, report the window's life to `watch`. `lang` gives
    /// the UI language of the moment.
    pub fn listen(
        parent: &Path,
        dispatch: Arc<Dispatch>,
        watch: Arc<dyn WindowWatch>,
        lang: impl Fn() -> Lang + Send + Sync + 'static,
    ) -> std::io::Result<Arc<Self>> {
        let rnd = kb_crypto::rng::random_array::<8>().map_err(std::io::Error::other)?;
        let dir = parent.join(format!("{DIR_PREFIX}{}", hex(&rnd)));
        // create (not create_all): fails if anything is already there.
        std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
        sweep_stale(parent, &dir);
        let path = dir.join(SOCKET);
        let listener = UnixListener::bind(&path)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        let ch = Arc::new(CoreChannel {
            dir,
            path,
            token: Mutex::new(None),
            window: Mutex::new(None),
            next_peer: AtomicU64::new(1),
            lang: Box::new(lang),
        });
        let weak = Arc::downgrade(&ch);
        std::thread::Builder::new().name("kb-window-accept".into()).spawn(move || {
            for conn in listener.incoming() {
                let Some(ch) = weak.upgrade() else { break };
                match conn {
                    Ok(stream) => {
                        let (ch, dispatch, watch) = (ch.clone(), dispatch.clone(), watch.clone());
                        let _ = std::thread::Builder::new()
                            .name("kb-window-peer".into())
                            .spawn(move || ch.serve(stream, &dispatch, &*watch));
                    }
                    Err(e) => tracing::warn!("window channel: accept failed: {e}"),
                }
            }
        })?;
        Ok(ch)
    }

    /// The socket's path (for the window's command line).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A new one-time token (hex) for the window about to start; the previous one, if
    /// unused, stops working.
    pub fn new_token(&self) -> std::io::Result<String> {
        let t = kb_crypto::rng::random_array::<32>().map_err(std::io::Error::other)?;
        *lock(&self.token) = Some(t.to_vec());
        Ok(hex(&t))
    }

    /// Whether a window is connected.
    pub fn has_window(&self) -> bool {
        lock(&self.window).is_some()
    }

    /// Send to the window, if one is connected (events for no page are dropped: a page
    /// that opens later reads the state, and the waiting prompts, itself).
    pub fn send(&self, msg: &ToWindow) -> bool {
        let peer = lock(&self.window).clone();
        match peer {
            Some(p) => match p.send(msg) {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!("window channel: send failed: {e}");
                    false
                }
            },
            None => false,
        }
    }

    fn admit(&self, first: Option<ToCore>) -> bool {
        let Some(ToCore::Hello { token }) = first else { return false };
        let mut expected = lock(&self.token);
        let ok = expected.as_deref().is_some_and(|t| same(hex(t).as_bytes(), token.as_bytes()));
        if ok {
            // One use only.
            *expected = None;
        }
        ok
    }

    fn serve(self: Arc<Self>, stream: UnixStream, dispatch: &Arc<Dispatch>, watch: &dyn WindowWatch) {
        let Ok(write_half) = stream.try_clone() else { return };
        let peer = Arc::new(Peer { id: self.next_peer.fetch_add(1, Ordering::Relaxed), out: Mutex::new(write_half) });
        let mut reader = stream;
        let _ = reader.set_read_timeout(Some(HELLO_TIMEOUT));
        let first = read_frame::<ToCore>(&mut reader).ok().flatten();
        let said_nothing = first.is_none();
        if !self.admit(first) {
            if said_nothing {
                tracing::debug!("window channel: a peer left without a word");
            } else {
                tracing::warn!("window channel: a peer without the window's token was refused");
            }
            let error = AppError::new(ErrorCode::WindowUnauthenticated, (self.lang)(), "");
            let _ = peer.send(&ToWindow::Refused { error });
            let _ = reader.shutdown(std::net::Shutdown::Both);
            return;
        }
        let _ = reader.set_read_timeout(None);
        if peer.send(&ToWindow::Welcome { lang: (self.lang)() }).is_err() {
            return;
        }
        *lock(&self.window) = Some(peer.clone());
        watch.connected();
        loop {
            match read_frame::<ToCore>(&mut reader) {
                Ok(Some(ToCore::Call { id, cmd, args })) => {
                    let (peer, dispatch) = (peer.clone(), dispatch.clone());
                    let spawned = std::thread::Builder::new().name("kb-window-call".into()).spawn(move || {
                        let result = dispatch(&cmd, args);
                        if let Err(e) = peer.send(&ToWindow::Reply { id, result }) {
                            tracing::warn!("window channel: the answer to {cmd} was not delivered: {e}");
                        }
                    });
                    if let Err(e) = spawned {
                        tracing::warn!("window channel: no thread for a call: {e}");
                    }
                }
                Ok(Some(ToCore::Closing)) => watch.closing(),
                Ok(Some(ToCore::Hello { .. })) => {}
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!("window channel: {e}");
                    break;
                }
            }
        }
        {
            let mut w = lock(&self.window);
            if w.as_ref().is_some_and(|p| p.id == peer.id) {
                *w = None;
            }
        }
        watch.gone();
    }
}

impl CoreChannel {
    /// Remove the socket and its directory (the core is quitting).
    pub fn remove_files(&self) {
        let _ = std::fs::remove_file(&self.path);
        let _ = std::fs::remove_dir(&self.dir);
    }
}

impl Drop for CoreChannel {
    fn drop(&mut self) {
        self.remove_files();
    }
}

/// What the core tells the window besides answers.
#[derive(Debug)]
pub enum CoreNews {
    /// An event for the page.
    Event {
        /// Event name.
        name: String,
        /// Payload.
        payload: Value,
    },
    /// Bring the window forward.
    Show,
    /// The core ends this window (never shown: the open it was started for did not come).
    Close,
    /// The core is gone (it quit, or the socket broke).
    Lost,
}

type Pending = Mutex<HashMap<u64, mpsc::Sender<Result<Value, AppError>>>>;

/// The window's end: calls commands in the core, receives its events.
pub struct WindowLink {
    out: Mutex<UnixStream>,
    pending: Arc<Pending>,
    next: AtomicU64,
    lang: Lang,
}

impl std::fmt::Debug for WindowLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WindowLink").finish_non_exhaustive()
    }
}

impl WindowLink {
    /// Connect to the core at `path` with its one-time `token`; `news` receives events,
    /// show requests and the end of the link, on the link's own thread.
    pub fn connect(path: &Path, token: &str, news: impl Fn(CoreNews) + Send + 'static) -> Result<Arc<Self>, AppError> {
        let fail = |e: std::io::Error| lost(Lang::default(), e.to_string());
        let mut stream = UnixStream::connect(path).map_err(fail)?;
        write_frame(&mut stream, &ToCore::Hello { token: token.to_owned() }).map_err(fail)?;
        let lang = match read_frame::<ToWindow>(&mut stream).map_err(fail)? {
            Some(ToWindow::Welcome { lang }) => lang,
            Some(ToWindow::Refused { error }) => return Err(error),
            other => return Err(lost(Lang::default(), format!("unexpected first answer: {other:?}"))),
        };
        let pending: Arc<Pending> = Arc::default();
        let mut reader = stream.try_clone().map_err(fail)?;
        let p = pending.clone();
        std::thread::Builder::new()
            .name("kb-core-link".into())
            .spawn(move || {
                loop {
                    match read_frame::<ToWindow>(&mut reader) {
                        Ok(Some(ToWindow::Reply { id, result })) => {
                            if let Some(tx) = lock(&p).remove(&id) {
                                let _ = tx.send(result);
                            }
                        }
                        Ok(Some(ToWindow::Event { name, payload })) => news(CoreNews::Event { name, payload }),
                        Ok(Some(ToWindow::Show)) => news(CoreNews::Show),
                        Ok(Some(ToWindow::Close)) => news(CoreNews::Close),
                        Ok(Some(_)) => {}
                        Ok(None) => break,
                        Err(e) => {
                            tracing::warn!("core link: {e}");
                            break;
                        }
                    }
                }
                // Calls still waiting get `window_link_lost` (their senders drop).
                lock(&p).clear();
                news(CoreNews::Lost);
            })
            .map_err(fail)?;
        Ok(Arc::new(WindowLink { out: Mutex::new(stream), pending, next: AtomicU64::new(1), lang }))
    }

    /// The UI language the core named when the link opened.
    pub fn lang(&self) -> Lang {
        self.lang
    }

    /// Run `cmd` in the core and wait for its answer (blocking: call it off the UI thread).
    pub fn call(&self, cmd: &str, args: Value) -> Result<Value, AppError> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel();
        lock(&self.pending).insert(id, tx);
        let sent = write_frame(&mut *lock(&self.out), &ToCore::Call { id, cmd: cmd.to_owned(), args });
        if let Err(e) = sent {
            lock(&self.pending).remove(&id);
            return Err(lost(self.lang, e.to_string()));
        }
        rx.recv().unwrap_or_else(|_| Err(lost(self.lang, "")))
    }

    /// Tell the core the user closed the window.
    pub fn closing(&self) {
        let _ = write_frame(&mut *lock(&self.out), &ToCore::Closing);
    }
}

impl Drop for WindowLink {
    fn drop(&mut self) {
        // The reader thread holds a clone of the socket: end the connection for both.
        let _ = lock(&self.out).shutdown(std::net::Shutdown::Both);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Counts(Mutex<Vec<&'static str>>);
    impl WindowWatch for Counts {
        fn connected(&self) {
            lock(&self.0).push("connected");
        }
        fn gone(&self) {
            lock(&self.0).push("gone");
        }
    }

    fn echo() -> Arc<Dispatch> {
        Arc::new(|cmd: &str, args: Value| Ok(serde_json::json!({ "cmd": cmd, "args": args })))
    }

    #[test]
    fn a_peer_with_the_token_calls_and_hears_events() {
        let dir = tempfile::tempdir().unwrap();
        let watch = Arc::new(Counts(Mutex::default()));
        let ch = CoreChannel::listen(dir.path(), echo(), watch.clone(), || Lang::En).unwrap();
        let mode = std::fs::metadata(ch.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the socket is the user's only");
        let dmode = std::fs::metadata(ch.path().parent().unwrap()).unwrap().permissions().mode() & 0o777;
        assert_eq!(dmode, 0o700);
        let token = ch.new_token().unwrap();
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        let link = WindowLink::connect(ch.path(), &token, move |n| {
            let _ = lock(&tx).send(format!("{n:?}"));
        })
        .unwrap();
        assert_eq!(link.lang(), Lang::En);
        let v = link.call("list_media", serde_json::json!({"x": 1})).unwrap();
        assert_eq!(v, serde_json::json!({"cmd": "list_media", "args": {"x": 1}}));
        assert!(ch.has_window());
        assert!(ch.send(&ToWindow::Event { name: "media-changed".into(), payload: Value::Null }));
        assert!(rx.recv_timeout(Duration::from_secs(30)).unwrap().contains("media-changed"));
        drop(link);
        // The core notices the window going.
        let until = std::time::Instant::now() + Duration::from_secs(30);
        while ch.has_window() {
            assert!(std::time::Instant::now() < until, "the window was not noticed gone");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(*lock(&watch.0), ["connected", "gone"]);
    }

    /// Another local process (same user, so it can reach the socket) cannot drive the
    /// core: without the token, with a wrong one, or with one already used, it is refused
    /// with `window_unauthenticated` and no command runs.
    #[test]
    fn the_core_refuses_an_unauthenticated_peer() {
        let dir = tempfile::tempdir().unwrap();
        let ran = Arc::new(Mutex::new(Vec::<String>::new()));
        let r = ran.clone();
        let dispatch: Arc<Dispatch> = Arc::new(move |cmd: &str, _| {
            lock(&r).push(cmd.to_owned());
            Ok(Value::Null)
        });
        let ch = CoreChannel::listen(dir.path(), dispatch, Arc::new(Counts(Mutex::default())), || Lang::En).unwrap();
        let token = ch.new_token().unwrap();

        // 1. No hello at all: straight to a call.
        let mut s = UnixStream::connect(ch.path()).unwrap();
        write_frame(&mut s, &ToCore::Call { id: 1, cmd: "list_media".into(), args: Value::Null }).unwrap();
        match read_frame::<ToWindow>(&mut s).unwrap() {
            Some(ToWindow::Refused { error }) => assert_eq!(error.name, "window_unauthenticated"),
            other => panic!("not refused: {other:?}"),
        }
        assert!(read_frame::<ToWindow>(&mut s).unwrap().is_none(), "the core hung up");

        // 2. A wrong token (same length).
        let wrong = "0".repeat(token.len());
        let e = WindowLink::connect(ch.path(), &wrong, |_| {}).unwrap_err();
        assert_eq!(e.name, "window_unauthenticated");

        // 3. The right token works once; reused, it is refused.
        let link = WindowLink::connect(ch.path(), &token, |_| {}).unwrap();
        link.call("list_media", Value::Null).unwrap();
        let e = WindowLink::connect(ch.path(), &token, |_| {}).unwrap_err();
        assert_eq!(e.name, "window_unauthenticated");
        assert_eq!(*lock(&ran), ["list_media"], "only the admitted window ran a command");
    }

    /// A core that died leaves its directory: the next core removes it, and leaves a live
    /// core's and anything not its own.
    #[test]
    fn stale_channel_directories_are_swept() {
        let parent = tempfile::tempdir().unwrap();
        let live = CoreChannel::listen(parent.path(), echo(), Arc::new(Counts(Mutex::default())), || Lang::En).unwrap();
        let stale = parent.path().join(format!("{DIR_PREFIX}dead"));
        std::fs::create_dir(&stale).unwrap();
        drop(UnixListener::bind(stale.join(SOCKET)).unwrap()); // the socket file stays, no one listens
        let other = parent.path().join("keybridge-something-else");
        std::fs::create_dir(&other).unwrap();
        let _next = CoreChannel::listen(parent.path(), echo(), Arc::new(Counts(Mutex::default())), || Lang::En).unwrap();
        assert!(!stale.exists(), "the dead core's directory is gone");
        assert!(live.path().exists(), "the live core's socket stays");
        assert!(other.exists(), "not a channel directory: left alone");
    }

    #[test]
    fn frames_over_the_cap_are_refused() {
        let mut buf = Vec::new();
        buf.extend_from_slice(&u32::try_from(MAX_FRAME + 1).unwrap().to_be_bytes());
        let e = read_frame::<Value>(&mut buf.as_slice()).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
        let big = "x".repeat(MAX_FRAME);
        assert!(write_frame(&mut Vec::new(), &big).is_err());
    }
}
