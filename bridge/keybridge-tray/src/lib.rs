//! KeyBridge's desktop core without WebKit, and what its window shares with it.
//!
//! The desktop app runs as two processes:
//!
//! - the **core**, the `keybridge-tray` binary of this crate (long-lived): the tray icon
//!   and its menu, one instance per user, desktop notifications, the device service, the
//!   local bridge and every prompt. It links GTK for the tray but never WebKit, so it
//!   idles small;
//! - the **window**, `keybridge-desktop --window SOCKET` (src-tauri, Tauri and WebKit),
//!   which the core starts on demand, or hidden as soon as the tray menu opens so that
//!   打开 KeyBridge only has to show it ([`host::WindowHost`]), and which calls the core's
//!   commands over a private socket ([`link`]).
//!
//! `keybridge-desktop` started without `--window` (a user, the desktop entry, login
//! auto-start) replaces itself with the core installed beside it ([`args::exec_core`])
//! before it initialises anything, so the process that stays is the small one.
//!
//! Every command is listed once ([`for_each_command!`]): the list makes the window's Tauri
//! commands and the core's [`commands::dispatch`].

#![cfg_attr(test, allow(clippy::panic, clippy::unwrap_used, clippy::expect_used))]

pub mod args;
pub mod commands;
pub mod core;
pub mod host;
pub mod link;

pub use args::Args;
pub use core::{AppControl, Core, CoreEvent, PaintReport, Shell, runtime_dir, start_core};
