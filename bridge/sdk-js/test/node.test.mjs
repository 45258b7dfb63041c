// The Node helpers: where the bridge secret lives (as kb-service's `default_paths` and
// kb-bridge's `ClientSecret::path_in` put it), and reading it.
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import { SDK_VERSION } from "../dist/index.js";
import { configDir, readSecret, secretPath } from "../dist/node.js";

test("secret path: KEYBRIDGE_HOME, then the platform's config directory", () => {
  const home = os.homedir();
  assert.equal(secretPath({ KEYBRIDGE_HOME: "/srv/kb" }, "linux"), "/srv/kb/config/bridge-secret");
  assert.equal(secretPath({ KEYBRIDGE_HOME: "rel" }, "linux"), path.resolve("rel", "config", "bridge-secret"));
  assert.equal(secretPath({}, "linux"), path.join(home, ".config", "keybridge", "bridge-secret"));
  assert.equal(secretPath({ KEYBRIDGE_HOME: "" }, "linux"), path.join(home, ".config", "keybridge", "bridge-secret"));
  assert.equal(secretPath({ XDG_CONFIG_HOME: "/x/cfg" }, "linux"), "/x/cfg/keybridge/bridge-secret");
  assert.equal(secretPath({ XDG_CONFIG_HOME: "relative" }, "linux"), path.join(home, ".config", "keybridge", "bridge-secret"));
  assert.equal(configDir({}, "darwin"), path.join(home, "Library", "Application Support", "cn.KeyBridge.KeyBridge"));
  assert.equal(secretPath({ APPDATA: "C:\\Users\\u\\AppData\\Roaming" }, "win32"), "C:\\Users\\u\\AppData\\Roaming\\KeyBridge\\KeyBridge\\config\\bridge-secret");
});

test("readSecret: 64 hex digits, surrounding whitespace ignored; clear errors otherwise", async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), "kb-secret-"));
  try {
    const file = path.join(dir, "bridge-secret");
    writeFileSync(file, `${"A1".repeat(32)}\n`);
    assert.equal(await readSecret(file), "A1".repeat(32));
    writeFileSync(file, "A1".repeat(31));
    await assert.rejects(readSecret(file), /does not hold a bridge secret/);
    await assert.rejects(readSecret(path.join(dir, "missing")), /no bridge secret at .*start KeyBridge once/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("SDK_VERSION is the package version", () => {
  const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8"));
  assert.equal(SDK_VERSION, pkg.version);
});
