// Native messaging: a public trading-platform page that the browser keeps from loopback
// (Local Network Access, as in local-network.test.mjs) signs through the KeyBridge
// extension and its native host instead — no port is open to the page. The extension is
// loaded unpacked into headless Chromium; the host manifest is written into the
// browser's profile by `keybridge browser install-host --user-data-dir`; the host finds
// `keybridge serve` through the home's `bridge_port` setting, as it finds the desktop
// app's bridge on a user's machine.
//
// The origin the bridge sees is the page's real one (the audit log names it), and a page
// that claims another origin in its messages still gets its own: the bridge
// (grants-only) refuses it.

import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { CHROMIUM, CHROMIUM_ARGS, ROOT, SDK_DIR, demoHome, kb, openssl, opensslChecksSm2, serve, staticServer } from "./rig.mjs";

const EXTENSION = join(ROOT, "browser/extension");
const PLATFORM = "bid.platform.test";
const STRANGER = "evil.platform.test";
const TEXT = "投标报价：经浏览器扩展签名（原生消息）";

/** One self-signed certificate for both test host names (the browser is told to accept it). */
function tls(dir) {
  const [key, cert] = [join(dir, "sites.key"), join(dir, "sites.crt")];
  const r = openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1",
    "-subj", `/CN=${PLATFORM}`, "-addext", `subjectAltName=DNS:${PLATFORM},DNS:${STRANGER}`, "-keyout", key, "-out", cert]);
  assert.ok(r.ok, r.out);
  return { key: readFileSync(key), cert: readFileSync(cert) };
}

/** A free port on 127.0.0.1 for the bridge (the home's bridge_port). */
function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** The pids of the native hosts the browser started for `home` (found by their command line and environment). */
function hostPids(home) {
  const pids = [];
  for (const pid of readdirSync("/proc").filter((p) => /^\d+$/.test(p))) {
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, "utf8");
      const env = readFileSync(`/proc/${pid}/environ`, "utf8").split("\0");
      if (cmd.includes("chrome-extension://") && env.includes(`KEYBRIDGE_HOME=${home}`)) pids.push(Number(pid));
    } catch {
      // gone, or not ours to read
    }
  }
  return pids;
}

/** In the page: what the SDK finds, then connect (auto: the extension) and sign. */
function signInPage(page, bridgePort) {
  return page.evaluate(async ({ text, bridgePort }) => {
    const sdk = await import("/dist/index.js");
    const extension = sdk.extensionVersion();
    const chosen = sdk.useExtension({});
    // The direct way is closed to this public page: the browser blocks loopback.
    let direct;
    try {
      const ws = await sdk.connect({ transport: "websocket", port: bridgePort, connectTimeoutMs: 20_000 });
      await ws.close();
      direct = "connected";
    } catch (e) {
      direct = e.name;
    }
    try {
      const c = await sdk.connect({ sdk: "e2e-native-messaging", connectTimeoutMs: 20_000 });
      const [cert] = await c.certificates({ usage: "sign" });
      const r = await c.sign({ certificate: { thumbprint: cert.thumbprint }, input: { data: sdk.toBase64(text) }, format: "raw" });
      const d = await c.certificate(cert.thumbprint);
      // A bid file through streams: binary frames both ways (base64 through the
      // extension), several chunks each way, with the host's upload acknowledgements.
      const [enc] = await c.certificates({ usage: "encrypt" });
      const file = new Uint8Array(1536 * 1024).map((_, i) => (i * 31) % 251);
      const concat = (parts) => {
        const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
        let at = 0;
        for (const p of parts) all.set(p, (at += p.length) - p.length);
        return all;
      };
      const sealed = [];
      await c.encryptStream({ recipients: [{ thumbprint: enc.thumbprint }], source: file, sink: (x) => void sealed.push(x.slice()) });
      const opened = [];
      await c.decryptStream({ source: concat(sealed), sink: (x) => void opened.push(x.slice()) });
      const back = concat(opened);
      const roundTrip = back.length === file.length && back.every((b, i) => b === file[i]);
      await c.close();
      return { ok: true, extension, chosen, direct, signature: r.signature, pem: d.pem, roundTrip, envelopeChunks: sealed.length };
    } catch (e) {
      return { ok: false, extension, chosen, direct, name: e.name, code: e.code, message: String(e) };
    }
  }, { text: TEXT, bridgePort });
}

test("a public page signs through the extension's native host with its real origin", async (t) => {
  const { dir, home, rootPem } = demoHome(t);
  const certs = tls(dir);
  const platform = await staticServer(t, SDK_DIR, { tls: { ...certs, host: PLATFORM } });
  const stranger = await staticServer(t, SDK_DIR, { tls: { ...certs, host: STRANGER } });

  // The bridge on the home's bridge_port, where the native host looks for it; only the
  // platform has a grant and nobody is asked.
  const port = await freePort();
  mkdirSync(join(home, "config"), { recursive: true });
  writeFileSync(join(home, "config/settings.toml"), `bridge_port = ${port}\n`);
  const bridge = await serve(t, home, ["--allow-origin", platform.origin, "--consent", "grants-only", "--trust", rootPem], { port: null });
  assert.equal(bridge.port, port);

  // The host manifest in the browser profile, naming this keybridge binary.
  const profile = join(dir, "profile");
  const [installed] = kb(home, ["browser", "install-host", "--user-data-dir", profile]);
  assert.equal(installed.state, "installed");
  const manifest = JSON.parse(readFileSync(installed.file, "utf8"));
  assert.deepEqual(manifest.allowed_origins, ["chrome-extension://aomgeigggnonmephipbmolmfcaagmdme/"]);

  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    // Playwright turns extensions off by default.
    ignoreDefaultArgs: ["--disable-extensions"],
    args: [
      ...CHROMIUM_ARGS,
      "--ignore-certificate-errors",
      `--host-resolver-rules=MAP ${PLATFORM} 127.0.0.1, MAP ${STRANGER} 127.0.0.1`,
      `--ip-address-space-overrides=127.0.0.1:${platform.port}=public,127.0.0.1:${stranger.port}=public`,
      `--disable-extensions-except=${EXTENSION}`,
      `--load-extension=${EXTENSION}`,
    ],
    // The host inherits the browser's environment: it finds this home.
    env: { ...process.env, KEYBRIDGE_HOME: home },
  });
  t.after(() => context.close());

  const page = await context.newPage();
  await page.goto(`${platform.origin}/examples/web/index.html`);
  const signed = await signInPage(page, port);
  assert.equal(signed.extension, "0.1.0", JSON.stringify(signed));
  assert.equal(signed.chosen, true);
  assert.match(signed.direct, /^local_network_access_(denied|required)$/, "the page cannot reach the port itself");
  assert.equal(signed.ok, true, JSON.stringify(signed));
  opensslChecksSm2(dir, { pem: signed.pem, text: TEXT, signature: signed.signature, rootPem });
  assert.equal(signed.roundTrip, true, "1.5 MiB through encryptStream and decryptStream");
  assert.ok(signed.envelopeChunks > 1, JSON.stringify(signed.envelopeChunks));

  // Every connection starts a host process: a page gets at most 8 at once.
  const crowd = await page.evaluate(async () => {
    const sdk = await import("/dist/index.js");
    const open = [];
    for (let i = 0; i < 8; i++) open.push(await sdk.connect({ sdk: `crowd-${i}`, connectTimeoutMs: 20_000 }));
    const ninth = await sdk.connect({ connectTimeoutMs: 20_000 }).then(() => "connected", (e) => e.name);
    await open.pop().close();
    const again = await sdk.connect({ connectTimeoutMs: 20_000 }).then((c) => (open.push(c), "connected"), (e) => e.name);
    for (const c of open) await c.close();
    return { ninth, again };
  });
  assert.deepEqual(crowd, { ninth: "too_many_requests", again: "connected" });

  // A request too large for the host is answered with 5022 for that request only; the
  // connection (and its host) stays.
  const oversized = await page.evaluate(async () => {
    const conn = "oversized-1";
    const seen = [];
    const next = (pred) =>
      new Promise((resolve) => {
        const on = (ev) => {
          const m = ev.data;
          if (m?.keybridge !== "extension" || m.conn !== conn) return;
          seen.push(m.type);
          if (pred(m)) {
            window.removeEventListener("message", on);
            resolve(m);
          }
        };
        window.addEventListener("message", on);
      });
    const send = (m) => window.postMessage({ keybridge: "page", conn, ...m }, "*");
    const opened = next((m) => m.type === "open");
    send({ type: "open" });
    await opened;
    const answers = next((m) => m.type === "text" && JSON.parse(m.data).id !== undefined);
    const params = { schema_version: 1, sdk: "x".repeat(3 << 20) };
    send({ type: "text", data: JSON.stringify({ jsonrpc: "2.0", id: "big", method: "hello", params }) });
    const big = JSON.parse((await answers).data);
    const helloAnswer = next((m) => m.type === "text" && JSON.parse(m.data).id === 1);
    send({ type: "text", data: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "hello", params: { schema_version: 1, sdk: "after" } }) });
    const hello = JSON.parse((await helloAnswer).data);
    send({ type: "close" });
    return { big, hello, seen };
  });
  assert.equal(oversized.big.id, "big");
  assert.equal(oversized.big.error.code, 5022, JSON.stringify(oversized));
  assert.equal(oversized.hello.result.schema_version, 1, JSON.stringify(oversized));

  // A host that dies (killed here) fails the page's connection with 5021 as the cause.
  await page.evaluate(async () => {
    const sdk = await import("/dist/index.js");
    window.__kb = await sdk.connect({ sdk: "doomed", connectTimeoutMs: 20_000 });
    window.__kbClosed = new Promise((resolve) => window.__kb.onClose((e) => resolve({ kind: e.kind, cause: e.cause?.name, code: e.cause?.code })));
  });
  // Hosts of connections closed before exit by themselves; the one left is the open one's.
  let pids = hostPids(home);
  for (const t0 = Date.now(); pids.length !== 1 && Date.now() - t0 < 30_000; pids = hostPids(home)) await new Promise((r) => setTimeout(r, 50));
  assert.equal(pids.length, 1, `one host for the open connection: ${pids}`);
  process.kill(pids[0], "SIGKILL");
  const crashed = await page.evaluate(() => window.__kbClosed);
  assert.deepEqual(crashed, { kind: "connection_closed", cause: "extension_host_exited", code: 5021 });

  // The bridge saw the page's real origin: the audit log names it for the signature.
  const { records } = kb(home, ["audit", "--days", "1"]);
  const signing = records.filter((r) => r.operation === "sign" && r.result === "ok");
  assert.ok(signing.some((r) => r.client.includes(platform.origin)), JSON.stringify(signing));

  // A page elsewhere claims to be the platform: through the SDK (an origin field has no
  // effect) and by talking to the content script itself with an `origin` in every
  // message. Either way the host is given its real origin, which has no grant.
  const evil = await context.newPage();
  await evil.goto(`${stranger.origin}/examples/web/index.html`);
  const forged = await evil.evaluate(async (claimed) => {
    const sdk = await import("/dist/index.js");
    let viaSdk;
    try {
      const c = await sdk.connect({ sdk: "e2e-forger", origin: claimed, connectTimeoutMs: 20_000 });
      await c.close();
      viaSdk = { ok: true };
    } catch (e) {
      viaSdk = { ok: false, name: e.name, code: e.code };
    }
    const raw = await new Promise((resolve) => {
      const conn = "forged-1";
      const timer = setTimeout(() => resolve({ timeout: true }), 20_000);
      window.addEventListener("message", (ev) => {
        const m = ev.data;
        if (m?.keybridge !== "extension" || m.conn !== conn || m.type === "pong") return;
        clearTimeout(timer);
        resolve(m);
      });
      window.postMessage({ keybridge: "page", conn, type: "open", origin: claimed, sender: { origin: claimed } }, "*");
      window.postMessage({ keybridge: "page", conn, type: "text", origin: claimed, data: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "hello", params: { schema_version: 1, sdk: "forger" } }) }, "*");
    });
    return { viaSdk, raw };
  }, platform.origin);
  assert.deepEqual(forged.viaSdk, { ok: false, name: "origin_rejected", code: 5002 }, JSON.stringify(forged));
  assert.equal(forged.raw.type, "error", JSON.stringify(forged.raw));
  assert.equal(forged.raw.error.code, 5002);
  const { records: after } = kb(home, ["audit", "--days", "1"]);
  assert.ok(!after.some((r) => r.client.includes(stranger.origin) && r.result === "ok"), "the stranger used a key");
  // Closed here rather than in the after hooks, which close the page servers first: a
  // server waits for the browser's kept-alive connections.
  await context.close();
});

test("without the host installed the SDK says so with a stable code", async (t) => {
  const { dir } = demoHome(t);
  const certs = tls(dir);
  const platform = await staticServer(t, SDK_DIR, { tls: { ...certs, host: PLATFORM } });
  const context = await chromium.launchPersistentContext(join(dir, "profile"), {
    executablePath: CHROMIUM,
    ignoreDefaultArgs: ["--disable-extensions"],
    args: [
      ...CHROMIUM_ARGS,
      "--ignore-certificate-errors",
      `--host-resolver-rules=MAP ${PLATFORM} 127.0.0.1`,
      `--disable-extensions-except=${EXTENSION}`,
      `--load-extension=${EXTENSION}`,
    ],
  });
  t.after(() => context.close());
  const page = await context.newPage();
  await page.goto(`${platform.origin}/examples/web/index.html`);
  const r = await page.evaluate(async () => {
    const sdk = await import("/dist/index.js");
    try {
      await sdk.connect({ connectTimeoutMs: 20_000 });
      return { ok: true };
    } catch (e) {
      return { ok: false, name: e.name, code: e.code, zh: e.messageFor?.("zh-CN") };
    }
  });
  assert.equal(r.name, "extension_host_not_installed", JSON.stringify(r));
  assert.equal(r.code, 5020);
  assert.match(r.zh, /install-host/);
  await context.close();
});
