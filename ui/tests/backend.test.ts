import { beforeEach, describe, expect, it, vi } from "vitest";

const invoke = vi.fn();
const listeners = new Map<string, (e: { payload: unknown }) => void>();
const unlisten = vi.fn();
const save = vi.fn();

vi.mock("@tauri-apps/api/core", () => ({ invoke: (...a: unknown[]) => invoke(...a) }));
vi.mock("@tauri-apps/api/event", () => ({
  listen: async (name: string, cb: (e: { payload: unknown }) => void) => {
    listeners.set(name, cb);
    return unlisten;
  },
  once: vi.fn(),
  emit: vi.fn(),
  emitTo: vi.fn(),
}));
vi.mock("@tauri-apps/plugin-dialog", () => ({ save: (...a: unknown[]) => save(...a) }));

const { createTauriBackend } = await import("../src/backend/tauri");
const { BackendError, isNetworkError } = await import("../src/backend");
const { createMockBackend, DEMO_USER_PIN } = await import("../src/backend/mock");
const { commands } = await import("../src/bindings");
type CommandName = import("../src/backend").CommandName;

beforeEach(() => {
  invoke.mockReset();
  listeners.clear();
  unlisten.mockReset();
  save.mockReset();
});

describe("Tauri backend", () => {
  it("invokes the snake_case command with camelCase arguments and unwraps the data", async () => {
    invoke.mockResolvedValue(null);
    const b = createTauriBackend();
    await expect(b.changePin("file:demo", "user", "1", "2")).resolves.toBeNull();
    expect(invoke).toHaveBeenLastCalledWith("change_pin", { device: "file:demo", kind: "user", oldPin: "1", newPin: "2" });
    await b.writeSeal("d", "n", "image/png", "QUJD");
    expect(invoke).toHaveBeenLastCalledWith("write_seal", { device: "d", name: "n", mime: "image/png", dataBase64: "QUJD" });
    await b.auditQuery(1, 2, 1000);
    expect(invoke).toHaveBeenLastCalledWith("audit_query", { fromMs: 1, toMs: 2, limit: 1000 });
    invoke.mockResolvedValue([{ id: "file:demo" }]);
    await expect(b.listMedia()).resolves.toEqual([{ id: "file:demo" }]);
    expect(invoke).toHaveBeenLastCalledWith("list_media");
  });

  it("offers every generated command, each invoking its snake_case name", async () => {
    invoke.mockResolvedValue(null);
    const b = createTauriBackend();
    const names = Object.keys(commands) as CommandName[];
    expect(names.length).toBeGreaterThan(20);
    for (const name of names) {
      await (b[name] as () => Promise<unknown>)();
      expect(invoke.mock.lastCall?.[0]).toBe(name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`));
    }
    expect(invoke).toHaveBeenCalledTimes(names.length);
  });

  it("throws an AppError as a BackendError with its code and tries", async () => {
    invoke.mockRejectedValue({ code: 4001, name: "wrong_pin", message: "口令错误", detail: "", triesLeft: 7 });
    const err = await createTauriBackend().changePin("d", "user", "1", "2").catch((e) => e);
    expect(err).toBeInstanceOf(BackendError);
    expect(err).toMatchObject({ code: 4001, name: "wrong_pin", message: "口令错误", triesLeft: 7 });
    invoke.mockRejectedValue({ code: 9003, name: "network", message: "无法连接服务器", detail: "", triesLeft: null });
    expect(isNetworkError(await createTauriBackend().checkUpdate().catch((e) => e))).toBe(true);
  });

  it("wraps an IPC failure as an internal error", async () => {
    invoke.mockRejectedValue(new Error("command app_info not found"));
    const err = await createTauriBackend().appInfo().catch((e) => e);
    expect(err).toBeInstanceOf(BackendError);
    expect(err).toMatchObject({ code: 9999, message: "command app_info not found" });
  });

  it("subscribes to the kebab-case events and unsubscribes", async () => {
    const b = createTauriBackend();
    const got: unknown[] = [];
    const off = b.on("mediaChanged", (e) => got.push(e));
    b.on("promptRequest", (e) => got.push(e));
    await Promise.resolve();
    await Promise.resolve();
    expect([...listeners.keys()].sort()).toEqual(["media-changed", "prompt-request"]);
    listeners.get("media-changed")!({ payload: { change: "added", device: "x" } });
    expect(got).toEqual([{ change: "added", device: "x" }]);
    off();
    expect(unlisten).toHaveBeenCalledOnce();
    listeners.get("media-changed")!({ payload: { change: "removed", device: "x" } });
    expect(got).toHaveLength(1);
  });

  it("asks the save dialog with a filter and maps cancel to null", async () => {
    save.mockResolvedValueOnce("/tmp/a.cer").mockResolvedValueOnce(null);
    const b = createTauriBackend();
    await expect(b.chooseSavePath("a.cer", ["cer", "der"])).resolves.toBe("/tmp/a.cer");
    expect(save).toHaveBeenCalledWith({ defaultPath: "a.cer", filters: [{ name: "*.cer, *.der", extensions: ["cer", "der"] }] });
    await expect(b.chooseSavePath("a.cer", ["cer"])).resolves.toBeNull();
  });
});

describe("mock backend", () => {
  it("answers scripted outcomes in order, then the fixture again; messages from the table", async () => {
    const m = createMockBackend();
    // The medium, written out: nine wrong PINs counting down, the lockout (twice: a right
    // PIN cannot open a locked one), then the SO PIN unblocks and restores the counter.
    for (let left = 9; left >= 1; left--) m.fail("changePin", "wrong_pin", { triesLeft: left }, 1);
    m.script(
      "changePin",
      (mm, device) => {
        mm.updatePin(device, "userPin", { triesLeft: 0, locked: true });
        throw mm.error("pin_locked", { triesLeft: 0 });
      },
      2,
    );
    m.script("unblockPin", (mm, device, so, next) => {
      mm.updatePin(device, "userPin", { triesLeft: 10, locked: false });
      return mm.answerFromFixture("unblockPin", device, so, next);
    });
    for (let left = 9; left >= 1; left--) {
      await expect(m.changePin("file:demo", "user", "bad", "abcdef12")).rejects.toMatchObject({ code: 4001, triesLeft: left, message: "口令错误" });
    }
    await expect(m.changePin("file:demo", "user", "bad", "abcdef12")).rejects.toMatchObject({ code: 4002 });
    await expect(m.changePin("file:demo", "user", DEMO_USER_PIN, "abcdef12")).rejects.toMatchObject({ code: 4002 });
    const [medium] = await m.listMedia();
    expect(medium.userPin).toMatchObject({ triesLeft: 0, locked: true });
    await m.unblockPin("file:demo", "87654321", "abcdef12");
    expect((await m.listMedia())[0].userPin).toMatchObject({ triesLeft: 10, locked: false });
    // the script is used up: the fixture answers
    await expect(m.changePin("file:demo", "user", "anything", "abcdef12")).resolves.toBeNull();
    m.fixture.settings.language = "en";
    m.fail("listMedia", "device_removed", { detail: "usb 1-2" }, 1);
    await expect(m.listMedia()).rejects.toMatchObject({ code: 4003, name: "device_removed", message: "the key medium was removed", detail: "usb 1-2" });
  });

  it("asks for the PIN unless the fixture says one is cached; clearPinCache clears it", async () => {
    const m = createMockBackend();
    let asked = 0;
    m.on("promptRequest", (p) => {
      asked++;
      void m.answerPrompt(p.id, { kind: "pin", pin: DEMO_USER_PIN });
    });
    await m.writeSeal("file:demo", "a", "image/png", "QUJD");
    m.fixture.pinCached = true; // the service now holds the PIN
    await m.writeSeal("file:demo", "b", "image/png", "QUJD");
    expect(asked).toBe(1);
    await m.clearPinCache();
    await m.writeSeal("file:demo", "c", "image/png", "QUJD");
    expect(asked).toBe(2);
    expect(m.answers.every((a) => a.answer.kind === "pin" && a.answer.pin === "•")).toBe(true);
    expect(m.fixture.audit.slice(-3).map((e) => [e.operation, e.auth])).toEqual([
      ["write_seal", "pin_entered"],
      ["write_seal", "pin_cached"],
      ["write_seal", "pin_entered"],
    ]);
  });

  it("rejects a command it has no answer for with not_supported", async () => {
    const m = createMockBackend();
    // what a command added to the bindings meets until a screen uses it and the fixture answers it
    await expect(m.answerFromFixture("addedLater" as CommandName)).rejects.toMatchObject({ code: 4010, name: "not_supported" });
  });
});
