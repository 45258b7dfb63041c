// The Backend cannot drift from the generated bindings: the type assertions below are
// checked by `npm run typecheck` (vue-tsc), the runtime ones by `npm test`. They are
// written independently of src/backend/index.ts, so a hand-written or hand-edited
// `Backend` that loses, adds or changes a command, an event or an error code fails here.
import { describe, expect, expectTypeOf, it } from "vitest";
import { commands, ERROR_CODES, type events } from "../src/bindings";
import { ErrorCode, type Backend } from "../src/backend";
import { createMockBackend } from "../src/backend/mock";
import type { createTauriBackend } from "../src/backend/tauri";

type Commands = typeof commands;
type Events = typeof events;
type Ok<K extends keyof Commands> = Extract<Awaited<ReturnType<Commands[K]>>, { status: "ok" }>["data"];
type Payload<K extends keyof Events> = Parameters<Parameters<Events[K]["listen"]>[0]>[0]["payload"];

/** Each generated command with exactly its arguments, resolving with its `ok` data. */
type FromBindings = { [K in keyof Commands]: (...args: Parameters<Commands[K]>) => Promise<Ok<K>> };
/** A subscription to each generated event with exactly its payload. */
type On = <K extends keyof Events>(event: K, cb: (payload: Payload<K>) => void) => () => void;

describe("Backend against the generated bindings", () => {
  it("has exactly the generated commands, with their arguments and data", () => {
    expectTypeOf<Pick<Backend, keyof Commands>>().toEqualTypeOf<FromBindings>();
    // nothing hand-added besides the event subscription and the (plugin) save dialog
    expectTypeOf<Exclude<keyof Backend, keyof Commands>>().toEqualTypeOf<"on" | "chooseSavePath">();

    // A hand-copied signature that drifted (an argument lost) is caught:
    type Drifted = Omit<Backend, "changePin"> & { changePin(device: string, oldPin: string, newPin: string): Promise<null> };
    // @ts-expect-error Drifted is not the bindings' changePin
    expectTypeOf<Pick<Drifted, keyof Commands>>().toEqualTypeOf<FromBindings>();
  });

  it("subscribes to exactly the generated events, with their payloads", () => {
    expectTypeOf<Backend["on"]>().toEqualTypeOf<On>();
    expectTypeOf<Parameters<Backend["on"]>[0]>().toEqualTypeOf<keyof Events>();
  });

  it("is what both implementations are", () => {
    expectTypeOf<ReturnType<typeof createTauriBackend>>().toEqualTypeOf<Backend>();
    const mock: Backend = createMockBackend();
    for (const name of Object.keys(commands)) expect(typeof (mock as unknown as Record<string, unknown>)[name], name).toBe("function");
  });

  it("takes its error codes from the generated table, every one of them", () => {
    expectTypeOf<keyof typeof ErrorCode>().toEqualTypeOf<(typeof ERROR_CODES)[number]["name"]>();
    expectTypeOf(ErrorCode.wrong_pin).toEqualTypeOf<4001>();
    expect(Object.entries(ErrorCode)).toEqual(ERROR_CODES.map((e) => [e.name, e.code]));
  });
});
