import { afterEach, describe, expect, it, vi } from "vitest";
import { defineComponent, h } from "vue";
import App from "../src/App.vue";
import RenewalView from "../src/views/RenewalView.vue";
import PromptDialog from "../src/components/PromptDialog.vue";
import { DEMO_DEVICE, DEMO_USER_PIN, certKey, confirmBinding, devCaRenewal, usbKeyMedium, type MockBackend } from "../src/backend/mock";
import { mockWith, mountWith, settle, tid, tids } from "./helpers";
import type { VueWrapper } from "@vue/test-utils";

const Harness = defineComponent({ setup: () => () => h("div", [h(RenewalView), h(PromptDialog)]) });
const SIGN = { device: DEMO_DEVICE, container: "demo", usage: "sign" as const };

afterEach(() => vi.useRealTimers());

async function enterPin(w: VueWrapper) {
  expect(tid(w, "prompt-dialog").attributes("data-kind")).toBe("pin");
  await tid(w, "prompt-pin-input").setValue(DEMO_USER_PIN);
  await tid(w, "prompt-ok").trigger("click");
  await settle();
}

/** 获取二维码 with the PIN; the binding the mock answered. */
async function getQr(w: VueWrapper, backend: MockBackend) {
  const bind = vi.spyOn(backend, "renewalBind");
  await tid(w, "renewal-bind").trigger("click");
  await settle();
  await enterPin(w);
  const binding = await bind.mock.results[0].value;
  bind.mockRestore();
  return binding as { bindingId: string; qrUrl: string };
}

describe("RenewalView", () => {
  it("labels the development CA and lists each certificate's state", async () => {
    const backend = mockWith((f) => {
      f.renewal = devCaRenewal();
      f.renewal.certificates[certKey(SIGN)] = { bound: true, renewal: "rejected", kind: "renew", reason: "材料不全" };
    });
    const { wrapper } = mountWith(Harness, { backend });
    await settle();
    expect(tid(wrapper, "renewal-dev-ca").text()).toContain("开发用 CA（仅供测试）");
    expect(tid(wrapper, "renewal-operator-url").text()).toContain("/op?key=");
    expect(tid(wrapper, "renewal-medium").text()).toContain("DEMO-2024-0001");
    const cards = tids(wrapper, "renewal-cert");
    expect(cards).toHaveLength(2);
    expect(cards[0].find('[data-testid="renewal-validity"]').text()).toBe("有效 · 剩余 365 天");
    expect(cards[0].find('[data-testid="renewal-bound"]').text()).toBe("已绑定");
    expect(cards[0].find('[data-testid="renewal-progress"]').text()).toBe("已驳回 · 续期 · 原因：材料不全");
    expect(cards[1].find('[data-testid="renewal-bound"]').text()).toBe("未绑定");
    expect(cards[1].find('[data-testid="renewal-progress"]').text()).toBe("未申请");
  });

  it("shows 临期 and 过期 with the days", async () => {
    const { wrapper } = mountWith(Harness, {
      mock: (f) => {
        const [sign, enc] = f.media[0].certificates;
        Object.assign(sign, { daysLeft: 20, status: "nearExpiry" });
        Object.assign(enc, { daysLeft: -3, status: "expired" });
      },
    });
    await settle();
    const badges = tids(wrapper, "renewal-validity").map((b) => b.text());
    expect(badges).toEqual(["临期 · 剩余 20 天", "过期 · 已过期 3 天"]);
  });

  it("shows the QR code with a 30:00 countdown and offers a new one once it expired", async () => {
    vi.useFakeTimers({ toFake: ["setInterval", "clearInterval", "Date"] });
    const { wrapper, backend } = mountWith(Harness);
    await settle();
    expect(tid(wrapper, "qr-code").exists()).toBe(false);
    const first = await getQr(wrapper, backend);
    expect(tid(wrapper, "qr-code").exists()).toBe(true);
    expect(tid(wrapper, "renewal-qr-url").text()).toBe(first.qrUrl);
    expect(tid(wrapper, "renewal-loopback").exists()).toBe(true);
    expect(tid(wrapper, "renewal-countdown").text()).toBe("剩余有效时间: 30分00秒");
    vi.advanceTimersByTime(3000);
    await settle();
    expect(tid(wrapper, "renewal-countdown").text()).toBe("剩余有效时间: 29分57秒");
    expect(tid(wrapper, "renewal-bind-state").attributes("data-state")).toBe("pending");
    expect(tid(wrapper, "renewal-rebind").exists()).toBe(false);

    vi.advanceTimersByTime((30 * 60 - 3) * 1000);
    await settle();
    expect(tid(wrapper, "qr-code").exists()).toBe(false);
    expect(tid(wrapper, "renewal-bind-state").text()).toBe("二维码已过期，请重新获取");

    // 重新获取: a new code, the countdown from 30:00 again.
    await tid(wrapper, "renewal-rebind").trigger("click");
    await settle();
    await enterPin(wrapper);
    expect(tid(wrapper, "qr-code").exists()).toBe(true);
    expect(tid(wrapper, "renewal-qr-url").text()).not.toBe(first.qrUrl);
    expect(tid(wrapper, "renewal-countdown").text()).toBe("剩余有效时间: 30分00秒");
  });

  it("the bound event updates the binding and the certificate cards", async () => {
    const { wrapper, backend } = mountWith(Harness);
    await settle();
    const b = await getQr(wrapper, backend);
    const cards = () => tids(wrapper, "renewal-cert");
    expect(cards()[0].find('[data-testid="renewal-bound"]').text()).toBe("未绑定");
    // Another binding's event is not this one's.
    backend.emit("renewalEvent", { kind: "expired", bindingId: "b-other", serials: [], subjects: [] });
    await settle();
    expect(tid(wrapper, "renewal-bind-state").attributes("data-state")).toBe("pending");
    confirmBinding(backend, b.bindingId);
    await settle();
    expect(tid(wrapper, "renewal-bind-state").text()).toBe("绑定成功");
    expect(tid(wrapper, "qr-code").exists()).toBe(false);
    expect(cards()[0].find('[data-testid="renewal-bound"]').text()).toBe("已绑定");
  });

  it("offers 安装证书 only once approved, then installs with the PIN", async () => {
    const backend = mockWith((f) => {
      f.renewal = devCaRenewal();
      f.renewal.certificates[certKey(SIGN)] = { bound: true, renewal: "applied", kind: "renew", reason: null };
    });
    const { wrapper } = mountWith(Harness, { backend });
    await settle();
    expect(tid(wrapper, "renewal-install").exists()).toBe(false);
    expect(tids(wrapper, "renewal-progress")[0].text()).toBe("已申请，等待审核 · 续期");

    // The CA approves: the notice reloads the page.
    backend.fixture.renewal!.certificates[certKey(SIGN)].renewal = "approved";
    backend.emit("renewalEvent", { kind: "approved", bindingId: null, serials: [], subjects: ["演示用户 (DEMO)"] });
    await settle();
    expect(tids(wrapper, "renewal-install")).toHaveLength(1);
    expect(wrapper.text()).toContain("安装过程中请勿拔出介质");

    const install = vi.spyOn(backend, "renewalInstall");
    const oldSerial = tids(wrapper, "renewal-cert")[0].attributes("data-serial");
    await tid(wrapper, "renewal-install").trigger("click");
    await settle();
    expect(tid(wrapper, "renewal-installing").text()).toContain("请勿拔出介质");
    await enterPin(wrapper);
    expect(install).toHaveBeenCalledWith(SIGN);
    expect(tid(wrapper, "renewal-installing").exists()).toBe(false);
    expect(tid(wrapper, "renewal-install-result").text()).toContain("证书已安装");
    expect(tid(wrapper, "renewal-install-result").classes()).toContain("ok-text");
    expect(tid(wrapper, "renewal-install").exists()).toBe(false);
    expect(tids(wrapper, "renewal-cert")[0].attributes("data-serial")).not.toBe(oldSerial);
  });

  it("while a bound certificate waits, asks the CA every few seconds: the phone's application, then the approval", async () => {
    vi.useFakeTimers({ toFake: ["setInterval", "clearInterval", "Date"] });
    const backend = mockWith((f) => {
      f.renewal = devCaRenewal();
      f.renewal.certificates[certKey(SIGN)] = { bound: true, renewal: "none", kind: null, reason: null };
    });
    const check = vi.spyOn(backend, "renewalCheck");
    const { wrapper, toast } = mountWith(Harness, { backend });
    await settle();
    const progress = () => tids(wrapper, "renewal-progress")[0].attributes("data-progress");
    expect(progress()).toBe("none");
    // Applied for and paid on the phone: nothing is pushed to the PC, the page asks.
    backend.fixture.renewal!.certificates[certKey(SIGN)].renewal = "applied";
    vi.advanceTimersByTime(10_000);
    await settle();
    expect(check).toHaveBeenCalledTimes(1);
    expect(progress()).toBe("applied");
    // Approved by the operator: the next look tells it (an event, a notice) and offers 安装证书.
    backend.fixture.renewal!.certificates[certKey(SIGN)].renewal = "approved";
    vi.advanceTimersByTime(10_000);
    await settle();
    expect(progress()).toBe("approved");
    expect(tids(wrapper, "renewal-install")).toHaveLength(1);
    expect(toast.items.map((t) => t.text).join()).toContain("续期申请已审核通过：演示用户");
    // Nothing left to wait for: the CA is no longer asked.
    vi.advanceTimersByTime(60_000);
    await settle();
    expect(check).toHaveBeenCalledTimes(2);
  });

  it("does not ask the CA while nothing is bound", async () => {
    vi.useFakeTimers({ toFake: ["setInterval", "clearInterval", "Date"] });
    const { wrapper, backend } = mountWith(Harness);
    const check = vi.spyOn(backend, "renewalCheck");
    await settle();
    expect(tids(wrapper, "renewal-cert")).toHaveLength(2);
    vi.advanceTimersByTime(60_000);
    await settle();
    expect(check).not.toHaveBeenCalled();
  });

  it("shows an install failure with its code", async () => {
    const backend = mockWith((f) => {
      f.renewal = devCaRenewal();
      f.renewal.certificates[certKey(SIGN)] = { bound: true, renewal: "approved", kind: "renew", reason: null };
    });
    backend.fail("renewalInstall", "install_rolled_back", {}, 1);
    const { wrapper } = mountWith(Harness, { backend });
    await settle();
    await tid(wrapper, "renewal-install").trigger("click");
    await settle();
    expect(tid(wrapper, "renewal-install-result").text()).toContain("7012");
    expect(tid(wrapper, "renewal-install-result").classes()).toContain("error-text");
  });

  it("blocks renewal while more than one key is plugged in", async () => {
    const { wrapper, backend } = mountWith(Harness, { mock: (f) => void f.media.push(usbKeyMedium()) });
    await settle();
    expect(tid(wrapper, "renewal-blocked").text()).toContain("检测到多个介质，无法续期");
    expect(tid(wrapper, "renewal-blocked").text()).toContain("7015");
    expect(tid(wrapper, "renewal-bind").exists()).toBe(false);
    expect(tids(wrapper, "renewal-cert")).toHaveLength(0);
    // Unplugging the other key lifts the block.
    backend.removeMedium(usbKeyMedium().id);
    await settle();
    expect(tid(wrapper, "renewal-blocked").exists()).toBe(false);
    expect(tid(wrapper, "renewal-bind").exists()).toBe(true);
  });

  it("is reachable from the navigation, in English too", async () => {
    const { wrapper } = mountWith(App, { mock: (f) => void (f.settings.language = "en") });
    await settle();
    expect(tid(wrapper, "nav-renewal").text()).toBe("Renewal");
    await tid(wrapper, "nav-renewal").trigger("click");
    await settle();
    expect(tid(wrapper, "renewal-view").exists()).toBe(true);
    expect(tid(wrapper, "renewal-dev-ca").text()).toContain("Development CA (testing only)");
  });
});
