import { describe, expect, it, vi } from "vitest";
import App from "../src/App.vue";
import { appError, DEMO_USER_PIN, medium, pinState } from "../src/backend/mock";
import { mockWith, mountWith, settle, tid, tids } from "./helpers";

const NAV = ["nav-home", "nav-pin", "nav-seals", "nav-audit", "nav-settings"];

describe("App: first run", () => {
  it("shows only the agreement until it is accepted", async () => {
    const backend = mockWith((f) => void (f.appInfo.agreementAccepted = false));
    const accept = vi.spyOn(backend, "acceptAgreement");
    const { wrapper } = mountWith(App, { backend });
    await settle();
    expect(tid(wrapper, "agreement").exists()).toBe(true);
    expect(tid(wrapper, "agreement").text()).toContain("隐私政策");
    expect(tid(wrapper, "agreement").text()).toContain("用户协议");
    expect(tid(wrapper, "agreement").text()).toContain("版本 2024.1");
    for (const n of NAV) expect(tid(wrapper, n).exists()).toBe(false);
    expect(tid(wrapper, "medium").exists()).toBe(false);
    expect(backend.calls).not.toContain("listMedia");
    expect(backend.calls).not.toContain("pendingPrompts");

    await tid(wrapper, "agreement-accept").trigger("click");
    await settle();
    expect(accept).toHaveBeenCalledWith("2024.1");
    expect(backend.fixture.appInfo.agreementAccepted).toBe(true);
    expect(tid(wrapper, "agreement").exists()).toBe(false);
    for (const n of NAV) expect(tid(wrapper, n).exists()).toBe(true);
    expect(tids(wrapper, "medium")).toHaveLength(1);
  });

  it("quits when the agreement is declined", async () => {
    const backend = mockWith((f) => void (f.appInfo.agreementAccepted = false));
    const { wrapper } = mountWith(App, { backend });
    await settle();
    await tid(wrapper, "agreement-decline").trigger("click");
    await settle();
    expect(backend.quitRequested).toBe(true);
    expect(backend.fixture.appInfo.agreementAccepted).toBe(false);
    expect(tid(wrapper, "nav-home").exists()).toBe(false);
  });

  it("offers the agreement in English and remembers the choice", async () => {
    const backend = mockWith((f) => void (f.appInfo.agreementAccepted = false));
    const { wrapper } = mountWith(App, { backend });
    await settle();
    await tid(wrapper, "agreement-language").trigger("click");
    await settle();
    expect(tid(wrapper, "agreement").text()).toContain("Privacy policy");
    expect(tid(wrapper, "agreement-accept").text()).toBe("Accept and continue");
    expect(backend.fixture.settings.language).toBe("en");
  });
});

describe("App: shell", () => {
  it("starts in the saved language and reports the first paint", async () => {
    const { wrapper, backend } = mountWith(App, { mock: (f) => void (f.settings.language = "en") });
    await settle();
    await new Promise((r) => requestAnimationFrame(() => r(null)));
    await settle();
    expect(tid(wrapper, "nav-home").text()).toBe("Media & certificates");
    expect(tid(wrapper, "nav-settings").text()).toBe("Settings");
    expect(backend.calls.filter((c) => c === "appReady")).toHaveLength(1);
  });

  it("navigates between every screen and opens certificate details", async () => {
    const { wrapper } = mountWith(App);
    await settle();
    const screens: [string, string][] = [
      ["nav-pin", "pin-view"],
      ["nav-seals", "seals-view"],
      ["nav-audit", "audit-view"],
      ["nav-settings", "settings-view"],
      ["nav-phone", "phone-view"],
      ["nav-home", "home"],
    ];
    for (const [nav, view] of screens) {
      await tid(wrapper, nav).trigger("click");
      await settle();
      expect(tid(wrapper, view).exists()).toBe(true);
      expect(tid(wrapper, nav).classes()).toContain("active");
    }
    await tids(wrapper, "cert-row")[0].trigger("click");
    await settle();
    expect(tid(wrapper, "cert-details").exists()).toBe(true);
    expect(tid(wrapper, "field-subject").text()).toContain("演示用户 (DEMO)");
    await tid(wrapper, "back").trigger("click");
    await settle();
    expect(tid(wrapper, "home").exists()).toBe(true);
  });

  it("deletes a certificate end to end through the global PIN dialog", async () => {
    const { wrapper, backend } = mountWith(App);
    await settle();
    await tids(wrapper, "cert-row")[1].trigger("click");
    await settle();
    await tid(wrapper, "delete-cert").trigger("click");
    await tid(wrapper, "confirm-ok").trigger("click");
    await settle();
    expect(tid(wrapper, "prompt-dialog").attributes("data-kind")).toBe("pin");
    await tid(wrapper, "prompt-pin-input").setValue(DEMO_USER_PIN);
    await tid(wrapper, "prompt-ok").trigger("click");
    await settle();
    expect(tid(wrapper, "home").exists()).toBe(true);
    expect(tids(wrapper, "cert-row").map((r) => r.attributes("data-usage"))).toEqual(["sign"]);
    expect(tid(wrapper, "toast").text()).toBe("证书已删除");
    expect(backend.fixture.audit[backend.fixture.audit.length - 1]).toMatchObject({ operation: "delete_certificate", ok: true });
  });

  it("shows an expiry notice as a dismissable banner on home", async () => {
    const { wrapper, backend } = mountWith(App);
    await settle();
    await tid(wrapper, "nav-audit").trigger("click");
    const [m] = await backend.listMedia();
    backend.emit("expiryNotice", { certificates: [{ ...m.certificates[0], status: "nearExpiry", daysLeft: 15 }] });
    await tid(wrapper, "nav-home").trigger("click");
    await settle();
    expect(tid(wrapper, "expiry-banner").text()).toContain("演示用户 (DEMO)（签名，剩余 15 天）");
    await tid(wrapper, "expiry-dismiss").trigger("click");
    expect(tid(wrapper, "expiry-banner").exists()).toBe(false);
  });

  it("jumps from a locked medium to the PIN page for that medium", async () => {
    const { wrapper } = mountWith(App, {
      mock: (f) => void (f.media = [medium({ id: "file:a", label: "A", userPin: pinState(0, 5, { locked: true }), soPin: pinState(5, 5) })]),
    });
    await settle();
    await tid(wrapper, "badge-locked").trigger("click");
    await settle();
    expect(tid(wrapper, "pin-locked").text()).toBe("PIN 已锁定，请使用管理员口令 (SO PIN) 解锁");
    expect(tid(wrapper, "pin-user-tries").text()).toContain("剩余 0 / 5 次");
  });

  it("shows a start-up error and retries", async () => {
    const backend = mockWith();
    backend.fail("appInfo", "internal", {}, 1);
    const { wrapper } = mountWith(App, { backend });
    await settle();
    expect(tid(wrapper, "app-error").text()).toContain("KeyBridge 无法启动");
    await wrapper.find('[data-testid="app-error"] button').trigger("click");
    await settle();
    expect(tid(wrapper, "nav-home").exists()).toBe(true);
  });
});

describe("App: start-up problems", () => {
  it("shows what went wrong at start, with codes, and can be dismissed", async () => {
    const backend = mockWith((f) => {
      f.appInfo.startupProblems = [
        appError("config_invalid", "zh-CN", { detail: "settings.toml: pin_cache_minutes must be …" }),
        appError("bridge_unavailable", "zh-CN", { detail: "127.0.0.1:17210 in use" }),
      ];
      f.appInfo.bridgeUrl = null;
    });
    const { wrapper } = mountWith(App, { backend });
    await settle();
    const items = tids(wrapper, "startup-problem");
    expect(items).toHaveLength(2);
    expect(items[0].text()).toContain("9002");
    expect(items[0].text()).toContain("pin_cache_minutes");
    expect(items[1].text()).toContain("本地签名服务未能启动");
    // The app still works: the demo medium is listed.
    expect(tids(wrapper, "medium")).toHaveLength(1);
    await tid(wrapper, "startup-problems-dismiss").trigger("click");
    await settle();
    expect(tid(wrapper, "startup-problems").exists()).toBe(false);
  });

  it("shows nothing when the start was clean", async () => {
    const { wrapper } = mountWith(App, { backend: mockWith() });
    await settle();
    expect(tid(wrapper, "startup-problems").exists()).toBe(false);
  });
});

describe("App: scheduled update check", () => {
  it("shows a newer version found by a scheduled check, and can be dismissed", async () => {
    const backend = mockWith();
    const { wrapper } = mountWith(App, { backend });
    await settle();
    expect(tid(wrapper, "update-banner").exists()).toBe(false);
    backend.emit("updateStatus", { current: "0.1.0", latest: "0.2.0", available: true, notes: "SM2 性能改进", downloadUrl: "https://example.cn/kb.deb" });
    await settle();
    const banner = tid(wrapper, "update-banner");
    expect(banner.text()).toContain("0.2.0");
    expect(banner.text()).toContain("0.1.0");
    expect(banner.text()).toContain("https://example.cn/kb.deb");
    await tid(wrapper, "update-dismiss").trigger("click");
    await settle();
    expect(tid(wrapper, "update-banner").exists()).toBe(false);
  });
});

