import { describe, expect, it, vi } from "vitest";
import AuditView from "../src/views/AuditView.vue";
import type { AuditEntry } from "../src/bindings";
import { auditEntry } from "../src/backend/mock";
import { formatDate } from "../src/format";
import { mockWith, mountWith, settle, tid, tids } from "./helpers";

const DAY = 86_400_000;
const now = Date.now();
const today = new Date(now).setHours(0, 0, 0, 0);

const log: AuditEntry[] = [
  auditEntry(now - 1000, { client: "https://ggzy.example.gov.cn" }),
  auditEntry(today - 3_600_000, { operation: "change_pin", certificate: null, ok: false, code: 4001, reason: "口令错误" }),
  auditEntry(today - 6 * DAY + 3_600_000, { operation: "decrypt", client: "native:bid-tool", auth: "pin_cached" }),
  auditEntry(today - 6 * DAY - 3_600_000, { operation: "write_seal", client: "cli", certificate: null }),
  auditEntry(today - 40 * DAY),
];

describe("AuditView", () => {
  it("lists the last 7 days, newest first, with ✓/✗", async () => {
    const { wrapper } = mountWith(AuditView, { mock: (f) => void (f.audit = [...log]) });
    await settle();
    const rows = tids(wrapper, "audit-row");
    expect(rows).toHaveLength(3);
    expect(rows[0].text()).toContain("https://ggzy.example.gov.cn");
    expect(rows[0].text()).toContain("签名");
    expect(rows[0].text()).toContain("CN=演示用户 (DEMO)");
    expect(rows[0].find('[data-testid="audit-result"]').text()).toBe("✓");
    expect(rows[1].text()).toContain("KeyBridge 客户端");
    expect(rows[1].text()).toContain("修改口令");
    expect(rows[1].find('[data-testid="audit-result"]').text()).toBe("✗");
    expect(rows[2].text()).toContain("解密");
    expect(tid(wrapper, "audit-count").text()).toBe("共 3 条记录");
  });

  it("filters by today, 30 days and a custom range", async () => {
    const backend = mockWith((f) => void (f.audit = [...log]));
    const query = vi.spyOn(backend, "auditQuery");
    const { wrapper } = mountWith(AuditView, { backend });
    await settle();
    await tid(wrapper, "audit-range-today").trigger("click");
    await settle();
    expect(tids(wrapper, "audit-row")).toHaveLength(1);
    expect(query.mock.lastCall![0]).toBe(today);

    await tid(wrapper, "audit-range-30").trigger("click");
    await settle();
    expect(tids(wrapper, "audit-row")).toHaveLength(4);
    expect(query.mock.lastCall![0]).toBe(new Date(today).setDate(new Date(today).getDate() - 29));

    await tid(wrapper, "audit-range-custom").trigger("click");
    const day = formatDate(today - 6 * DAY - 3_600_000);
    await tid(wrapper, "audit-from").setValue(day);
    await tid(wrapper, "audit-to").setValue(day);
    await tid(wrapper, "audit-apply").trigger("click");
    await settle();
    const rows = tids(wrapper, "audit-row");
    expect(rows).toHaveLength(1);
    expect(rows[0].text()).toContain("写入印章");
    expect(rows[0].text()).toContain("命令行");
    const [from, to] = query.mock.lastCall!;
    const [y, m, d] = day.split("-").map(Number);
    expect(from).toBe(new Date(y, m - 1, d).getTime());
    expect(to).toBe(new Date(y, m - 1, d + 1).getTime() - 1);
  });

  it("refuses a custom range that ends before it starts", async () => {
    const backend = mockWith((f) => void (f.audit = [...log]));
    const query = vi.spyOn(backend, "auditQuery");
    const { wrapper } = mountWith(AuditView, { backend });
    await settle();
    await tid(wrapper, "audit-range-custom").trigger("click");
    await tid(wrapper, "audit-from").setValue("2025-03-10");
    await tid(wrapper, "audit-to").setValue("2025-03-01");
    const calls = query.mock.calls.length;
    await tid(wrapper, "audit-apply").trigger("click");
    await settle();
    expect(tid(wrapper, "audit-error").text()).toContain("开始日期不能晚于结束日期");
    expect(query.mock.calls.length).toBe(calls);
  });

  it("shows the reason, code and auth of a row on click", async () => {
    const { wrapper } = mountWith(AuditView, { mock: (f) => void (f.audit = [...log]) });
    await settle();
    expect(tid(wrapper, "audit-detail").exists()).toBe(false);
    await tids(wrapper, "audit-row")[1].trigger("click");
    expect(tid(wrapper, "audit-detail-reason").text()).toBe("口令错误");
    expect(tid(wrapper, "audit-detail-code").text()).toBe("4001");
    expect(tid(wrapper, "audit-detail-auth").text()).toBe("输入口令");
    await tids(wrapper, "audit-row")[2].trigger("click");
    expect(tid(wrapper, "audit-detail-reason").exists()).toBe(false);
    expect(tid(wrapper, "audit-detail-auth").text()).toBe("缓存的口令");
    await tids(wrapper, "audit-row")[2].trigger("click");
    expect(tid(wrapper, "audit-detail").exists()).toBe(false);
  });

  it("shows the empty and error states", async () => {
    const { wrapper } = mountWith(AuditView, { mock: (f) => void (f.audit = []) });
    await settle();
    expect(tid(wrapper, "audit-empty").text()).toBe("该时间段内没有记录");
    const backend = mockWith();
    backend.fail("auditQuery", "io", { detail: "audit.db is locked" });
    const w2 = mountWith(AuditView, { backend }).wrapper;
    await settle();
    expect(tid(w2, "audit-error").text()).toContain("无法读取审计日志");
    expect(tid(w2, "audit-error").text()).toContain("audit.db is locked");
  });
});

describe("AuditView: more records than one page", () => {
  it("shows the newest page and says how many there are in all", async () => {
    const backend = mockWith();
    const now = Date.now();
    backend.fixture.audit = Array.from({ length: 1203 }, (_, i) => ({
      timeMs: now - 1000 * (i + 1),
      client: "https://ggzy.example.gov.cn",
      device: "file:demo",
      operation: "sign",
      certificate: null,
      ok: true,
      code: null,
      reason: null,
      auth: "pin_cached",
    }));
    const { wrapper } = mountWith(AuditView, { backend });
    await settle();
    expect(tids(wrapper, "audit-row")).toHaveLength(1000);
    expect(tid(wrapper, "audit-count").text()).toContain("1000");
    expect(tid(wrapper, "audit-count").text()).toContain("1203");
  });
});

