import { describe, expect, it } from "vitest";
import PromptDialog from "../src/components/PromptDialog.vue";
import type { PromptAnswer, PromptBody } from "../src/bindings";
import { mockWith, mountWith, settle, tid } from "./helpers";

const pinBody = (over: Partial<Extract<PromptBody, { kind: "pin" }>> = {}): PromptBody => ({
  kind: "pin",
  device: "file:demo",
  deviceLabel: "KeyBridge 演示介质 (DEMO)",
  pinKind: "user",
  operation: "sign",
  triesLeft: 10,
  previousWrong: false,
  cachedPinRejected: false,
  certificate: "C=CN, O=某某建设有限公司, CN=张三 SN=1A2B",
  ...over,
});

describe("PromptDialog", () => {
  it("asks for a PIN with the medium, operation, client and tries, then sends and forgets it", async () => {
    const { wrapper, backend } = mountWith(PromptDialog);
    await settle();
    expect(tid(wrapper, "prompt-dialog").exists()).toBe(false);
    let answer: PromptAnswer | null = null;
    void backend.ask(pinBody(), "https://ggzy.example.gov.cn").then((a) => (answer = a));
    await settle();
    expect(tid(wrapper, "prompt-dialog").attributes("data-kind")).toBe("pin");
    expect(tid(wrapper, "prompt-device").text()).toBe("KeyBridge 演示介质 (DEMO)");
    expect(tid(wrapper, "prompt-operation").text()).toBe("签名");
    expect(tid(wrapper, "prompt-client").text()).toBe("https://ggzy.example.gov.cn");
    expect(tid(wrapper, "prompt-certificate").text()).toBe("C=CN, O=某某建设有限公司, CN=张三 SN=1A2B");
    expect(tid(wrapper, "prompt-tries-left").text()).toBe("剩余 10 次");
    expect(tid(wrapper, "prompt-lock-warning").exists()).toBe(false);
    const input = tid(wrapper, "prompt-pin-input");
    expect(input.attributes("type")).toBe("password");
    expect(tid(wrapper, "prompt-ok").attributes("disabled")).toBeDefined();
    await input.setValue("12345678");
    await tid(wrapper, "prompt-ok").trigger("click");
    await settle();
    expect(answer).toEqual({ kind: "pin", pin: "12345678" });
    expect(tid(wrapper, "prompt-dialog").exists()).toBe(false);
    expect(wrapper.html()).not.toContain("12345678");
  });

  it("warns after a wrong or rejected cached PIN and near the lockout", async () => {
    const { wrapper, backend } = mountWith(PromptDialog);
    await settle();
    void backend.ask(pinBody({ previousWrong: true, triesLeft: 2, operation: "write_seal" }), "desktop");
    await settle();
    expect(tid(wrapper, "prompt-wrong").text()).toBe("口令错误，请重新输入。");
    expect(tid(wrapper, "prompt-lock-warning").text()).toBe("再输错 2 次，介质口令将被锁定。");
    expect(tid(wrapper, "prompt-operation").text()).toBe("写入印章");
    expect(tid(wrapper, "prompt-client").text()).toBe("KeyBridge 客户端");
    await tid(wrapper, "prompt-cancel").trigger("click");
    await settle();
    void backend.ask(pinBody({ cachedPinRejected: true, operation: "unknown_op", triesLeft: null }));
    await settle();
    expect(tid(wrapper, "prompt-cache-rejected").exists()).toBe(true);
    expect(tid(wrapper, "prompt-operation").text()).toBe("unknown_op");
    expect(tid(wrapper, "prompt-tries-left").exists()).toBe(false);
    expect(backend.answers[0].answer).toEqual({ kind: "cancel" });
  });

  it("answers a consent request with always / once / deny", async () => {
    const { wrapper, backend } = mountWith(PromptDialog);
    await settle();
    const answers: PromptAnswer[] = [];
    for (const button of ["prompt-consent-always", "prompt-consent-once", "prompt-consent-deny"]) {
      void backend.ask({ kind: "consent", operation: "sign", certificate: "CN=张三" }, "https://bid.example.com").then((a) => answers.push(a));
      await settle();
      expect(tid(wrapper, "prompt-dialog").attributes("data-kind")).toBe("consent");
      expect(tid(wrapper, "prompt-origin").text()).toBe("https://bid.example.com");
      expect(tid(wrapper, "prompt-operation").text()).toBe("签名");
      expect(tid(wrapper, "prompt-certificate").text()).toBe("CN=张三");
      expect(tid(wrapper, "prompt-consent-always").text()).toBe("总是允许");
      expect(tid(wrapper, "prompt-consent-once").text()).toBe("仅本次");
      expect(tid(wrapper, "prompt-consent-deny").text()).toBe("拒绝");
      await tid(wrapper, button).trigger("click");
      await settle();
    }
    expect(answers).toEqual([
      { kind: "consent", decision: "always" },
      { kind: "consent", decision: "once" },
      { kind: "consent", decision: "deny" },
    ]);
    expect(tid(wrapper, "prompt-dialog").exists()).toBe(false);
  });

  it("answers a yes/no question", async () => {
    const { wrapper, backend } = mountWith(PromptDialog);
    await settle();
    const p = backend.ask({ kind: "confirm", title: "安装证书", message: "将新证书写入介质？" });
    await settle();
    expect(tid(wrapper, "prompt-message").text()).toBe("将新证书写入介质？");
    await tid(wrapper, "prompt-ok").trigger("click");
    expect(await p).toEqual({ kind: "confirm", yes: true });
    const q = backend.ask({ kind: "confirm", title: "安装证书", message: "再来一次？" });
    await settle();
    await tid(wrapper, "prompt-cancel").trigger("click");
    expect(await q).toEqual({ kind: "confirm", yes: false });
  });

  it("shows a QR code with its payload and a countdown, and reports dismissal", async () => {
    const { wrapper, backend } = mountWith(PromptDialog);
    await settle();
    const p = backend.ask({ kind: "qr", title: "微信绑定", payload: "https://wx.example.com/bind?t=abc123", expiresInSecs: 1800 });
    await settle();
    expect(tid(wrapper, "prompt-dialog").attributes("data-kind")).toBe("qr");
    expect(tid(wrapper, "prompt-qr-payload").text()).toBe("https://wx.example.com/bind?t=abc123");
    expect(tid(wrapper, "qr-code").find("path").attributes("d")).toMatch(/^M/);
    expect(tid(wrapper, "prompt-qr-countdown").text()).toBe("30:00 后失效");
    await tid(wrapper, "prompt-cancel").trigger("click");
    expect(await p).toEqual({ kind: "dismissed" });
  });

  it("marks an expired QR code", async () => {
    const { wrapper, backend } = mountWith(PromptDialog);
    await settle();
    void backend.ask({ kind: "qr", title: "配对手机", payload: "kb-pair:xyz", expiresInSecs: 0 });
    await settle();
    expect(tid(wrapper, "prompt-qr-expired").text()).toContain("二维码已失效");
  });

  it("closes on prompt-closed and queues several prompts", async () => {
    const { wrapper, backend } = mountWith(PromptDialog);
    await settle();
    void backend.ask(pinBody());
    void backend.ask({ kind: "consent", operation: "decrypt", certificate: null }, "https://a.example");
    await settle();
    expect(tid(wrapper, "prompt-more").text()).toBe("还有 1 个请求等待处理");
    const first = Number(tid(wrapper, "prompt-dialog").attributes("data-prompt-id"));
    backend.closePrompt(first);
    await settle();
    expect(tid(wrapper, "prompt-dialog").attributes("data-kind")).toBe("consent");
    expect(tid(wrapper, "prompt-more").exists()).toBe(false);
  });

  it("picks up prompts that were already waiting when it mounted", async () => {
    const backend = mockWith();
    void backend.ask(pinBody({ operation: "decrypt", triesLeft: 7 }), "native:bid-tool");
    const { wrapper } = mountWith(PromptDialog, { backend });
    await settle();
    expect(backend.calls).toContain("pendingPrompts");
    expect(tid(wrapper, "prompt-operation").text()).toBe("解密");
    expect(tid(wrapper, "prompt-tries-left").text()).toBe("剩余 7 次");
    expect(tid(wrapper, "prompt-client").text()).toBe("native:bid-tool");
  });

  it("still closes when the service no longer knows the prompt", async () => {
    const { wrapper, backend } = mountWith(PromptDialog);
    await settle();
    void backend.ask(pinBody());
    await settle();
    backend.fail("answerPrompt", "not_found", { detail: "prompt gone" }, 1);
    await tid(wrapper, "prompt-pin-input").setValue("12345678");
    await tid(wrapper, "prompt-ok").trigger("click");
    await settle();
    expect(tid(wrapper, "prompt-dialog").exists()).toBe(false);
  });
});
