// The examples: both parse (`node --check`), and the bid tool, run as a real process,
// drives the protocol as docs/bridge-protocol.md says against the fake server. The fake
// server only scripts answers ("encrypts" by XOR): this checks the tool's requests,
// streams and files, not cryptography; the real server's end-to-end tests come separately.
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { test as nodeTest } from "node:test";
import { fileURLToPath } from "node:url";
import { toBase64 } from "../dist/index.js";
import { errorObject, fakeServer } from "./fake-server.mjs";

// Timeouts only catch hangs: generous, for a busy machine (a type check takes ~45 s there).
const test = (name, fn) => nodeTest(name, { timeout: 300_000 }, fn);
const pkg = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const TOOL = path.join(pkg, "examples", "bid-tool.mjs");
const SECRET = "ab".repeat(32);
const THUMB = "0123456789ABCDEF0123456789ABCDEF01234567";
const SIGNATURE = Uint8Array.from([0x30, 0x82, 0x01, 0x02, 1, 2, 3, 4, 5]);

test("the examples parse", () => {
  for (const file of ["examples/bid-tool.mjs", "examples/web/app.js"]) {
    const r = spawnSync(process.execPath, ["--check", path.join(pkg, file)], { encoding: "utf8" });
    assert.equal(r.status, 0, `${file}: ${r.stderr}`);
  }
  const html = readFileSync(path.join(pkg, "examples/web/index.html"), "utf8");
  assert.match(html, /<script type="module" src="\.\/app\.js"><\/script>/);
  assert.match(readFileSync(path.join(pkg, "examples/web/app.js"), "utf8"), /from "\.\.\/\.\.\/dist\/index\.js"/);
});

function run(args, env = {}) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [TOOL, ...args], { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.on("close", (status) => resolve({ status, stdout, stderr }));
  });
}

const xor = (bytes) => bytes.map((b) => b ^ 0x5a);

/** The fake bridge's script for sealing and opening bids. */
function bidHandler(msg, conn) {
  const bytesOf = (frames) => new Uint8Array(Buffer.concat(frames.map((f) => f.payload)));
  switch (msg.method) {
    case "certificates.list":
      conn.reply(msg.id, {
        certificates: [
          {
            thumbprint: THUMB, device: "file:demo", container: "bid", usage: "sign", algorithm: "sm2",
            subject: "CN=张三,O=某某建设集团有限公司,C=CN", issuer: "CN=Example SM2 CA", serial: "1A2B3C",
            not_before: 1760000000, not_after: 1791536000, status: "valid",
          },
        ],
      });
      break;
    case "sign":
      conn.uploadEnded(msg.params.input.stream).then(() =>
        conn.reply(msg.id, { signature: toBase64(SIGNATURE), format: "cms_detached", algorithm: "sm2", hash: "sm3", certificate: THUMB }),
      );
      break;
    case "encrypt":
    case "decrypt":
      conn.uploadEnded(msg.params.input.stream).then(async (frames) => {
        const out = xor(bytesOf(frames));
        conn.notify("progress", { request: msg.id, done: out.length, total: out.length });
        await conn.sendDownload(msg.params.output.stream, out, 65536);
        const output = { stream: msg.params.output.stream, length: out.length };
        conn.reply(msg.id, msg.method === "encrypt" ? { format: "cms_envelope", output } : { output, certificate: THUMB });
      });
      break;
    default:
      conn.error(msg.id, errorObject("not_supported"));
  }
}

test("bid tool: seal (sign + envelope, streamed) and open a bid through the bridge", async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), "kb-bid-"));
  const server = await fakeServer(bidHandler, { maxChunk: 65536 });
  try {
    const bid = Uint8Array.from({ length: 1_000_003 }, (_, i) => (i * 31 + 7) & 255);
    writeFileSync(path.join(dir, "bid.pdf"), bid);
    const der = Uint8Array.from([0x30, 0x82, 0x01, 0x0a, 9, 8, 7, 6, 5, 4, 3, 2, 1]);
    const b64 = toBase64(der);
    writeFileSync(path.join(dir, "agency.cer"), `-----BEGIN CERTIFICATE-----\n${b64.slice(0, 8)}\n${b64.slice(8)}\n-----END CERTIFICATE-----\n`);
    writeFileSync(path.join(dir, "secret"), `${SECRET}\n`, { mode: 0o600 });

    const sealed = await run([
      "--file", path.join(dir, "bid.pdf"),
      "--recipient", path.join(dir, "agency.cer"),
      "--out", path.join(dir, "bid.p7e"),
      "--sign-out", path.join(dir, "bid.p7s"),
      "--url", server.url,
      "--secret-file", path.join(dir, "secret"),
    ]);
    assert.equal(sealed.status, 0, sealed.stderr);
    assert.match(sealed.stderr, /signing certificate: CN=张三/);
    assert.match(sealed.stderr, /encrypting: 100%/);
    assert.deepEqual(readFileSync(path.join(dir, "bid.p7s")), Buffer.from(SIGNATURE));
    assert.deepEqual(readFileSync(path.join(dir, "bid.p7e")), Buffer.from(xor(bid)));

    const conn = server.conns[0];
    assert.equal(conn.headers.authorization, `Bearer ${SECRET}`);
    assert.deepEqual(conn.requests("hello")[0].params, { schema_version: 1, sdk: "bid-tool", sdk_version: "0.1.0" });
    assert.equal(conn.requests("certificates.list")[0].params.usage, "sign");
    const sign = conn.requests("sign")[0].params;
    assert.deepEqual(sign, { certificate: { thumbprint: THUMB, device: "file:demo" }, input: { stream: sign.input.stream }, format: "cms_detached" });
    const enc = conn.requests("encrypt")[0].params;
    assert.deepEqual(enc, {
      format: "cms_envelope",
      recipients: [{ der: b64 }],
      input: { stream: enc.input.stream },
      output: { stream: enc.output.stream },
    });
    assert.deepEqual(
      conn.requests("stream.open").map((r) => r.params),
      [{ direction: "upload", length: bid.length }, { direction: "upload", length: bid.length }, { direction: "download" }],
    );
    // The whole file went up for both, in frames of at most max_chunk_bytes.
    for (const stream of [sign.input.stream, enc.input.stream]) {
      const frames = conn.uploads.get(stream).frames;
      assert.ok(frames.every((f) => f.payload.length <= 65536));
      const h = createHash("sha256");
      for (const f of frames) h.update(f.payload);
      assert.equal(h.digest("hex"), createHash("sha256").update(bid).digest("hex"));
    }

    // Opening the bid: the secret found through KEYBRIDGE_HOME, as the service puts it.
    const home = path.join(dir, "home");
    mkdirSync(path.join(home, "config"), { recursive: true });
    writeFileSync(path.join(home, "config", "bridge-secret"), SECRET, { mode: 0o600 });
    const opened = await run(
      ["--decrypt", "--file", path.join(dir, "bid.p7e"), "--out", path.join(dir, "opened.pdf"), "--url", server.url],
      { KEYBRIDGE_HOME: home },
    );
    assert.equal(opened.status, 0, opened.stderr);
    assert.match(opened.stderr, new RegExp(`opened with certificate ${THUMB}`));
    assert.deepEqual(readFileSync(path.join(dir, "opened.pdf")), Buffer.from(bid));
    assert.deepEqual(server.conns[1].requests("decrypt")[0].params.format, "cms_envelope");
    // No partial files left behind.
    assert.deepEqual(readdirSync(dir).filter((f) => f.includes(".part-")), []);
  } finally {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("bid tool: a refused request is reported in Chinese and English, and no output is left", async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), "kb-bid-"));
  const server = await fakeServer((msg, conn) => {
    if (msg.method === "decrypt") conn.uploadEnded(msg.params.input.stream).then(() => conn.error(msg.id, errorObject("wrong_pin", { retries_left: 0 })));
  });
  try {
    writeFileSync(path.join(dir, "bid.p7e"), new Uint8Array(1000));
    writeFileSync(path.join(dir, "secret"), SECRET);
    const r = await run([
      "--decrypt", "--file", path.join(dir, "bid.p7e"), "--out", path.join(dir, "out.pdf"),
      "--url", server.url, "--secret-file", path.join(dir, "secret"),
    ]);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /错误 4001 wrong_pin: 口令错误 \/ wrong PIN/);
    assert.deepEqual(readdirSync(dir).sort(), ["bid.p7e", "secret"]);
    const usage = await run(["--file", "x"]);
    assert.equal(usage.status, 2);
    assert.match(usage.stderr, /missing --recipient, --out/);
    const noSecret = await run(["--decrypt", "--file", "x", "--out", "y", "--secret-file", path.join(dir, "none")]);
    assert.equal(noSecret.status, 1);
    assert.match(noSecret.stderr, /no bridge secret at/);
  } finally {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
