import { createI18n } from "vue-i18n";
import zhCN, { type MessageSchema } from "./zh-CN";
import en from "./en";
import type { Language } from "../bindings";

export const messages = { "zh-CN": zhCN, en } satisfies Record<Language, MessageSchema>;

export function createAppI18n(locale: Language = "zh-CN") {
  return createI18n<[MessageSchema], Language, false>({
    legacy: false,
    locale,
    fallbackLocale: "zh-CN",
    messages,
  });
}

export type AppI18n = ReturnType<typeof createAppI18n>;

export function setLocale(i18n: AppI18n, lang: Language): void {
  i18n.global.locale.value = lang;
  if (typeof document !== "undefined") document.documentElement.lang = lang;
}
