// Binary WebSocket frames: the chunks of a stream. Plain values, no I/O.
//
//   offset  size  field
//        0     1  format version, 1
//        1     1  flags: bit 0 FIN (last frame of the stream), bit 1 ABORT; others 0
//        2     2  reserved, 0
//        4     4  stream id, big-endian, from stream.open (never 0)
//        8     4  sequence number, big-endian: 0 for the first frame, +1 each frame
//       12     …  payload (at most max_chunk_bytes; may be empty, e.g. a bare FIN)
//
// Mirrors `bridge/kb-bridge-protocol/src/frame.rs`; the constants come from Rust.

import { FLAG_ABORT, FLAG_FIN, FRAME_HEADER_LEN, FRAME_VERSION } from "./generated.js";

export { FLAG_ABORT, FLAG_FIN, FRAME_HEADER_LEN, FRAME_VERSION } from "./generated.js";

/** One binary frame. */
export interface Frame {
  stream: number;
  sequence: number;
  /** `FLAG_FIN`, `FLAG_ABORT` or 0. */
  flags: number;
  payload: Uint8Array;
}

/** A malformed or out-of-order frame (the protocol's `5011 stream_frame_invalid`). */
export class FrameError extends Error {
  constructor(detail: string) {
    super(detail);
    this.name = "FrameError";
  }
}

const U32_MAX = 0xffff_ffff;

function checkU32(what: string, n: number): void {
  if (!Number.isInteger(n) || n < 0 || n > U32_MAX) throw new RangeError(`${what} must be a 32-bit unsigned integer, not ${n}`);
}

/** Writes a frame header into the first 12 bytes of `into`. */
export function writeHeader(into: Uint8Array, stream: number, sequence: number, flags: number): void {
  checkU32("stream id", stream);
  checkU32("sequence number", sequence);
  if (stream === 0) throw new RangeError("stream id 0 is reserved");
  if ((flags & ~(FLAG_FIN | FLAG_ABORT)) !== 0) throw new RangeError(`unknown frame flags ${flags}`);
  const view = new DataView(into.buffer, into.byteOffset, FRAME_HEADER_LEN);
  view.setUint8(0, FRAME_VERSION);
  view.setUint8(1, flags);
  view.setUint16(2, 0);
  view.setUint32(4, stream);
  view.setUint32(8, sequence);
}

/** Header and payload, ready to send (one copy of the payload). */
export function encodeFrame(frame: Frame): Uint8Array {
  const out = new Uint8Array(FRAME_HEADER_LEN + frame.payload.length);
  writeHeader(out, frame.stream, frame.sequence, frame.flags);
  out.set(frame.payload, FRAME_HEADER_LEN);
  return out;
}

/**
 * Parses a binary message. The payload is a view into `bytes` (no copy). Payloads over
 * `maxChunk` bytes are refused.
 */
export function decodeFrame(bytes: Uint8Array | ArrayBuffer, maxChunk: number = Infinity): Frame {
  const b = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  if (b.length < FRAME_HEADER_LEN) throw new FrameError("frame shorter than its 12-byte header");
  const view = new DataView(b.buffer, b.byteOffset, FRAME_HEADER_LEN);
  if (view.getUint8(0) !== FRAME_VERSION) throw new FrameError("unknown frame version");
  const flags = view.getUint8(1);
  if ((flags & ~(FLAG_FIN | FLAG_ABORT)) !== 0 || view.getUint16(2) !== 0) {
    throw new FrameError("reserved flag or header bits set");
  }
  const stream = view.getUint32(4);
  if (stream === 0) throw new FrameError("stream id 0 is reserved");
  const payload = b.subarray(FRAME_HEADER_LEN);
  if (payload.length > maxChunk) throw new FrameError("payload larger than max_chunk_bytes");
  return { stream, sequence: view.getUint32(8), flags, payload };
}

/** Whether this is the last frame of its stream. */
export function isFin(frame: Frame): boolean {
  return (frame.flags & FLAG_FIN) !== 0;
}

/** Whether the sender abandoned the stream. */
export function isAbort(frame: Frame): boolean {
  return (frame.flags & FLAG_ABORT) !== 0;
}

/**
 * The receiving side's per-stream order check: sequence numbers 0, 1, 2, … and nothing
 * after FIN or ABORT (the same rules as the Rust `Sequencer`).
 */
export class Sequencer {
  #next = 0;
  #ended = false;
  #bytes = 0;

  /** Accepts the next frame of this stream, or throws a `FrameError`. */
  accept(frame: Frame): void {
    if (this.#ended) throw new FrameError("frame after the end of the stream");
    if (frame.sequence !== this.#next) {
      throw new FrameError(`frame out of sequence: expected ${this.#next}, got ${frame.sequence}`);
    }
    if (this.#next === U32_MAX) throw new FrameError("sequence number overflow");
    this.#next += 1;
    this.#bytes += frame.payload.length;
    this.#ended = isFin(frame) || isAbort(frame);
  }

  /** Whether FIN or ABORT was seen. */
  get ended(): boolean {
    return this.#ended;
  }

  /** Payload bytes accepted so far. */
  get bytes(): number {
    return this.#bytes;
  }
}
