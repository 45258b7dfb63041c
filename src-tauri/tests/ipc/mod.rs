//! Tauri's IPC invoke path as the command tests use it (the mock runtime's real one:
//! argument deserialisation, the command, the response).

use serde_json::Value;
use tauri::WebviewWindow;
use tauri::test::{INVOKE_KEY, MockRuntime, get_ipc_response};

/// Invoke `cmd` with `args` as the window does; the answer or the error, as JSON.
pub(crate) fn invoke(win: &WebviewWindow<MockRuntime>, cmd: &str, args: Value) -> Result<Value, Value> {
    let req = tauri::webview::InvokeRequest {
        cmd: cmd.into(),
        callback: tauri::ipc::CallbackFn(0),
        error: tauri::ipc::CallbackFn(1),
        url: "tauri://localhost".parse().unwrap(),
        body: tauri::ipc::InvokeBody::Json(args),
        headers: Default::default(),
        invoke_key: INVOKE_KEY.to_string(),
    };
    get_ipc_response(win, req).map(|body| body.deserialize::<Value>().unwrap())
}
