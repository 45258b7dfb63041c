import { describe, expect, it } from "vitest";
import OperationStatus from "../src/components/OperationStatus.vue";
import HomeView from "../src/views/HomeView.vue";
import { medium } from "../src/backend/mock";
import { mountWith, settle, tid } from "./helpers";

describe("OperationStatus", () => {
  it("says to confirm on the medium, cancels through the backend, and goes away when the operation ends", async () => {
    const { wrapper, backend } = mountWith(OperationStatus);
    await settle();
    expect(tid(wrapper, "operation-status").exists()).toBe(false);
    backend.emit("operationStatus", { operation: 7, state: "waitingForPin", medium: null });
    await settle();
    expect(tid(wrapper, "operation-status").exists()).toBe(false);
    backend.emit("operationStatus", { operation: 7, state: "waitingForMedium", medium: "张三的手机" });
    await settle();
    expect(tid(wrapper, "operation-status").text()).toContain("请在「张三的手机」上确认");
    let cancelled: number | null = null;
    backend.script("cancelOperation", (_m, id) => {
      cancelled = id;
      return true;
    });
    await tid(wrapper, "operation-cancel").trigger("click");
    await settle();
    expect(cancelled).toBe(7);
    backend.emit("operationStatus", { operation: 7, state: "finished", medium: null });
    await settle();
    expect(tid(wrapper, "operation-status").exists()).toBe(false);
  });
});

describe("HomeView and link state", () => {
  it("marks an offline medium and one that verifies the user itself", async () => {
    const { wrapper } = mountWith(HomeView, {
      mock: (f) => {
        f.media = [medium({ id: "phone:3f9a", label: "张三的手机", kind: "phone", online: false, verifiesUser: true, userPin: null, soPin: null })];
      },
    });
    await settle();
    expect(tid(wrapper, "badge-offline").text()).toBe("离线");
    expect(tid(wrapper, "badge-verifies-user").exists()).toBe(true);
  });
});
