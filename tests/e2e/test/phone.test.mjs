// The phone as the PC's key (移动电子密钥), end to end from a web page: the reference phone
// (`keybridge-phone`, a separate process with its own file key and data directory) pairs
// with the PC (`keybridge phone pair`), `keybridge serve` hosts it, and a trading-platform
// page in headless Chromium signs with the phone's certificate through the SDK — the PIN
// typed on the phone only. OpenSSL verifies the raw SM2 signature and the chain; KeyBridge's
// CLI the CMS one. A CMS envelope made by an independent toolkit (the GmSSL CLI) for the
// phone's encryption certificate is opened through the bridge by the phone. Both over the
// direct listener (on loopback) and through the relay (a nats-server started here).

import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createServer } from "node:net";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { chromium } from "playwright-core";
import { CHROMIUM, CHROMIUM_ARGS, KEYBRIDGE, SDK_DIR, kb, opensslChecksSm2, serve, staticServer } from "./rig.mjs";

const PHONE_BIN = process.env.KEYBRIDGE_PHONE_BIN ?? join(dirname(KEYBRIDGE), "keybridge-phone");
const GMSSL = join(process.env.KB_TOOLS ?? join(homedir(), ".cache/keybridge"), "gmssl-3.1.1/bin/gmssl");
const WAIT = 60_000;
// Paired phones' secrets go to a 0600 file under each home, never to the keyring of the
// user running the tests (pairing, serve and the phone all read this).
process.env.KEYBRIDGE_PHONE_SECRETS = "file";
const TEXT = "开标解密前的投标承诺书（手机密钥签名）";
const ENVELOPED = "投标报价：玖拾捌万柒仟陆佰伍拾肆元（手机解密）";

/** A free TCP port on loopback. */
async function freePort() {
  const s = createServer();
  await new Promise((r) => s.listen(0, "127.0.0.1", r));
  const { port } = s.address();
  await new Promise((r) => s.close(r));
  return port;
}

/**
 * A child process whose stdout is one JSON event per line; killed by pid when the test
 * ends. `next(name)` waits for the next event of that name (earlier ones are kept, so an
 * event is never missed by waiting too late).
 */
function jsonProc(t, bin, args) {
  const proc = spawn(bin, args, { env: { ...process.env, KEYBRIDGE_HOME: "" }, stdio: ["pipe", "pipe", "pipe"] });
  const events = [];
  const waiters = [];
  let buf = "";
  let stderr = "";
  proc.stderr.on("data", (d) => (stderr += d));
  proc.stdout.on("data", (d) => {
    buf += d;
    let nl;
    while ((nl = buf.indexOf("\n")) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      let ev;
      try {
        ev = JSON.parse(line);
      } catch {
        continue;
      }
      events.push(ev);
      for (const w of waiters.splice(0)) w();
    }
  });
  const exited = new Promise((r) => proc.once("exit", (code) => r(code)));
  proc.once("exit", () => waiters.splice(0).forEach((w) => w()));
  t.after(async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill("SIGKILL");
      await exited;
    }
  });
  let seen = 0;
  async function next(name) {
    const deadline = Date.now() + WAIT;
    for (;;) {
      while (seen < events.length) {
        const ev = events[seen++];
        if (ev.event === name) return ev;
      }
      if (proc.exitCode !== null || proc.signalCode !== null) {
        throw new Error(`${bin} ended (${proc.exitCode ?? proc.signalCode}) before "${name}": ${stderr}`);
      }
      if (Date.now() > deadline) throw new Error(`no "${name}" event from ${bin}: ${stderr}`);
      await new Promise((r) => {
        waiters.push(r);
        setTimeout(r, 1000);
      });
    }
  }
  return { proc, events, next, exited, stderr: () => stderr, type: (line) => proc.stdin.write(`${line}\n`) };
}

/** nats-server on loopback (WebSocket for both ends), stopped by pid at the end. */
async function natsServer(t, dir) {
  const [port, ws] = [await freePort(), await freePort()];
  const conf = join(dir, "nats.conf");
  writeFileSync(conf, `listen: "127.0.0.1:${port}"\nmax_payload: 66560\nwebsocket {\n  listen: "127.0.0.1:${ws}"\n  no_tls: true\n  compression: false\n}\n`);
  const proc = spawn("nats-server", ["-c", conf], { stdio: "ignore" });
  const exited = new Promise((r) => proc.once("exit", r));
  t.after(async () => {
    if (proc.exitCode === null) {
      proc.kill("SIGKILL");
      await exited;
    }
  });
  const { connect } = await import("node:net");
  const deadline = Date.now() + WAIT;
  for (;;) {
    const up = await new Promise((r) => {
      const s = connect(ws, "127.0.0.1", () => (s.destroy(), r(true)));
      s.on("error", () => r(false));
    });
    if (up) return `ws://127.0.0.1:${ws}`;
    if (proc.exitCode !== null || Date.now() > deadline) throw new Error("nats-server did not start");
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A PC home with these phone settings and a phone home with its own demo key, paired. */
async function pairedHomes(t, settings) {
  for (const bin of [KEYBRIDGE, PHONE_BIN]) {
    if (!existsSync(bin)) throw new Error(`no binary at ${bin} (cargo build -p keybridge -p keybridge-phone)`);
  }
  const dir = mkdtempSync(join(tmpdir(), "kb-e2e-phone-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const pc = join(dir, "pc");
  const phone = join(dir, "phone");
  mkdirSync(join(pc, "config"), { recursive: true });
  writeFileSync(join(pc, "config/settings.toml"), settings);
  // The phone's own home: a file key with a signing and an encryption certificate.
  const init = jsonProc(t, PHONE_BIN, ["--home", phone, "--json", "init", "--weak-kdf-for-tests"]);
  const initialized = await init.next("initialized");
  assert.equal(await init.exited, 0, init.stderr());

  // Pairing: the PC shows the QR string, the phone "scans" it, both show the same code,
  // the PC confirms it (`--yes` stands for the user comparing the codes).
  const pcPair = jsonProc(t, KEYBRIDGE, ["--home", pc, "--json", "--yes", "phone", "pair"]);
  const offer = await pcPair.next("offer");
  assert.match(offer.text, /^KB1:[A-Z2-7]+$/);
  const phonePair = jsonProc(t, PHONE_BIN, ["--home", phone, "--json", "pair", offer.text]);
  const { code } = await phonePair.next("code");
  assert.match(code, /^\d{6}$/);
  assert.equal((await pcPair.next("awaiting_confirmation")).code, code, "both screens show the same code");
  await pcPair.next("paired");
  await phonePair.next("paired");
  assert.equal(await pcPair.exited, 0, pcPair.stderr());
  assert.equal(await phonePair.exited, 0, phonePair.stderr());
  return { dir, pc, phone, pin: initialized.pin, rootPem: initialized.root_ca };
}

/** The reference phone, connected and answering every request with its own PIN. */
async function runPhone(t, h) {
  const p = jsonProc(t, PHONE_BIN, ["--home", h.phone, "--json", "run", "--pin-stdin"]);
  await p.next("connected");
  const requests = [];
  (async () => {
    for (;;) {
      let req;
      try {
        req = await p.next("request");
      } catch {
        return; // the phone exited (end of the test)
      }
      requests.push(req);
      // The PIN is typed on the phone, into the phone process, and nowhere else.
      if (req.pin) p.type(h.pin);
    }
  })();
  return { ...p, requests };
}

async function signAndOpenFromAPage(t, settings) {
  const h = await pairedHomes(t, settings);
  const site = await staticServer(t, SDK_DIR);
  const bridge = await serve(t, h.pc, ["--allow-origin", site.origin, "--consent", "grants-only", "--trust", h.rootPem], { pins: 0 });
  const phone = await runPhone(t, h);
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  t.after(() => browser.close());
  const page = await browser.newPage();
  const sent = [];
  page.on("websocket", (ws) => ws.on("framesent", (f) => sent.push(String(f.payload))));
  await page.goto(`${site.origin}/examples/web/index.html?port=${bridge.port}`);

  // The page sees the phone's certificates like any medium's (once the phone is online),
  // and signs with the signing one: raw for OpenSSL, CMS detached for KeyBridge's CLI.
  const signed = await page.evaluate(
    async ({ port, text, wait }) => {
      const sdk = await import("/dist/index.js");
      const c = await sdk.connect({ port, sdk: "e2e-phone-page" });
      const deadline = Date.now() + wait;
      let devices;
      for (;;) {
        devices = await c.devices();
        if (devices.some((d) => d.transport === "phone")) break;
        if (Date.now() > deadline) throw new Error(`no phone medium: ${JSON.stringify(devices)}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      const phone = devices.find((d) => d.transport === "phone");
      const certs = await c.certificates({ usage: "sign" });
      const cert = certs.find((x) => x.device === phone.id) ?? certs[0];
      const data = sdk.toBase64(text);
      const raw = await c.sign({ certificate: { thumbprint: cert.thumbprint }, input: { data }, format: "raw" });
      const cms = await c.sign({ certificate: { thumbprint: cert.thumbprint }, input: { data }, format: "cms_detached" });
      const details = await c.certificate(cert.thumbprint);
      const enc = (await c.certificates({ usage: "encrypt" })).find((x) => x.device === phone.id);
      const encPem = enc ? (await c.certificate(enc.thumbprint)).pem : null;
      await c.close();
      return { raw: raw.signature, cms: cms.signature, pem: details.pem, device: phone, encPem, encThumb: enc?.thumbprint };
    },
    { port: bridge.port, text: TEXT, wait: WAIT },
  );
  assert.equal(signed.device.transport, "phone");
  // Each signature was shown on the phone with its context and approved there with the
  // phone's own PIN (the phone's PIN cache may spare the second one).
  assert.ok(phone.requests.length >= 1, JSON.stringify(phone.requests));
  assert.equal(phone.requests[0].kind, "sign");
  assert.match(phone.requests[0].client, /e2e-phone-page|127\.0\.0\.1/);

  const f = (n) => join(h.dir, n);
  opensslChecksSm2(h.dir, { pem: signed.pem, text: TEXT, signature: signed.raw, rootPem: h.rootPem });
  writeFileSync(f("msg.txt"), TEXT);
  writeFileSync(f("page.p7s"), Buffer.from(signed.cms, "base64"));
  kb(h.pc, ["verify", "--sig", f("page.p7s"), "--in", f("msg.txt"), "--ca", h.rootPem]);

  // An envelope for the phone's encryption certificate, made by GmSSL (nobody here wrote
  // it), opened through the bridge: the phone decrypts the content key.
  assert.ok(signed.encPem, "the phone's encryption certificate is listed");
  assert.ok(existsSync(GMSSL), `the GmSSL CLI (installer/bootstrap.sh builds it): ${GMSSL}`);
  writeFileSync(f("rcpt.pem"), signed.encPem);
  writeFileSync(f("bid.txt"), ENVELOPED);
  const { execFileSync } = await import("node:child_process");
  execFileSync(GMSSL, ["cmsencrypt", "-rcptcert", f("rcpt.pem"), "-in", f("bid.txt"), "-out", f("bid.env.pem")]);
  const envDer = readFileSync(f("bid.env.pem"), "utf8").replace(/-----[^-]+-----/g, "").replace(/\s+/g, "");
  const before = phone.requests.length;
  const opened = await page.evaluate(
    async ({ port, env, thumb }) => {
      const sdk = await import("/dist/index.js");
      const c = await sdk.connect({ port, sdk: "e2e-phone-page" });
      const r = await c.decrypt({ format: "cms_envelope", certificate: { thumbprint: thumb }, input: { data: env } });
      await c.close();
      return { data: r.output.data, certificate: r.certificate };
    },
    { port: bridge.port, env: envDer, thumb: signed.encThumb },
  );
  assert.equal(Buffer.from(opened.data, "base64").toString("utf8"), ENVELOPED);
  assert.equal(opened.certificate, signed.encThumb);
  assert.ok(phone.requests.slice(before).some((r) => r.kind === "decrypt"), JSON.stringify(phone.requests));

  // The phone's PIN never crossed the bridge's socket; the PC was never asked for it.
  assert.ok(sent.length > 0);
  assert.ok(!sent.some((m) => m.includes(h.pin)), "the phone's PIN crossed the socket");
  const audit = JSON.stringify(kb(h.pc, ["audit", "--days", "1"]));
  assert.ok(audit.includes('"auth":"phone"'), audit);
}

test("a page signs and opens an envelope with the phone's key over the direct listener", async (t) => {
  const port = await freePort();
  await signAndOpenFromAPage(t, `phone_listen = ["127.0.0.1:${port}"]\n`);
});

test("a page signs and opens an envelope with the phone's key through the relay", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "kb-e2e-nats-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const relay = await natsServer(t, dir);
  await signAndOpenFromAPage(t, `phone_relay_url = "${relay}"\n`);
});
