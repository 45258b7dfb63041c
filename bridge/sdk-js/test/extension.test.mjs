// The extension transport: when the SDK picks it, and what the page sees of the
// extension's messages (errors with stable codes included). The page's window and the
// content script are stood in here; the real browser, extension and host are in
// tests/e2e/test/native-messaging.test.mjs.
import assert from "node:assert/strict";
import { test } from "node:test";
import { ConnectionError, EXTENSION_ATTRIBUTE, ExtensionSocket, KeyBridgeError, connect, extensionVersion, useExtension } from "../dist/index.js";

/**
 * A page window whose content script is `script(message, reply)` (omit for a page
 * without the extension). `reply(m)` posts a message from the extension.
 */
function fakePage({ version, script } = {}) {
  const listeners = new Set();
  const sent = [];
  const win = {
    document: { documentElement: { getAttribute: (n) => (n === EXTENSION_ATTRIBUTE ? (version ?? null) : null) } },
    addEventListener: (type, f) => type === "message" && listeners.add(f),
    removeEventListener: (type, f) => listeners.delete(f),
    postMessage: (data) => {
      queueMicrotask(() => {
        for (const f of [...listeners]) f({ source: win, data });
        if (data?.keybridge === "page") {
          sent.push(data);
          script?.(data, (m) => win.postMessage({ ...m, keybridge: "extension", conn: data.conn }));
        }
      });
    },
  };
  return { win, sent, listeners };
}

async function asPage(page, f) {
  const saved = globalThis.window;
  globalThis.window = page.win;
  try {
    return await f();
  } finally {
    if (saved === undefined) delete globalThis.window;
    else globalThis.window = saved;
  }
}

const HELLO = { schema_version: 1, product: "KeyBridge", product_version: "0.1.0", capabilities: [], limits: { max_message_bytes: 1048576, max_chunk_bytes: 262144, max_in_flight: 16, request_timeout_ms: 30000 } };

/** A content script in front of a bridge that answers hello and devices.list. */
function bridgeScript(onText = () => undefined) {
  return (m, reply) => {
    if (m.type === "open") reply({ type: "open", origin: "https://bid.example.cn" });
    if (m.type === "text") {
      const req = JSON.parse(m.data);
      onText(req, reply);
      if (req.method === "hello") reply({ type: "text", data: JSON.stringify({ jsonrpc: "2.0", id: req.id, result: HELLO }) });
      if (req.method === "devices.list") reply({ type: "text", data: JSON.stringify({ jsonrpc: "2.0", id: req.id, result: { devices: [] } }) });
    }
  };
}

test("auto picks the extension only when its content script announced itself and nothing needs a WebSocket", async () => {
  await asPage(fakePage({ version: "0.1.0" }), () => {
    assert.equal(extensionVersion(), "0.1.0");
    assert.equal(useExtension({}), true);
    assert.equal(useExtension({ port: 17210 }), true, "a port alone does not matter: the host finds the bridge");
    assert.equal(useExtension({ url: "ws://127.0.0.1:1" }), false);
    assert.equal(useExtension({ secret: "00".repeat(32) }), false);
    assert.equal(useExtension({ WebSocket: class {} }), false);
    assert.equal(useExtension({ transport: "websocket" }), false);
  });
  await asPage(fakePage(), () => {
    assert.equal(extensionVersion(), undefined);
    assert.equal(useExtension({}), false, "no extension: the WebSocket");
    assert.equal(useExtension({ transport: "extension" }), true, "asked for explicitly");
  });
  // Node (no window): never the extension unless asked.
  assert.equal(useExtension({}), false);
});

test("a page connects and calls through the extension, with no WebSocket at all", async () => {
  const page = fakePage({ version: "0.1.0", script: bridgeScript() });
  await asPage(page, async () => {
    class NoWebSocket {
      constructor() {
        throw new Error("the WebSocket must not be used");
      }
    }
    globalThis.WebSocket = NoWebSocket;
    try {
      const c = await connect({ sdk: "unit" });
      assert.deepEqual(await c.call("devices.list"), { devices: [] });
      await c.close();
    } finally {
      delete globalThis.WebSocket;
    }
  });
  const conns = new Set(page.sent.map((m) => m.conn));
  assert.equal(conns.size, 1, "one connection id");
  assert.deepEqual(page.sent.map((m) => m.type), ["open", "text", "text", "close"]);
  assert.ok(page.sent.every((m) => !("origin" in m)), "the page never names an origin");
  assert.equal(page.listeners.size, 0, "the listener is removed once closed");
});

test("the extension's failures come back with stable codes", async () => {
  const cases = [
    [{ type: "disconnect", reason: "extension_host_not_installed", detail: "Specified native messaging host not found." }, "extension_host_not_installed", 5020],
    [{ type: "disconnect", reason: "something new" }, "extension_host_exited", 5021],
    [{ type: "error", error: { code: 5023, message: "KeyBridge is not running", data: { name: "native_host_bridge_unreachable" } } }, "native_host_bridge_unreachable", 5023],
    [{ type: "error", error: { code: 5002, message: "connection refused", data: { name: "origin_rejected" } } }, "origin_rejected", 5002],
  ];
  for (const [reply, name, code] of cases) {
    const page = fakePage({ version: "0.1.0", script: (m, r) => m.type === "open" && r(reply) });
    const e = await asPage(page, () => connect({ connectTimeoutMs: 5000 }).then(() => undefined, (e) => e));
    assert.ok(e instanceof KeyBridgeError, `${name}: ${e}`);
    assert.equal(e.name, name);
    assert.equal(e.code, code);
  }
});

test("a host that exits after connecting fails pending calls, the cause naming it", async () => {
  let hostGone;
  const page = fakePage({
    version: "0.1.0",
    script: bridgeScript((req, reply) => {
      if (req.method === "devices.list") hostGone = () => reply({ type: "disconnect", reason: "extension_host_exited" });
    }),
  });
  await asPage(page, async () => {
    const c = await connect();
    // Answered by bridgeScript at once; the next call waits for the host that then dies.
    await c.call("devices.list");
    const pending = c.call("certificates.list");
    hostGone();
    const e = await pending.then(() => undefined, (e) => e);
    assert.ok(e instanceof ConnectionError, String(e));
    assert.equal(e.kind, "connection_closed");
    assert.equal(e.cause?.name, "extension_host_exited");
    assert.equal(e.cause?.code, 5021);
  });
});

test("messages from another window or another connection are ignored", async () => {
  const page = fakePage({
    version: "0.1.0",
    script: (m, reply) => {
      if (m.type === "open") {
        // A frame posting into this window, and another connection's message, come first.
        for (const f of page.listeners) f({ source: {}, data: { keybridge: "extension", conn: m.conn, type: "error", error: { code: 5002, message: "x", data: {} } } });
        page.win.postMessage({ keybridge: "extension", conn: "someone-else", type: "close", code: 1000 });
      }
      bridgeScript()(m, reply);
    },
  });
  await asPage(page, async () => {
    const c = await connect();
    assert.deepEqual(await c.call("devices.list"), { devices: [] });
    await c.close();
  });
});

test("upload back-pressure: bufferedAmount counts binary frames until the host says they were sent", async () => {
  const acks = [];
  const page = fakePage({
    version: "0.1.0",
    script: (m, reply) => {
      if (m.type === "open") reply({ type: "open", origin: "https://bid.example.cn" });
      if (m.type === "binary") acks.push(() => reply({ type: "sent", bytes: m.data.length }));
    },
  });
  await asPage(page, async () => {
    const s = new ExtensionSocket();
    await new Promise((r) => (s.onopen = r));
    s.send(new Uint8Array(1000));
    s.send(new Uint8Array(24).subarray(4));
    s.send("{}");
    assert.equal(s.bufferedAmount, 1020, "text frames are not counted");
    await new Promise((r) => setTimeout(r, 0));
    assert.equal(acks.length, 2);
    const sent = page.sent.filter((m) => m.type === "binary");
    assert.equal(sent[1].data.length, 20, "only the view's bytes are sent");
    acks.shift()();
    await new Promise((r) => setTimeout(r, 0));
    assert.equal(s.bufferedAmount, 20);
    acks.shift()();
    await new Promise((r) => setTimeout(r, 0));
    assert.equal(s.bufferedAmount, 0);
    s.close();
  });
});
