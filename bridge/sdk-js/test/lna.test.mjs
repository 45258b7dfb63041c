// Local Network Access: a connection that fails before any upgrade is explained by the
// page's permission — only for public pages, only when the permission is what blocks it.
// (The real browser is in tests/e2e/test/local-network.test.mjs; here the page's globals
// are stood in so every branch runs.)
import assert from "node:assert/strict";
import { test } from "node:test";
import { ConnectionError, KeyBridgeError, explainConnectFailure, isLocalHost, localNetworkAccess } from "../dist/index.js";

/** Run `f` as if in a page on `hostname` whose permissions answer `states` by name. */
async function asPage(hostname, states, f) {
  const saved = { location: globalThis.location, navigator: Object.getOwnPropertyDescriptor(globalThis, "navigator") };
  globalThis.location = { hostname };
  Object.defineProperty(globalThis, "navigator", {
    configurable: true,
    value: {
      permissions: {
        query: async ({ name }) => {
          if (!(name in states)) throw new TypeError(`unknown permission ${name}`);
          return { state: states[name] };
        },
      },
    },
  });
  try {
    return await f();
  } finally {
    globalThis.location = saved.location;
    if (saved.navigator) Object.defineProperty(globalThis, "navigator", saved.navigator);
    else delete globalThis.navigator;
  }
}

const dropped = () => new ConnectionError("connect_failed", { closeCode: 1006 });

test("a public page without the permission gets local_network_access_required", async () => {
  const e = await asPage("bid.example.cn", { "loopback-network": "prompt" }, () => explainConnectFailure(dropped()));
  assert.ok(e instanceof KeyBridgeError);
  assert.equal(e.name, "local_network_access_required");
  assert.equal(e.code, 5013);
  assert.match(e.messageFor("zh-CN"), /本地网络访问/);
  assert.ok(e.cause instanceof ConnectionError, "the connection failure is kept as the cause");
});

test("a denied permission gets local_network_access_denied, through the older permission name too", async () => {
  const e = await asPage("bid.example.cn", { "local-network-access": "denied" }, () => explainConnectFailure(dropped()));
  assert.equal(e.name, "local_network_access_denied");
  assert.equal(e.code, 5014);
});

test("a timeout while the browser is still asking is explained the same way", async () => {
  const timeout = new ConnectionError("connect_failed", { closeReason: "no connection within 10000 ms" });
  const e = await asPage("bid.example.cn", { "loopback-network": "prompt" }, () => explainConnectFailure(timeout));
  assert.equal(e.name, "local_network_access_required");
});

test("granted, local pages, other close codes and other errors are left as they are", async () => {
  const granted = dropped();
  assert.equal(await asPage("bid.example.cn", { "loopback-network": "granted" }, () => explainConnectFailure(granted)), granted);
  for (const host of ["127.0.0.1", "localhost", "192.168.1.20", "10.0.0.8", "[::1]", "printer.local"]) {
    const e = dropped();
    assert.equal(await asPage(host, { "loopback-network": "prompt" }, () => explainConnectFailure(e)), e, host);
  }
  const refused = new ConnectionError("connect_failed", { closeCode: 1008 });
  assert.equal(await asPage("bid.example.cn", { "loopback-network": "prompt" }, () => explainConnectFailure(refused)), refused);
  const other = new Error("cancelled");
  assert.equal(await asPage("bid.example.cn", { "loopback-network": "denied" }, () => explainConnectFailure(other)), other);
  // Not a page at all (Node): unchanged, and the permission is unsupported.
  assert.equal(await explainConnectFailure(granted), granted);
  assert.equal(await localNetworkAccess(), "unsupported");
});

test("local and private hosts are recognised", () => {
  for (const h of ["127.0.0.1", "127.8.9.1", "localhost", "a.localhost", "10.1.2.3", "172.16.0.1", "172.31.255.1", "192.168.0.1", "169.254.1.1", "[::1]", "fd00::1", "fe80::1"]) {
    assert.ok(isLocalHost(h), h);
  }
  for (const h of ["bid.example.cn", "8.8.8.8", "172.32.0.1", "11.0.0.1", "2001:db8::1", "fdroid.org"]) {
    assert.ok(!isLocalHost(h), h);
  }
});
