// Bytes helpers: base64 (the protocol's encoding for inline binary data) and the upload
// sources the SDK reads in constant memory. Browser-safe: no Node APIs.

/** Bytes, or text to be encoded as UTF-8. */
export type BytesLike = Uint8Array | ArrayBuffer | ArrayBufferView | string;

/** Bytes of any `BytesLike` (strings as UTF-8); views are not copied. */
export function toBytes(data: BytesLike): Uint8Array {
  if (typeof data === "string") return new TextEncoder().encode(data);
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  throw new TypeError(`expected bytes or a string, got ${describe(data)}`);
}

/** Standard padded base64 (RFC 4648 §4) of bytes, or of a string's UTF-8. */
export function toBase64(data: BytesLike): string {
  const bytes = toBytes(data);
  let binary = "";
  // String.fromCharCode takes its arguments on the stack: go in slices.
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

/** The bytes of standard padded base64; throws on anything else. */
export function fromBase64(b64: string): Uint8Array {
  if (b64.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(b64)) throw new TypeError("invalid base64 (standard alphabet, padded)");
  const binary = atob(b64);
  const out = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) out[i] = binary.charCodeAt(i);
  return out;
}

/** UTF-8 text of base64 data (e.g. a decrypted message). */
export function base64ToText(b64: string): string {
  return new TextDecoder("utf-8", { fatal: true }).decode(fromBase64(b64));
}

/**
 * What an upload reads from, in constant memory: bytes in memory, a `Blob`/`File`
 * (browser file input; Node's `fs.openAsBlob`), a web `ReadableStream` of bytes
 * (`fetch` bodies, `Blob.stream()`), or any async iterable of byte chunks (Node's
 * `fs.createReadStream`, an async generator).
 */
export type UploadSource =
  | Uint8Array
  | ArrayBuffer
  | ArrayBufferView
  | Blob
  | ReadableStream<Uint8Array>
  | AsyncIterable<Uint8Array>;

function describe(v: unknown): string {
  if (v === null) return "null";
  if (typeof v !== "object") return typeof v;
  return v.constructor?.name ?? "object";
}

function chunkBytes(value: unknown): Uint8Array {
  if (typeof value === "string") {
    throw new TypeError("upload sources must yield bytes, not strings (open files without an encoding)");
  }
  if (value instanceof Uint8Array || value instanceof ArrayBuffer || ArrayBuffer.isView(value)) return toBytes(value);
  throw new TypeError(`upload sources must yield Uint8Array chunks, got ${describe(value)}`);
}

function isBlob(v: unknown): v is Blob {
  return typeof Blob !== "undefined" && v instanceof Blob;
}

function isReadableStream(v: unknown): v is ReadableStream<Uint8Array> {
  return typeof v === "object" && v !== null && typeof (v as ReadableStream).getReader === "function";
}

function isAsyncIterable(v: unknown): v is AsyncIterable<unknown> {
  return typeof v === "object" && v !== null && typeof (v as AsyncIterable<unknown>)[Symbol.asyncIterator] === "function";
}

/** The source's length in bytes when it is known without reading it. */
export function sourceLength(source: UploadSource): number | undefined {
  if (isBlob(source)) return source.size;
  if (source instanceof ArrayBuffer || ArrayBuffer.isView(source)) return source.byteLength;
  return undefined;
}

/** Whether `v` can be passed as an `UploadSource`. */
export function isUploadSource(v: unknown): v is UploadSource {
  return v instanceof ArrayBuffer || ArrayBuffer.isView(v) || isBlob(v) || isReadableStream(v) || isAsyncIterable(v);
}

/** The source's bytes as they come, in pieces of any size; `hint` is the piece size for sources read by offset. */
async function* pieces(source: UploadSource, hint: number): AsyncGenerator<Uint8Array> {
  if (source instanceof ArrayBuffer || ArrayBuffer.isView(source)) {
    yield toBytes(source);
  } else if (isBlob(source)) {
    for (let offset = 0; offset < source.size; offset += hint) {
      yield new Uint8Array(await source.slice(offset, offset + hint).arrayBuffer());
    }
  } else if (isReadableStream(source)) {
    const reader = source.getReader();
    let finished = false;
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        yield chunkBytes(value);
      }
      finished = true;
    } finally {
      // Stopped early (the request failed or was cancelled): tell the stream's producer.
      if (!finished) await reader.cancel().catch(() => undefined);
      reader.releaseLock();
    }
  } else if (isAsyncIterable(source)) {
    for await (const value of source) yield chunkBytes(value);
  } else {
    throw new TypeError(`not an upload source: ${describe(source)}`);
  }
}

/**
 * The source in chunks of exactly `size` bytes, the last one shorter (nothing at all for
 * an empty source). Memory: one chunk. A yielded chunk is only valid until the next one
 * is requested (the buffer is reused), so the consumer copies it first.
 */
export async function* rechunk(source: UploadSource, size: number): AsyncGenerator<Uint8Array> {
  if (!Number.isInteger(size) || size <= 0) throw new RangeError(`chunk size must be a positive integer, not ${size}`);
  let buf: Uint8Array | undefined;
  let fill = 0;
  for await (const piece of pieces(source, size)) {
    let p = piece;
    while (p.length > 0) {
      if (fill === 0 && p.length >= size) {
        // Whole chunks straight from the piece, no copy.
        yield p.subarray(0, size);
        p = p.subarray(size);
        continue;
      }
      buf ??= new Uint8Array(size);
      const n = Math.min(size - fill, p.length);
      buf.set(p.subarray(0, n), fill);
      fill += n;
      p = p.subarray(n);
      if (fill === size) {
        yield buf;
        fill = 0;
      }
    }
  }
  if (fill > 0 && buf) yield buf.subarray(0, fill);
}
