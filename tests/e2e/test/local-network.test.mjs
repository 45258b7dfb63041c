// Local Network Access (Chromium ≥ 147 gates a public page's WebSockets to loopback): a
// trading platform's page, made public with Chromium's own override flag, cannot reach
// KeyBridge until the machine's managed policy lists it — the SDK says so with a stable
// code instead of "not running" — and once `keybridge bridge local-network allow` has
// written the policy, the same page connects and signs without any prompt.
//
// The policy is machine-wide (/etc/chromium/policies/managed): the test writes it through
// the real CLI (as root, or with `sudo -n`) and removes its origin again when it ends.

import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { CHROMIUM, CHROMIUM_ARGS, KEYBRIDGE, SDK_DIR, demoHome, openssl, serve, staticServer } from "./rig.mjs";

const HOST = "bid.platform.test";

/** The CLI as root (the policy directory is root's). */
function asRoot(args) {
  const [cmd, argv] = process.getuid?.() === 0 ? [KEYBRIDGE, args] : ["sudo", ["-n", KEYBRIDGE, ...args]];
  return JSON.parse(execFileSync(cmd, ["--json", ...argv], { encoding: "utf8" }));
}

/** A self-signed certificate for the platform's host name (the browser is told to accept it). */
function platformTls(dir) {
  const [key, cert] = [join(dir, "platform.key"), join(dir, "platform.crt")];
  const r = openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1",
    "-subj", `/CN=${HOST}`, "-addext", `subjectAltName=DNS:${HOST}`, "-keyout", key, "-out", cert]);
  assert.ok(r.ok, r.out);
  return { key: readFileSync(key), cert: readFileSync(cert), host: HOST };
}

/** Chromium with the platform's host name on 127.0.0.1 and its server (`sitePort`)
 * declared public, as a trading platform on the Internet is. */
async function browserFor(t, sitePort) {
  const args = [
    ...CHROMIUM_ARGS,
    "--ignore-certificate-errors",
    `--host-resolver-rules=MAP ${HOST} 127.0.0.1`,
    `--ip-address-space-overrides=127.0.0.1:${sitePort}=public`,
  ];
  const browser = await chromium.launch({ executablePath: CHROMIUM, args });
  t.after(() => browser.close());
  return browser;
}

/** In the page: connect through the SDK and sign; the outcome, or the error's name and code. */
async function trySign(browser, origin, port) {
  const page = await browser.newPage();
  await page.goto(`${origin}/examples/web/index.html?port=${port}`);
  return page.evaluate(async (port) => {
    const sdk = await import("/dist/index.js");
    const permission = await sdk.localNetworkAccess();
    const t0 = performance.now();
    try {
      const c = await sdk.connect({ port, sdk: "e2e-lna", connectTimeoutMs: 20_000 });
      const [cert] = await c.certificates({ usage: "sign" });
      const r = await c.sign({ certificate: { thumbprint: cert.thumbprint }, input: { data: sdk.toBase64("投标文件") }, format: "raw" });
      await c.close();
      return { ok: true, permission, signature: r.signature };
    } catch (e) {
      const ms = Math.round(performance.now() - t0);
      return { ok: false, permission, after: await sdk.localNetworkAccess(), ms, name: e.name, code: e.code, message: e.messageFor ? e.messageFor("zh-CN") : String(e) };
    }
  }, port);
}

test("a public platform page reaches KeyBridge only once the browser policy lists it", async (t) => {
  const { dir, home, rootPem } = demoHome(t);
  const site = await staticServer(t, SDK_DIR, { tls: platformTls(dir) });
  const origin = site.origin;
  const bridge = await serve(t, home, ["--allow-origin", origin, "--consent", "grants-only", "--trust", rootPem]);

  // Not listed: blocked before any upgrade, and the SDK says why (not "connect_failed").
  // The permission is "prompt" until the page tries; headless Chromium has no one to ask
  // and dismisses the prompt, which the browser records as a denial — what a user who
  // clicks "block" gets. (A prompt still pending when the connect gives up is
  // local_network_access_required: the SDK's unit tests.)
  const blocked = await trySign(await browserFor(t, site.port), origin, bridge.port);
  assert.equal(blocked.ok, false);
  assert.equal(blocked.permission, "prompt");
  assert.equal(blocked.after, "denied");
  assert.equal(blocked.name, "local_network_access_denied", JSON.stringify(blocked));
  assert.equal(blocked.code, 5014);
  assert.match(blocked.message, /本地网络访问/);

  // A public page over plain http is never allowed: the permission is denied outright.
  const plain = await staticServer(t, SDK_DIR);
  const plainOrigin = `http://${HOST}:${plain.port}`;
  const insecure = await trySign(await browserFor(t, plain.port), plainOrigin, bridge.port);
  assert.equal(insecure.permission, "denied", "an insecure public page is denied before it asks");
  assert.equal(insecure.name, "local_network_access_denied", JSON.stringify(insecure));
  assert.equal(insecure.code, 5014);

  // The IT department's command lists the platform for Chromium; a browser started after
  // it connects and signs with no prompt.
  const listed = asRoot(["bridge", "local-network", "allow", origin, "--browser", "chromium"]);
  t.after(() => asRoot(["bridge", "local-network", "remove", origin, "--browser", "chromium"]));
  assert.ok(listed[0].origins.includes(origin), JSON.stringify(listed));
  const allowed = await trySign(await browserFor(t, site.port), origin, bridge.port);
  assert.equal(allowed.permission, "granted");
  assert.equal(allowed.ok, true, JSON.stringify(allowed));
  assert.ok(Buffer.from(allowed.signature, "base64").length >= 64);
});
