// The Backend over the Tauri shell: the generated `commands` and `events` themselves, each
// command unwrapped from `{status:"ok"|"error"}` into its data or a thrown BackendError.
// No command is named here: whatever the bindings export is what this backend offers.
import { save } from "@tauri-apps/plugin-dialog";
import { commands, events } from "../bindings";
import { BackendError, type Backend, type Calls, type EventName, type Unsubscribe } from "./index";

/** What every generated command resolves with (tauri-specta's shape). */
type Result = { status: "ok"; data: unknown } | { status: "error"; error: unknown };
type AnyCommand = (...args: unknown[]) => Promise<Result>;
type AnyListen = (cb: (e: { payload: unknown }) => void) => Promise<() => void>;

async function unwrap(call: () => Promise<Result>): Promise<unknown> {
  let r: Result;
  try {
    r = await call();
  } catch (e) {
    // invoke itself failed (command missing, IPC down): still a BackendError.
    throw BackendError.from(e);
  }
  if (r.status === "ok") return r.data;
  throw BackendError.from(r.error);
}

/** Tauri's listen() resolves later; the returned function works either way. */
function subscribe(listen: AnyListen, cb: (payload: unknown) => void): Unsubscribe {
  let unlisten: (() => void) | null = null;
  let done = false;
  listen((e) => {
    if (!done) cb(e.payload);
  }).then(
    (u) => {
      if (done) u();
      else unlisten = u;
    },
    (err) => console.error("event subscription failed", err),
  );
  return () => {
    done = true;
    unlisten?.();
  };
}

export function createTauriBackend(): Backend {
  const calls = Object.fromEntries(
    Object.entries(commands as unknown as Record<string, AnyCommand>).map(([name, command]) => [
      name,
      (...args: unknown[]) => unwrap(() => command(...args)),
    ]),
  ) as Calls;
  return {
    ...calls,
    on(event: EventName, cb: (payload: never) => void) {
      return subscribe(events[event].listen as AnyListen, cb as (payload: unknown) => void);
    },
    async chooseSavePath(defaultName, extensions) {
      const path = await save({
        defaultPath: defaultName,
        filters: extensions.length ? [{ name: extensions.map((e) => `*.${e}`).join(", "), extensions }] : [],
      });
      return path ?? null;
    },
  };
}
