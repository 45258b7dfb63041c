//! The dev CA's listener: loopback only by default, a thread per connection (at most
//! [`MAX_CONNECTIONS`]), one request per connection, bounded reads.

use crate::ca::DevCa;
use crate::routes::{MAX_BODY, handle};
use kb_ca::http::{Response, read_request, write_response};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

/// Connections served at once; more get 503.
pub const MAX_CONNECTIONS: usize = 64;
/// Time to send a request.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A running server; dropping it (or [`Server::stop`]) stops accepting.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Listen on `addr` (`127.0.0.1:0` for any free port). A non-loopback address needs
    /// `allow_lan`; the CA's public URL becomes `http://<addr>` unless already set.
    pub fn start(ca: Arc<DevCa>, addr: SocketAddr, allow_lan: bool) -> std::io::Result<Server> {
        if !addr.ip().is_loopback() && !allow_lan {
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!("the dev CA listens on loopback only (asked for {addr})"),
            ));
        }
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        if ca.config().public_url.is_empty() {
            ca.set_public_url(&format!("http://{addr}"));
        }
        let stop = Arc::new(AtomicBool::new(false));
        let active = Arc::new(AtomicUsize::new(0));
        let s2 = Arc::clone(&stop);
        let thread = std::thread::Builder::new().name("devca-accept".into()).spawn(move || {
            for conn in listener.incoming() {
                if s2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = conn else { continue };
                if active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
                    active.fetch_sub(1, Ordering::SeqCst);
                    let mut s = stream;
                    let _ = write_response(&mut s, &Response::new(503, "text/plain", "busy"));
                    continue;
                }
                let (ca, active) = (Arc::clone(&ca), Arc::clone(&active));
                let spawned = std::thread::Builder::new().name("devca-conn".into()).spawn(move || {
                    serve(&ca, stream);
                    active.fetch_sub(1, Ordering::SeqCst);
                });
                if spawned.is_err() {
                    tracing::warn!("dev CA: could not start a connection thread");
                }
            }
        })?;
        Ok(Server { addr, stop, thread: Some(thread) })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stop accepting and wait for the accept loop to end.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    /// Serve until the process ends.
    pub fn wait(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.stop();
        }
    }
}

fn serve(ca: &DevCa, mut stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(READ_TIMEOUT));
    let _ = stream.set_write_timeout(Some(READ_TIMEOUT));
    let resp = match read_request(&mut stream, MAX_BODY) {
        Ok(req) => handle(ca, &req),
        Err(e) if e.kind() == std::io::ErrorKind::OutOfMemory => Response::new(413, "text/plain", "request too large"),
        Err(e) => Response::new(400, "text/plain", format!("bad request: {e}")),
    };
    let _ = write_response(&mut stream, &resp);
}
