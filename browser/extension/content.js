// KeyBridge extension, content script: tells the page the extension is here and relays
// each page connection to the service worker (which starts the native host).
//
// The page speaks to this script with window.postMessage: messages from the page carry
// `keybridge: "page"`, messages to it `keybridge: "extension"`, and both a `conn` id the
// page chose. Only messages whose source is this very window are taken (not a frame's,
// not another window's). No origin is read from the page: the service worker takes it
// from the browser (see background.js).

(() => {
  const VERSION = chrome.runtime.getManifest().version;
  /** Each connection starts a host process: a page (frame) gets at most this many at once. */
  const MAX_CONNECTIONS = 8;
  const ports = new Map();

  const toPage = (conn, m) => window.postMessage({ ...m, keybridge: "extension", conn }, "*");

  function bytesToBase64(bytes) {
    let s = "";
    for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    return btoa(s);
  }

  function base64ToBuffer(b64) {
    const s = atob(b64);
    const bytes = new Uint8Array(s.length);
    for (let i = 0; i < s.length; i++) bytes[i] = s.charCodeAt(i);
    return bytes.buffer;
  }

  /** A request too large for the host: answer it here with 5022 so the page's call fails, not the connection. */
  function tooLarge(conn, head) {
    const id = /"id"\s*:\s*("(?:[^"\\]|\\.)*"|-?\d+)/.exec(head)?.[1];
    const error = { code: 5022, message: "a message through the browser extension is larger than native messaging allows", data: { name: "extension_message_too_large" } };
    if (id !== undefined) toPage(conn, { type: "text", data: `{"jsonrpc":"2.0","id":${id},"error":${JSON.stringify(error)}}` });
  }

  function open(conn) {
    const port = chrome.runtime.connect({ name: "keybridge" });
    ports.set(conn, port);
    port.onMessage.addListener((m) => {
      if (m.type === "binary") toPage(conn, { type: "binary", data: base64ToBuffer(m.data) });
      else if (m.type === "too_large") tooLarge(conn, m.data);
      else toPage(conn, m);
    });
    port.onDisconnect.addListener(() => {
      if (ports.delete(conn)) toPage(conn, { type: "disconnect", reason: "extension_host_exited", detail: "the extension's connection ended" });
    });
  }

  window.addEventListener("message", (ev) => {
    const m = ev.data;
    if (ev.source !== window || !m || m.keybridge !== "page" || typeof m.conn !== "string") return;
    if (m.type === "ping") {
      toPage(m.conn, { type: "pong", version: VERSION });
      return;
    }
    if (m.type === "open") {
      if (ports.has(m.conn)) return;
      if (ports.size >= MAX_CONNECTIONS) {
        const detail = `at most ${MAX_CONNECTIONS} connections per page through the extension`;
        toPage(m.conn, { type: "error", error: { code: 5007, message: "too many requests; try again later", data: { name: "too_many_requests", detail } } });
        return;
      }
      open(m.conn);
      return;
    }
    const port = ports.get(m.conn);
    if (!port) return;
    if (m.type === "text" && typeof m.data === "string") port.postMessage({ type: "text", data: m.data });
    // (The page's Uint8Array is not this world's: `instanceof` would be false.)
    else if (m.type === "binary" && ArrayBuffer.isView(m.data)) port.postMessage({ type: "binary", data: bytesToBase64(new Uint8Array(m.data.buffer, m.data.byteOffset, m.data.byteLength)) });
    else if (m.type === "close") {
      port.postMessage({ type: "close" });
      ports.delete(m.conn);
      port.disconnect();
    }
  });

  // Announce: pages whose SDK loads later read the attribute; those already waiting get the event.
  document.documentElement?.setAttribute("data-keybridge-extension", VERSION);
  window.postMessage({ keybridge: "extension", type: "ready", version: VERSION }, "*");
})();
