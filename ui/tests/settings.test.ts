import { describe, expect, it, vi } from "vitest";
import SettingsView from "../src/views/SettingsView.vue";
import { mockWith, mountWith, settle, tid, tids } from "./helpers";

describe("SettingsView", () => {
  it("saves the PIN cache and clears cached PINs", async () => {
    const { wrapper, backend } = mountWith(SettingsView);
    await settle();
    const select = tid(wrapper, "settings-pin-cache");
    expect((select.element as HTMLSelectElement).value).toBe("30");
    expect(select.findAll("option").map((o) => o.text())).toEqual(["关闭", "1 分钟", "5 分钟", "10 分钟", "30 分钟", "60 分钟"]);
    await select.setValue("5");
    await settle();
    expect(backend.fixture.settings.pinCacheMinutes).toBe(5);
    const clear = vi.spyOn(backend, "clearPinCache");
    await tid(wrapper, "clear-pin-cache").trigger("click");
    await settle();
    expect(clear).toHaveBeenCalledOnce();
    expect(tid(wrapper, "settings-message").text()).toBe("已清除缓存的 PIN");
  });

  it("validates and saves the near-expiry window and the logs switch", async () => {
    const { wrapper, backend } = mountWith(SettingsView);
    await settle();
    const days = tid(wrapper, "settings-near-expiry");
    await days.setValue("0");
    await days.trigger("change");
    await settle();
    expect(tid(wrapper, "settings-message").text()).toBe("请输入 1–3650 之间的天数");
    expect(backend.fixture.settings.nearExpiryWarningDays).toBe(90);
    await days.setValue("30");
    await days.trigger("change");
    await settle();
    expect(backend.fixture.settings.nearExpiryWarningDays).toBe(30);
    await tid(wrapper, "settings-logs").setValue(false);
    await settle();
    expect(backend.fixture.settings.logsEnabled).toBe(false);
  });

  it("turns starting at login on and off (off by default)", async () => {
    const { wrapper, backend } = mountWith(SettingsView);
    await settle();
    const box = tid(wrapper, "settings-autostart");
    expect((box.element as HTMLInputElement).checked).toBe(false);
    expect(wrapper.text()).toContain("登录时自动启动");
    await box.setValue(true);
    await settle();
    expect(backend.fixture.settings.autostart).toBe(true);
    await box.setValue(false);
    await settle();
    expect(backend.fixture.settings.autostart).toBe(false);
  });

  it("shows the backend's refusal of a setting and keeps the old value", async () => {
    const { wrapper, backend } = mountWith(SettingsView);
    await settle();
    backend.fail("saveSettings", "invalid_parameter", { detail: "updateUrl" }, 1);
    const url = tid(wrapper, "settings-update-url");
    await url.setValue("ftp://example.com/manifest"); // fires input and change
    await settle();
    expect(tid(wrapper, "settings-message").text()).toContain("1004");
    expect(backend.fixture.settings.updateUrl).toBe("https://update.keybridge.example/manifest.json");
    expect((url.element as HTMLInputElement).value).toBe("https://update.keybridge.example/manifest.json");
  });

  it("switches the language and saves it", async () => {
    const { wrapper, backend } = mountWith(SettingsView);
    await settle();
    expect(wrapper.text()).toContain("个人信息收集清单");
    await tid(wrapper, "settings-language").setValue("en");
    await settle();
    expect(backend.fixture.settings.language).toBe("en");
    expect(wrapper.text()).toContain("Personal data collected");
    expect(tid(wrapper, "check-update").text()).toBe("Check for updates now");
    expect(tids(wrapper, "privacy-row")[0].text()).toContain("On this computer only");
  });

  it("exports logs with a progress bar fed by log-export-progress", async () => {
    const backend = mockWith();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    // The export stops half-way until the test lets it go on.
    backend.script("exportLogs", async (m, path) => {
      m.emit("logExportProgress", { done: 2, total: 4 });
      await gate;
      return m.answerFromFixture("exportLogs", path);
    });
    const save = vi.spyOn(backend, "chooseSavePath");
    const { wrapper } = mountWith(SettingsView, { backend });
    await settle();
    expect(tid(wrapper, "log-progress").exists()).toBe(false);
    await tid(wrapper, "export-logs").trigger("click");
    await settle();
    expect(save.mock.calls[0][0]).toMatch(/^keybridge-logs-\d{8}-\d{4}\.p7e$/);
    expect(tid(wrapper, "log-progress").attributes("data-percent")).toBe("50");
    expect(tid(wrapper, "export-logs").attributes("disabled")).toBeDefined();
    release();
    await settle(10);
    expect(tid(wrapper, "log-progress").attributes("data-percent")).toBe("100");
    const result = tid(wrapper, "log-export-result");
    expect(result.attributes("data-state")).toBe("ok");
    expect(result.text()).toMatch(/已导出 7 个日志文件（178\.9 KB）到 \/home\/demo\/Downloads\/keybridge-logs-.*\.p7e/);
  });

  it("reports a failed export and does nothing when the dialog is cancelled", async () => {
    const backend = mockWith((f) => void (f.savePath = null));
    const exp = vi.spyOn(backend, "exportLogs");
    const { wrapper } = mountWith(SettingsView, { backend });
    await settle();
    await tid(wrapper, "export-logs").trigger("click");
    await settle();
    expect(exp).not.toHaveBeenCalled();
    backend.fixture.savePath = "/tmp/logs.p7e";
    backend.fail("exportLogs", "io", { detail: "磁盘已满" });
    await tid(wrapper, "export-logs").trigger("click");
    await settle();
    expect(tid(wrapper, "log-export-result").text()).toBe("读写失败（错误码 9001）：磁盘已满");
  });

  it("checks for updates: available, offline, and no address configured", async () => {
    const { wrapper, backend } = mountWith(SettingsView);
    await settle();
    await tid(wrapper, "check-update").trigger("click");
    await settle();
    expect(tid(wrapper, "update-result").attributes("data-state")).toBe("available");
    expect(tid(wrapper, "update-result").text()).toContain("发现新版本 0.2.0（当前 0.1.0）");

    backend.fail("checkUpdate", "network", { detail: "https://update.keybridge.example/manifest.json" }, 1);
    await tid(wrapper, "check-update").trigger("click");
    await settle();
    expect(tid(wrapper, "update-result").attributes("data-state")).toBe("error");
    expect(tid(wrapper, "update-result").text()).toBe("无法连接更新服务器，请检查网络连接或更新地址。");

    const url = tid(wrapper, "settings-update-url");
    await url.setValue("");
    await url.trigger("change");
    await settle();
    expect(backend.fixture.settings.updateUrl).toBe("");
    backend.fail("checkUpdate", "update_url_missing", {}, 1);
    await tid(wrapper, "check-update").trigger("click");
    await settle();
    expect(tid(wrapper, "update-result").text()).toBe("尚未配置更新地址，请先填写更新地址。");
  });

  it("shows the version, data directory, personal data and a filterable library list", async () => {
    const { wrapper } = mountWith(SettingsView);
    await settle();
    expect(tid(wrapper, "about-version").text()).toBe("0.1.0");
    expect(tid(wrapper, "about-data-dir").text()).toBe("/home/demo/.local/share/keybridge");
    expect(tids(wrapper, "privacy-row").length).toBe(4);
    const all = tids(wrapper, "library-row").length;
    expect(all).toBeGreaterThan(20);
    await tid(wrapper, "library-filter").setValue("sm");
    const rows = tids(wrapper, "library-row");
    expect(rows.map((r) => r.find("td").text())).toEqual(["sm2", "sm3"]);
    expect(tid(wrapper, "library-count").text()).toBe(`显示 2 / ${all}`);
    await tid(wrapper, "library-filter").setValue("ISC");
    expect(tids(wrapper, "library-row").map((r) => r.find("td").text())).toEqual(["libloading"]);
  });

  it("shows an error when the settings cannot be read", async () => {
    const backend = mockWith();
    backend.fail("getSettings", "config_invalid", {}, 1);
    const { wrapper } = mountWith(SettingsView, { backend });
    await settle();
    expect(tid(wrapper, "settings-error").text()).toContain("配置文件无效（错误码 9002）");
  });
});

describe("SettingsView: web-site grants", () => {
  it("lists remembered answers and revokes one", async () => {
    const backend = mockWith();
    const { wrapper } = mountWith(SettingsView, { backend });
    await settle();
    let rows = tids(wrapper, "grant-row");
    expect(rows).toHaveLength(2);
    expect(rows[0].text()).toContain("https://ggzy.example.gov.cn");
    expect(rows[0].text()).toContain("总是允许");
    expect(rows[1].text()).toContain("已拒绝");
    await rows[0].find('[data-testid="grant-revoke"]').trigger("click");
    await settle();
    rows = tids(wrapper, "grant-row");
    expect(rows).toHaveLength(1);
    expect(backend.fixture.grants.map((g) => g.origin)).toEqual(["https://phish.example.com"]);
    expect(backend.calls).toContain("revokeGrant");
  });

  it("says so when the grants cannot be read", async () => {
    const backend = mockWith();
    backend.fail("listGrants", "config_invalid", { detail: "bridge-grants.json: corrupt" });
    const { wrapper } = mountWith(SettingsView, { backend });
    await settle();
    expect(tid(wrapper, "grants-error").text()).toContain("9002");
    expect(tids(wrapper, "grant-row")).toHaveLength(0);
  });
});
