import { flushPromises, mount, type VueWrapper } from "@vue/test-utils";
import type { Component } from "vue";
import { backendKey } from "../src/backend";
import { createMockBackend, demoFixture, type Fixture, type MockBackend } from "../src/backend/mock";
import { createAppI18n } from "../src/i18n";
import { createToastStore, toastKey, type ToastStore } from "../src/composables/toast";
import type { Language } from "../src/bindings";

export interface Mounted {
  wrapper: VueWrapper;
  backend: MockBackend;
  toast: ToastStore;
}

/** A mock over the demo fixture, changed by `edit` first (plain data: media, settings, …). */
export function mockWith(edit?: (fixture: Fixture) => void): MockBackend {
  const fixture = demoFixture();
  edit?.(fixture);
  return createMockBackend(fixture);
}

export function mountWith(
  component: Component,
  opts: { backend?: MockBackend; mock?: (fixture: Fixture) => void; props?: Record<string, unknown>; locale?: Language } = {},
): Mounted {
  const backend = opts.backend ?? mockWith(opts.mock);
  const toast = createToastStore();
  const wrapper = mount(component, {
    props: opts.props,
    attachTo: document.body,
    global: {
      plugins: [createAppI18n(opts.locale ?? "zh-CN")],
      provide: { [backendKey as symbol]: backend, [toastKey as symbol]: toast },
    },
  });
  return { wrapper, backend, toast };
}

/** Let the mock's promises, timers of 0 ms and Vue's re-render all run. */
export async function settle(rounds = 6): Promise<void> {
  for (let i = 0; i < rounds; i++) await flushPromises();
}

export function tid(w: VueWrapper, id: string) {
  return w.find(`[data-testid="${id}"]`);
}

export function tids(w: VueWrapper, id: string) {
  return w.findAll(`[data-testid="${id}"]`);
}
