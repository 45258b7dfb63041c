// The one seam between the screens and whatever answers them: the Tauri shell
// (`tauri.ts`) in the app, a fixture-driven mock (`mock.ts`) in the browser and in tests.
// Screens call `useBackend()` and never import bindings.ts's `commands` directly.
//
// Nothing here lists the commands, events or error codes: `Backend` is derived from the
// generated `commands` and `events` (bindings.ts, tauri-specta), `ErrorCode` from the
// generated `ERROR_CODES`. A command added or changed in Rust appears here when the
// bindings are regenerated; a view that calls it the old way no longer type-checks.

import { inject, type App, type InjectionKey } from "vue";
import { ERROR_CODES, type AppError, type commands, type events } from "../bindings";

type Commands = typeof commands;
type Events = typeof events;

/** Every command of the bindings, by its camelCase name (`changePin`). */
export type CommandName = keyof Commands;
/** A command's arguments, as the bindings declare them. */
export type CommandArgs<K extends CommandName> = Parameters<Commands[K]>;
/** What a command resolves with on success (the `data` of the bindings' `{status:"ok"}`). */
export type CommandData<K extends CommandName> = Extract<Awaited<ReturnType<Commands[K]>>, { status: "ok" }>["data"];

/** Every event of the bindings, by its camelCase name (`mediaChanged` = `media-changed`). */
export type EventName = keyof Events;
/** An event's payload. */
export type EventPayload<K extends EventName> = Parameters<Parameters<Events[K]["listen"]>[0]>[0]["payload"];

/** Each command as the views call it: resolves with its data, throws a `BackendError`. */
export type Calls = { [K in CommandName]: (...args: CommandArgs<K>) => Promise<CommandData<K>> };

export type Unsubscribe = () => void;

export interface Backend extends Calls {
  /** Subscribe to a generated event; the function returned unsubscribes. */
  on<K extends EventName>(event: K, cb: (payload: EventPayload<K>) => void): Unsubscribe;
  /** A native save-file dialog (a Tauri plugin, not a command); `null` when the user cancels. */
  chooseSavePath(defaultName: string, extensions: string[]): Promise<string | null>;
}

type ErrorEntry = (typeof ERROR_CODES)[number];
/** A stable error name of the one table (`wrong_pin`). */
export type ErrorName = ErrorEntry["name"];

/**
 * The stable codes by name (`ErrorCode.wrong_pin` = 4001), from the generated table
 * (docs/error-codes.md). The UI reacts to codes; it never matches messages.
 */
export const ErrorCode = Object.fromEntries(ERROR_CODES.map((e) => [e.name, e.code])) as {
  readonly [E in ErrorEntry as E["name"]]: E["code"];
};

/** The table's entry for a name (code and zh-CN / en messages). */
export function errorEntry(name: ErrorName): ErrorEntry {
  return ERROR_CODES.find((e) => e.name === name)!;
}

/** An `AppError` as a throwable. */
export class BackendError extends Error {
  readonly code: number;
  /** Stable name, e.g. `wrong_pin`. (`Error.name` is reused for it.) */
  override readonly name: string;
  readonly detail: string;
  readonly triesLeft: number | null;

  constructor(e: AppError) {
    super(e.message);
    this.code = e.code;
    this.name = e.name;
    this.detail = e.detail;
    this.triesLeft = e.triesLeft;
  }

  static from(e: unknown): BackendError {
    if (e instanceof BackendError) return e;
    if (isAppError(e)) return new BackendError(e);
    const message = e instanceof Error ? e.message : String(e);
    return new BackendError({ code: ErrorCode.internal, name: "internal", message, detail: "", triesLeft: null });
  }

  toAppError(): AppError {
    return { code: this.code, name: this.name, message: this.message, detail: this.detail, triesLeft: this.triesLeft };
  }
}

function isAppError(e: unknown): e is AppError {
  return typeof e === "object" && e !== null && typeof (e as AppError).code === "number" && typeof (e as AppError).name === "string";
}

/** The update check could not reach the server (`network`). */
export function isNetworkError(e: BackendError): boolean {
  return e.code === ErrorCode.network;
}

export const backendKey: InjectionKey<Backend> = Symbol("backend");

export function provideBackend(app: App, backend: Backend): void {
  app.provide(backendKey, backend);
}

export function useBackend(): Backend {
  const b = inject(backendKey);
  if (!b) throw new Error("no Backend provided");
  return b;
}
