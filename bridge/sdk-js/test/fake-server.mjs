// A small in-test stand-in for the KeyBridge bridge, built with the `ws` package.
//
// It exists ONLY to test the client's own logic (id matching, error mapping, connection
// loss, cancellation, frame sequencing and back-pressure, download ordering): it answers
// whatever each test scripts, and signs, verifies and encrypts nothing. The end-to-end
// tests against the real server (bridge/kb-bridge, `keybridge serve`) are separate.
import { WebSocketServer } from "ws";
import { ERROR_CODES, FLAG_FIN, decodeFrame, encodeFrame } from "../dist/index.js";

export const HELLO_RESULT = {
  schema_version: 1,
  product: "KeyBridge",
  product_version: "0.1.0-fake",
  capabilities: ["sign.raw", "sign.cms", "verify", "encrypt.sm2_raw", "encrypt.cms_envelope", "streams", "events"],
  limits: { max_message_bytes: 1048576, max_chunk_bytes: 262144, max_in_flight: 16, request_timeout_ms: 30000 },
};

/** An error object as the server builds it, from the code table generated from Rust. */
export function errorObject(name, extra = {}) {
  const row = ERROR_CODES[name];
  return { code: row.code, message: row.messages.en, data: { name, messages: row.messages, ...extra } };
}

/** One client connection, seen from the fake server. */
class Conn {
  constructor(ws, req) {
    this.ws = ws;
    this.headers = req.headers;
    /** Every message received: `{text: object}` or `{frame: decoded frame}`, in order. */
    this.log = [];
    this.nextStream = 1;
    this.uploads = new Map(); // stream id → { frames: [], ended, waiters }
  }

  send(obj) {
    this.ws.send(JSON.stringify(obj));
  }

  reply(id, result) {
    this.send({ jsonrpc: "2.0", id, result });
  }

  error(id, error) {
    this.send({ jsonrpc: "2.0", id, error });
  }

  notify(method, params) {
    this.send({ jsonrpc: "2.0", method, params });
  }

  /** Sends a download frame. */
  frame(stream, sequence, payload, flags = 0) {
    this.ws.send(encodeFrame({ stream, sequence, flags, payload }));
  }

  /** Sends `data` on a download stream in chunks of `chunk` bytes, the last with FIN. */
  async sendDownload(stream, data, chunk) {
    let seq = 0;
    for (let at = 0; at < data.length || seq === 0; at += chunk) {
      const last = at + chunk >= data.length;
      this.frame(stream, seq++, data.subarray(at, at + chunk), last ? FLAG_FIN : 0);
      if (last) break;
    }
  }

  requests(method) {
    return this.log.filter((m) => m.text?.method === method).map((m) => m.text);
  }

  upload(stream) {
    let u = this.uploads.get(stream);
    if (!u) this.uploads.set(stream, (u = { frames: [], ended: false, waiters: [] }));
    return u;
  }

  /** Resolves with the upload's frames once its FIN (or ABORT) frame has arrived. */
  uploadEnded(stream) {
    const u = this.upload(stream);
    return u.ended ? Promise.resolve(u.frames) : new Promise((resolve) => u.waiters.push(() => resolve(u.frames)));
  }
}

/**
 * Starts a fake server on 127.0.0.1 (a free port). `handle(msg, conn)` is called for
 * every request after `hello`; `hello` is answered with `helloResult` unless `handle`
 * answers it (return true from `onHello`). `stream.open` is answered automatically with
 * the next stream id and `maxChunk` unless `autoStreams` is false. Upload frames are
 * kept per stream (`conn.uploads`) unless `keepFrames` is false; `onFrame(frame, conn)`
 * sees each one as it arrives.
 */
export async function fakeServer(
  handle = () => undefined,
  { maxChunk = 262144, helloResult = HELLO_RESULT, onHello, autoStreams = true, onFrame, keepFrames = true } = {},
) {
  const wss = new WebSocketServer({ host: "127.0.0.1", port: 0 });
  await new Promise((resolve) => wss.once("listening", resolve));
  const conns = [];
  let connected;
  const firstConn = new Promise((resolve) => (connected = resolve));
  wss.on("connection", (ws, req) => {
    const conn = new Conn(ws, req);
    conns.push(conn);
    connected(conn);
    ws.on("message", (data, isBinary) => {
      if (isBinary) {
        const frame = decodeFrame(new Uint8Array(data));
        onFrame?.(frame, conn);
        const u = conn.upload(frame.stream);
        if (keepFrames) {
          conn.log.push({ frame });
          u.frames.push({ ...frame, payload: Uint8Array.from(frame.payload) });
        }
        if (frame.flags !== 0) {
          u.ended = true;
          for (const w of u.waiters.splice(0)) w();
        }
        return;
      }
      const msg = JSON.parse(data.toString());
      conn.log.push({ text: msg });
      if (msg.method === "hello") {
        if (!onHello?.(msg, conn)) conn.reply(msg.id, helloResult);
        return;
      }
      if (autoStreams && msg.method === "stream.open") {
        conn.reply(msg.id, { stream: conn.nextStream++, max_chunk_bytes: maxChunk });
        return;
      }
      handle(msg, conn);
    });
  });
  const { port } = wss.address();
  return {
    url: `ws://127.0.0.1:${port}`,
    port,
    conns,
    firstConn,
    close: () =>
      new Promise((resolve) => {
        for (const c of conns) c.ws.terminate();
        wss.close(resolve);
      }),
  };
}
