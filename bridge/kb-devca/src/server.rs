//! The dev CA's listener: loopback only by default, a thread per connection (at most
//! [`MAX_CONNECTIONS`]), one request per connection, bounded reads.

use crate::ca::DevCa;
use crate::routes::{MAX_BODY, handle};
use kb_ca::http::{Response, read_request, write_response};
use openssl::ssl::{SslAcceptor, SslMethod, SslVerifyMode};
use std::io::{Read, Write};
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
    scheme: &'static str,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Listen on `addr` (`127.0.0.1:0` for any free port). A non-loopback address needs
    /// `allow_lan`; the CA's public URL becomes `http://<addr>` unless already set.
    pub fn start(ca: Arc<DevCa>, addr: SocketAddr, allow_lan: bool) -> std::io::Result<Server> {
        Self::start_with(ca, addr, allow_lan, None)
    }

    /// The same over TLS with this server certificate and key (PEM): EST clients that
    /// insist on HTTPS (RFC 7030 §3.2) talk to it so. The URL becomes `https://…`.
    pub fn start_tls(ca: Arc<DevCa>, addr: SocketAddr, cert_pem: &str, key_pem: &str) -> std::io::Result<Server> {
        let tls = |e: openssl::error::ErrorStack| std::io::Error::other(format!("TLS: {e}"));
        let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server()).map_err(tls)?;
        let chain = openssl::x509::X509::stack_from_pem(cert_pem.as_bytes()).map_err(tls)?;
        let mut certs = chain.into_iter();
        let leaf = certs.next().ok_or_else(|| std::io::Error::other("TLS: no certificate"))?;
        b.set_certificate(&leaf).map_err(tls)?;
        for c in certs {
            b.add_extra_chain_cert(c).map_err(tls)?;
        }
        let key = openssl::pkey::PKey::private_key_from_pem(key_pem.as_bytes()).map_err(tls)?;
        b.set_private_key(&key).map_err(tls)?;
        // Ask for (never require) a client certificate: EST re-enrolment clients present one.
        b.set_verify_callback(SslVerifyMode::PEER, |_, _| true);
        Self::start_with(ca, addr, false, Some(Arc::new(b.build())))
    }

    fn start_with(ca: Arc<DevCa>, addr: SocketAddr, allow_lan: bool, tls: Option<Arc<SslAcceptor>>) -> std::io::Result<Server> {
        if !addr.ip().is_loopback() && !allow_lan {
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!("the dev CA listens on loopback only (asked for {addr})"),
            ));
        }
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        if ca.config().public_url.is_empty() {
            ca.set_public_url(&format!("{scheme}://{addr}"));
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
                let (ca, active, tls) = (Arc::clone(&ca), Arc::clone(&active), tls.clone());
                let spawned = std::thread::Builder::new().name("devca-conn".into()).spawn(move || {
                    let _ = stream.set_read_timeout(Some(READ_TIMEOUT));
                    let _ = stream.set_write_timeout(Some(READ_TIMEOUT));
                    match tls {
                        None => serve(&ca, stream),
                        Some(acceptor) => match acceptor.accept(stream) {
                            Ok(s) => serve(&ca, s),
                            Err(e) => tracing::debug!("dev CA: TLS handshake failed: {e}"),
                        },
                    }
                    active.fetch_sub(1, Ordering::SeqCst);
                });
                if spawned.is_err() {
                    tracing::warn!("dev CA: could not start a connection thread");
                }
            }
        })?;
        Ok(Server { addr, scheme, stop, thread: Some(thread) })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`.
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
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

fn serve(ca: &DevCa, mut stream: impl Read + Write) {
    let resp = match read_request(&mut stream, MAX_BODY) {
        Ok(req) => handle(ca, &req),
        Err(e) if e.kind() == std::io::ErrorKind::OutOfMemory => Response::new(413, "text/plain", "request too large"),
        Err(e) => Response::new(400, "text/plain", format!("bad request: {e}")),
    };
    let _ = write_response(&mut stream, &resp);
}
