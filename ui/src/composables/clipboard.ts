import { useI18n } from "vue-i18n";
import { useToast } from "./toast";

async function writeClipboard(text: string): Promise<void> {
  if (navigator.clipboard?.writeText) {
    await navigator.clipboard.writeText(text);
    return;
  }
  // Old webviews without the async clipboard API.
  const ta = document.createElement("textarea");
  ta.value = text;
  ta.setAttribute("readonly", "");
  ta.style.position = "fixed";
  ta.style.opacity = "0";
  document.body.appendChild(ta);
  ta.select();
  const ok = document.execCommand("copy");
  ta.remove();
  if (!ok) throw new Error("copy failed");
}

/** Copy a value and say so ("已复制"). */
export function useCopy() {
  const toast = useToast();
  const { t } = useI18n();
  return async (text: string) => {
    try {
      await writeClipboard(text);
      toast.show(t("common.copied"));
    } catch {
      toast.show(t("common.copyFailed"), "error");
    }
  };
}
