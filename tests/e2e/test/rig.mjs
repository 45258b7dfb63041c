// The e2e rig: a KeyBridge home with the demo key (`keybridge demo`), `keybridge serve`
// on an ephemeral 127.0.0.1 port (PIN typed into its stdin, never sent by a client),
// a static web server for pages, OpenSSL as the independent verifier. Every process
// started here is stopped by pid when the test ends.

import { execFileSync, spawn } from "node:child_process";
import { createServer } from "node:http";
import { createServer as createTlsServer } from "node:https";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, extname, join, normalize, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
export const SDK_DIR = join(ROOT, "bridge/sdk-js");
export const KEYBRIDGE = process.env.KEYBRIDGE_BIN ?? join(process.env.CARGO_TARGET_DIR ?? join(ROOT, "target"), "debug/keybridge");
export const CHROMIUM = process.env.CHROMIUM_BIN ?? "/usr/bin/chromium";
export const DEMO_PIN = "12345678";

/** Run keybridge with a home; returns stdout (JSON parsed with `--json`). */
export function kb(home, args, { json = true, input } = {}) {
  const out = execFileSync(KEYBRIDGE, ["--home", home, ...(json ? ["--json"] : []), ...args], {
    input,
    env: { ...process.env, KEYBRIDGE_HOME: "" },
    maxBuffer: 64 << 20,
  });
  return json ? JSON.parse(out.toString()) : out.toString();
}

/** A fresh home with the demo key; removed when the test ends. */
export function demoHome(t) {
  if (!existsSync(KEYBRIDGE)) throw new Error(`no keybridge binary at ${KEYBRIDGE} (cargo build -p keybridge, or set KEYBRIDGE_BIN)`);
  const dir = mkdtempSync(join(tmpdir(), "kb-e2e-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const home = join(dir, "home");
  kb(home, ["demo"]);
  return { dir, home, rootPem: join(home, "data/demo-ca/root.pem") };
}

/** `keybridge serve` on a free port (or `port`: `null` for the home's `bridge_port`); resolves once it listens. */
export async function serve(t, home, args = [], { pins = 3, port = 0 } = {}) {
  const ready = join(home, `ready-${process.hrtime.bigint()}.json`);
  const portArgs = port === null ? [] : ["--port", String(port)];
  const proc = spawn(KEYBRIDGE, ["--home", home, "--pin-stdin", "serve", ...portArgs, "--ready-file", ready, ...args], {
    env: { ...process.env, KEYBRIDGE_HOME: "" },
    stdio: ["pipe", "ignore", "pipe"],
  });
  let stderr = "";
  proc.stderr.on("data", (d) => (stderr += d));
  // The PIN goes to KeyBridge's own prompt (its stdin), never over the socket.
  proc.stdin.end(`${DEMO_PIN}\n`.repeat(pins));
  const exited = new Promise((r) => proc.once("exit", r));
  t.after(async () => {
    if (proc.exitCode === null) {
      proc.kill("SIGTERM");
      await Promise.race([exited, new Promise((r) => setTimeout(r, 3000))]);
      if (proc.exitCode === null) proc.kill("SIGKILL");
    }
  });
  const t0 = Date.now();
  while (!existsSync(ready)) {
    if (proc.exitCode !== null) throw new Error(`keybridge serve exited ${proc.exitCode}: ${stderr}`);
    if (Date.now() - t0 > 60_000) throw new Error(`keybridge serve did not start: ${stderr}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  const info = JSON.parse(readFileSync(ready, "utf8"));
  return { ...info, pid: proc.pid, stderr: () => stderr };
}

const TYPES = { ".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".mjs": "text/javascript; charset=utf-8", ".css": "text/css", ".json": "application/json", ".map": "application/json" };

/** A static file server for `dir` on 127.0.0.1 (a "trading platform" origin); over HTTPS
 * with `tls: { key, cert, host }` (PEM; the origin then names `host`). */
export async function staticServer(t, dir, { tls } = {}) {
  const handler = (req, res) => {
    const path = normalize(decodeURIComponent(new URL(req.url, "http://x").pathname)).replace(/^([/\\])+/, "");
    const file = join(dir, path);
    if (!file.startsWith(dir) || !existsSync(file) || !statSync(file).isFile()) {
      res.writeHead(404).end("not found");
      return;
    }
    res.writeHead(200, { "content-type": TYPES[extname(file)] ?? "application/octet-stream" }).end(readFileSync(file));
  };
  const server = tls ? createTlsServer({ key: tls.key, cert: tls.cert }, handler) : createServer(handler);
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  t.after(() => new Promise((r) => server.close(r)));
  const port = server.address().port;
  return { origin: tls ? `https://${tls.host}:${port}` : `http://127.0.0.1:${port}`, port };
}

/** Run openssl; returns { ok, out }. */
export function openssl(args) {
  try {
    return { ok: true, out: execFileSync("openssl", args, { stdio: ["ignore", "pipe", "pipe"] }).toString() };
  } catch (e) {
    return { ok: false, out: `${e.stdout ?? ""}${e.stderr ?? ""}` };
  }
}

/**
 * OpenSSL, as the independent verifier: the raw SM2 signature (GM/T default ID) of `text`
 * by the certificate `pem` verifies, the same signature over another text does not, and
 * the certificate chains to `rootPem`. Files go to `dir`.
 */
export function opensslChecksSm2(dir, { pem, text, signature, rootPem }) {
  const f = (n) => join(dir, `ossl-${n}`);
  writeFileSync(f("signer.pem"), pem);
  writeFileSync(f("msg.txt"), text);
  writeFileSync(f("other.txt"), `${text}。`);
  writeFileSync(f("raw.sig"), Buffer.from(signature, "base64"));
  const pub = openssl(["x509", "-in", f("signer.pem"), "-pubkey", "-noout", "-out", f("pub.pem")]);
  assert.ok(pub.ok, pub.out);
  const verify = (msg) =>
    openssl(["pkeyutl", "-verify", "-rawin", "-digest", "sm3", "-pubin", "-inkey", f("pub.pem"), "-pkeyopt", "distid:1234567812345678", "-in", msg, "-sigfile", f("raw.sig")]);
  const good = verify(f("msg.txt"));
  assert.ok(good.ok && /Signature Verified Successfully/.test(good.out), good.out);
  assert.equal(verify(f("other.txt")).ok, false, "OpenSSL must reject another message");
  const chain = openssl(["verify", "-CAfile", rootPem, "-vfyopt", "distid:1234567812345678", f("signer.pem")]);
  assert.ok(chain.ok, chain.out);
}

/** Peak resident memory of a process so far (VmHWM), in bytes; Linux only. */
export function peakRss(pid) {
  return statusBytes(pid, "VmHWM");
}

/** Resident memory of a process now (VmRSS), in bytes; Linux only. */
export function rss(pid) {
  return statusBytes(pid, "VmRSS");
}

function statusBytes(pid, field) {
  const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) * 1024 : NaN;
}

/** Chromium flags for a sandboxed machine with no network (see the tool library's notes). */
export const CHROMIUM_ARGS = [
  "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
];
