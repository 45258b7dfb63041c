import { beforeEach, describe, expect, it, vi } from "vitest";
import { defineComponent, h } from "vue";
import CertDetailsView from "../src/views/CertDetailsView.vue";
import PromptDialog from "../src/components/PromptDialog.vue";
import ToastHost from "../src/components/ToastHost.vue";
import { ErrorCode } from "../src/backend";
import { certDetailsOf, certificate, certKey, DEMO_USER_PIN, medium } from "../src/backend/mock";
import type { CertRef } from "../src/bindings";
import { mockWith, mountWith, settle, tid, tids } from "./helpers";

const SIGN: CertRef = { device: "file:demo", container: "demo", usage: "sign" };

/** The details screen with the global PIN dialog and toasts beside it, as in App.vue. */
const Harness = defineComponent({
  props: { cert: { type: Object as () => CertRef, required: true } },
  emits: ["deleted", "back"],
  setup(props, { emit }) {
    return () =>
      h("div", [
        h(CertDetailsView, { cert: props.cert, onDeleted: () => emit("deleted"), onBack: () => emit("back") }),
        h(PromptDialog),
        h(ToastHost),
      ]);
  },
});

let writeText: ReturnType<typeof vi.fn>;
beforeEach(() => {
  writeText = vi.fn().mockResolvedValue(undefined);
  Object.defineProperty(navigator, "clipboard", { value: { writeText }, configurable: true });
});

describe("CertDetailsView", () => {
  it("shows every field of the certificate", async () => {
    const { wrapper } = mountWith(CertDetailsView, { props: { cert: SIGN } });
    await settle();
    expect(tid(wrapper, "field-subject").text()).toBe("CN=演示用户 (DEMO), OU=投标部, O=演示科技有限公司, C=CN");
    expect(tid(wrapper, "field-issuer").text()).toContain("CN=KeyBridge 演示 CA (DEMO)");
    expect(tid(wrapper, "field-type").text()).toBe("签名");
    expect(tid(wrapper, "field-algorithm").text()).toBe("SM2 (256 bit)");
    expect(tid(wrapper, "field-validity").text()).toMatch(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d 至 \d{4}-\d\d-\d\d/);
    expect(tid(wrapper, "field-serial").text()).toMatch(/^[0-9A-F]{32}$/);
    expect(tid(wrapper, "field-version").text()).toBe("V3");
    expect(tid(wrapper, "field-signature-algorithm").text()).toContain("SM3withSM2");
    expect(tid(wrapper, "field-key-usage").text()).toBe("digitalSignature, nonRepudiation");
    expect(tid(wrapper, "field-eku").text()).toBe("clientAuth, emailProtection");
    expect(tids(wrapper, "field-extension")).toHaveLength(5);
    expect(wrapper.text()).toContain("basicConstraints (2.5.29.19) · 关键");
    expect(tid(wrapper, "thumbprint-value").text()).toMatch(/^[0-9A-F]{40}$/);
    expect(tid(wrapper, "chain-status").attributes("data-trusted")).toBe("true");
    expect(tid(wrapper, "chain-status").text()).toContain("证书链可信");
  });

  it("copies a field on click and says 已复制", async () => {
    const { wrapper } = mountWith(Harness, { props: { cert: SIGN } });
    await settle();
    const serial = tid(wrapper, "field-serial").text();
    await tid(wrapper, "field-serial").trigger("click");
    await settle();
    expect(writeText).toHaveBeenCalledWith(serial);
    expect(tid(wrapper, "toast").text()).toBe("已复制");
    await tid(wrapper, "field-subject").trigger("click");
    await settle(2);
    expect(writeText).toHaveBeenLastCalledWith("CN=演示用户 (DEMO), OU=投标部, O=演示科技有限公司, C=CN");
    await tid(wrapper, "thumbprint-value").trigger("click");
    expect(writeText).toHaveBeenLastCalledWith(tid(wrapper, "thumbprint-value").text());
  });

  it("says so when the clipboard refuses", async () => {
    writeText.mockRejectedValue(new Error("denied"));
    const { wrapper } = mountWith(Harness, { props: { cert: SIGN } });
    await settle();
    await tid(wrapper, "field-issuer").trigger("click");
    await settle();
    expect(tid(wrapper, "toast").text()).toBe("复制失败");
  });

  it("fetches the SM3, SHA-256 and MD5 thumbprints on request", async () => {
    const { wrapper, backend } = mountWith(CertDetailsView, { props: { cert: SIGN } });
    await settle();
    const sha1 = tid(wrapper, "thumbprint-value").text();
    expect(backend.calls).not.toContain("certThumbprint");
    await tid(wrapper, "thumbprint-alg").setValue("sm3");
    await settle();
    expect(backend.calls.filter((c) => c === "certThumbprint")).toHaveLength(1);
    expect(tid(wrapper, "thumbprint-value").text()).toMatch(/^[0-9A-F]{64}$/);
    expect(tid(wrapper, "thumbprint-value").attributes("data-alg")).toBe("sm3");
    await tid(wrapper, "thumbprint-alg").setValue("md5");
    await settle();
    expect(tid(wrapper, "thumbprint-value").text()).toMatch(/^[0-9A-F]{32}$/);
    await tid(wrapper, "thumbprint-alg").setValue("sha1");
    await settle();
    expect(tid(wrapper, "thumbprint-value").text()).toBe(sha1);
    expect(backend.calls.filter((c) => c === "certThumbprint")).toHaveLength(2);
  });

  it("exports DER and PEM through the save dialog", async () => {
    const backend = mockWith();
    const save = vi.spyOn(backend, "chooseSavePath");
    const exp = vi.spyOn(backend, "exportCert");
    const { wrapper } = mountWith(CertDetailsView, { backend, props: { cert: SIGN } });
    await settle();
    await tid(wrapper, "export-der").trigger("click");
    await settle();
    expect(save).toHaveBeenCalledWith("演示用户 (DEMO)-签名.cer", ["cer", "der", "crt"]);
    expect(exp).toHaveBeenCalledWith(SIGN, "/home/demo/Downloads/演示用户 (DEMO)-签名.cer", "der");
    expect(tid(wrapper, "details-message").text()).toBe("已导出到 /home/demo/Downloads/演示用户 (DEMO)-签名.cer");
    await tid(wrapper, "export-pem").trigger("click");
    await settle();
    expect(exp).toHaveBeenLastCalledWith(SIGN, "/home/demo/Downloads/演示用户 (DEMO)-签名.pem", "pem");
  });

  it("does nothing when the save dialog is cancelled, and reports a failed export", async () => {
    const backend = mockWith((f) => void (f.savePath = null));
    const exp = vi.spyOn(backend, "exportCert");
    const { wrapper } = mountWith(CertDetailsView, { backend, props: { cert: SIGN } });
    await settle();
    await tid(wrapper, "export-der").trigger("click");
    await settle();
    expect(exp).not.toHaveBeenCalled();
    expect(tid(wrapper, "details-message").exists()).toBe(false);
    backend.fixture.savePath = "/readonly/x.cer";
    backend.fail("exportCert", "io", { detail: "权限不足" });
    await tid(wrapper, "export-der").trigger("click");
    await settle();
    expect(tid(wrapper, "details-message").attributes("data-state")).toBe("error");
    expect(tid(wrapper, "details-message").text()).toContain("9001");
  });

  it("shows a revoked certificate with when, why and its code", async () => {
    const { wrapper } = mountWith(CertDetailsView, {
      props: { cert: { device: "x", container: "default", usage: "sign" } },
      mock: (f) => {
        const x = medium({ id: "x", label: "X", certificates: [certificate("x", { usage: "sign", cn: "吊销", daysLeft: 100 })] });
        const [c] = x.certificates;
        f.media = [x];
        // The service's line, stated as it sends it.
        f.details[certKey(c.ref)] = {
          ...certDetailsOf(x, c),
          revocation: { state: "revoked", code: ErrorCode.certificate_revoked, text: "已吊销 2026-11-30T08:00:00Z, keyCompromise (OCSP (CN=CA))" },
        };
      },
    });
    await settle();
    const line = tid(wrapper, "revocation-status");
    expect(line.attributes("data-state")).toBe("revoked");
    expect(line.classes()).toContain("error-text");
    expect(line.text()).toContain("✗");
    expect(line.text()).toContain("keyCompromise");
    expect(line.text()).toContain("3030");
    expect(wrapper.text()).toContain("吊销状态");
  });

  it("shows why a chain is not trusted", async () => {
    const { wrapper } = mountWith(CertDetailsView, {
      props: { cert: { device: "x", container: "default", usage: "sign" } },
      mock: (f) => {
        const x = medium({ id: "x", label: "X", certificates: [certificate("x", { usage: "sign", cn: "自签", daysLeft: 100 })] });
        const [c] = x.certificates;
        f.media = [x];
        // The service's verdict, stated: no trusted issuer (its reason comes from the table).
        f.details[certKey(c.ref)] = certDetailsOf(x, c, { trusted: false, code: ErrorCode.unknown_issuer, reason: null, path: [] });
      },
    });
    await settle();
    const chain = tid(wrapper, "chain-status");
    expect(chain.attributes("data-trusted")).toBe("false");
    expect(chain.text()).toContain("证书链不可信：找不到受信任的颁发者");
    expect(chain.text()).toContain("3004");
  });

  it("shows an error when the details cannot be read", async () => {
    const backend = mockWith();
    backend.fail("certDetails", "device_removed");
    const { wrapper } = mountWith(CertDetailsView, { backend, props: { cert: SIGN } });
    await settle();
    expect(tid(wrapper, "details-error").text()).toContain("介质已拔出（错误码 4003）");
  });

  it("deletes after a confirmation and the PIN, re-asking after a wrong PIN", async () => {
    const { wrapper, backend } = mountWith(Harness, { props: { cert: SIGN } });
    // What the service does, written out: the first PIN is wrong (the medium reports 9 tries
    // left and the service asks again, saying so), the second one is right.
    backend.script("deleteCertificate", async (m, ref) => {
      await m.ask(m.pinPrompt(m.medium(ref.device), "delete_certificate"));
      m.updatePin(ref.device, "userPin", { triesLeft: 9 });
      await m.ask(m.pinPrompt(m.medium(ref.device), "delete_certificate", { previousWrong: true }));
      m.removeCertificate(ref);
      return null;
    });
    await settle();
    await tid(wrapper, "delete-cert").trigger("click");
    expect(tid(wrapper, "confirm-message").text()).toContain("演示用户 (DEMO)");
    expect(backend.calls).not.toContain("deleteCertificate");
    await tid(wrapper, "confirm-ok").trigger("click");
    await settle();

    const dialog = tid(wrapper, "prompt-dialog");
    expect(dialog.attributes("data-kind")).toBe("pin");
    expect(tid(wrapper, "prompt-operation").text()).toBe("删除证书");
    expect(tid(wrapper, "prompt-tries-left").text()).toBe("剩余 10 次");
    await tid(wrapper, "prompt-pin-input").setValue("00000000");
    await tid(wrapper, "prompt-ok").trigger("click");
    await settle();

    expect(tid(wrapper, "prompt-wrong").text()).toBe("口令错误，请重新输入。");
    expect(tid(wrapper, "prompt-tries-left").text()).toBe("剩余 9 次");
    expect((tid(wrapper, "prompt-pin-input").element as HTMLInputElement).value).toBe("");
    await tid(wrapper, "prompt-pin-input").setValue(DEMO_USER_PIN);
    await wrapper.find("form").trigger("submit");
    await settle();

    expect(tid(wrapper, "prompt-dialog").exists()).toBe(false);
    expect(wrapper.emitted("deleted")).toHaveLength(1);
    const [m] = await backend.listMedia();
    expect(m.certificates.map((c) => c.ref.usage)).toEqual(["encrypt"]);
  });

  it("keeps the certificate when the confirmation or the PIN is cancelled", async () => {
    const { wrapper, backend } = mountWith(Harness, { props: { cert: SIGN } });
    await settle();
    await tid(wrapper, "delete-cert").trigger("click");
    await tid(wrapper, "confirm-cancel").trigger("click");
    expect(tid(wrapper, "confirm-dialog").exists()).toBe(false);
    expect(backend.calls).not.toContain("deleteCertificate");

    await tid(wrapper, "delete-cert").trigger("click");
    await tid(wrapper, "confirm-ok").trigger("click");
    await settle();
    await tid(wrapper, "prompt-cancel").trigger("click");
    await settle();
    expect(tid(wrapper, "details-message").text()).toBe("操作已取消");
    expect(wrapper.emitted("deleted")).toBeUndefined();
    expect((await backend.listMedia())[0].certificates).toHaveLength(2);
  });
});
