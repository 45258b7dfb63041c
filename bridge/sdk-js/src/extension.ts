// The KeyBridge browser extension as a transport: the page talks to the extension's
// content script with window.postMessage, the extension to KeyBridge through a native
// messaging host — no port on loopback, so no local-network permission is involved.
// The page's origin is added by the extension from what the browser reports; nothing
// the page sends can change it.
//
// `ExtensionSocket` has the WebSocket shape the client already drives (`WebSocketLike`):
// the same JSON-RPC text frames and binary stream frames, so every method, stream and
// event works the same way over either transport.

import { KeyBridgeError } from "./errors.js";
import type { ErrorName } from "./generated.js";
import type { ErrorObject } from "./protocol.js";

/** The attribute the extension's content script sets on `<html>` (its version) before page scripts run. */
export const EXTENSION_ATTRIBUTE = "data-keybridge-extension";

/** Which way `connect()` reaches KeyBridge: `auto` (the extension when present, else the WebSocket). */
export type Transport = "auto" | "extension" | "websocket";

interface WindowLike {
  postMessage(message: unknown, targetOrigin: string): void;
  addEventListener(type: "message", listener: (ev: { source: unknown; data: unknown }) => void): void;
  removeEventListener(type: "message", listener: (ev: { source: unknown; data: unknown }) => void): void;
  document?: { documentElement?: { getAttribute(name: string): string | null } | null };
}

function pageWindow(): WindowLike | undefined {
  const w = (globalThis as { window?: WindowLike }).window;
  return w && typeof w.postMessage === "function" && typeof w.addEventListener === "function" ? w : undefined;
}

/** The extension's version when its content script runs in this page, else `undefined`. */
export function extensionVersion(): string | undefined {
  return pageWindow()?.document?.documentElement?.getAttribute(EXTENSION_ATTRIBUTE) ?? undefined;
}

/**
 * Whether `connect()` goes through the extension: `extension` always, `websocket` never,
 * `auto` when the extension is present and the caller did not ask for something only a
 * WebSocket does (a native tool's secret, a WebSocket class, a `ws://` url).
 */
export function useExtension(options: { transport?: Transport; secret?: string; WebSocket?: unknown; url?: string }): boolean {
  const transport = options.transport ?? "auto";
  if (transport !== "auto") return transport === "extension";
  if (options.secret !== undefined || options.WebSocket !== undefined || options.url !== undefined) return false;
  return extensionVersion() !== undefined;
}

/** A message from the content script. */
interface FromExtension {
  keybridge: "extension";
  conn: string;
  type: "open" | "text" | "binary" | "sent" | "close" | "error" | "disconnect";
  data?: unknown;
  bytes?: number;
  code?: number;
  reason?: string;
  detail?: string;
  error?: ErrorObject;
}

const DISCONNECT_REASONS: readonly ErrorName[] = ["extension_host_not_installed", "extension_host_exited", "extension_message_too_large"];

let connections = 0;

/** A WebSocket-shaped connection through the extension (see the module comment). */
export class ExtensionSocket {
  readyState = 0;
  binaryType = "arraybuffer";
  onopen: ((ev: unknown) => void) | null = null;
  onmessage: ((ev: { data: unknown }) => void) | null = null;
  onclose: ((ev: { code: number; reason: string }) => void) | null = null;
  onerror: ((ev: unknown) => void) | null = null;
  /** Why the connection failed, when the extension or KeyBridge said (a stable code). */
  error: KeyBridgeError | undefined;
  readonly #window: WindowLike;
  readonly #conn: string;
  readonly #listener: (ev: { source: unknown; data: unknown }) => void;
  #buffered = 0;

  constructor() {
    const w = pageWindow();
    if (!w) throw new TypeError("the KeyBridge extension is reachable only from a web page");
    this.#window = w;
    this.#conn = `kb-${Date.now().toString(36)}-${(connections++).toString(36)}-${Math.random().toString(36).slice(2)}`;
    this.#listener = (ev) => {
      const m = ev.data as FromExtension | null;
      if (ev.source !== w || !m || m.keybridge !== "extension" || m.conn !== this.#conn) return;
      this.#receive(m);
    };
    w.addEventListener("message", this.#listener);
    this.#post({ type: "open" });
  }

  /**
   * Upload bytes sent and not yet handed to KeyBridge's socket by the host (it
   * acknowledges each binary frame with `sent`): the same back-pressure signal as a
   * WebSocket's, so a 1 GB upload never piles up in the browser.
   */
  get bufferedAmount(): number {
    return this.#buffered;
  }

  #post(m: Record<string, unknown>): void {
    this.#window.postMessage({ ...m, keybridge: "page", conn: this.#conn }, "*");
  }

  #receive(m: FromExtension): void {
    if (this.readyState === 3) return;
    switch (m.type) {
      case "open":
        this.readyState = 1;
        this.onopen?.({});
        return;
      case "text":
        this.onmessage?.({ data: m.data });
        return;
      case "binary":
        this.onmessage?.({ data: m.data });
        return;
      case "sent":
        this.#buffered = Math.max(0, this.#buffered - (m.bytes ?? 0));
        return;
      case "close":
        this.#end(m.code ?? 1005, m.reason ?? "");
        return;
      case "error":
        this.#fail(new KeyBridgeError(m.error ?? { code: 0, message: "unknown error", data: {} as ErrorObject["data"] }));
        return;
      case "disconnect": {
        const name = DISCONNECT_REASONS.find((n) => n === m.reason) ?? "extension_host_exited";
        this.#fail(KeyBridgeError.of(name, m.detail));
        return;
      }
    }
  }

  #fail(error: KeyBridgeError): void {
    this.error = error;
    this.onerror?.({ error });
    this.#end(1006, error.name);
  }

  #end(code: number, reason: string): void {
    if (this.readyState === 3) return;
    this.readyState = 3;
    this.#window.removeEventListener("message", this.#listener);
    this.onclose?.({ code, reason });
  }

  send(data: string | Uint8Array): void {
    if (this.readyState !== 1) throw new Error("the connection is not open");
    if (typeof data === "string") this.#post({ type: "text", data });
    else {
      this.#buffered += data.length;
      this.#post({ type: "binary", data: data.slice() });
    }
  }

  close(): void {
    if (this.readyState === 3) return;
    this.#post({ type: "close" });
    this.#end(1000, "");
  }
}
