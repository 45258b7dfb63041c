import { createApp } from "vue";
import App from "./App.vue";
import { backendKey, type Backend } from "./backend";
import { createAppI18n } from "./i18n";
import { createToastStore, toastKey } from "./composables/toast";
import "./styles.css";

async function pickBackend(): Promise<Backend> {
  if (window.__TAURI_INTERNALS__) {
    const { createTauriBackend } = await import("./backend/tauri");
    return createTauriBackend();
  }
  // A plain browser (`npm run dev`): the in-memory demo medium.
  const { createMockBackend } = await import("./backend/mock");
  const mock = createMockBackend({ latencyMs: 120 });
  (window as unknown as { keybridgeMock: unknown }).keybridgeMock = mock;
  return mock;
}

void pickBackend().then((backend) => {
  createApp(App).use(createAppI18n()).provide(backendKey, backend).provide(toastKey, createToastStore()).mount("#app");
});
