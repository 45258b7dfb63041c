//! Tauri's build step: the app context (config, capabilities, icons).
fn main() {
    tauri_build::build()
}
