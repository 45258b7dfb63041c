// Errors a caller sees: `KeyBridgeError` for every error the bridge answers (and for
// the few the SDK raises itself with the same codes: timeouts, cancellation, frames),
// `ConnectionError` when there is no connection to answer at all.

import { ERROR_CODES, PROTOCOL_ERRORS, type ErrorName } from "./generated.js";
import type { ErrorObject, Lang, Messages } from "./protocol.js";

/** A row of the generated error tables. */
export interface ErrorInfo {
  name: ErrorName;
  code: number;
  /** Whose fault it is (`input`, `crypto`, `certificate`, `token`, `bridge`, `system`); absent for protocol errors. */
  category?: string;
  messages: Messages;
}

const BY_CODE = new Map<number, ErrorInfo>();
const BY_NAME = new Map<string, ErrorInfo>();
for (const table of [ERROR_CODES, PROTOCOL_ERRORS]) {
  for (const [name, row] of Object.entries(table)) {
    const info: ErrorInfo = { name: name as ErrorName, ...row };
    BY_CODE.set(row.code, info);
    BY_NAME.set(name, info);
  }
}

/** The table row for an `error.code` number or a stable name; `undefined` when this SDK does not know it. */
export function errorInfo(codeOrName: number | string): ErrorInfo | undefined {
  return typeof codeOrName === "number" ? BY_CODE.get(codeOrName) : BY_NAME.get(codeOrName);
}

/** `messages[lang]`, falling back to English, then to any message there is. */
function pick(messages: Partial<Messages>, lang: Lang): string {
  return messages[lang] || messages.en || messages["zh-CN"] || "";
}

/**
 * An error answered by KeyBridge (or raised by the SDK with a KeyBridge code). Match on
 * `code` or `name`, never on the message; show `messageFor(lang)` to people.
 *
 * `name` is the stable snake_case name (`wrong_pin`), not the class name: test the
 * class with `instanceof KeyBridgeError`.
 */
export class KeyBridgeError extends Error {
  /** `error.code`: positive = a KeyBridge code (docs/error-codes.md), negative = a JSON-RPC protocol error. */
  readonly code: number;
  /** The stable name (`error.data.name`), e.g. `wrong_pin`. */
  override readonly name: ErrorName | (string & {});
  /** The message in zh-CN and English. */
  readonly messages: Messages;
  /** Technical detail for logs (never a secret); may be absent. */
  readonly detail: string | undefined;
  /** PIN tries left, with `wrong_pin`. */
  readonly retriesLeft: number | undefined;

  constructor(error: ErrorObject, options?: { cause?: unknown }) {
    const data: Partial<ErrorObject["data"]> = error.data ?? {};
    const known = errorInfo(error.code);
    const messages: Messages = {
      "zh-CN": data.messages?.["zh-CN"] || known?.messages["zh-CN"] || error.message,
      en: data.messages?.en || known?.messages.en || error.message,
    };
    const detail = data.detail || undefined;
    super(detail ? `${messages.en}: ${detail}` : messages.en, options);
    this.code = error.code;
    this.name = data.name || known?.name || `error_${error.code}`;
    this.messages = messages;
    this.detail = detail;
    this.retriesLeft = data.retries_left;
  }

  /** An error of a known code, raised by the SDK itself (a timeout, a cancellation, a bad frame). */
  static of(name: ErrorName, detail?: string, options?: { cause?: unknown }): KeyBridgeError {
    const info = errorInfo(name);
    if (!info) throw new TypeError(`unknown error name ${name}`);
    return new KeyBridgeError({ code: info.code, message: info.messages.en, data: { name, messages: info.messages, detail } }, options);
  }

  /** The message for people, in `lang` (default zh-CN), falling back to English. */
  messageFor(lang: Lang = "zh-CN"): string {
    return pick(this.messages, lang);
  }

  /** Whether this is the error with that stable name. */
  is(name: ErrorName): boolean {
    return this.name === name;
  }

  /** Whose fault it is, from the code table (`undefined` for codes this SDK does not know). */
  get category(): string | undefined {
    return errorInfo(this.code)?.category;
  }
}

const CONNECTION_MESSAGES = {
  connect_failed: {
    "zh-CN": "无法连接安全客户端，请确认 KeyBridge 已启动",
    en: "cannot connect to KeyBridge; make sure it is running",
  },
  connection_closed: {
    "zh-CN": "与安全客户端的连接已断开",
    en: "the connection to KeyBridge was closed",
  },
} as const satisfies Record<string, Messages>;

/** Why there is no connection: `connect_failed` (never connected) or `connection_closed`. */
export type ConnectionErrorKind = keyof typeof CONNECTION_MESSAGES;

/**
 * No connection to KeyBridge: it is not running, refused the handshake (a browser cannot
 * tell which), or the connection was lost. Every call pending at that moment is rejected
 * with this error.
 */
export class ConnectionError extends Error {
  override readonly name = "ConnectionError";
  /** `connect_failed` or `connection_closed`. */
  readonly kind: ConnectionErrorKind;
  /** The WebSocket close code, when there was one (1006 = dropped without a close frame). */
  readonly closeCode: number | undefined;
  /** The WebSocket close reason, when the server gave one. */
  readonly closeReason: string | undefined;

  constructor(kind: ConnectionErrorKind, detail?: { closeCode?: number; closeReason?: string; cause?: unknown }) {
    const extra = [detail?.closeCode !== undefined ? `close code ${detail.closeCode}` : "", detail?.closeReason ?? ""]
      .filter(Boolean)
      .join(", ");
    super(extra ? `${CONNECTION_MESSAGES[kind].en} (${extra})` : CONNECTION_MESSAGES[kind].en, { cause: detail?.cause });
    this.kind = kind;
    this.closeCode = detail?.closeCode;
    this.closeReason = detail?.closeReason || undefined;
  }

  /** The message for people, in `lang` (default zh-CN). */
  messageFor(lang: Lang = "zh-CN"): string {
    return pick(CONNECTION_MESSAGES[this.kind], lang);
  }
}
