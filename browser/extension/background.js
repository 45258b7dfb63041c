// KeyBridge extension, service worker: one native messaging host per page connection.
//
// A content script opens a port per page connection. The page's origin is taken here
// from the port's sender, which the browser fills in (`sender.origin`, else the frame's
// URL) — never from anything the page or the content script says — and sent to the host
// as the connection's first message. The host connects to KeyBridge's bridge with that
// origin, so consent and grants are bound to the page's real origin.
//
// Between the content script and the host only three kinds of message pass: `text`
// (one JSON-RPC message), `binary` (a stream frame, base64) and `close`. Whatever else a
// message carries is dropped here.

const HOST = "com.keybridge.host";
/** The host accepts messages of at most 2 MiB (bridge/kb-bridge/src/native.rs). */
const MAX_TO_HOST = 2 * 1024 * 1024;

/** The page's origin as the browser reports it, or undefined for an opaque one. */
function senderOrigin(sender) {
  let origin = sender.origin;
  if (!origin && sender.url) {
    try {
      origin = new URL(sender.url).origin;
    } catch {
      origin = undefined;
    }
  }
  return origin && origin !== "null" ? origin : undefined;
}

/**
 * Why the host went away, as a stable name the SDK knows (docs/bridge-protocol.md). Chrome
 * says "Specified native messaging host not found." or "Access to the specified native
 * messaging host is forbidden." when it cannot start it; anything else ("Native host has
 * exited.", "Error when communicating with the native messaging host.") means it ended
 * without closing. (Our host never sends a message over Chrome's cap: it sends error 5022
 * in its place.)
 */
function disconnectReason(message) {
  if (message && /not found|forbidden|Invalid native messaging host/i.test(message)) return "extension_host_not_installed";
  return "extension_host_exited";
}

chrome.runtime.onConnect.addListener((port) => {
  if (port.name !== "keybridge" || port.sender?.id !== chrome.runtime.id) {
    port.disconnect();
    return;
  }
  const origin = senderOrigin(port.sender);
  if (!origin) {
    port.postMessage({ type: "error", error: { code: 5002, message: "connection refused: this web origin is not allowed", data: { name: "origin_rejected", detail: "the page has no origin (sandboxed frame, file or data URL)" } } });
    port.disconnect();
    return;
  }
  let host;
  let ended = false;
  try {
    host = chrome.runtime.connectNative(HOST);
  } catch (e) {
    port.postMessage({ type: "disconnect", reason: "extension_host_not_installed", detail: String(e) });
    port.disconnect();
    return;
  }
  host.onMessage.addListener((m) => {
    if (m && (m.type === "close" || m.type === "error")) ended = true;
    port.postMessage(m);
  });
  host.onDisconnect.addListener(() => {
    const message = chrome.runtime.lastError?.message;
    if (!ended) port.postMessage({ type: "disconnect", reason: disconnectReason(message), detail: message ?? "the native host exited" });
    ended = true;
    port.disconnect();
  });
  port.onDisconnect.addListener(() => {
    ended = true;
    host.disconnect();
  });
  port.onMessage.addListener((m) => {
    if (!m || typeof m !== "object") return;
    let out;
    if ((m.type === "text" || m.type === "binary") && typeof m.data === "string") out = { type: m.type, data: m.data };
    else if (m.type === "close") out = { type: "close" };
    else return;
    // Strings are UTF-16 here; JSON on the pipe is UTF-8 (at most 3 bytes per unit).
    if (out.data && out.data.length * 3 + 64 > MAX_TO_HOST && new TextEncoder().encode(JSON.stringify(out)).length > MAX_TO_HOST) {
      port.postMessage({ type: "too_large", data: out.type === "text" ? out.data.slice(0, 256) : "" });
      return;
    }
    host.postMessage(out);
  });
  host.postMessage({ type: "open", origin });
});
