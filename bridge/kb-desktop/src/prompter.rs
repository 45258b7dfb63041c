//! The window's [`Prompter`]: every PIN, confirmation, consent and QR request of the
//! service becomes a [`PromptRequest`] event; the service thread waits until the window
//! answers (`answer`) or the prompt times out. One dialog for every key operation —
//! the window's own, the bridge's web pages and native tools.

use crate::model::{ConsentDecision, PinKindView, PromptAnswer, PromptBody, PromptRequest};
use kb_service::ServiceError;
use kb_service::prompter::{ConfirmRequest, ConsentAnswer, ConsentRequest, PinRequest, Prompter, QrRequest};
use kb_token::OpContext;
use kb_types::{Pin, PinKind};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a prompt waits for the user before it is withdrawn (the request then fails
/// with `cancelled`).
pub const PROMPT_TIMEOUT: Duration = Duration::from_secs(300);

/// Where prompts go: the Tauri shell emits them as events; tests record them.
pub trait PromptSink: Send + Sync {
    /// Show this prompt.
    fn open(&self, request: &PromptRequest);
    /// The prompt is no longer awaited (timed out, or answered elsewhere): close it.
    fn close(&self, id: u32);
    /// A short message for the user (a toast).
    fn notify(&self, message: &str);
}

struct Pending {
    request: PromptRequest,
    tx: Sender<PromptAnswer>,
}

/// The window's prompter. Cheap to clone; every clone shares the pending prompts.
#[derive(Clone)]
pub struct UiPrompter {
    inner: Arc<Inner>,
}

struct Inner {
    sink: Arc<dyn PromptSink>,
    next: AtomicU32,
    pending: Mutex<BTreeMap<u32, Pending>>,
}

impl UiPrompter {
    /// A prompter that shows prompts through `sink`.
    pub fn new(sink: Arc<dyn PromptSink>) -> Self {
        UiPrompter { inner: Arc::new(Inner { sink, next: AtomicU32::new(1), pending: Mutex::new(BTreeMap::new()) }) }
    }

    /// The user answered prompt `id`. An unknown id (timed out, answered twice) is an
    /// error so the window can close a stale dialog.
    pub fn answer(&self, id: u32, answer: PromptAnswer) -> Result<(), ServiceError> {
        let pending = self.lock().remove(&id);
        match pending {
            Some(p) => {
                // The waiting thread may have just timed out; nothing to do then.
                let _ = p.tx.send(answer);
                Ok(())
            }
            None => Err(ServiceError::Cancelled),
        }
    }

    /// Prompts waiting for an answer, oldest first (a window opened late shows them).
    pub fn pending(&self) -> Vec<PromptRequest> {
        self.lock().values().map(|p| p.request.clone()).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u32, Pending>> {
        self.inner.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Show `body`, wait for the answer.
    fn ask(&self, client: &str, body: PromptBody) -> Result<PromptAnswer, ServiceError> {
        self.ask_in(client, body, None)
    }

    /// Show `body`, wait for the answer; when `ctx` is stopped (the request was cancelled,
    /// its client went away, its deadline passed) the dialog is withdrawn at once.
    fn ask_in(&self, client: &str, body: PromptBody, ctx: Option<&OpContext>) -> Result<PromptAnswer, ServiceError> {
        let id = self.inner.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx): (Sender<PromptAnswer>, Receiver<PromptAnswer>) = channel();
        let request = PromptRequest { id, client: client.to_string(), body };
        self.lock().insert(id, Pending { request: request.clone(), tx });
        self.inner.sink.open(&request);
        let _withdraw = ctx.map(|ctx| {
            let me = self.clone();
            ctx.on_stop(move |_| me.withdraw(id))
        });
        let wait = ctx.and_then(OpContext::remaining).map_or(PROMPT_TIMEOUT, |left| left.min(PROMPT_TIMEOUT));
        match rx.recv_timeout(wait) {
            Ok(PromptAnswer::Cancel) => Err(ServiceError::Cancelled),
            Ok(a) => Ok(a),
            Err(_) => {
                self.lock().remove(&id);
                self.inner.sink.close(id);
                Err(ServiceError::Cancelled)
            }
        }
    }
}

impl UiPrompter {
    /// Close prompt `id` in the window and wake whoever waits for it (cancelled).
    fn withdraw(&self, id: u32) {
        if let Some(p) = self.lock().remove(&id) {
            let _ = p.tx.send(PromptAnswer::Cancel);
            self.inner.sink.close(id);
        }
    }
}

fn unexpected(a: &PromptAnswer) -> ServiceError {
    ServiceError::Internal(format!("the window answered a prompt with the wrong kind of answer ({a:?})"))
}

impl Prompter for UiPrompter {
    fn ask_pin(&self, req: &PinRequest, ctx: &OpContext) -> kb_service::Result<Pin> {
        let body = PromptBody::Pin {
            device: req.device_id.to_string(),
            device_label: req.device_label.clone(),
            pin_kind: match req.kind {
                PinKind::User => PinKindView::User,
                PinKind::So => PinKindView::So,
            },
            operation: req.operation.clone(),
            tries_left: req.retries_left,
            previous_wrong: req.previous_wrong,
            cached_pin_rejected: req.cached_pin_rejected,
            certificate: req.certificate.clone(),
        };
        match self.ask_in(&req.client, body, Some(ctx))? {
            PromptAnswer::Pin { pin } => {
                let pin = zeroize::Zeroizing::new(pin);
                Ok(Pin::new(pin.as_str()))
            }
            other => Err(unexpected(&other)),
        }
    }

    fn confirm(&self, req: &ConfirmRequest) -> kb_service::Result<bool> {
        let body = PromptBody::Confirm { title: req.title.clone(), message: req.message.clone() };
        match self.ask(&req.client, body)? {
            PromptAnswer::Confirm { yes } => Ok(yes),
            other => Err(unexpected(&other)),
        }
    }

    fn show_qr(&self, req: &QrRequest) -> kb_service::Result<()> {
        let body = PromptBody::Qr {
            title: req.title.clone(),
            payload: req.payload.clone(),
            expires_in_secs: u32::try_from(req.expires_in.as_secs()).unwrap_or(u32::MAX),
        };
        match self.ask("desktop", body)? {
            PromptAnswer::Dismissed | PromptAnswer::Confirm { .. } => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    fn consent(&self, req: &ConsentRequest) -> kb_service::Result<ConsentAnswer> {
        let body = PromptBody::Consent { operation: req.operation.clone(), certificate: req.certificate.clone() };
        match self.ask(&req.client, body)? {
            PromptAnswer::Consent { decision } => Ok(match decision {
                ConsentDecision::Always => ConsentAnswer::AllowAlways,
                ConsentDecision::Once => ConsentAnswer::AllowOnce,
                ConsentDecision::Deny => ConsentAnswer::Deny,
            }),
            other => Err(unexpected(&other)),
        }
    }

    fn notify(&self, message: &str) {
        self.inner.sink.notify(message);
    }
}
