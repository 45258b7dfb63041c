import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import PhoneView from "../src/views/PhoneView.vue";
import { pairedPhone } from "../src/backend/mock";
import { mockWith, mountWith, settle, tid, tids } from "./helpers";

// Only the countdown's clock is faked: the mock's promises and `settle` keep real timers.
beforeEach(() => vi.useFakeTimers({ toFake: ["setInterval", "clearInterval", "Date"] }));
afterEach(() => vi.useRealTimers());

async function showQr(w: ReturnType<typeof mountWith>["wrapper"]) {
  await settle();
  await tid(w, "phone-start").trigger("click");
  await settle();
}

describe("PhoneView", () => {
  it("shows the QR code with a live countdown", async () => {
    const { wrapper, backend } = mountWith(PhoneView);
    await showQr(wrapper);
    expect(backend.calls).toContain("startPhonePairing");
    expect(tid(wrapper, "qr-code").exists()).toBe(true);
    expect(tid(wrapper, "phone-countdown").text()).toBe("剩余有效时间: 5分00秒");
    vi.advanceTimersByTime(3000);
    await settle();
    expect(tid(wrapper, "phone-countdown").text()).toBe("剩余有效时间: 4分57秒");
    vi.advanceTimersByTime(60_000);
    await settle();
    expect(tid(wrapper, "phone-countdown").text()).toBe("剩余有效时间: 3分57秒");
  });

  it("counts down in English as m:ss", async () => {
    const { wrapper } = mountWith(PhoneView, { locale: "en" });
    await showQr(wrapper);
    vi.advanceTimersByTime(3000);
    await settle();
    expect(tid(wrapper, "phone-countdown").text()).toBe("Expires in 4:57");
  });

  it("offers to regenerate once the code expired, and shows a fresh one", async () => {
    const backend = mockWith((f) => (f.phoneOfferSecs = 2));
    const { wrapper } = mountWith(PhoneView, { backend });
    await showQr(wrapper);
    const first = tid(wrapper, "qr-code").attributes("aria-label");
    expect(tid(wrapper, "phone-regenerate").exists()).toBe(false);
    vi.advanceTimersByTime(2000);
    await settle();
    expect(tid(wrapper, "phone-countdown").exists()).toBe(false);
    expect(tid(wrapper, "phone-expired").text()).toBe("二维码已过期，请重新生成");
    await tid(wrapper, "phone-regenerate").trigger("click");
    await settle();
    expect(backend.calls.filter((c) => c === "startPhonePairing")).toHaveLength(2);
    expect(tid(wrapper, "phone-countdown").text()).toBe("剩余有效时间: 0分02秒");
    expect(tid(wrapper, "qr-code").attributes("aria-label")).not.toBe(first);
  });

  it("treats the service's offer-expired event as expiry", async () => {
    const { wrapper, backend } = mountWith(PhoneView);
    await showQr(wrapper);
    backend.emit("phoneEvent", { kind: "offerExpired" });
    await settle();
    expect(tid(wrapper, "phone-regenerate").exists()).toBe(true);
  });

  it("shows the scanned phone's code large and confirms it through the backend", async () => {
    const { wrapper, backend } = mountWith(PhoneView);
    await showQr(wrapper);
    const confirm = vi.spyOn(backend, "confirmPhonePairing");
    const request = backend.phoneScans("张三的手机", "483920");
    await settle();
    expect(tid(wrapper, "qr-code").exists()).toBe(false);
    expect(tid(wrapper, "phone-code").text()).toBe("483920");
    expect(tid(wrapper, "phone-code-box").text()).toContain("张三的手机");
    await tid(wrapper, "phone-confirm").trigger("click");
    await settle();
    expect(confirm).toHaveBeenCalledWith(request);
    expect(tid(wrapper, "phone-code").exists()).toBe(false);
    expect(tid(wrapper, "phone-message").text()).toBe("已配对：张三的手机");
    const rows = tids(wrapper, "phone-row");
    expect(rows).toHaveLength(1);
    expect(rows[0].text()).toContain("张三的手机");
  });

  it("rejects a phone whose code differs", async () => {
    const { wrapper, backend } = mountWith(PhoneView);
    await showQr(wrapper);
    const reject = vi.spyOn(backend, "rejectPhonePairing");
    const request = backend.phoneScans("陌生手机", "111111");
    await settle();
    await tid(wrapper, "phone-reject").trigger("click");
    await settle();
    expect(reject).toHaveBeenCalledWith(request);
    expect(tid(wrapper, "phone-message").text()).toBe("已拒绝该手机的配对");
    expect(tid(wrapper, "phone-none").exists()).toBe(true);
  });

  it("asks before revoking a phone", async () => {
    const phone = pairedPhone("张三的手机");
    const backend = mockWith((f) => f.phone.phones.push(phone));
    const { wrapper } = mountWith(PhoneView, { backend });
    await settle();
    const revoke = vi.spyOn(backend, "revokePhone");
    await tid(wrapper, "phone-revoke").trigger("click");
    expect(tid(wrapper, "confirm-dialog").exists()).toBe(true);
    expect(tid(wrapper, "confirm-message").text()).toContain("张三的手机");
    await tid(wrapper, "confirm-cancel").trigger("click");
    expect(tid(wrapper, "confirm-dialog").exists()).toBe(false);
    expect(revoke).not.toHaveBeenCalled();

    await tid(wrapper, "phone-revoke").trigger("click");
    await tid(wrapper, "confirm-ok").trigger("click");
    await settle();
    expect(revoke).toHaveBeenCalledWith(phone.peer);
    expect(tid(wrapper, "phone-state").text()).toBe("已撤销");
    expect(tid(wrapper, "phone-revoke").exists()).toBe(false);
  });

  it("follows the phone going online and offline from the event", async () => {
    const phone = pairedPhone("张三的手机", { online: false, lastSeenMs: null });
    const backend = mockWith((f) => f.phone.phones.push(phone));
    const { wrapper } = mountWith(PhoneView, { backend });
    await settle();
    expect(tid(wrapper, "phone-state").text()).toBe("离线");
    expect(tid(wrapper, "phone-last-seen").text()).toBe("从未连接");
    backend.phoneLink(phone.peer, true);
    await settle();
    expect(tid(wrapper, "phone-state").text()).toBe("在线");
    expect(tid(wrapper, "phone-last-seen").text()).not.toBe("从未连接");
    backend.phoneLink(phone.peer, false);
    await settle();
    expect(tid(wrapper, "phone-state").text()).toBe("离线");
  });

  it("renames a phone", async () => {
    const phone = pairedPhone("张三的手机");
    const backend = mockWith((f) => f.phone.phones.push(phone));
    const { wrapper } = mountWith(PhoneView, { backend });
    await settle();
    const rename = vi.spyOn(backend, "renamePhone");
    await tid(wrapper, "phone-rename").trigger("click");
    await tid(wrapper, "phone-rename-input").setValue("投标专用手机");
    await tid(wrapper, "phone-rename-save").trigger("click");
    await settle();
    expect(rename).toHaveBeenCalledWith(phone.peer, "投标专用手机");
    expect(tid(wrapper, "phone-name").text()).toBe("投标专用手机");
  });

  it("says what to configure when phones cannot reach the PC", async () => {
    const backend = mockWith((f) => {
      f.phone.pairingAvailable = false;
      f.phone.listen = [];
    });
    const { wrapper } = mountWith(PhoneView, { backend });
    await settle();
    const banner = tid(wrapper, "phone-not-configured").text();
    expect(banner).toContain("phone_listen");
    expect(banner).toContain("/home/demo/.config/keybridge/settings.toml");
    expect(tid(wrapper, "phone-start").attributes("disabled")).toBeDefined();
  });

  it("warns when the secrets fell back to a file", async () => {
    const backend = mockWith((f) => {
      f.phone.secrets = { kind: "file", path: "/home/demo/.local/share/keybridge/phones/secrets.json", fallback: true, reason: "no Secret Service" };
    });
    const { wrapper } = mountWith(PhoneView, { backend });
    await settle();
    expect(tid(wrapper, "phone-secrets").text()).toContain("/home/demo/.local/share/keybridge/phones/secrets.json");
    expect(tid(wrapper, "phone-secrets-fallback").text()).toContain("no Secret Service");
  });

  it("shows a refused connection with its stable code", async () => {
    const { wrapper, backend } = mountWith(PhoneView);
    await settle();
    backend.emit("phoneEvent", { kind: "refused", remote: "192.168.1.33:50122", error: backend.linkError("phone_revoked") });
    await settle();
    const text = tid(wrapper, "phone-message").text();
    expect(text).toContain("192.168.1.33:50122");
    expect(text).toContain("该手机的配对已被撤销");
    expect(text).toContain("6010");
  });
});
