// Short notices ("已复制") shown at the bottom of the window.
import { inject, reactive, type InjectionKey } from "vue";

export interface Toast {
  id: number;
  text: string;
  kind: "info" | "error";
}

export interface ToastStore {
  items: Toast[];
  show(text: string, kind?: Toast["kind"], ms?: number): void;
}

export function createToastStore(): ToastStore {
  let next = 1;
  const store: ToastStore = reactive({
    items: [] as Toast[],
    show(text: string, kind: Toast["kind"] = "info", ms = 1800) {
      const id = next++;
      store.items.push({ id, text, kind });
      setTimeout(() => {
        const i = store.items.findIndex((x) => x.id === id);
        if (i >= 0) store.items.splice(i, 1);
      }, ms);
    },
  });
  return store;
}

export const toastKey: InjectionKey<ToastStore> = Symbol("toast");

const fallback = createToastStore();

export function useToast(): ToastStore {
  return inject(toastKey, fallback);
}
