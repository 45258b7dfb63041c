// The KeyBridge client: one WebSocket connection, `hello` first, many requests in
// flight matched by id, server events, and streams of binary frames for bulk data.
//
// Streams and the calls that use them are linked by the stream ids in the params:
// `call()` starts sending an upload's frames right after the request that reads it
// (`input`/`content: {stream}`), and resolves a request that writes a download
// (`output: {stream}`) only after the sink has taken the last byte. When such a call
// fails, its upload stops and its download is failed; when the upload's source or the
// download's sink fails, the request is aborted and the call rejects with that failure.

import { explainConnectFailure } from "./lna.js";
import { ExtensionSocket, useExtension, type Transport } from "./extension.js";
import {
  DEFAULT_MAX_MESSAGE_BYTES,
  DEFAULT_PORT,
  FLAG_ABORT,
  FLAG_FIN,
  MAX_ID_LEN,
  SCHEMA_VERSION,
  type EventKind,
  type EventName,
  type MethodName,
} from "./generated.js";
import { ConnectionError, KeyBridgeError } from "./errors.js";
import { FrameError, Sequencer, decodeFrame, encodeFrame, isAbort, isFin } from "./frame.js";
import { rechunk, sourceLength, type UploadSource } from "./bytes.js";
import type {
  CertificateDetails,
  CertificateRef,
  CertificateSummary,
  CertificatesListParams,
  DecryptParams,
  DecryptResult,
  DeviceInfo,
  EncryptParams,
  EncryptResult,
  ErrorObject,
  EventMap,
  HelloResult,
  Id,
  Limits,
  ParamsOf,
  ProgressEvent,
  ResultOf,
  SignParams,
  SignResult,
  StreamCloseResult,
  Thumbprint,
  VerifyParams,
  VerifyResult,
} from "./protocol.js";

/** This SDK's name and version, sent in `hello` unless the caller names itself. */
export const SDK_NAME = "keybridge-js";
export const SDK_VERSION = "0.1.0";

/** The WebSocket API this client uses: the browser's `WebSocket` and the `ws` package's both fit. */
export interface WebSocketLike {
  readonly readyState: number;
  /** Bytes queued by `send` and not yet handed to the network: the upload back-pressure signal. */
  readonly bufferedAmount: number;
  binaryType: string;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  send(data: string | Uint8Array): void;
  close(code?: number, reason?: string): void;
}

/**
 * A WebSocket class: `globalThis.WebSocket` in browsers, the `ws` package's `WebSocket`
 * in Node (whose third constructor argument carries the `Authorization` header).
 */
export type WebSocketConstructor = new (
  url: string,
  protocols?: string | string[],
  options?: { headers?: Record<string, string> },
) => object;

export interface ConnectOptions {
  /**
   * How to reach KeyBridge: `auto` (default) goes through the KeyBridge browser extension
   * when its content script runs in this page, else the WebSocket; `extension` or
   * `websocket` insists on one. Options only a WebSocket has (`url`, `secret`,
   * `WebSocket`) make `auto` pick the WebSocket.
   */
  transport?: Transport;
  /** Default `ws://127.0.0.1:17210` (or `port`). */
  url?: string;
  /** Port on 127.0.0.1 when `url` is not given (KeyBridge's `bridge_port` setting). */
  port?: number;
  /** The WebSocket class. Browsers: omit (`globalThis.WebSocket`). Node: pass the `ws` package's `WebSocket`. */
  WebSocket?: WebSocketConstructor;
  /**
   * Native tools (Node) only: the per-user bridge secret, 64 hex digits, sent as
   * `Authorization: Bearer …` (read it with `readSecret()` from `@keybridge/client/node`).
   * Browsers cannot send it and need not: they are identified by their Origin.
   */
  secret?: string;
  /** The client's name in consent prompts and the audit log; default `keybridge-js`. */
  sdk?: string;
  /** The client's version; default this SDK's version when `sdk` is not given. */
  sdkVersion?: string;
  /** Time for the WebSocket handshake and `hello`, default 10 s. */
  connectTimeoutMs?: number;
  signal?: AbortSignal;
  /**
   * Upload back-pressure: no frame is sent while the socket's `bufferedAmount` is above
   * this many bytes. Default: 4 chunks of the stream's `max_chunk_bytes`.
   */
  sendBufferLimit?: number;
  /**
   * Download back-pressure: bytes received and not yet taken by the sink before the
   * socket stops reading (`ws` only; browsers cannot pause a WebSocket). Default: 4 chunks.
   */
  receiveBufferLimit?: number;
}

export interface CallOptions {
  /** Aborting sends `cancel` for the request and rejects it with `request_cancelled`. */
  signal?: AbortSignal;
  /** Client-side time limit: on expiry sends `cancel` and rejects with `request_timeout`. No limit by default (a PIN dialog may take long); the server has its own. */
  timeoutMs?: number;
  /** The request id (default: the next integer), e.g. to `cancel(id)` it from elsewhere. */
  id?: Id;
  /** `progress` events of this request (streaming requests only). */
  onProgress?: (progress: ProgressEvent) => void;
}

/** `call(method, params?, options?)`: params may be left out when every param is optional. */
export type CallArgs<M extends MethodName> = {} extends ParamsOf<M>
  ? [params?: ParamsOf<M>, options?: CallOptions]
  : [params: ParamsOf<M>, options?: CallOptions];

/** Receives a download's bytes in order; the next chunk waits until the returned promise settles. */
export type DownloadSink = (chunk: Uint8Array) => void | Promise<void>;

/** Options shared by the streaming helpers. */
export interface StreamCallOptions extends CallOptions {
  /** The source's length in bytes when it is not known from the source (e.g. a file's size): used for progress. */
  length?: number;
}

/** What a streaming helper takes besides the method's own params: the source (and sink). */
type Streamed<P, Io extends keyof P, Extra> = StreamCallOptions &
  Omit<P, Io | "format"> & { source: UploadSource; format?: P extends { format: infer F } ? F : never } & Extra;

/** `signStream`: `sign`'s params with `source` instead of `input`; `format` defaults to `cms_detached`. */
export type SignStreamOptions = Streamed<SignParams, "input", {}>;
/** `verifyStream`: `verify`'s params with `source` (the signed content) instead of `content`; `format` defaults to `cms_detached`. */
export type VerifyStreamOptions = Streamed<VerifyParams, "content", {}>;
/** `encryptStream`: `encrypt`'s params with `source` and `sink` instead of `input` and `output`; `format` defaults to `cms_envelope`. */
export type EncryptStreamOptions = Streamed<EncryptParams, "input" | "output", { sink: DownloadSink }>;
/** `decryptStream`: `decrypt`'s params with `source` and `sink` instead of `input` and `output`; `format` defaults to `cms_envelope`. */
export type DecryptStreamOptions = Streamed<DecryptParams, "input" | "output", { sink: DownloadSink }>;

const SECRET_RE = /^[0-9a-fA-F]{64}$/;
const OPEN = 1;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** The error a call rejects with when its signal aborts. */
function cancelledError(signal: AbortSignal): KeyBridgeError {
  return KeyBridgeError.of("request_cancelled", "cancelled by the caller", { cause: signal.reason });
}

/** A promise with its settle functions; its rejection is marked handled (see `quiet`). */
function deferred<T>(): { promise: Promise<T>; resolve(value: T): void; reject(error: unknown): void } {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = quiet(new Promise<T>((res, rej) => ((resolve = res), (reject = rej))));
  return { promise, resolve, reject };
}

/** Marks a promise's rejection as handled (it is also returned to callers, who may await it). */
function quiet<T>(p: Promise<T>): Promise<T> {
  p.catch(() => undefined);
  return p;
}

/** A stream id named in `params[key]` (`{stream: n}`), if any. */
function streamIn(params: unknown, key: string): number | undefined {
  const v = (params as Record<string, unknown> | undefined)?.[key];
  const s = typeof v === "object" && v !== null ? (v as { stream?: unknown }).stream : undefined;
  return typeof s === "number" ? s : undefined;
}

interface Pending {
  resolve(value: unknown): void;
  reject(error: unknown): void;
  /** Uploads and download linked to this request. */
  uploads: UploadStream[];
  download: DownloadStream | undefined;
  onProgress: ((p: ProgressEvent) => void) | undefined;
  cleanup: (() => void)[];
}

/** What a stream needs from its connection. @internal */
export interface StreamHost {
  /** Resolves once the socket's send buffer is at most `limit` bytes; rejects when the connection is gone. */
  waitForBuffer(limit: number): Promise<void>;
  /** Sends a binary frame now. */
  write(frame: Uint8Array): void;
  /** Frees the stream on the server and forgets it here. */
  closeStream(stream: number, options?: CallOptions): Promise<StreamCloseResult>;
}

/** A stream of bytes to the server, opened by `upload()`. Frames are sent once a request reads it. */
export class UploadStream {
  /** The stream id to name in a method's `input` (or `verify`'s `content`). */
  readonly stream: number;
  /** Payload bytes per frame (the server's `max_chunk_bytes`). */
  readonly maxChunkBytes: number;
  /** The length declared in `stream.open`, when known. */
  readonly length: number | undefined;
  /** Settles when the last frame (FIN) is handed to the socket (payload bytes sent), or the upload fails. */
  readonly done: Promise<number>;
  #host: StreamHost;
  #source: UploadSource;
  #started = false;
  #stopped: unknown = undefined;
  #finished = false;
  /** Frames handed to the socket: the next frame's sequence number. */
  #sent = 0;
  #settle = deferred<number>();
  /** @internal Called when the upload fails on its own (the source threw, or `abort()`): fails the linked request. */
  onFailure: ((error: unknown) => void) | undefined;

  /** @internal */
  constructor(host: StreamHost, stream: number, maxChunkBytes: number, length: number | undefined, source: UploadSource) {
    this.#host = host;
    this.stream = stream;
    this.maxChunkBytes = maxChunkBytes;
    this.length = length;
    this.#source = source;
    this.done = this.#settle.promise;
  }

  /** Whether the frames have started to flow. */
  get started(): boolean {
    return this.#started;
  }

  /** @internal Starts sending frames (right after the request that reads the stream was sent). */
  start(limit: number): void {
    if (this.#started || this.#stopped !== undefined) return;
    this.#started = true;
    this.#pump(limit).then(
      (bytes) => {
        this.#finished = true;
        this.#settle.resolve(bytes);
      },
      (error) => {
        if (this.#stopped === undefined) this.#giveUp(error);
        else this.#settle.reject(this.#stopped);
      },
    );
  }

  /** @internal Stops sending without telling the server (the request reading the stream has ended). */
  stop(reason: unknown): void {
    if (this.#finished || this.#stopped !== undefined) return;
    this.#stopped = reason;
    if (!this.#started) this.#settle.reject(reason);
  }

  /**
   * Gives up: no more frames. Once frames flow, an ABORT frame tells the server, and the
   * request reading the stream fails (with `reason` here, `request_cancelled` on the server).
   */
  abort(reason: unknown = KeyBridgeError.of("request_cancelled", "upload aborted")): void {
    if (this.#finished || this.#stopped !== undefined) return;
    if (!this.#started) this.stop(reason);
    else this.#giveUp(reason);
  }

  #giveUp(reason: unknown): void {
    this.#stopped = reason;
    this.#settle.reject(reason);
    try {
      this.#host.write(encodeFrame({ stream: this.stream, sequence: this.#sent, flags: FLAG_ABORT, payload: new Uint8Array(0) }));
    } catch {
      // the connection is gone: nothing to tell
    }
    this.onFailure?.(reason);
  }

  /** Frees the stream on the server (`stream.close`), e.g. when no request will read it. */
  close(options?: CallOptions): Promise<StreamCloseResult> {
    this.stop(KeyBridgeError.of("unknown_stream", "upload closed"));
    return this.#host.closeStream(this.stream, options);
  }

  async #pump(limit: number): Promise<number> {
    let bytes = 0;
    let sequence = 0;
    let held: Uint8Array | undefined;
    const send = async (frame: Uint8Array) => {
      await this.#host.waitForBuffer(limit);
      if (this.#stopped !== undefined) throw this.#stopped;
      this.#host.write(frame);
      this.#sent += 1;
    };
    // One frame is held back until the next chunk (or the end) shows whether it is the last.
    for await (const chunk of rechunk(this.#source, this.maxChunkBytes)) {
      if (this.#stopped !== undefined) throw this.#stopped;
      const frame = encodeFrame({ stream: this.stream, sequence, flags: 0, payload: chunk });
      sequence += 1;
      bytes += chunk.length;
      if (held) await send(held);
      held = frame;
    }
    if (held) held[1] = (held[1] ?? 0) | FLAG_FIN;
    else held = encodeFrame({ stream: this.stream, sequence, flags: FLAG_FIN, payload: new Uint8Array(0) });
    await send(held);
    return bytes;
  }
}

/** A stream of bytes from the server, opened by `download()`: frames go to the sink in order. */
export class DownloadStream {
  /** The stream id to name in a method's `output`. */
  readonly stream: number;
  /** Largest payload per frame (the server's `max_chunk_bytes`). */
  readonly maxChunkBytes: number;
  /** Settles when the sink has taken the last byte (payload bytes received), or the download fails. */
  readonly done: Promise<number>;
  #host: StreamHost;
  #sink: DownloadSink;
  #sequencer = new Sequencer();
  #queue: Uint8Array[] = [];
  #queued = 0;
  #delivered = 0;
  #draining: Promise<void> | undefined;
  #ended = false;
  #settled = false;
  #settle = deferred<number>();
  #limit: number;
  #flow: (paused: boolean) => void;
  /** @internal Called when a frame or the sink fails: fails (and cancels) the linked request. */
  onFailure: ((error: unknown) => void) | undefined;

  /** @internal */
  constructor(
    host: StreamHost,
    stream: number,
    maxChunkBytes: number,
    sink: DownloadSink,
    limit: number,
    flow: (paused: boolean) => void,
  ) {
    this.#host = host;
    this.stream = stream;
    this.maxChunkBytes = maxChunkBytes;
    this.#sink = sink;
    this.#limit = limit;
    this.#flow = flow;
    this.done = this.#settle.promise;
  }

  /** Payload bytes the sink has taken so far. */
  get bytes(): number {
    return this.#delivered;
  }

  /** Frees the stream on the server (`stream.close`), e.g. when no request will write it. */
  close(options?: CallOptions): Promise<StreamCloseResult> {
    this.fail(KeyBridgeError.of("unknown_stream", "download closed"));
    return this.#host.closeStream(this.stream, options);
  }

  /** @internal A binary frame of this stream. */
  push(bytes: Uint8Array): void {
    if (this.#settled) return;
    try {
      const frame = decodeFrame(bytes, this.maxChunkBytes);
      this.#sequencer.accept(frame);
      if (isAbort(frame)) throw KeyBridgeError.of("request_cancelled", "the server aborted the download");
      if (frame.payload.length > 0) {
        this.#queue.push(frame.payload);
        this.#queued += frame.payload.length;
        if (this.#queued > this.#limit) this.#flow(true);
      }
      if (isFin(frame)) this.#ended = true;
      this.#kick();
    } catch (e) {
      this.#fail(e instanceof FrameError ? KeyBridgeError.of("stream_frame_invalid", e.message) : e, true);
    }
  }

  /** Starts the sink loop when there is something to deliver, or settles when all is delivered. */
  #kick(): void {
    if (this.#draining || this.#settled) return;
    if (this.#queue.length > 0) {
      this.#draining = this.#drain().finally(() => {
        this.#draining = undefined;
        this.#kick();
      });
    } else if (this.#ended) {
      this.#settled = true;
      this.#settle.resolve(this.#delivered);
    }
  }

  async #drain(): Promise<void> {
    try {
      while (this.#queue.length > 0 && !this.#settled) {
        const chunk = this.#queue.shift() as Uint8Array;
        await this.#sink(chunk);
        this.#queued -= chunk.length;
        this.#delivered += chunk.length;
        if (this.#queued <= this.#limit / 2) this.#flow(false);
      }
    } catch (e) {
      this.#fail(e, true);
    }
  }

  #fail(error: unknown, notify: boolean): void {
    if (this.#settled) return;
    this.#settled = true;
    this.#queue = [];
    this.#queued = 0;
    this.#flow(false);
    this.#settle.reject(error);
    if (notify) this.onFailure?.(error);
  }

  /** @internal The request writing this stream failed, or the connection is gone. */
  fail(error: unknown): void {
    this.#fail(error, false);
  }

  /**
   * @internal The request writing this stream succeeded, so every frame has arrived
   * (they come before the response): waits for the sink, then checks the byte count.
   */
  async complete(length: number | undefined): Promise<number> {
    this.#ended = true;
    this.#kick();
    const bytes = await this.done;
    if (length !== undefined && bytes !== length) {
      throw KeyBridgeError.of("stream_frame_invalid", `the download carried ${bytes} bytes, the result says ${length}`);
    }
    return bytes;
  }
}

/** A connection to KeyBridge. Create it with `connect()`. */
export class KeyBridgeClient {
  /** What `hello` answered: schema version, product, capabilities, limits. */
  readonly server: HelloResult;
  #ws: WebSocketLike;
  #options: ConnectOptions;
  #nextId = 1;
  #pending = new Map<Id, Pending>();
  #handlers = new Map<string, Set<(params: never) => void>>();
  #closeHandlers = new Set<(error: ConnectionError) => void>();
  #uploads = new Map<number, UploadStream>();
  #downloads = new Map<number, DownloadStream>();
  #pausedBy = new Set<number>();
  #closed: ConnectionError | undefined;
  #closedPromise: Promise<void>;
  #limits: Limits = {
    max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
    max_chunk_bytes: 0,
    max_in_flight: 0,
    request_timeout_ms: 0,
  };

  private constructor(ws: WebSocketLike, options: ConnectOptions) {
    this.#ws = ws;
    this.#options = options;
    this.server = undefined as unknown as HelloResult;
    let markClosed!: () => void;
    this.#closedPromise = new Promise<void>((resolve) => (markClosed = resolve));
    ws.onmessage = (ev) => this.#onMessage(ev.data);
    ws.onclose = (ev) => {
      // Through the extension, a host that crashed says so with a stable code: kept as the cause.
      const cause = (ws as { error?: unknown }).error;
      this.#shutdown(new ConnectionError("connection_closed", { closeCode: ev.code, closeReason: ev.reason, cause }));
      markClosed();
    };
  }

  /**
   * Connects and says `hello`. Rejects with a `ConnectionError` (`connect_failed`) when
   * KeyBridge cannot be reached, or a `KeyBridgeError` when it refuses: a handshake
   * refusal (`client_unauthenticated`, `origin_rejected`, … — readable in Node only;
   * a browser sees only `connect_failed`) or a `hello` failure (`schema_version_unsupported`).
   */
  static async connect(options: ConnectOptions = {}): Promise<KeyBridgeClient> {
    const Ctor = useExtension(options)
      ? (ExtensionSocket as unknown as WebSocketConstructor)
      : (options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket);
    if (!Ctor) {
      throw new TypeError("no WebSocket class: in Node, pass the ws package's WebSocket as connect({ WebSocket })");
    }
    if (options.secret !== undefined && !SECRET_RE.test(options.secret)) {
      throw new TypeError("the bridge secret is 64 hex digits (read it with readSecret())");
    }
    if (options.signal?.aborted) throw cancelledError(options.signal);
    const url = options.url ?? `ws://127.0.0.1:${options.port ?? DEFAULT_PORT}`;
    const ws = (
      options.secret !== undefined ? new Ctor(url, [], { headers: { Authorization: `Bearer ${options.secret}` } }) : new Ctor(url)
    ) as WebSocketLike;
    ws.binaryType = "arraybuffer";
    const client = new KeyBridgeClient(ws, options);

    // One signal for the handshake and hello: the caller's, or the connect timeout.
    const timeoutMs = options.connectTimeoutMs ?? 10_000;
    const gate = new AbortController();
    const timedOut = new ConnectionError("connect_failed", { closeReason: `no connection within ${timeoutMs} ms` });
    const timer = setTimeout(() => gate.abort(timedOut), timeoutMs);
    const forward = () => gate.abort(cancelledError(options.signal as AbortSignal));
    options.signal?.addEventListener("abort", forward, { once: true });
    try {
      await client.#open(gate.signal);
      const sdk = options.sdk ?? SDK_NAME;
      const sdkVersion = options.sdkVersion ?? (options.sdk === undefined ? SDK_VERSION : undefined);
      const hello = await client.call(
        "hello",
        sdkVersion === undefined
          ? { schema_version: SCHEMA_VERSION, sdk }
          : { schema_version: SCHEMA_VERSION, sdk, sdk_version: sdkVersion },
        { signal: gate.signal },
      );
      if (hello.schema_version > SCHEMA_VERSION) {
        throw KeyBridgeError.of(
          "schema_version_unsupported",
          `the server chose schema version ${hello.schema_version}; this SDK speaks ${SCHEMA_VERSION}`,
        );
      }
      (client as { server: HelloResult }).server = hello;
      client.#limits = hello.limits;
      return client;
    } catch (e) {
      client.#shutdown(new ConnectionError("connection_closed", { closeReason: "connect failed" }));
      ws.close();
      // A public page that the browser keeps from loopback (Local Network Access) fails
      // like a KeyBridge that is not running, or hangs while the browser asks: say which.
      if (gate.signal.aborted) throw await explainConnectFailure(gate.signal.reason);
      // Closed between the handshake and hello's answer: still a failure to connect.
      if (e instanceof ConnectionError && e.kind === "connection_closed") {
        throw new ConnectionError("connect_failed", { closeCode: e.closeCode, closeReason: e.closeReason, cause: e });
      }
      throw await explainConnectFailure(e);
    } finally {
      clearTimeout(timer);
      options.signal?.removeEventListener("abort", forward);
    }
  }

  /** Waits for the WebSocket to open; rejects with the signal's reason when it aborts. */
  #open(signal: AbortSignal): Promise<void> {
    const ws = this.#ws;
    return new Promise<void>((resolve, reject) => {
      let settled = false;
      const settle = (error?: unknown) => {
        if (settled) return;
        settled = true;
        signal.removeEventListener("abort", onAbort);
        if (error === undefined) resolve();
        else reject(error);
      };
      const onAbort = () => settle(signal.reason);
      signal.addEventListener("abort", onAbort, { once: true });
      ws.onopen = () => settle();
      ws.onerror = (ev) => {
        // The extension's failures carry a stable code (host not installed, KeyBridge not running, origin refused).
        const error = (ev as { error?: unknown })?.error;
        settle(error instanceof KeyBridgeError ? error : new ConnectionError("connect_failed", { cause: error ?? ev }));
      };
      const onclose = ws.onclose;
      ws.onclose = (ev) => {
        settle(new ConnectionError("connect_failed", { closeCode: ev.code, closeReason: ev.reason }));
        onclose?.(ev);
      };
      // The `ws` package hands a refused handshake's HTTP response to this event: its
      // body is the bridge's error object (client_unauthenticated, origin_rejected, …).
      const emitter = ws as unknown as { on?: (event: string, fn: (...args: never[]) => void) => void; terminate?: () => void };
      emitter.on?.("unexpected-response", (_req: unknown, res: HandshakeResponse) => {
        void readHandshakeRefusal(res).then((error) => {
          settle(error);
          emitter.terminate?.();
        });
      });
    }).finally(() => {
      // An error event is always followed by a close event, which is what counts from
      // now on; the handler stays so that `ws` never sees an unhandled 'error'.
      ws.onerror = () => undefined;
    });
  }

  // ---- requests ----

  /** Calls a method; resolves with its result or rejects with a `KeyBridgeError` / `ConnectionError`. */
  call<M extends MethodName>(method: M, ...args: CallArgs<M>): Promise<ResultOf<M>> {
    const [params, options] = args as [ParamsOf<M> | undefined, CallOptions | undefined];
    return this.#request(method, params, options ?? {}) as Promise<ResultOf<M>>;
  }

  #request(method: string, params: unknown, options: CallOptions): Promise<unknown> {
    if (this.#closed) return Promise.reject(this.#closed);
    if (options.signal?.aborted) return Promise.reject(cancelledError(options.signal));
    const id = options.id ?? this.#nextId++;
    if (typeof id === "string" ? id.length > MAX_ID_LEN : !Number.isSafeInteger(id)) {
      return Promise.reject(new TypeError(`a request id is a string of at most ${MAX_ID_LEN} characters or an integer`));
    }
    if (this.#pending.has(id)) return Promise.reject(new TypeError(`request id ${JSON.stringify(id)} is already in flight`));
    const text = JSON.stringify(params === undefined ? { jsonrpc: "2.0", id, method } : { jsonrpc: "2.0", id, method, params });
    const max = this.#limits.max_message_bytes;
    // UTF-8 needs at most 3 bytes per UTF-16 unit: only long texts are measured.
    if (text.length * 3 > max && new TextEncoder().encode(text).length > max) {
      return Promise.reject(
        KeyBridgeError.of("input_too_large", `request of more than ${max} bytes; send large data through upload streams`),
      );
    }
    const uploads = [streamIn(params, "input"), streamIn(params, "content")]
      .map((s) => (s === undefined ? undefined : this.#uploads.get(s)))
      .filter((u): u is UploadStream => u !== undefined && !u.started);
    const outputId = streamIn(params, "output");
    const download = outputId === undefined ? undefined : this.#downloads.get(outputId);

    return new Promise<unknown>((resolve, reject) => {
      const entry: Pending = { resolve, reject, uploads, download, onProgress: options.onProgress, cleanup: [] };
      this.#pending.set(id, entry);
      const failLocally = (error: unknown) => {
        if (this.#fail(id, error)) this.#sendCancel(id);
      };
      if (options.signal) {
        const signal = options.signal;
        const onAbort = () => failLocally(cancelledError(signal));
        signal.addEventListener("abort", onAbort, { once: true });
        entry.cleanup.push(() => signal.removeEventListener("abort", onAbort));
      }
      if (options.timeoutMs !== undefined) {
        const ms = options.timeoutMs;
        const timer = setTimeout(() => failLocally(KeyBridgeError.of("request_timeout", `no answer within ${ms} ms`)), ms);
        entry.cleanup.push(() => clearTimeout(timer));
      }
      // A failed source has already told the server (ABORT frame); a failed sink has not.
      for (const u of uploads) u.onFailure = (error) => this.#fail(id, error);
      if (download) download.onFailure = failLocally;
      this.#ws.send(text);
      for (const u of uploads) u.start(this.#options.sendBufferLimit ?? 4 * u.maxChunkBytes);
    });
  }

  /** The streams' view of this connection. */
  #host: StreamHost = {
    waitForBuffer: async (limit) => {
      let wait = 1;
      while (this.#ws.bufferedAmount > limit && !this.#closed) {
        await sleep(wait);
        wait = Math.min(wait * 2, 16);
      }
      if (this.#closed) throw this.#closed;
    },
    write: (frame) => {
      if (this.#closed) throw this.#closed;
      this.#ws.send(frame);
    },
    closeStream: (stream, options) => {
      this.#uploads.delete(stream);
      this.#downloads.delete(stream);
      this.#flow(stream, false);
      return this.call("stream.close", { stream }, options);
    },
  };

  #sendCancel(id: Id): void {
    if (this.#closed) return;
    this.call("cancel", { id }).catch(() => undefined);
  }

  /** Settles a pending request with an error; false when it was no longer pending. */
  #fail(id: Id, error: unknown): boolean {
    const entry = this.#pending.get(id);
    if (!entry) return false;
    this.#pending.delete(id);
    for (const c of entry.cleanup) c();
    for (const u of entry.uploads) u.stop(error);
    entry.download?.fail(error);
    this.#forgetStreams(entry);
    entry.reject(error);
    return true;
  }

  #succeed(id: Id, result: unknown): void {
    const entry = this.#pending.get(id);
    if (!entry) return;
    this.#pending.delete(id);
    for (const c of entry.cleanup) c();
    const download = entry.download;
    if (!download) {
      this.#forgetStreams(entry);
      entry.resolve(result);
      return;
    }
    // The output's frames have all arrived; the result is the caller's once the sink has them.
    const length = (result as { output?: { length?: unknown } } | null)?.output?.length;
    download.complete(typeof length === "number" ? length : undefined).then(
      () => {
        this.#forgetStreams(entry);
        entry.resolve(result);
      },
      (error) => {
        this.#forgetStreams(entry);
        entry.reject(error);
      },
    );
  }

  #forgetStreams(entry: Pending): void {
    for (const u of entry.uploads) this.#uploads.delete(u.stream);
    if (entry.download) {
      this.#downloads.delete(entry.download.stream);
      this.#flow(entry.download.stream, false);
    }
  }

  // ---- incoming ----

  #onMessage(data: unknown): void {
    if (typeof data === "string") {
      this.#onText(data);
    } else if (data instanceof ArrayBuffer) {
      this.#onBinary(new Uint8Array(data));
    } else if (ArrayBuffer.isView(data)) {
      this.#onBinary(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    }
  }

  #onText(text: string): void {
    let msg: { id?: Id | null; method?: string; params?: unknown; result?: unknown; error?: ErrorObject };
    try {
      msg = JSON.parse(text);
    } catch {
      return; // not JSON: nothing can be matched to it
    }
    if (typeof msg !== "object" || msg === null) return;
    if (typeof msg.method === "string" && msg.id === undefined) {
      this.#onEvent(msg.method, msg.params);
      return;
    }
    // A response with a null id answers a request whose id the server could not read:
    // it cannot be matched, and requests sent by this client always have one.
    if (msg.id === undefined || msg.id === null) return;
    if (msg.error !== undefined) {
      this.#fail(msg.id, new KeyBridgeError(msg.error));
    } else {
      this.#succeed(msg.id, msg.result ?? null);
    }
  }

  #onEvent(name: string, params: unknown): void {
    if (name === "progress") {
      const p = params as ProgressEvent;
      const entry = this.#pending.get(p?.request);
      if (entry?.onProgress) this.#safely(entry.onProgress, p);
    }
    for (const handler of this.#handlers.get(name) ?? []) this.#safely(handler as (p: unknown) => void, params);
  }

  #safely<T>(handler: (value: T) => void, value: T): void {
    try {
      handler(value);
    } catch (e) {
      console.error("keybridge: an event handler threw", e);
    }
  }

  #onBinary(bytes: Uint8Array): void {
    if (bytes.length < 8) return;
    const stream = new DataView(bytes.buffer, bytes.byteOffset, 8).getUint32(4);
    // Frames of streams this client does not (or no longer) read are dropped.
    this.#downloads.get(stream)?.push(bytes);
  }

  /** Pauses the socket while any download's sink is behind (`ws` only). */
  #flow(stream: number, paused: boolean): void {
    const ws = this.#ws as unknown as { pause?: () => void; resume?: () => void };
    const before = this.#pausedBy.size > 0;
    if (paused) this.#pausedBy.add(stream);
    else this.#pausedBy.delete(stream);
    const after = this.#pausedBy.size > 0;
    if (after && !before) ws.pause?.();
    if (!after && before) ws.resume?.();
  }

  #shutdown(error: ConnectionError): void {
    if (this.#closed) return;
    this.#closed = error;
    for (const id of [...this.#pending.keys()]) this.#fail(id, error);
    for (const u of this.#uploads.values()) u.stop(error);
    for (const d of this.#downloads.values()) d.fail(error);
    this.#uploads.clear();
    this.#downloads.clear();
    for (const handler of this.#closeHandlers) this.#safely(handler, error);
  }

  // ---- events and lifetime ----

  /**
   * Handles a server event; returns a function that removes the handler. `device.added`,
   * `device.removed` and `certificates.changed` come only after `subscribe([...])`;
   * `progress` needs no subscription (see also `CallOptions.onProgress`).
   */
  on<E extends EventName>(event: E, handler: (params: EventMap[E]) => void): () => void {
    let set = this.#handlers.get(event);
    if (!set) this.#handlers.set(event, (set = new Set()));
    set.add(handler as (params: never) => void);
    return () => this.off(event, handler);
  }

  /** Removes an event handler. */
  off<E extends EventName>(event: E, handler: (params: EventMap[E]) => void): void {
    this.#handlers.get(event)?.delete(handler as (params: never) => void);
  }

  /** Called once when the connection ends (by either side); returns a function that removes the handler. */
  onClose(handler: (error: ConnectionError) => void): () => void {
    if (this.#closed) {
      const closed = this.#closed;
      queueMicrotask(() => handler(closed));
      return () => undefined;
    }
    this.#closeHandlers.add(handler);
    return () => this.#closeHandlers.delete(handler);
  }

  /** Whether the connection has ended. */
  get closed(): boolean {
    return this.#closed !== undefined;
  }

  /** Closes the connection; pending calls reject with `ConnectionError` (`connection_closed`). */
  close(): Promise<void> {
    this.#shutdown(new ConnectionError("connection_closed", { closeCode: 1000, closeReason: "closed by the client" }));
    if (this.#ws.readyState <= OPEN) this.#ws.close(1000);
    return this.#closedPromise;
  }

  // ---- convenience methods ----

  /** Key media present now. */
  async devices(options?: CallOptions): Promise<DeviceInfo[]> {
    return (await this.call("devices.list", undefined, options)).devices;
  }

  /** Certificates on the present media; every filter is optional. */
  async certificates(filter: CertificatesListParams = {}, options?: CallOptions): Promise<CertificateSummary[]> {
    return (await this.call("certificates.list", filter, options)).certificates;
  }

  /** One certificate's details (DER, PEM, parsed fields), by reference or thumbprint. */
  certificate(ref: CertificateRef | Thumbprint, options?: CallOptions): Promise<CertificateDetails> {
    return this.call("certificates.get", { certificate: typeof ref === "string" ? { thumbprint: ref } : ref }, options);
  }

  /** Signs (KeyBridge asks the user for the PIN in its own window). */
  sign(params: SignParams, options?: CallOptions): Promise<SignResult> {
    return this.call("sign", params, options);
  }

  /** Verifies a raw or CMS signature; `valid: false` is a result, not an error. */
  verify(params: VerifyParams, options?: CallOptions): Promise<VerifyResult> {
    return this.call("verify", params, options);
  }

  encrypt(params: EncryptParams, options?: CallOptions): Promise<EncryptResult> {
    return this.call("encrypt", params, options);
  }

  /** Decrypts (KeyBridge asks for the PIN). */
  decrypt(params: DecryptParams, options?: CallOptions): Promise<DecryptResult> {
    return this.call("decrypt", params, options);
  }

  /** Adds event subscriptions; answers the connection's whole set. */
  async subscribe(events: EventKind[], options?: CallOptions): Promise<EventKind[]> {
    return (await this.call("subscribe", { events }, options)).events;
  }

  /** Removes event subscriptions; answers what is left. */
  async unsubscribe(events: EventKind[], options?: CallOptions): Promise<EventKind[]> {
    return (await this.call("unsubscribe", { events }, options)).events;
  }

  /** Cancels a request in flight by id; false when it was no longer running. */
  async cancel(id: Id, options?: CallOptions): Promise<boolean> {
    return (await this.call("cancel", { id }, options)).cancelled;
  }

  // ---- streams ----

  /**
   * Opens an upload stream for `source`. Nothing is sent until a request names
   * `{stream: upload.stream}` in its `input` (or `verify`'s `content`); then the frames
   * follow the request, `max_chunk_bytes` each, the last with FIN, never more than the
   * send-buffer limit queued at once. Close it (`upload.close()`) if no request will.
   */
  async upload(source: UploadSource, options: { length?: number; signal?: AbortSignal } = {}): Promise<UploadStream> {
    const length = options.length ?? sourceLength(source);
    const opened = await this.call(
      "stream.open",
      length === undefined ? { direction: "upload" } : { direction: "upload", length },
      { signal: options.signal },
    );
    const up = new UploadStream(this.#host, opened.stream, opened.max_chunk_bytes, length, source);
    this.#uploads.set(up.stream, up);
    return up;
  }

  /**
   * Opens a download stream whose frames go to `sink`, in order, one at a time (each
   * call awaited). Name `{stream: download.stream}` in a method's `output`: that call
   * resolves once the sink has taken every byte.
   */
  async download(sink: DownloadSink, options: { signal?: AbortSignal } = {}): Promise<DownloadStream> {
    const opened = await this.call("stream.open", { direction: "download" }, { signal: options.signal });
    const limit = this.#options.receiveBufferLimit ?? 4 * opened.max_chunk_bytes;
    const down = new DownloadStream(this.#host, opened.stream, opened.max_chunk_bytes, sink, limit, (paused) =>
      this.#flow(opened.stream, paused),
    );
    this.#downloads.set(down.stream, down);
    return down;
  }

  /**
   * Opens the streams a request needs, sends it with the rest of `opts` as its params
   * (`source` becomes `inputKey: {stream}`, `sink` becomes `output: {stream}`), and frees
   * the streams when the request could not be sent.
   */
  async #streamed<M extends "sign" | "verify" | "encrypt" | "decrypt">(
    method: M,
    inputKey: "input" | "content",
    defaultFormat: string,
    opts: StreamCallOptions & { source: UploadSource; sink?: DownloadSink; format?: string },
  ): Promise<ResultOf<M>> {
    const { source, sink, length, signal, timeoutMs, id, onProgress, ...rest } = opts;
    const up = await this.upload(source, { length, signal });
    let down: DownloadStream | undefined;
    try {
      down = sink ? await this.download(sink, { signal }) : undefined;
    } catch (e) {
      if (!this.#closed) quiet(up.close());
      throw e;
    }
    const params = {
      ...rest,
      format: rest.format ?? defaultFormat,
      [inputKey]: { stream: up.stream },
      ...(down ? { output: { stream: down.stream } } : {}),
    };
    const result = this.#request(method, params, { signal, timeoutMs, id, onProgress }) as Promise<ResultOf<M>>;
    if (!up.started && !this.#closed) {
      // The request was refused before it was sent (aborted, too large, duplicate id):
      // the server still holds the streams.
      quiet(up.close());
      if (down) quiet(down.close());
    }
    return result;
  }

  /** Signs a stream (a file of any size), `cms_detached` by default; the signature comes back inline. */
  signStream(opts: SignStreamOptions): Promise<SignResult> {
    return this.#streamed("sign", "input", "cms_detached", opts);
  }

  /** Verifies a signature over streamed content (a detached CMS signature of a large file). */
  verifyStream(opts: VerifyStreamOptions): Promise<VerifyResult> {
    return this.#streamed("verify", "content", "cms_detached", opts);
  }

  /** Encrypts a stream into a CMS envelope for the recipients; the envelope goes to `sink`. */
  encryptStream(opts: EncryptStreamOptions): Promise<EncryptResult> {
    return this.#streamed("encrypt", "input", "cms_envelope", opts);
  }

  /** Opens a streamed CMS envelope with a key on a medium (KeyBridge asks for the PIN); the plaintext goes to `sink`. */
  decryptStream(opts: DecryptStreamOptions): Promise<DecryptResult> {
    return this.#streamed("decrypt", "input", "cms_envelope", opts);
  }
}

/** Connects to KeyBridge and says `hello`; see `KeyBridgeClient.connect`. */
export function connect(options: ConnectOptions = {}): Promise<KeyBridgeClient> {
  return KeyBridgeClient.connect(options);
}

// ---- handshake refusals (ws only) ----

interface HandshakeResponse {
  statusCode?: number;
  on(event: "data", fn: (chunk: Uint8Array) => void): void;
  on(event: "end" | "error", fn: () => void): void;
  destroy?: () => void;
}

/** The error in a refused handshake's body (an error object), or a plain `connect_failed`. */
function readHandshakeRefusal(res: HandshakeResponse): Promise<Error> {
  return new Promise((resolve) => {
    const parts: Uint8Array[] = [];
    let size = 0;
    const done = () => {
      const status = res.statusCode ?? 0;
      const body = new Uint8Array(size);
      let at = 0;
      for (const p of parts) {
        body.set(p, at);
        at += p.length;
      }
      try {
        const obj = JSON.parse(new TextDecoder().decode(body)) as ErrorObject;
        if (typeof obj?.code === "number") return resolve(new KeyBridgeError(obj));
      } catch {
        // not an error object: fall through
      }
      resolve(new ConnectionError("connect_failed", { closeReason: `HTTP ${status}` }));
    };
    res.on("data", (chunk: Uint8Array) => {
      size += chunk.length;
      if (size <= 65536) parts.push(chunk);
      else res.destroy?.();
    });
    res.on("end", done);
    res.on("error", done);
  });
}
