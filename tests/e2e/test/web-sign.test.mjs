// A trading-platform page on an allowed origin, in real headless Chromium, signs
// through the SDK and KeyBridge; OpenSSL verifies the raw SM2 signature, KeyBridge's CLI
// the CMS one (OpenSSL 3.0 cannot verify SM2 CMS). A page on an origin without a grant
// is refused at the handshake (grants-only), and the PIN never crosses the socket.

import { test } from "node:test";
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { CHROMIUM, CHROMIUM_ARGS, DEMO_PIN, SDK_DIR, demoHome, kb, opensslChecksSm2, serve, staticServer } from "./rig.mjs";

const TEXT = "投标报价：壹佰贰拾叁万肆仟伍佰陆拾柒元捌角玖分（¥1,234,567.89）";

test("a page signs through the SDK in headless Chromium and OpenSSL verifies it", async (t) => {
  const { dir, home, rootPem } = demoHome(t);
  const site = await staticServer(t, SDK_DIR);
  const stranger = await staticServer(t, SDK_DIR);
  const bridge = await serve(t, home, ["--allow-origin", site.origin, "--consent", "grants-only", "--trust", rootPem]);
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  t.after(() => browser.close());

  const page = await browser.newPage();
  const sent = [];
  page.on("websocket", (ws) => ws.on("framesent", (f) => sent.push(String(f.payload))));
  await page.goto(`${site.origin}/examples/web/index.html?port=${bridge.port}`);
  await page.click("#connect");
  await page.waitForSelector("#cert option", { state: "attached" });
  const label = await page.$eval("#cert option", (o) => o.textContent);
  assert.match(label, /KeyBridge 演示证书|演示|demo/i);
  await page.click("#sign");
  await page.waitForFunction(() => document.querySelector("#signature").value || document.querySelector("#message").className === "bad");
  assert.equal(await page.$eval("#message", (e) => e.className), "ok", await page.$eval("#message", (e) => e.textContent));
  const cms = await page.$eval("#signature", (e) => e.value);
  await page.click("#verify");
  await page.waitForFunction(() => document.querySelector("#details").textContent.length > 0);
  assert.match(await page.$eval("#message", (e) => e.textContent), /签名有效/);
  assert.match(await page.$eval("#details", (e) => e.textContent), /受信任/);

  // A raw SM2 signature made by the page through the SDK, checked by OpenSSL.
  const raw = await page.evaluate(async ({ port, text }) => {
    const sdk = await import("/dist/index.js");
    const c = await sdk.connect({ port, sdk: "e2e-page" });
    const [cert] = await c.certificates({ usage: "sign" });
    const r = await c.sign({ certificate: { thumbprint: cert.thumbprint }, input: { data: sdk.toBase64(text) }, format: "raw" });
    const d = await c.certificate(cert.thumbprint);
    await c.close();
    return { signature: r.signature, pem: d.pem };
  }, { port: bridge.port, text: TEXT });
  const f = (n) => join(dir, n);
  opensslChecksSm2(dir, { pem: raw.pem, text: TEXT, signature: raw.signature, rootPem });
  writeFileSync(f("msg.txt"), TEXT);

  // The page's CMS detached signature, by KeyBridge's own CLI.
  writeFileSync(f("page.p7s"), Buffer.from(cms, "base64"));
  kb(home, ["verify", "--sig", f("page.p7s"), "--in", f("msg.txt"), "--ca", rootPem]);

  // No PIN, ever, on the socket.
  assert.ok(sent.length > 0);
  assert.ok(!sent.some((m) => m.includes(DEMO_PIN)), "the PIN crossed the socket");

  // A page on another origin: with nothing to ask (grants-only) it is refused at the
  // handshake — it cannot even connect, and learns nothing about the user's media.
  const other = await browser.newPage();
  await other.goto(`${stranger.origin}/examples/web/index.html?port=${bridge.port}`);
  await other.click("#connect");
  await other.waitForFunction(() => document.querySelector("#message").className === "bad");
  assert.equal(await other.$$eval("#cert option", (o) => o.length), 0);
  assert.match(await other.$eval("#status", (e) => e.textContent), /未连接|Not connected/);

  // The audit log names the page's origin.
  const audit = JSON.stringify(kb(home, ["audit", "--days", "1"]));
  assert.ok(audit.includes(site.origin), audit);
});
