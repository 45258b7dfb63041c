import { describe, expect, it } from "vitest";
import HomeView from "../src/views/HomeView.vue";
import { certificate, createMockBackend, medium, pinState, showcaseFixture, type CertSpec } from "../src/backend/mock";
import { mockWith, mountWith, settle, tid, tids } from "./helpers";

const CA_ID = "pcsc:Feitian 00";
/** A USB key as the service lists it: the statuses are stated, as the service computed them. */
const caMedium = (more: CertSpec[] = []) =>
  medium({
    id: CA_ID,
    label: "投标专用 USB Key",
    kind: "pcsc",
    manufacturer: "飞天诚信",
    serial: "FT0012345678",
    certificates: [
      { usage: "sign" as const, cn: "张三", issuerCn: "CFCA SM2 OCA1", daysLeft: 20, status: "nearExpiry" as const },
      { usage: "encrypt" as const, cn: "张三", issuerCn: "CFCA SM2 OCA1", daysLeft: -3, status: "expired" as const },
      ...more,
    ].map((c) => certificate(CA_ID, c)),
  });

describe("HomeView", () => {
  it("shows the demo medium with its badges, tries and both certificates", async () => {
    const { wrapper } = mountWith(HomeView);
    await settle();
    const media = tids(wrapper, "medium");
    expect(media).toHaveLength(1);
    const m = media[0];
    expect(m.attributes("data-device-id")).toBe("file:demo");
    expect(m.text()).toContain("KeyBridge 演示介质 (DEMO)");
    expect(tid(wrapper, "badge-kind").text()).toBe("文件型设备");
    expect(tid(wrapper, "badge-demo").exists()).toBe(true);
    expect(tid(wrapper, "user-pin-tries").text()).toContain("剩余 10 次");
    expect(m.text()).toContain("DEMO-2024-0001");
    const rows = tids(wrapper, "cert-row");
    expect(rows.map((r) => r.attributes("data-usage"))).toEqual(["sign", "encrypt"]);
    expect(rows[0].text()).toContain("签名");
    expect(rows[1].text()).toContain("加密");
    expect(rows[0].text()).toContain("演示用户 (DEMO)");
    expect(rows[0].text()).toContain("KeyBridge 演示 CA (DEMO)");
    expect(rows[0].text()).toContain("SM2 (256 bit)");
    expect(tid(wrapper, "badge-near-expiry").exists()).toBe(false);
  });

  it("flags near-expiry (with days left), expired and not-yet-valid certificates", async () => {
    const { wrapper } = mountWith(HomeView, {
      mock: (f) => {
        f.media = [caMedium([{ usage: "sign", container: "next", cn: "李四", daysLeft: 400, startsInDays: 5, status: "notYetValid" }])];
      },
    });
    await settle();
    expect(tid(wrapper, "badge-kind").text()).toBe("智能卡");
    const near = tid(wrapper, "badge-near-expiry");
    expect(near.text()).toMatch(/临期（剩余 (19|20) 天）/);
    expect(tid(wrapper, "badge-expired").text()).toBe("已过期");
    expect(tid(wrapper, "badge-not-yet-valid").text()).toBe("未生效");
    expect(tid(wrapper, "badge-demo").exists()).toBe(false);
  });

  it("shows an empty state when no medium is present", async () => {
    const { wrapper } = mountWith(HomeView, { mock: (f) => void (f.media = []) });
    await settle();
    expect(tid(wrapper, "home-empty").text()).toContain("未检测到介质");
    expect(tids(wrapper, "medium")).toHaveLength(0);
  });

  it("shows an error state with the code when listMedia fails, and recovers on retry", async () => {
    const backend = mockWith();
    backend.fail("listMedia", "io", { detail: "pcscd 未运行" }, 1);
    const { wrapper } = mountWith(HomeView, { backend });
    await settle();
    const err = tid(wrapper, "home-error");
    expect(err.text()).toContain("无法读取介质列表");
    expect(err.text()).toContain("读写失败");
    expect(err.text()).toContain("9001");
    expect(err.text()).toContain("pcscd 未运行");
    await tid(wrapper, "home-retry").trigger("click");
    await settle();
    expect(tid(wrapper, "home-error").exists()).toBe(false);
    expect(tids(wrapper, "medium")).toHaveLength(1);
  });

  it("re-reads the list on media-changed (a key inserted, then pulled out)", async () => {
    const { wrapper, backend } = mountWith(HomeView);
    await settle();
    backend.addMedium(caMedium());
    await settle();
    expect(tids(wrapper, "medium").map((m) => m.attributes("data-device-id"))).toEqual(["file:demo", "pcsc:Feitian 00"]);
    expect(tid(wrapper, "multi-medium-warning").text()).toContain("2 个介质");
    backend.removeMedium("file:demo");
    await settle();
    expect(tids(wrapper, "medium").map((m) => m.attributes("data-device-id"))).toEqual(["pcsc:Feitian 00"]);
  });

  it("shows the locked state of a medium whose user PIN has no tries left", async () => {
    const { wrapper } = mountWith(HomeView, {
      mock: (f) => void (f.media[0].userPin = pinState(0, 10, { locked: true, isDefault: true })),
    });
    await settle();
    expect(tid(wrapper, "badge-locked").text()).toBe("口令已锁定");
    expect(tid(wrapper, "user-pin-tries").text()).toContain("剩余 0 次");
  });

  it("shows the browser demo's fixture: the demo key beside a USB key with a near-expiry certificate", async () => {
    const { wrapper } = mountWith(HomeView, { backend: createMockBackend(showcaseFixture()) });
    await settle();
    expect(tids(wrapper, "medium").map((m) => m.attributes("data-device-id"))).toEqual(["file:demo", "pcsc:Feitian ePass3000GM 00"]);
    expect(tids(wrapper, "cert-row").map((r) => r.attributes("data-usage"))).toEqual(["sign", "encrypt", "sign", "encrypt"]);
    expect(tids(wrapper, "badge-near-expiry")).toHaveLength(1);
    expect(tid(wrapper, "badge-near-expiry").text()).toBe("临期（剩余 20 天）");
  });

  it("opens a certificate on click", async () => {
    const { wrapper } = mountWith(HomeView);
    await settle();
    await tids(wrapper, "cert-row")[1].trigger("click");
    expect(wrapper.emitted("open")?.[0]).toEqual([{ device: "file:demo", container: "demo", usage: "encrypt" }]);
  });

  it("shows the expiry banner it is given and asks to dismiss it", async () => {
    const { wrapper, backend } = mountWith(HomeView);
    await settle();
    const media = await backend.listMedia();
    await wrapper.setProps({ expiry: [{ ...media[0].certificates[0], daysLeft: 12 }] });
    expect(tid(wrapper, "expiry-banner").text()).toContain("演示用户 (DEMO)（签名，剩余 12 天）");
    await tid(wrapper, "expiry-dismiss").trigger("click");
    expect(wrapper.emitted("dismissExpiry")).toHaveLength(1);
  });
});
