// Client logic against the fake server of fake-server.mjs. The fake server scripts its
// answers and implements nothing: these tests check only what the client does with
// them. End-to-end tests against the real bridge server come separately.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import http from "node:http";
import { once } from "node:events";
import { test as nodeTest } from "node:test";
import { fileURLToPath } from "node:url";
import { setTimeout as sleep } from "node:timers/promises";
import WebSocket from "ws";
import { FLAG_ABORT, FLAG_FIN, ConnectionError, KeyBridgeError, connect, encodeFrame, toBase64 } from "../dist/index.js";
import { HELLO_RESULT, errorObject, fakeServer } from "./fake-server.mjs";
import { BLOCK_SIZE, block } from "./fixtures/memory-data.mjs";

/** Every test has a time limit: a client that waits forever fails instead of hanging. */
// Timeouts only catch hangs: generous, for a busy machine.
const test = (name, fn) => nodeTest(name, { timeout: 120_000 }, fn);

const SECRET = "0123456789abcdef".repeat(4);
const THUMB = "3F2A9C1B7D4E5F60718293A4B5C6D7E8F9012345";

/** Runs `body(client, server)` against a fake server and always cleans up. */
async function withServer(handle, body, { serverOptions = {}, connectOptions = {} } = {}) {
  const server = await fakeServer(handle, serverOptions);
  let client;
  try {
    client = await connect({ url: server.url, WebSocket, secret: SECRET, ...connectOptions });
    await body(client, server, await server.firstConn);
  } finally {
    await client?.close();
    await server.close();
  }
}

const signResult = { signature: "MEUCIQDe", format: "raw", algorithm: "sm2", hash: "sm3", certificate: THUMB };
const signParams = (input = { data: "5oqV5qCH5paH5Lu2" }) => ({ certificate: { thumbprint: THUMB }, input, format: "cms_detached" });

/** Waits until `predicate()` holds (the fake server runs in the same process). */
async function until(predicate, what, ms = 5000) {
  const end = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(2);
  }
}

test("hello is the first message, with the SDK's name; native clients send the secret and no Origin", async () => {
  await withServer(undefined, async (client, server, conn) => {
    assert.equal(conn.log.length, 1);
    const hello = conn.log[0].text;
    assert.equal(hello.method, "hello");
    assert.deepEqual(hello.params, { schema_version: 1, sdk: "keybridge-js", sdk_version: "0.1.0" });
    assert.equal(conn.headers.authorization, `Bearer ${SECRET}`);
    assert.equal(conn.headers.origin, undefined);
    assert.deepEqual(client.server, HELLO_RESULT);
  });
  await withServer(
    undefined,
    async (_client, _server, conn) => {
      assert.deepEqual(conn.log[0].text.params, { schema_version: 1, sdk: "bid-tool" });
    },
    { connectOptions: { sdk: "bid-tool" } },
  );
});

test("responses in any order reach the call with their id", async () => {
  const held = [];
  await withServer(
    (msg, conn) => {
      held.push(msg);
      if (held.length === 3) {
        for (const m of held.reverse()) {
          conn.reply(m.id, { certificates: [{ thumbprint: THUMB, subject: m.params.subject_contains }] });
        }
      }
    },
    async (client) => {
      const results = await Promise.all(["甲", "乙", "丙"].map((s) => client.certificates({ subject_contains: s })));
      assert.deepEqual(
        results.map((r) => r[0].subject),
        ["甲", "乙", "丙"],
      );
      assert.deepEqual(
        held.map((m) => m.id),
        [3, 2, 1].map((n) => n + 1), // ids 2..4 (hello was 1), answered in reverse
      );
    },
  );
});

test("error responses become KeyBridgeError with code, name, messages, detail and retries", async () => {
  await withServer(
    (msg, conn) => {
      if (msg.method === "sign") conn.error(msg.id, errorObject("wrong_pin", { retries_left: 2 }));
      else if (msg.method === "devices.list") {
        conn.error(msg.id, {
          code: -32601,
          message: "method not found",
          data: { name: "method_not_found", messages: { "zh-CN": "方法不存在", en: "method not found" }, detail: 'no method "x"' },
        });
      } else {
        conn.error(msg.id, { code: 7777, message: "a future error", data: { name: "future_error", messages: { "zh-CN": "将来的错误", en: "a future error" } } });
      }
    },
    async (client) => {
      const pin = await client.sign(signParams()).catch((e) => e);
      assert.ok(pin instanceof KeyBridgeError);
      assert.equal(pin.code, 4001);
      assert.equal(pin.name, "wrong_pin");
      assert.ok(pin.is("wrong_pin"));
      assert.equal(pin.retriesLeft, 2);
      assert.equal(pin.detail, undefined);
      assert.equal(pin.category, "token");
      assert.equal(pin.messageFor(), "口令错误");
      assert.equal(pin.messageFor("en"), "wrong PIN");
      assert.equal(pin.message, "wrong PIN");

      const proto = await client.devices().catch((e) => e);
      assert.equal(proto.code, -32601);
      assert.equal(proto.name, "method_not_found");
      assert.equal(proto.detail, 'no method "x"');
      assert.equal(proto.message, 'method not found: no method "x"');
      assert.equal(proto.category, undefined);

      // A code newer than this SDK still carries its name and messages.
      const future = await client.subscribe(["device.added"]).catch((e) => e);
      assert.equal(future.code, 7777);
      assert.equal(future.name, "future_error");
      assert.equal(future.messageFor("zh-CN"), "将来的错误");
    },
  );
});

test("connection loss rejects every pending call, and later calls, with ConnectionError", async () => {
  let closes = 0;
  await withServer(
    (msg, conn) => {
      if (conn.log.length === 3) conn.ws.terminate();
    },
    async (client) => {
      client.onClose(() => closes++);
      const calls = [client.devices(), client.certificates()].map((p) => p.catch((e) => e));
      const [a, b] = await Promise.all(calls);
      for (const e of [a, b]) {
        assert.ok(e instanceof ConnectionError, String(e));
        assert.equal(e.kind, "connection_closed");
        assert.equal(e.messageFor(), "与安全客户端的连接已断开");
      }
      assert.ok(client.closed);
      const later = await client.devices().catch((e) => e);
      assert.ok(later instanceof ConnectionError);
      assert.equal(closes, 1);
    },
  );
});

test("an AbortSignal sends cancel for the request and rejects it with request_cancelled", async () => {
  await withServer(
    (msg, conn) => {
      if (msg.method === "cancel") {
        conn.reply(msg.id, { cancelled: true });
        // The server then fails the cancelled request; the client has already moved on.
        conn.error(msg.params.id, errorObject("request_cancelled"));
      }
    },
    async (client, _server, conn) => {
      const ac = new AbortController();
      const pending = client.sign(signParams(), { signal: ac.signal, id: "sign-1" });
      await until(() => conn.requests("sign").length === 1, "the sign request");
      ac.abort();
      const e = await pending.catch((x) => x);
      assert.ok(e instanceof KeyBridgeError);
      assert.equal(e.name, "request_cancelled");
      await until(() => conn.requests("cancel").length === 1, "the cancel request");
      assert.deepEqual(conn.requests("cancel")[0].params, { id: "sign-1" });
      // An aborted signal sends nothing at all.
      const before = conn.log.length;
      const e2 = await client.sign(signParams(), { signal: AbortSignal.abort() }).catch((x) => x);
      assert.equal(e2.name, "request_cancelled");
      await sleep(20);
      assert.equal(conn.log.length, before);
      // The connection is still usable, and the id can be used again.
      await assert.rejects(client.sign(signParams(), { id: "sign-1", timeoutMs: 30 }), (x) => x.name === "request_timeout");
    },
  );
});

test("timeoutMs sends cancel and rejects with request_timeout", async () => {
  await withServer(
    (msg, conn) => msg.method === "cancel" && conn.reply(msg.id, { cancelled: true }),
    async (client, _server, conn) => {
      const t0 = Date.now();
      const e = await client.devices({ timeoutMs: 50 }).catch((x) => x);
      assert.equal(e.name, "request_timeout");
      assert.equal(e.code, 5008);
      assert.ok(Date.now() - t0 >= 45);
      await until(() => conn.requests("cancel").length === 1, "the cancel request");
      assert.equal(conn.requests("cancel")[0].params.id, conn.requests("devices.list")[0].id);
    },
  );
});

test("a request over max_message_bytes is refused locally with input_too_large", async () => {
  await withServer(undefined, async (client, _server, conn) => {
    const big = toBase64(new Uint8Array(800_000)); // ~1.07 MB of base64
    const e = await client.sign(signParams({ data: big })).catch((x) => x);
    assert.equal(e.name, "input_too_large");
    assert.equal(conn.log.length, 1); // hello only
  });
});

/** Answers `sign` with input {stream} once the upload has ended. */
function signFromUpload(msg, conn) {
  if (msg.method === "sign") conn.uploadEnded(msg.params.input.stream).then(() => conn.reply(msg.id, signResult));
}

function pattern(n, seed = 1) {
  const out = new Uint8Array(n);
  let x = seed;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

test("uploads: frames follow the request, max_chunk_bytes each, sequenced, FIN on the last", async () => {
  const data = pattern(10_500);
  async function* pieces() {
    for (let i = 0; i < data.length; i += 777) yield data.subarray(i, i + 777);
  }
  const sources = {
    Uint8Array: () => data,
    Blob: () => new Blob([data]),
    ReadableStream: () => new Blob([data]).stream(),
    AsyncIterable: () => pieces(),
  };
  await withServer(
    signFromUpload,
    async (client, _server, conn) => {
      for (const [name, make] of Object.entries(sources)) {
        conn.log.length = 0;
        const result = await client.signStream({ certificate: { thumbprint: THUMB }, source: make() });
        assert.deepEqual(result, signResult);
        const open = conn.requests("stream.open")[0];
        assert.deepEqual(open.params, name === "Uint8Array" || name === "Blob" ? { direction: "upload", length: 10_500 } : { direction: "upload" }, name);
        const sign = conn.requests("sign")[0];
        assert.deepEqual(sign.params, { certificate: { thumbprint: THUMB }, input: { stream: sign.params.input.stream }, format: "cms_detached" });
        const frames = conn.log.filter((m) => m.frame).map((m) => m.frame);
        // Nothing of the stream was sent before the request that reads it.
        assert.ok(conn.log.findIndex((m) => m.frame) > conn.log.findIndex((m) => m.text?.method === "sign"), name);
        assert.deepEqual(
          frames.map((f) => f.sequence),
          [...frames.keys()],
          name,
        );
        assert.deepEqual(
          frames.map((f) => f.payload.length),
          [1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 500],
          name,
        );
        assert.deepEqual(
          frames.map((f) => f.flags),
          [...Array(10).fill(0), FLAG_FIN],
          name,
        );
        assert.ok(frames.every((f) => f.stream === sign.params.input.stream));
        assert.deepEqual(Buffer.concat(frames.map((f) => f.payload)), Buffer.from(data), name);
      }
      // An empty source is one empty FIN frame.
      conn.log.length = 0;
      await client.signStream({ certificate: { thumbprint: THUMB }, source: new Uint8Array(0) });
      const frames = conn.log.filter((m) => m.frame).map((m) => m.frame);
      assert.deepEqual(
        frames.map((f) => [f.sequence, f.flags, f.payload.length]),
        [[0, FLAG_FIN, 0]],
      );
    },
    { serverOptions: { maxChunk: 1000 } },
  );
});

test("uploads wait while the socket's send buffer is over the limit (back-pressure)", async () => {
  const chunk = 64 * 1024;
  const limit = 4 * chunk;
  const total = 48 * 1024 * 1024; // far more than the kernel's socket buffers hold
  const sends = []; // bufferedAmount just before each binary send
  class CountingWebSocket extends WebSocket {
    send(data, ...rest) {
      if (typeof data !== "string") sends.push(this.bufferedAmount);
      return super.send(data, ...rest);
    }
  }
  async function* source() {
    for (let at = 0; at < total; at += chunk) yield pattern(chunk, at);
  }
  const expected = createHash("sha256");
  for (let at = 0; at < total; at += chunk) expected.update(pattern(chunk, at));

  let paused;
  const server = await fakeServer(
    (msg, conn) => {
      if (msg.method !== "encrypt") return;
      // Stop reading the socket, as a busy server does: TCP fills up, then the client's buffer.
      conn.ws._socket.pause();
      paused = () => conn.ws._socket.resume();
      conn.uploadEnded(msg.params.input.stream).then((frames) => {
        const h = createHash("sha256");
        for (const f of frames) h.update(f.payload);
        const got = h.digest("hex");
        conn.reply(msg.id, { format: "cms_envelope", output: { data: got, length: frames.length } });
      });
    },
    { maxChunk: chunk },
  );
  const client = await connect({ url: server.url, WebSocket: CountingWebSocket, secret: SECRET, sendBufferLimit: limit });
  try {
    const up = await client.upload(source(), { length: total });
    const pending = client.encrypt({ format: "cms_envelope", recipients: [{ der: "MIIB" }], input: { stream: up.stream } });
    await until(() => paused !== undefined, "the server to pause");
    await sleep(400);
    const stalledAt = sends.length;
    await sleep(400);
    assert.equal(sends.length, stalledAt, "frames were sent while the server was not reading");
    assert.ok(stalledAt < total / chunk, `all ${stalledAt} frames went out without waiting`);
    paused();
    const result = await pending;
    assert.equal(result.output.data, expected.digest("hex"));
    assert.equal(result.output.length, total / chunk);
    assert.equal(await up.done, total);
    assert.ok(
      sends.every((b) => b <= limit),
      `a frame was sent with ${Math.max(...sends)} bytes buffered (limit ${limit})`,
    );
  } finally {
    await client.close();
    await server.close();
  }
});

test("downloads: the sink gets every byte in order, awaited, before the call resolves; progress is reported", async () => {
  const plain = pattern(300_000, 7);
  const handle = async (msg, conn) => {
    if (msg.method !== "decrypt") return;
    const frames = await conn.uploadEnded(msg.params.input.stream);
    assert.equal(Buffer.concat(frames.map((f) => f.payload)).toString(), "envelope bytes");
    conn.notify("progress", { request: msg.id, done: 14, total: 14 });
    conn.notify("progress", { request: "someone-else", done: 1 });
    await conn.sendDownload(msg.params.output.stream, plain, 65_536);
    conn.reply(msg.id, { output: { stream: msg.params.output.stream, length: plain.length }, certificate: THUMB });
  };
  await withServer(
    handle,
    async (client, _server, conn) => {
      const got = [];
      let inSink = 0;
      const progress = [];
      const result = await client.decryptStream({
        source: new TextEncoder().encode("envelope bytes"),
        sink: async (chunk) => {
          assert.equal(inSink++, 0, "the sink was called again before the previous call finished");
          await sleep(Math.random() * 5);
          got.push(Uint8Array.from(chunk));
          inSink--;
        },
        onProgress: (p) => progress.push(p),
        id: "open-1",
      });
      assert.deepEqual(result, { output: { stream: 2, length: plain.length }, certificate: THUMB });
      assert.deepEqual(Buffer.concat(got), Buffer.from(plain)); // complete before the call resolved
      assert.deepEqual(progress, [{ request: "open-1", done: 14, total: 14 }]);
      const req = conn.requests("decrypt")[0];
      assert.deepEqual(req.params, { format: "cms_envelope", input: { stream: 1 }, output: { stream: 2 } });
      assert.deepEqual(
        conn.requests("stream.open").map((r) => r.params),
        [{ direction: "upload", length: 14 }, { direction: "download" }],
      );
    },
    { serverOptions: { maxChunk: 65_536 } },
  );
});

test("a download frame out of sequence fails the call with stream_frame_invalid and cancels it", async () => {
  await withServer(
    (msg, conn) => {
      if (msg.method === "encrypt") {
        const out = msg.params.output.stream;
        conn.frame(out, 0, new Uint8Array(10));
        conn.frame(out, 2, new Uint8Array(10), FLAG_FIN);
      } else if (msg.method === "cancel") conn.reply(msg.id, { cancelled: true });
    },
    async (client, _server, conn) => {
      const got = [];
      const e = await client
        .encryptStream({ recipients: [{ der: "MIIB" }], source: new Uint8Array(5), sink: (c) => void got.push(c.length) })
        .catch((x) => x);
      assert.ok(e instanceof KeyBridgeError, String(e));
      assert.equal(e.name, "stream_frame_invalid");
      assert.match(e.detail, /expected 1, got 2/);
      await until(() => conn.requests("cancel").length === 1, "the cancel request");
      assert.equal(conn.requests("cancel")[0].params.id, conn.requests("encrypt")[0].id);
    },
  );
});

test("a failing sink cancels the request and the call rejects with the sink's error", async () => {
  await withServer(
    (msg, conn) => {
      if (msg.method === "decrypt") {
        conn.sendDownload(msg.params.output.stream, new Uint8Array(5000), 1000);
        // No response: the client must not wait for one.
      } else if (msg.method === "cancel") conn.reply(msg.id, { cancelled: true });
    },
    async (client, _server, conn) => {
      let calls = 0;
      const e = await client
        .decryptStream({
          source: new Uint8Array(5),
          sink: () => {
            if (++calls === 2) throw new Error("disk full");
          },
        })
        .catch((x) => x);
      assert.equal(e.message, "disk full");
      assert.equal(calls, 2);
      await until(() => conn.requests("cancel").length === 1, "the cancel request");
    },
    { serverOptions: { maxChunk: 1000 } },
  );
});

test("a failing upload source sends an ABORT frame and the call rejects with the source's error", async () => {
  async function* broken() {
    yield new Uint8Array(1500);
    yield new Uint8Array(1500);
    throw new Error("read error");
  }
  await withServer(
    (msg, conn) => {
      if (msg.method === "sign") {
        conn.uploadEnded(msg.params.input.stream).then(() => conn.error(msg.id, errorObject("request_cancelled")));
      }
    },
    async (client, _server, conn) => {
      const e = await client.signStream({ certificate: { thumbprint: THUMB }, source: broken() }).catch((x) => x);
      assert.equal(e.message, "read error");
      await until(() => conn.uploads.get(1)?.ended, "the ABORT frame");
      const frames = conn.uploads.get(1).frames;
      assert.deepEqual(
        frames.map((f) => [f.sequence, f.flags]),
        // Frame 2 was held back (is it the last?) when the source failed: never sent.
        [[0, 0], [1, 0], [2, FLAG_ABORT]],
      );
      assert.equal(conn.requests("cancel").length, 0);
    },
    { serverOptions: { maxChunk: 1000 } },
  );
});

test("events reach their handlers after subscribe; handlers can be removed", async () => {
  const device = {
    id: "file:demo", label: "文件证书", serial: "demo", manufacturer: "KeyBridge", model: "File key", transport: "file",
    capabilities: { algorithms: ["sm2"], key_generation: true, seals: true, so_pin: false },
  };
  await withServer(
    (msg, conn) => {
      if (msg.method === "subscribe") {
        conn.reply(msg.id, { events: msg.params.events });
        conn.notify("device.added", { device });
        conn.notify("device.removed", { device: "file:demo" });
      }
    },
    async (client) => {
      const added = [];
      const removed = [];
      const off = client.on("device.added", (p) => added.push(p));
      client.on("device.removed", (p) => {
        removed.push(p);
        throw new Error("a handler's bug does not break the client");
      });
      const original = console.error;
      const logged = [];
      console.error = (...args) => logged.push(args);
      try {
        assert.deepEqual(await client.subscribe(["device.added", "device.removed"]), ["device.added", "device.removed"]);
        await until(() => removed.length === 1, "device.removed");
        assert.equal(logged.length, 1);
        assert.match(String(logged[0][0]), /event handler threw/);
        off();
        await client.subscribe(["device.added"]);
        await until(() => removed.length === 2, "device.removed again");
      } finally {
        console.error = original;
      }
      assert.deepEqual(added, [{ device }]); // removed before the second device.added
    },
  );
});

test("connect: a refused handshake's error object is read (Node); nothing listening is connect_failed", async () => {
  const srv = http.createServer();
  let seen;
  srv.on("upgrade", (req, socket) => {
    seen = req.headers;
    const body = JSON.stringify(errorObject("client_unauthenticated", { detail: "wrong secret" }));
    socket.end(`HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
  });
  srv.listen(0, "127.0.0.1");
  await once(srv, "listening");
  const url = `ws://127.0.0.1:${srv.address().port}`;
  try {
    const e = await connect({ url, WebSocket, secret: SECRET }).catch((x) => x);
    assert.ok(e instanceof KeyBridgeError, String(e));
    assert.equal(e.name, "client_unauthenticated");
    assert.equal(e.detail, "wrong secret");
    assert.equal(seen.authorization, `Bearer ${SECRET}`);
  } finally {
    srv.close();
  }
  const gone = await connect({ url, WebSocket }).catch((x) => x);
  assert.ok(gone instanceof ConnectionError, String(gone));
  assert.equal(gone.kind, "connect_failed");
  await assert.rejects(connect({ url, WebSocket, secret: "not-hex" }), TypeError);
  await assert.rejects(connect({ url }), /pass the ws package's WebSocket/);
});

test("connect: hello refused, or a server that never answers", async () => {
  const refusing = await fakeServer(undefined, {
    onHello: (msg, conn) => {
      conn.error(msg.id, errorObject("schema_version_unsupported"));
      return true;
    },
  });
  try {
    const e = await connect({ url: refusing.url, WebSocket }).catch((x) => x);
    assert.equal(e.name, "schema_version_unsupported");
  } finally {
    await refusing.close();
  }
  const closing = await fakeServer(undefined, {
    onHello: (_msg, conn) => {
      conn.ws.close(1011, "going away");
      return true;
    },
  });
  try {
    const e = await connect({ url: closing.url, WebSocket }).catch((x) => x);
    assert.ok(e instanceof ConnectionError, String(e));
    assert.equal(e.kind, "connect_failed");
    assert.equal(e.closeCode, 1011);
  } finally {
    await closing.close();
  }
  const silent = await fakeServer(undefined, { onHello: () => true });
  try {
    const e = await connect({ url: silent.url, WebSocket, connectTimeoutMs: 100 }).catch((x) => x);
    assert.ok(e instanceof ConnectionError, String(e));
    assert.equal(e.kind, "connect_failed");
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 50);
    const c = await connect({ url: silent.url, WebSocket, signal: ac.signal }).catch((x) => x);
    assert.equal(c.name, "request_cancelled");
  } finally {
    await silent.close();
  }
});

test("frames of unknown streams and unmatched responses are ignored", async () => {
  await withServer(
    (msg, conn) => {
      conn.ws.send(encodeFrame({ stream: 99, sequence: 0, flags: FLAG_FIN, payload: new Uint8Array(3) }));
      conn.send({ jsonrpc: "2.0", id: 12345, result: {} });
      conn.send({ jsonrpc: "2.0", id: null, error: errorObject("input_too_large") });
      conn.ws.send("not json");
      conn.reply(msg.id, { devices: [] });
    },
    async (client) => {
      assert.deepEqual(await client.devices(), []);
    },
  );
});

// 512 MiB through two Node processes: minutes on a busy two-core machine; the timeout only
// catches a hang.
nodeTest("memory stays constant: 512 MiB through encryptStream in a separate client process", { timeout: 600_000 }, async () => {
  const total = 512 * BLOCK_SIZE;
  // The fake server echoes each upload frame back as a download frame as it arrives
  // and keeps nothing, so the data is never whole anywhere.
  const routes = new Map();
  const server = await fakeServer(
    (msg) => {
      if (msg.method === "encrypt") routes.set(msg.params.input.stream, { id: msg.id, out: msg.params.output.stream, bytes: 0 });
    },
    {
      keepFrames: false,
      onFrame: (frame, conn) => {
        const r = routes.get(frame.stream);
        r.bytes += frame.payload.length;
        conn.frame(r.out, frame.sequence, frame.payload, frame.flags);
        if (frame.flags & FLAG_FIN) conn.reply(r.id, { format: "cms_envelope", output: { stream: r.out, length: r.bytes } });
      },
    },
  );
  try {
    const child = spawn(process.execPath, [fileURLToPath(new URL("./fixtures/memory-client.mjs", import.meta.url)), server.url, String(total)], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    let out = "";
    child.stdout.on("data", (d) => (out += d));
    const [status] = await once(child, "close");
    assert.equal(status, 0);
    const report = JSON.parse(out);
    if (process.env.SHOW_MEMORY) console.log(report);
    const expected = createHash("sha256");
    for (let i = 0; i * BLOCK_SIZE < total; i++) expected.update(block(i));
    assert.equal(report.received, total);
    assert.equal(report.length, total);
    assert.equal(report.sha256, expected.digest("hex"));
    const grew = report.peak - report.base;
    assert.ok(grew < 128 * 1024 * 1024, `the client grew by ${(grew / 1048576).toFixed(0)} MiB for a ${total / 1048576} MiB stream`);
  } finally {
    await server.close();
  }
});
