// Small display helpers shared by the screens.
import { useI18n } from "vue-i18n";
import { BackendError } from "./backend";

function pad(n: number): string {
  return String(n).padStart(2, "0");
}

/** `2025-03-01` in local time, from an RFC 3339 string or epoch milliseconds. */
export function formatDate(v: string | number): string {
  const d = new Date(v);
  if (Number.isNaN(d.getTime())) return String(v);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
}

/** `2025-03-01 14:05:09` in local time. */
export function formatDateTime(v: string | number): string {
  const d = new Date(v);
  if (Number.isNaN(d.getTime())) return String(v);
  return `${formatDate(v)} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** `yyyy-mm-dd` for <input type="date"> (local time). */
export function toDateInput(ms: number): string {
  return formatDate(ms);
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

/** A file name without characters Windows or Linux refuse. */
export function safeFileName(s: string): string {
  return s.replace(/[\\/:*?"<>|\u0000-\u001f]+/g, "_").trim() || "certificate";
}

/** Translation helpers for values that come from the service. */
export function useLabels() {
  const { t, te } = useI18n();
  return {
    /** `sign` → 签名; an unknown operation is shown as it is. */
    operation: (op: string) => (te(`operation.${op}`) ? t(`operation.${op}`) : op),
    /** `desktop` → KeyBridge 客户端; a web origin or tool name as it is. */
    client: (c: string) => (te(`audit.client.${c}`) ? t(`audit.client.${c}`) : c),
    auth: (a: string) => (te(`audit.auth.${a}`) ? t(`audit.auth.${a}`) : a),
    certType: (ty: string) => (te(`cert.type.${ty}`) ? t(`cert.type.${ty}`) : ty),
    /** The error's own message (already in the UI language) with its stable code. */
    error: (e: unknown) => {
      const b = BackendError.from(e);
      return b.detail
        ? t("common.errorDetail", { message: b.message, code: b.code, detail: b.detail })
        : t("common.error", { message: b.message, code: b.code });
    },
  };
}
