import { describe, expect, it, vi } from "vitest";
import PinView from "../src/views/PinView.vue";
import { DEMO_SO_PIN, DEMO_USER_PIN, medium, pinState, type MockBackend } from "../src/backend/mock";
import { mockWith, mountWith, settle, tid } from "./helpers";
import type { VueWrapper } from "@vue/test-utils";

/** The medium refuses the PIN: it reports `triesLeft` for that PIN (the script says how many). */
const wrongPin = (pin: "userPin" | "soPin", triesLeft: number) => (m: MockBackend, device: string) => {
  m.updatePin(device, pin, { triesLeft });
  throw m.error("wrong_pin", { triesLeft });
};

async function change(w: VueWrapper, old: string, next: string, again = next) {
  await tid(w, "pin-old").setValue(old);
  await tid(w, "pin-new").setValue(next);
  await tid(w, "pin-confirm").setValue(again);
  await tid(w, "pin-change-submit").trigger("click");
  await settle();
}

async function unblock(w: VueWrapper, so: string, next: string, again = next) {
  await tid(w, "so-pin").setValue(so);
  await tid(w, "unblock-new").setValue(next);
  await tid(w, "unblock-confirm").setValue(again);
  await tid(w, "unblock-submit").trigger("click");
  await settle();
}

describe("PinView", () => {
  it("shows the tries left of the user and SO PIN", async () => {
    const { wrapper } = mountWith(PinView);
    await settle();
    expect((tid(wrapper, "pin-device").element as HTMLSelectElement).value).toBe("file:demo");
    expect(tid(wrapper, "pin-user-tries").text()).toBe("用户口令（介质密码）：剩余 10 / 10 次");
    expect(tid(wrapper, "pin-so-tries").text()).toBe("管理员口令 (SO PIN)：剩余 10 / 10 次");
    expect(tid(wrapper, "pin-default").exists()).toBe(true);
  });

  it("checks the form before asking the medium", async () => {
    const backend = mockWith();
    const spy = vi.spyOn(backend, "changePin");
    const { wrapper } = mountWith(PinView, { backend });
    await settle();
    const cases: [string, string, string, string][] = [
      ["", "abcdef12", "abcdef12", "请填写所有口令"],
      [DEMO_USER_PIN, "12345", "12345", "新口令长度须为 6–16 位"],
      [DEMO_USER_PIN, "12345678901234567", "12345678901234567", "新口令长度须为 6–16 位"],
      [DEMO_USER_PIN, "abcdef12", "abcdef13", "两次输入的新口令不一致"],
      [DEMO_USER_PIN, DEMO_USER_PIN, DEMO_USER_PIN, "新口令不能与原口令相同"],
    ];
    for (const [o, n, c, msg] of cases) {
      await change(wrapper, o, n, c);
      expect(tid(wrapper, "pin-message").text()).toBe(msg);
      expect(tid(wrapper, "pin-message").attributes("data-state")).toBe("error");
    }
    expect(spy).not.toHaveBeenCalled();
    expect(tid(wrapper, "pin-user-tries").text()).toContain("剩余 10 / 10 次");
  });

  it("changes the PIN with the right old PIN", async () => {
    const { wrapper, backend } = mountWith(PinView);
    // The medium, written out by this test: it holds one user PIN and changes it from that one.
    let held = DEMO_USER_PIN;
    backend.script(
      "changePin",
      (m, device, kind, oldPin, newPin) => {
        if (oldPin !== held) throw m.error("wrong_pin", { triesLeft: 9 });
        held = newPin;
        return m.answerFromFixture("changePin", device, kind, oldPin, newPin);
      },
      Infinity,
    );
    await settle();
    await change(wrapper, DEMO_USER_PIN, "24681357");
    expect(tid(wrapper, "pin-message").text()).toBe("口令已修改");
    expect(tid(wrapper, "pin-message").attributes("data-state")).toBe("ok");
    expect((tid(wrapper, "pin-old").element as HTMLInputElement).value).toBe("");
    expect(tid(wrapper, "pin-default").exists()).toBe(false);
    // the medium really has the new PIN now
    await expect(backend.changePin("file:demo", "user", DEMO_USER_PIN, "11112222")).rejects.toMatchObject({ code: 4001 });
    await expect(backend.changePin("file:demo", "user", "24681357", "11112222")).resolves.toBeNull();
  });

  it("counts wrong old PINs down to the lockout, then unblocks with the SO PIN", async () => {
    const { wrapper, backend } = mountWith(PinView, {
      mock: (f) => void (f.media[0].userPin = pinState(3, 10, { isDefault: true })),
    });
    // What the medium answers, in order: two wrong PINs (2, then 1 try left), the lockout,
    // a wrong SO PIN (9 SO tries left), then the unblock restores both counters.
    backend
      .script("changePin", wrongPin("userPin", 2))
      .script("changePin", wrongPin("userPin", 1))
      .script("changePin", (m, device) => {
        m.updatePin(device, "userPin", { triesLeft: 0, locked: true });
        throw m.error("pin_locked", { triesLeft: 0 });
      })
      .script("unblockPin", wrongPin("soPin", 9))
      .script("unblockPin", (m, device, so, next) => {
        m.updatePin(device, "userPin", { triesLeft: 10, locked: false });
        m.updatePin(device, "soPin", { triesLeft: 10 });
        return m.answerFromFixture("unblockPin", device, so, next);
      });
    await settle();
    expect(tid(wrapper, "pin-user-tries").text()).toContain("剩余 3 / 10 次");

    await change(wrapper, "11111111", "22222222");
    expect(tid(wrapper, "pin-message").text()).toBe("原口令错误，剩余 2 次");
    expect(tid(wrapper, "pin-user-tries").text()).toContain("剩余 2 / 10 次");
    await change(wrapper, "11111111", "22222222");
    expect(tid(wrapper, "pin-message").text()).toBe("原口令错误，剩余 1 次");
    expect(tid(wrapper, "pin-user-tries").attributes("data-tries")).toBe("1");
    await change(wrapper, "11111111", "22222222");
    expect(tid(wrapper, "pin-message").text()).toBe("口令已锁定，请使用管理员口令 (SO PIN) 解锁");
    expect(tid(wrapper, "pin-user-tries").text()).toContain("剩余 0 / 10 次");
    expect(tid(wrapper, "pin-locked").text()).toBe("PIN 已锁定，请使用管理员口令 (SO PIN) 解锁");
    expect(tid(wrapper, "pin-change-submit").attributes("disabled")).toBeDefined();

    // a wrong SO PIN costs an SO try
    await unblock(wrapper, "00000000", "13572468");
    expect(tid(wrapper, "pin-message").text()).toBe("管理员口令错误，剩余 9 次");
    expect(tid(wrapper, "pin-so-tries").text()).toContain("剩余 9 / 10 次");
    // mismatch is caught before the medium
    await unblock(wrapper, DEMO_SO_PIN, "13572468", "13572469");
    expect(tid(wrapper, "pin-message").text()).toBe("两次输入的新口令不一致");
    expect(tid(wrapper, "pin-so-tries").text()).toContain("剩余 9 / 10 次");

    await unblock(wrapper, DEMO_SO_PIN, "13572468");
    expect(tid(wrapper, "pin-message").text()).toBe("已解锁，新口令已生效");
    expect(tid(wrapper, "pin-user-tries").text()).toContain("剩余 10 / 10 次");
    expect(tid(wrapper, "pin-so-tries").text()).toContain("剩余 10 / 10 次");
    expect(tid(wrapper, "pin-locked").exists()).toBe(false);
    await change(wrapper, "13572468", "97531864");
    expect(tid(wrapper, "pin-message").text()).toBe("口令已修改");
  });

  it("shows the medium's own policy error", async () => {
    const backend = mockWith();
    backend.fail("changePin", "pin_policy", { detail: "不能全为相同字符" }, 1);
    const { wrapper } = mountWith(PinView, { backend });
    await settle();
    await change(wrapper, DEMO_USER_PIN, "aaaaaaaa");
    expect(tid(wrapper, "pin-message").text()).toBe("新口令不符合要求（错误码 4006）：不能全为相同字符");
  });

  it("switches media and opens on the one asked for", async () => {
    const other = medium({ id: "skf:longmai", label: "龙脉 USB Key", kind: "skf", userPin: pinState(4, 6), soPin: pinState(6, 6) });
    const { wrapper } = mountWith(PinView, { mock: (f) => void f.media.push(other), props: { initialDevice: "skf:longmai" } });
    await settle();
    expect(tid(wrapper, "pin-user-tries").text()).toContain("剩余 4 / 6 次");
    await tid(wrapper, "pin-device").setValue("file:demo");
    expect(tid(wrapper, "pin-user-tries").text()).toContain("剩余 10 / 10 次");
  });

  it("says when no medium is present or the list fails", async () => {
    const { wrapper } = mountWith(PinView, { mock: (f) => void (f.media = []) });
    await settle();
    expect(tid(wrapper, "pin-no-media").text()).toBe("未检测到介质");
    const backend = mockWith();
    backend.fail("listMedia", "internal");
    const w2 = mountWith(PinView, { backend }).wrapper;
    await settle();
    expect(tid(w2, "pin-error").text()).toContain("内部错误（错误码 9999）");
  });
});
