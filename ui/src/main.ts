import { createApp } from "vue";
import App from "./App.vue";
import { backendKey, type Backend } from "./backend";
import { createTauriBackend } from "./backend/tauri";
import { createAppI18n } from "./i18n";
import { createToastStore, toastKey } from "./composables/toast";
import "./styles.css";

async function pickBackend(): Promise<Backend> {
  // The app's own backend is in the main chunk: a dynamic import would cost the window's
  // start one more fetch through the webview before the first screen.
  if (window.__TAURI_INTERNALS__) return createTauriBackend();
  // A plain browser (`npm run dev`): the mock over the showcase fixture (the demo key and a
  // USB key with a near-expiry certificate). `window.keybridgeMock` scripts it by hand.
  const { createMockBackend, showcaseFixture } = await import("./backend/mock");
  const mock = createMockBackend(showcaseFixture(), { latencyMs: 120 });
  (window as unknown as { keybridgeMock: unknown }).keybridgeMock = mock;
  // The service's start-up expiry check, as an event: what the fixture lists as near expiry.
  setTimeout(() => {
    const certificates = mock.fixture.media.flatMap((m) => m.certificates).filter((c) => c.status === "nearExpiry");
    if (certificates.length) mock.emit("expiryNotice", { certificates });
  }, 1500);
  return mock;
}

void pickBackend().then((backend) => {
  createApp(App).use(createAppI18n()).provide(backendKey, backend).provide(toastKey, createToastStore()).mount("#app");
});
