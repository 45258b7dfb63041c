//! The window's Tauri commands: one per entry of the core's command list
//! ([`keybridge_tray::for_each_command!`]), with the entry's signature (the page and its
//! generated TypeScript bindings see exactly these), each sending its arguments to the
//! core over the window link and returning the core's answer. The entries' bodies run in
//! the core ([`keybridge_tray::commands::dispatch`]).

use crate::link::WindowLink;
use kb_desktop::ble::BleStatus;
use kb_desktop::model::*;
use kb_desktop::phone::*;
use serde_json::{Map, Value};
use std::sync::Arc;
use tauri::{Runtime, State};

type Res<T> = Result<T, AppError>;
type Link<'a> = State<'a, Arc<WindowLink>>;

fn to_arg(link: &WindowLink, v: &impl serde::Serialize) -> Res<Value> {
    serde_json::to_value(v).map_err(|e| AppError::new(kb_types::ErrorCode::Internal, link.lang(), e.to_string()))
}

/// Send a call to the core on a blocking thread (it may wait for a PIN that another call
/// answers) and read its answer as `T`.
async fn forward<T: serde::de::DeserializeOwned>(link: &Arc<WindowLink>, cmd: &'static str, args: Map<String, Value>) -> Res<T> {
    let link = Arc::clone(link);
    let lang = link.lang();
    let internal = move |e: String| AppError::new(kb_types::ErrorCode::Internal, lang, e);
    let v = tauri::async_runtime::spawn_blocking(move || link.call(cmd, Value::Object(args)))
        .await
        .map_err(|e| internal(e.to_string()))??;
    serde_json::from_value(v).map_err(|e| internal(format!("{cmd}: {e}")))
}

macro_rules! window_commands {
    (($d:ident, $c:ident) $( $(#[doc = $doc:expr])* fn $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty $body:block )*) => {
        $(
            $(#[doc = $doc])*
            #[tauri::command]
            #[specta::specta]
            async fn $name(link: Link<'_>, $($arg: $ty),*) -> Res<$ret> {
                #[allow(unused_mut)]
                let mut args = Map::new();
                $( args.insert(stringify!($arg).to_owned(), to_arg(&link, &$arg)?); )*
                forward(&link, stringify!($name), args).await
            }
        )*

        /// The window's commands (each forwards to the core), for the specta builder.
        pub(crate) fn collect<R: Runtime>() -> tauri_specta::Commands<R> {
            tauri_specta::collect_commands![$($name),*]
        }

        /// Every command's name, as the page invokes it.
        pub const NAMES: &[&str] = &[$(stringify!($name)),*];
    };
}

keybridge_tray::for_each_command!(window_commands);

#[cfg(test)]
mod tests {
    /// Both ends come from the one list.
    #[test]
    fn the_window_and_the_core_know_the_same_commands() {
        assert_eq!(super::NAMES, keybridge_tray::commands::NAMES);
        assert!(super::NAMES.contains(&"answer_prompt"));
    }
}
