import { nextTick } from "vue";
import { describe, expect, it } from "vitest";
import App from "../src/App.vue";
import BleView from "../src/views/BleView.vue";
import HomeView from "../src/views/HomeView.vue";
import { bleKey, bleKeyMedium } from "../src/backend/mock";
import { ErrorCode } from "../src/backend";
import { mockWith, mountWith, settle, tid } from "./helpers";

const A = "C0:FF:EE:00:00:01";
const B = "C0:FF:EE:00:00:02";

describe("BleView", () => {
  it("lists 已连接 and 未连接 keys with name, address, signal, paired and remembered", async () => {
    const { wrapper } = mountWith(BleView, {
      mock: (f) => {
        f.ble.connected = [bleKey({ address: A, name: "蓝牙Key 投标", rssi: -55, paired: true, remembered: true, device: "ble:openpgp-A" })];
        f.ble.notConnected = [
          bleKey({ address: B, name: "蓝牙Key 备用", rssi: -77 }),
          bleKey({ address: "C0:FF:EE:00:00:03", name: null, rssi: null, remembered: true, inRange: false }),
        ];
      },
    });
    await settle();
    const connected = tid(wrapper, "ble-connected");
    expect(connected.text()).toContain("蓝牙Key 投标");
    expect(connected.text()).toContain(A);
    expect(connected.text()).toContain("已配对");
    expect(connected.find('[data-bars="4"]').exists()).toBe(true);
    expect(connected.find('[data-testid="ble-disconnect"]').text()).toBe("断开");
    const rows = tid(wrapper, "ble-not-connected").findAll('[data-testid="ble-key"]');
    expect(rows.map((r) => r.attributes("data-address"))).toEqual([B, "C0:FF:EE:00:00:03"]);
    expect(rows[0].text()).toContain("信号 -77 dBm");
    expect(rows[0].find('[data-bars="2"]').exists()).toBe(true);
    expect(rows[0].find('[data-testid="ble-connect"]').text()).toBe("连接");
    // Remembered and out of range: named as unnamed, can be forgotten, not connected.
    expect(rows[1].text()).toContain("未命名蓝牙Key");
    expect(rows[1].text()).toContain("不在范围内");
    expect(rows[1].text()).toContain("已记住");
    expect(rows[1].find('[data-testid="ble-connect"]').attributes("disabled")).toBeDefined();
    expect(rows[1].find('[data-testid="ble-forget"]').exists()).toBe(true);
  });

  it("connect moves a key to 已连接, and it appears on the home screen labelled 蓝牙", async () => {
    const backend = mockWith((f) => {
      f.ble.notConnected = [bleKey({ address: A, name: "蓝牙Key 投标" })];
      f.bleMedia[A] = bleKeyMedium(A, "蓝牙Key 投标");
    });
    const { wrapper } = mountWith(BleView, { backend });
    await settle();
    expect(tid(wrapper, "ble-none-connected").exists()).toBe(true);
    await tid(wrapper, "ble-connect").trigger("click");
    await settle();
    expect(backend.calls).toContain("bleConnect");
    const connected = tid(wrapper, "ble-connected");
    expect(connected.find(`[data-address="${A}"]`).exists()).toBe(true);
    expect(tid(wrapper, "ble-none-found").exists()).toBe(true);
    expect(tid(wrapper, "ble-open").exists()).toBe(true);

    const home = mountWith(HomeView, { backend });
    await settle();
    const ble = home.wrapper.find('[data-device-id="ble:openpgp-C0FFEE000001"]');
    expect(ble.exists()).toBe(true);
    expect(ble.find('[data-testid="badge-kind"]').text()).toBe("蓝牙");
    expect(ble.text()).toContain("王五");

    // Disconnect: back under 未连接, remembered; gone from the home screen.
    await tid(wrapper, "ble-disconnect").trigger("click");
    await settle();
    expect(tid(wrapper, "ble-none-connected").exists()).toBe(true);
    expect(tid(wrapper, "ble-not-connected").find(`[data-address="${A}"]`).text()).toContain("已记住");
    expect(home.wrapper.find('[data-device-id="ble:openpgp-C0FFEE000001"]').exists()).toBe(false);
  });

  it("refresh shows busy while it scans and lists what the scan found", async () => {
    const { wrapper, backend } = mountWith(BleView);
    await settle();
    expect(tid(wrapper, "ble-none-found").exists()).toBe(true);
    const refresh = tid(wrapper, "ble-refresh");
    expect(refresh.text()).toBe("刷新");
    await refresh.trigger("click");
    await nextTick();
    expect(tid(wrapper, "ble-scanning").text()).toBe("正在搜索…");
    expect(tid(wrapper, "ble-refresh").attributes("disabled")).toBeDefined();
    expect(tid(wrapper, "ble-refresh").attributes("aria-busy")).toBe("true");
    await settle();
    expect(backend.calls.filter((c) => c === "bleScan")).toHaveLength(1);
    expect(tid(wrapper, "ble-scanning").exists()).toBe(false);
    expect(tid(wrapper, "ble-refresh").attributes("disabled")).toBeUndefined();
    const rows = tid(wrapper, "ble-not-connected").findAll('[data-testid="ble-key"]');
    expect(rows.map((r) => r.attributes("data-address"))).toEqual([A, B]);
  });

  it("shows 蓝牙不可用 with what to do, and the lists once Bluetooth is back", async () => {
    const { wrapper, backend } = mountWith(BleView, {
      mock: (f) => {
        f.ble = { ...f.ble, available: false, reason: "no Bluetooth adapter" };
      },
    });
    await settle();
    const panel = tid(wrapper, "ble-unavailable");
    expect(panel.text()).toContain("蓝牙不可用");
    expect(panel.text()).toContain("蓝牙适配器");
    expect(tid(wrapper, "ble-unavailable-reason").text()).toContain("no Bluetooth adapter");
    expect(tid(wrapper, "ble-connected").exists()).toBe(false);
    // Still unavailable: retry re-reads the state and does not scan.
    await tid(wrapper, "ble-retry").trigger("click");
    await settle();
    expect(backend.calls.filter((c) => c === "bleState")).toHaveLength(2);
    expect(backend.calls).not.toContain("bleScan");
    // Bluetooth comes back (the service's event): the lists.
    backend.setBle({ ...backend.fixture.ble, available: true, reason: null });
    await settle();
    expect(tid(wrapper, "ble-unavailable").exists()).toBe(false);
    expect(tid(wrapper, "ble-none-found").exists()).toBe(true);
  });

  it("shows an action's error by its stable code; 蓝牙不可用 from an action shows the state", async () => {
    const backend = mockWith((f) => {
      f.ble.notConnected = [bleKey({ address: A, name: "Not a key" })];
    });
    backend.fail("bleConnect", "ble_service_invalid", {}, 1);
    const { wrapper } = mountWith(BleView, { backend });
    await settle();
    await tid(wrapper, "ble-connect").trigger("click");
    await settle();
    expect(tid(wrapper, "ble-action-error").text()).toContain(`错误码 ${ErrorCode.ble_service_invalid}`);
    expect(tid(wrapper, "ble-connected").exists()).toBe(false);
    // Bluetooth switched off meanwhile: the action fails with bluetooth_unavailable.
    backend.fixture.ble = { ...backend.fixture.ble, available: false, reason: "switched off" };
    await tid(wrapper, "ble-connect").trigger("click");
    await settle();
    expect(tid(wrapper, "ble-unavailable").exists()).toBe(true);
  });

  it("a key the registry knows but KeyBridge cannot drive shows what it needs instead of 连接", async () => {
    const { wrapper } = mountWith(BleView, {
      mock: (f) => {
        f.ble.notConnected = [
          bleKey({ address: "C0:FF:EE:00:0F:1D", name: "Security Key", needs: "FIDO security key (CTAP over BLE) · any vendor: a WebAuthn login" }),
          bleKey({ address: B, name: "蓝牙Key 备用" }),
        ];
      },
    });
    await settle();
    const rows = tid(wrapper, "ble-not-connected").findAll('[data-testid="ble-key"]');
    expect(rows[0].find('[data-testid="ble-connect"]').exists()).toBe(false);
    expect(rows[0].find('[data-testid="ble-needs"]').text()).toContain("KeyBridge 无法使用此设备，需要：FIDO security key");
    expect(rows[1].find('[data-testid="ble-connect"]').exists()).toBe(true);
    expect(rows[1].find('[data-testid="ble-needs"]').exists()).toBe(false);
  });

  it("is the 蓝牙设备 entry of the navigation (Bluetooth keys in English)", async () => {
    const { wrapper, backend } = mountWith(App);
    await settle();
    const nav = tid(wrapper, "nav-ble");
    expect(nav.text()).toBe("蓝牙设备");
    await nav.trigger("click");
    await settle();
    expect(tid(wrapper, "ble").exists()).toBe(true);
    expect(backend.calls).toContain("bleState");
    expect(backend.calls).not.toContain("bleScan");
    const en = mountWith(App, { locale: "en", mock: (f) => void (f.settings.language = "en") });
    await settle();
    expect(tid(en.wrapper, "nav-ble").text()).toBe("Bluetooth keys");
  });
});
