//! The tokio runtime the link's tasks run on: one the caller already has (a `Handle`), or
//! a small one of our own for blocking callers (the device service's threads, the
//! reference phone).

use crate::conn::LinkError;
use kb_types::ErrorCode;
use std::future::Future;
use std::sync::Arc;
use tokio::runtime::{Handle, Runtime};

struct Owned(Option<Runtime>);

impl Drop for Owned {
    fn drop(&mut self) {
        // Dropping a runtime inside async code panics; shutting it down in the
        // background never does.
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// Where the link's tasks run. Cheap to clone.
#[derive(Clone)]
pub struct LinkRuntime {
    handle: Handle,
    _owned: Option<Arc<Owned>>,
}

impl std::fmt::Debug for LinkRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LinkRuntime(owned: {})", self._owned.is_some())
    }
}

impl LinkRuntime {
    /// A runtime of our own (two worker threads named `kb-phonelink`), shut down when the
    /// last clone is dropped.
    pub fn new() -> Result<Self, LinkError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("kb-phonelink")
            .enable_all()
            .build()
            .map_err(|e| LinkError::Failed { code: ErrorCode::Internal, detail: format!("tokio runtime: {e}") })?;
        Ok(Self { handle: rt.handle().clone(), _owned: Some(Arc::new(Owned(Some(rt)))) })
    }

    /// Run on the caller's runtime.
    pub fn from_handle(handle: Handle) -> Self {
        Self { handle, _owned: None }
    }

    /// The current runtime when called from async code, else a new one of our own.
    pub fn current_or_new() -> Result<Self, LinkError> {
        match Handle::try_current() {
            Ok(h) => Ok(Self::from_handle(h)),
            Err(_) => Self::new(),
        }
    }

    /// The tokio handle.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Run `f` on the runtime and wait for it from a blocking thread. (From async code,
    /// await the future instead: this blocks the calling thread.)
    pub fn block_on<F>(&self, f: F) -> Result<F::Output, LinkError>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.handle.spawn(async move {
            let _ = tx.send(f.await);
        });
        rx.recv().map_err(|_| LinkError::Closed)
    }
}
