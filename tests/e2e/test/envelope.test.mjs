// A bid file sealed and opened through the bridge by the example "bid tool" (a Node
// process using the SDK): signed (CMS detached, streamed) and encrypted into a CMS
// envelope (streamed both ways), then decrypted again; the bytes come back identical,
// the signature verifies with KeyBridge's CLI, and both the tool and KeyBridge keep
// constant memory. Size: KB_E2E_MB (default 64 MiB; the 1 GB figure in the docs comes
// from KB_E2E_MB=1024 with a release build).

import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { createReadStream, openSync, readFileSync, statSync, writeSync, closeSync } from "node:fs";
import { join } from "node:path";
import { SDK_DIR, demoHome, kb, peakRss, rss, serve } from "./rig.mjs";

const MB = Number(process.env.KB_E2E_MB ?? 64);

/** Write `mb` MiB of varied bytes without holding them. */
function writeBid(path, mb) {
  const fd = openSync(path, "w");
  const block = Buffer.alloc(1 << 20);
  for (let i = 0; i < mb; i++) {
    for (let j = 0; j < block.length; j += 4) block.writeUInt32LE((i * 2654435761 + j * 40503) >>> 0, j);
    writeSync(fd, block);
  }
  closeSync(fd);
}

async function sha256(path) {
  const h = createHash("sha256");
  for await (const c of createReadStream(path)) h.update(c);
  return h.digest("hex");
}

/** Run the bid tool; resolves with its peak RSS and KeyBridge's largest RSS while the
 * tool ran (both sampled from /proc every 50 ms), and the wall time. */
function bidTool(args, env, serverPid) {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const p = spawn(process.execPath, [join(SDK_DIR, "examples/bid-tool.mjs"), ...args], { env, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let peak = 0;
    let server = 0;
    p.stdout.on("data", (d) => (out += d));
    p.stderr.on("data", (d) => (out += d));
    const sample = setInterval(() => {
      try {
        const v = peakRss(p.pid);
        if (Number.isFinite(v)) peak = Math.max(peak, v);
        const w = rss(serverPid);
        if (Number.isFinite(w)) server = Math.max(server, w);
      } catch {
        // The process is gone between samples.
      }
    }, 50);
    p.on("exit", (code) => {
      clearInterval(sample);
      const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
      code === 0 ? resolve({ peak, server, seconds, out }) : reject(new Error(`bid tool exited ${code}: ${out}`));
    });
  });
}

test(`a ${MB} MiB bid sealed and opened through the bridge in constant memory`, { timeout: 30 * 60_000 }, async (t) => {
  const { dir, home, rootPem } = demoHome(t);
  const bridge = await serve(t, home, ["--trust", rootPem]);
  // KeyBridge's own size before any key use (code, runtime threads): the peak is measured
  // against it, since what grows with new features is this, not the streaming.
  const idle = rss(bridge.pid);
  const f = (n) => join(dir, n);
  kb(home, ["cert", "export", "--usage", "encrypt", "--pem", "--out", f("agency.pem")]);
  writeBid(f("bid.bin"), MB);
  const env = { ...process.env, KEYBRIDGE_HOME: home };
  const common = ["--url", bridge.url, "--secret-file", bridge.secret_file];

  // Warm-up on a small bid: the first key use verifies the PIN (the demo file key's
  // Argon2id takes 64 MiB for a moment); the PIN cache then spares the big runs, so the
  // memory sampled during them is the streaming's own.
  writeBid(f("small.bin"), 1);
  await bidTool(["--file", f("small.bin"), "--recipient", f("agency.pem"), "--out", f("small.p7e"), "--sign-out", f("small.p7s"), ...common], env, bridge.pid);
  const seal = await bidTool(["--file", f("bid.bin"), "--recipient", f("agency.pem"), "--out", f("bid.p7e"), "--sign-out", f("bid.p7s"), ...common], env, bridge.pid);
  const open = await bidTool(["--decrypt", "--file", f("bid.p7e"), "--out", f("opened.bin"), ...common], env, bridge.pid);
  assert.equal(statSync(f("opened.bin")).size, MB << 20);
  assert.equal(await sha256(f("opened.bin")), await sha256(f("bid.bin")), "the opened bid differs");
  // The signature over the whole file, by the CLI (streams the file too).
  kb(home, ["verify", "--sig", f("bid.p7s"), "--in", f("bid.bin"), "--ca", rootPem]);
  // The envelope opens with the CLI as well (same key, no bridge in between).
  kb(home, ["--pin-stdin", "decrypt", "--in", f("bid.p7e"), "--out", f("cli.bin")], { input: "12345678\n" });
  assert.equal(await sha256(f("cli.bin")), await sha256(f("bid.bin")));

  const server = peakRss(bridge.pid);
  const mib = (b) => (b / (1 << 20)).toFixed(1);
  const envelope = statSync(f("bid.p7e")).size;
  const report = {
    mib: MB,
    seal_seconds: seal.seconds.toFixed(2),
    open_seconds: open.seconds.toFixed(2),
    seal_mb_per_s: (MB / seal.seconds).toFixed(1),
    open_mb_per_s: (MB / open.seconds).toFixed(1),
    tool_peak_rss_mib: mib(Math.max(seal.peak, open.peak)),
    keybridge_idle_rss_mib: mib(idle),
    keybridge_peak_rss_mib: mib(server),
    keybridge_rss_while_streaming_mib: mib(Math.max(seal.server, open.server)),
    envelope_bytes: envelope,
  };
  t.diagnostic(JSON.stringify(report));
  console.log(`envelope-e2e ${JSON.stringify(report)}`);
  // Constant memory, whatever the file's size: the peak is KeyBridge at rest, plus the
  // demo key's Argon2id (64 MiB, once, at the warm-up's PIN check), plus at most 16 MiB.
  const KDF = 64 << 20;
  assert.ok(idle > 0 && server < idle + KDF + (16 << 20), `KeyBridge peaked at ${mib(server)} MiB (idle ${mib(idle)} MiB)`);
  const streaming = Math.max(seal.server, open.server);
  assert.ok(streaming > 0 && streaming < 64 << 20, `KeyBridge used ${mib(streaming)} MiB while streaming`);
  assert.ok(seal.peak > 0 && open.peak > 0, "memory of the bid tool was sampled");
  assert.ok(Math.max(seal.peak, open.peak) < 160 << 20, `the bid tool peaked at ${mib(Math.max(seal.peak, open.peak))} MiB`);
});
