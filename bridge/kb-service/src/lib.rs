//! The KeyBridge device service: the one owner of every key medium.
//!
//! - [`devices`]: the device manager — merges every [`kb_token::Transport`]'s watch
//!   stream into one event stream and gives each medium its own actor thread, so a
//!   medium never sees two commands at once.
//! - [`pin_cache`]: per-device PIN cache (off / 1 / 5 / 10 / 30 / 60 minutes, default 30),
//!   zeroized, never holding a wrong PIN.
//! - [`prompter`]: the [`prompter::Prompter`] trait through which PINs, confirmations and
//!   QR codes reach the user (terminal, desktop window, test script).
//! - [`audit`]: every key use recorded (SQLite), queried by time range.
//! - [`demo`]: the built-in demo key and its local demo CA.
//! - [`renewal`]: renewing certificates with a CA — status, the binding QR, 安装证书
//!   with checks before writing and rollback.
//! - [`revocation`]: is a certificate revoked — CRL folder, CRLs in signatures, a cache,
//!   OCSP and CRL distribution points within a network budget.
//! - [`media`]: which transports every front end watches.
//! - [`trust`]: the trust anchors chain checks use.
//! - [`settings`] and [`logs`]: the config file, daily-rotated logs, encrypted export.

#![cfg_attr(test, allow(clippy::panic, clippy::unwrap_used, clippy::expect_used))]

pub mod audit;
pub mod demo;
pub mod devices;
mod error;
pub mod logs;
pub mod media;
pub mod pin_cache;
pub mod prompter;
pub mod renewal;
pub mod revocation;
pub mod settings;
pub mod trust;

pub use error::{Result, ServiceError};
