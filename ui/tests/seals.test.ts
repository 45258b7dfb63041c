import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { defineComponent, h } from "vue";
import SealsView from "../src/views/SealsView.vue";
import PromptDialog from "../src/components/PromptDialog.vue";
import { DEMO_USER_PIN, medium } from "../src/backend/mock";
import { mockWith, mountWith, settle, tid, tids } from "./helpers";
import type { VueWrapper } from "@vue/test-utils";

// happy-dom has no canvas backend: a recording 2D context and a fixed PNG stand in for it.
const PNG_B64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";
let drawn: string[];

beforeEach(() => {
  drawn = [];
  const ctx = new Proxy(
    {},
    {
      get: (_, prop: string) => (typeof prop === "string" && /^[a-z]/.test(prop) && !["lineCap", "lineJoin", "lineWidth", "strokeStyle", "fillStyle"].includes(prop)
        ? (...args: unknown[]) => drawn.push(`${prop}(${args.join(",")})`)
        : 3),
      set: () => true,
    },
  );
  vi.spyOn(HTMLCanvasElement.prototype, "getContext").mockImplementation(() => ctx as unknown as CanvasRenderingContext2D);
  vi.spyOn(HTMLCanvasElement.prototype, "toDataURL").mockImplementation(() => `data:image/png;base64,${PNG_B64}`);
});
afterEach(() => vi.restoreAllMocks());

const Harness = defineComponent({ setup: () => () => h("div", [h(SealsView), h(PromptDialog)]) });

async function enterPin(w: VueWrapper, pin = DEMO_USER_PIN) {
  expect(tid(w, "prompt-dialog").attributes("data-kind")).toBe("pin");
  await tid(w, "prompt-pin-input").setValue(pin);
  await tid(w, "prompt-ok").trigger("click");
  await settle();
}

describe("SealsView", () => {
  it("writes a handwritten signature from the canvas after the PIN", async () => {
    const { wrapper, backend } = mountWith(Harness);
    await settle();
    expect(tid(wrapper, "seals-empty").text()).toBe("该介质上还没有印章");
    const write = vi.spyOn(backend, "writeSeal");

    const canvas = tid(wrapper, "seal-canvas");
    await canvas.trigger("pointerdown", { clientX: 10, clientY: 20, pointerId: 1 });
    await canvas.trigger("pointermove", { clientX: 60, clientY: 40, pointerId: 1 });
    await canvas.trigger("pointermove", { clientX: 90, clientY: 30, pointerId: 1 });
    await canvas.trigger("pointerup", { clientX: 90, clientY: 30, pointerId: 1 });
    expect(drawn).toContain("moveTo(10,20)");
    expect(drawn).toContain("lineTo(60,40)");
    expect(drawn).toContain("lineTo(90,30)");

    await tid(wrapper, "seal-name").setValue("法人签名");
    await tid(wrapper, "seal-write").trigger("click");
    await settle();
    expect(tid(wrapper, "prompt-operation").text()).toBe("写入印章");
    await enterPin(wrapper);

    expect(write).toHaveBeenCalledWith("file:demo", "法人签名", "image/png", PNG_B64);
    expect(tid(wrapper, "seal-message").text()).toBe("印章已写入");
    const items = tids(wrapper, "seal-item");
    expect(items).toHaveLength(1);
    expect(items[0].text()).toContain("法人签名");
    expect(tid(wrapper, "seal-image").attributes("src")).toBe(`data:image/png;base64,${PNG_B64}`);
    expect(drawn.some((d) => d.startsWith("clearRect"))).toBe(true); // the pad is cleared afterwards
  });

  it("refuses to write without a name or without ink, and clears the pad", async () => {
    const { wrapper, backend } = mountWith(Harness);
    await settle();
    const write = vi.spyOn(backend, "writeSeal");
    await tid(wrapper, "seal-write").trigger("click");
    expect(tid(wrapper, "seal-message").text()).toBe("请填写印章名称");
    await tid(wrapper, "seal-name").setValue("空白");
    await tid(wrapper, "seal-write").trigger("click");
    expect(tid(wrapper, "seal-message").text()).toBe("请选择图片或在框内手写签名");
    await tid(wrapper, "seal-canvas").trigger("pointerdown", { clientX: 5, clientY: 5, pointerId: 1 });
    await tid(wrapper, "seal-canvas-clear").trigger("click");
    await tid(wrapper, "seal-write").trigger("click");
    expect(tid(wrapper, "seal-message").text()).toBe("请选择图片或在框内手写签名");
    expect(write).not.toHaveBeenCalled();
  });

  it("writes an image file read with FileReader", async () => {
    const { wrapper, backend } = mountWith(Harness);
    await settle();
    const write = vi.spyOn(backend, "writeSeal");
    await tid(wrapper, "seal-mode-file").trigger("click");
    const bytes = Uint8Array.from([0xff, 0xd8, 0xff, 0xe0, 1, 2, 3, 4]);
    const file = new File([bytes], "公章.jpg", { type: "image/jpeg" });
    const input = tid(wrapper, "seal-file");
    Object.defineProperty(input.element, "files", { value: [file], configurable: true });
    await input.trigger("change");
    // happy-dom's FileReader loads on its own timers
    await vi.waitFor(() => expect((tid(wrapper, "seal-name").element as HTMLInputElement).value).toBe("公章"));
    expect(tid(wrapper, "seal-preview").exists()).toBe(true);
    await tid(wrapper, "seal-write").trigger("click");
    await settle();
    await enterPin(wrapper);
    expect(write).toHaveBeenCalledWith("file:demo", "公章", "image/jpeg", btoa(String.fromCharCode(...bytes)));
    expect(tid(wrapper, "seal-image").attributes("src")).toMatch(/^data:image\/jpeg;base64,/);
  });

  it("rejects a file that is not PNG or JPEG", async () => {
    const { wrapper } = mountWith(Harness);
    await settle();
    await tid(wrapper, "seal-mode-file").trigger("click");
    const input = tid(wrapper, "seal-file");
    Object.defineProperty(input.element, "files", { value: [new File(["GIF89a"], "x.gif", { type: "image/gif" })], configurable: true });
    await input.trigger("change");
    await settle();
    expect(tid(wrapper, "seal-message").text()).toBe("只支持 PNG 或 JPEG 图片");
  });

  it("reports a duplicate name and deletes a seal after confirmation", async () => {
    const backend = mockWith();
    const { wrapper } = mountWith(Harness, { backend });
    await settle();
    await tid(wrapper, "seal-canvas").trigger("pointerdown", { clientX: 5, clientY: 5, pointerId: 1 });
    await tid(wrapper, "seal-name").setValue("章");
    await tid(wrapper, "seal-write").trigger("click");
    await settle();
    await enterPin(wrapper);
    expect(tids(wrapper, "seal-item")).toHaveLength(1);

    // The medium refuses a second seal of that name; the service now holds the PIN (cache).
    backend.fail("writeSeal", "already_exists", { detail: "章" }, 1);
    backend.fixture.pinCached = true;
    await tid(wrapper, "seal-canvas").trigger("pointerdown", { clientX: 5, clientY: 5, pointerId: 1 });
    await tid(wrapper, "seal-name").setValue("章");
    await tid(wrapper, "seal-write").trigger("click");
    await settle();
    expect(tid(wrapper, "seal-message").text()).toContain("同名容器或印章已存在（错误码 4007）");

    await tid(wrapper, "seal-delete").trigger("click");
    expect(tid(wrapper, "confirm-message").text()).toContain("章");
    await tid(wrapper, "confirm-ok").trigger("click");
    await settle();
    // the PIN is cached (30 min by default), so no second prompt
    expect(tid(wrapper, "prompt-dialog").exists()).toBe(false);
    expect(tid(wrapper, "seal-message").text()).toBe("印章已删除");
    expect(tids(wrapper, "seal-item")).toHaveLength(0);
    expect(await backend.listSeals("file:demo")).toEqual([]);
  });

  it("says when no medium can hold seals", async () => {
    const { wrapper } = mountWith(SealsView, {
      mock: (f) => void (f.media = [medium({ id: "pkcs11:softhsm", label: "SoftHSM", kind: "pkcs11" })]),
    });
    await settle();
    expect(tid(wrapper, "seals-no-media").text()).toBe("没有支持电子印章的介质");
  });
});
