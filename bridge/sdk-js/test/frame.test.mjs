// Binary frames: encoding, decoding, sequencing, and the upload chunker.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import {
  FLAG_ABORT,
  FLAG_FIN,
  FRAME_HEADER_LEN,
  FrameError,
  Sequencer,
  decodeFrame,
  encodeFrame,
  fromBase64,
  isAbort,
  isFin,
  rechunk,
  toBase64,
} from "../dist/index.js";

const hex = (bytes) => Buffer.from(bytes).toString("hex").replace(/(..)(?!$)/g, "$1 ");

test("the document's example header: third and last 5-byte chunk of stream 1", () => {
  const frame = encodeFrame({ stream: 1, sequence: 2, flags: FLAG_FIN, payload: new TextEncoder().encode("12345") });
  assert.equal(hex(frame.subarray(0, FRAME_HEADER_LEN)), "01 01 00 00 00 00 00 01 00 00 00 02");
  assert.equal(frame.length, 17);
  // The same bytes are quoted in docs/bridge-protocol.md (checked by the Rust crate too).
  const doc = readFileSync(new URL("../../../docs/bridge-protocol.md", import.meta.url), "utf8");
  assert.ok(doc.includes("`01 01 00 00 00 00 00 01 00 00 00 02`"));
});

test("round trip, big-endian fields", () => {
  const payload = Uint8Array.from([0, 1, 2, 255]);
  const bytes = encodeFrame({ stream: 0x01020304, sequence: 0xfffffffe, flags: FLAG_ABORT, payload });
  assert.equal(hex(bytes.subarray(0, 12)), "01 02 00 00 01 02 03 04 ff ff ff fe");
  const f = decodeFrame(bytes.buffer);
  assert.equal(f.stream, 0x01020304);
  assert.equal(f.sequence, 0xfffffffe);
  assert.ok(isAbort(f) && !isFin(f));
  assert.deepEqual([...f.payload], [0, 1, 2, 255]);
  // A view into a larger buffer decodes the same.
  const big = new Uint8Array(100);
  big.set(bytes, 50);
  assert.deepEqual(decodeFrame(big.subarray(50, 50 + bytes.length)).payload, payload);
});

test("malformed frames are refused", () => {
  const good = encodeFrame({ stream: 7, sequence: 0, flags: 0, payload: new Uint8Array(10) });
  const mutate = (i, v) => {
    const b = good.slice();
    b[i] = v;
    return b;
  };
  assert.throws(() => decodeFrame(good.subarray(0, 11)), FrameError);
  assert.throws(() => decodeFrame(mutate(0, 2)), /version/);
  assert.throws(() => decodeFrame(mutate(1, 4)), /reserved/);
  assert.throws(() => decodeFrame(mutate(2, 1)), /reserved/);
  assert.throws(() => decodeFrame(mutate(3, 1)), /reserved/);
  assert.throws(() => decodeFrame(mutate(7, 0)), /stream id 0/);
  assert.throws(() => decodeFrame(good, 9), /max_chunk_bytes/);
  assert.equal(decodeFrame(good, 10).payload.length, 10);
  assert.throws(() => encodeFrame({ stream: 0, sequence: 0, flags: 0, payload: new Uint8Array() }), RangeError);
  assert.throws(() => encodeFrame({ stream: 1, sequence: 2 ** 32, flags: 0, payload: new Uint8Array() }), RangeError);
  assert.throws(() => encodeFrame({ stream: 1, sequence: 0, flags: 8, payload: new Uint8Array() }), RangeError);
});

test("sequencer: 0, 1, 2, … and nothing after FIN or ABORT", () => {
  const f = (sequence, flags = 0, n = 3) => ({ stream: 1, sequence, flags, payload: new Uint8Array(n) });
  const s = new Sequencer();
  s.accept(f(0));
  s.accept(f(1));
  assert.throws(() => s.accept(f(3)), /out of sequence: expected 2, got 3/);
  s.accept(f(2, FLAG_FIN, 1));
  assert.ok(s.ended);
  assert.equal(s.bytes, 7);
  assert.throws(() => s.accept(f(3)), /after the end/);
  const a = new Sequencer();
  assert.throws(() => a.accept(f(1)), /out of sequence/);
  a.accept(f(0, FLAG_ABORT, 0));
  assert.ok(a.ended);
});

async function collect(source, size) {
  const out = [];
  for await (const c of rechunk(source, size)) out.push(Uint8Array.from(c)); // copy: the buffer is reused
  return out;
}

test("rechunk: exact chunks from any source, last one shorter", async () => {
  const data = Uint8Array.from({ length: 1000 }, (_, i) => i % 251);
  async function* pieces() {
    for (let i = 0; i < data.length; i += 37) yield data.subarray(i, i + 37);
  }
  const sources = {
    bytes: data,
    arrayBuffer: data.slice().buffer,
    blob: new Blob([data]),
    readable: new Blob([data]).stream(),
    asyncIterable: pieces(),
  };
  for (const [name, source] of Object.entries(sources)) {
    const chunks = await collect(source, 300);
    assert.deepEqual(
      chunks.map((c) => c.length),
      [300, 300, 300, 100],
      name,
    );
    assert.deepEqual(Buffer.concat(chunks), Buffer.from(data), name);
  }
  assert.deepEqual(await collect(new Uint8Array(0), 300), []);
  assert.deepEqual(
    (await collect(data, 250)).map((c) => c.length),
    [250, 250, 250, 250],
  );
});

test("rechunk refuses text chunks and non-sources", async () => {
  async function* text() {
    yield "投标文件";
  }
  await assert.rejects(collect(text(), 10), /not strings/);
  await assert.rejects(collect(42, 10), /not an upload source/);
  await assert.rejects(collect(new Uint8Array(1), 0), RangeError);
});

test("base64: standard padded alphabet, UTF-8 strings", () => {
  assert.equal(toBase64("投标文件"), "5oqV5qCH5paH5Lu2"); // the sign example of the document
  assert.equal(new TextDecoder().decode(fromBase64("5oqV5qCH5paH5Lu2")), "投标文件");
  const all = Uint8Array.from({ length: 256 }, (_, i) => i);
  assert.equal(toBase64(all), Buffer.from(all).toString("base64"));
  const big = new Uint8Array(200_000).map((_, i) => (i * 7) & 255);
  assert.equal(toBase64(big), Buffer.from(big).toString("base64"));
  assert.throws(() => fromBase64("5oqV5qCH5paH5Lu"), /invalid base64/);
  assert.throws(() => fromBase64("5oqV_qCH"), /invalid base64/);
});
