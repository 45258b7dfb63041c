#!/usr/bin/env node
// Example "bid tool" (投标文件制作工具) on the KeyBridge bridge, in Node.
//
//   node bid-tool.mjs --file bid.pdf --recipient agency.cer --out bid.p7e [--sign-out bid.p7s]
//   node bid-tool.mjs --decrypt --file bid.p7e --out bid.pdf
//
// Sealing a bid: signs the file with the user's signing certificate (CMS detached
// signature, the file streamed) and encrypts it into a CMS envelope for the tender
// agency's certificate (DER or PEM file), streamed both ways: memory stays constant for
// a file of any size. Opening a bid (--decrypt): decrypts an envelope with the user's
// encryption certificate. KeyBridge asks for the PIN in its own window; this tool never
// sees it. Native tools authenticate with the per-user bridge secret file.
//
// Run from bridge/sdk-js after `npm ci && npm run build` (the `ws` package is a
// devDependency there; in your own tool, `npm install ws`).

import { createReadStream } from "node:fs";
import { open, readFile, rename, rm, stat } from "node:fs/promises";
import path from "node:path";
import { parseArgs } from "node:util";
import WebSocket from "ws";
import { ConnectionError, KeyBridgeError, connect, fromBase64, toBase64 } from "@keybridge/client";
import { readSecret, secretPath } from "@keybridge/client/node";

const USAGE = `usage:
  node bid-tool.mjs --file FILE --recipient CERT --out ENVELOPE [--sign-out SIGNATURE] [options]
  node bid-tool.mjs --decrypt --file ENVELOPE --out FILE [options]

  --file PATH          the bid file to seal, or the envelope to open (--decrypt)
  --recipient PATH     the tender agency's encryption certificate, DER or PEM
  --out PATH           where the envelope (or, with --decrypt, the opened file) goes
  --sign-out PATH      also write a detached CMS signature of the bid file here
  --decrypt            open an envelope with your encryption certificate
  --certificate SHA1   which of your certificates to use (thumbprint), when you have several
  --url URL            the bridge (default ws://127.0.0.1:17210)
  --secret-file PATH   the bridge secret (default ${secretPath()})
  -h, --help           this text`;

class UsageError extends Error {}

function parse(argv) {
  const { values } = parseArgs({
    args: argv,
    options: {
      file: { type: "string" },
      recipient: { type: "string" },
      out: { type: "string" },
      "sign-out": { type: "string" },
      decrypt: { type: "boolean", default: false },
      certificate: { type: "string" },
      url: { type: "string" },
      "secret-file": { type: "string" },
      help: { type: "boolean", short: "h", default: false },
    },
    strict: true,
  });
  if (values.help) return values;
  const need = values.decrypt ? ["file", "out"] : ["file", "recipient", "out"];
  const missing = need.filter((k) => !values[k]);
  if (missing.length) throw new UsageError(`missing ${missing.map((k) => `--${k}`).join(", ")}`);
  if (values.decrypt && (values.recipient || values["sign-out"])) {
    throw new UsageError("--recipient and --sign-out are for sealing a bid, not with --decrypt");
  }
  return values;
}

/** A certificate file's DER bytes, base64: PEM (the first certificate) or DER. */
async function certificateDer(file) {
  const bytes = await readFile(file);
  const text = bytes.toString("latin1");
  const pem = /-----BEGIN CERTIFICATE-----([A-Za-z0-9+/=\s]+)-----END CERTIFICATE-----/.exec(text);
  if (pem) return pem[1].replace(/\s+/g, "");
  if (text.includes("-----BEGIN")) throw new Error(`${file}: a PEM file without a certificate`);
  if (bytes[0] !== 0x30) throw new Error(`${file}: neither a PEM nor a DER certificate`);
  return toBase64(bytes);
}

/** Progress on stderr: one updating line on a terminal, else every 10 %. */
function progressPrinter(label, size) {
  let lastTenth = -1;
  const tty = process.stderr.isTTY;
  return {
    update({ done, total }) {
      const of = total ?? size;
      const pct = of ? Math.min(100, Math.floor((done * 100) / of)) : undefined;
      const text = pct === undefined ? `${label}: ${mb(done)}` : `${label}: ${pct}% (${mb(done)} / ${mb(of)})`;
      if (tty) process.stderr.write(`\r${text}   `);
      else if (pct !== undefined && Math.floor(pct / 10) > lastTenth) {
        lastTenth = Math.floor(pct / 10);
        process.stderr.write(`${text}\n`);
      }
    },
    end() {
      if (tty) process.stderr.write("\n");
    },
  };
}

const mb = (n) => `${(n / 1048576).toFixed(1)} MB`;

/**
 * Writes a file atomically: bytes go to a temporary file beside `target`, renamed over
 * it only when `body` succeeds. `body` gets a sink that awaits every write (back-pressure).
 */
async function writeAtomically(target, body) {
  const tmp = path.join(path.dirname(target), `.${path.basename(target)}.part-${process.pid}`);
  const fh = await open(tmp, "wx", 0o600);
  try {
    const result = await body(async (chunk) => {
      await fh.write(chunk);
    });
    await fh.sync();
    await fh.close();
    await rename(tmp, target);
    return result;
  } catch (e) {
    await fh.close().catch(() => undefined);
    await rm(tmp, { force: true });
    throw e;
  }
}

/** Runs a streaming call whose output goes to `out` (atomically), printing its progress. */
async function streamToFile(label, size, out, call) {
  const progress = progressPrinter(label, size);
  try {
    return await writeAtomically(out, (sink) => call(sink, (p) => progress.update(p)));
  } finally {
    progress.end();
  }
}

/** The signing certificate: the one given, or the only valid one present. */
async function signingCertificate(client, thumbprint) {
  const now = Math.floor(Date.now() / 1000);
  const certs = await client.certificates({ usage: "sign", valid_at: now });
  if (thumbprint) {
    const c = certs.find((x) => x.thumbprint === thumbprint.toUpperCase());
    if (!c) throw new Error(`no valid signing certificate ${thumbprint} on the present keys`);
    return c;
  }
  if (certs.length === 0) throw new Error("no valid signing certificate: insert your key (USB key, card or phone)");
  if (certs.length > 1) {
    const list = certs.map((c) => `  ${c.thumbprint}  ${c.subject}  (${c.device})`).join("\n");
    throw new Error(`several signing certificates are present; choose one with --certificate:\n${list}`);
  }
  return certs[0];
}

async function seal(client, args, signal) {
  const { size } = await stat(args.file);
  const recipient = await certificateDer(args.recipient);
  const signer = await signingCertificate(client, args.certificate);
  process.stderr.write(`signing certificate: ${signer.subject} [${signer.thumbprint}]\n`);
  const certificate = { thumbprint: signer.thumbprint, device: signer.device };

  if (args["sign-out"]) {
    const signed = await streamToFile("signing", size, args["sign-out"], async (sink, onProgress) => {
      const result = await client.signStream({
        certificate,
        source: createReadStream(args.file),
        length: size,
        format: "cms_detached",
        signal,
        onProgress,
      });
      await sink(fromBase64(result.signature));
      return result;
    });
    process.stderr.write(`signature (${signed.algorithm}, ${signed.hash}): ${args["sign-out"]}\n`);
  }

  const result = await streamToFile("encrypting", size, args.out, (sink, onProgress) =>
    client.encryptStream({
      recipients: [{ der: recipient }],
      source: createReadStream(args.file),
      length: size,
      sink,
      format: "cms_envelope",
      signal,
      onProgress,
    }),
  );
  process.stderr.write(`envelope: ${args.out} (${result.output.length} bytes)\n`);
}

async function unseal(client, args, signal) {
  const { size } = await stat(args.file);
  const result = await streamToFile("decrypting", size, args.out, (sink, onProgress) =>
    client.decryptStream({
      source: createReadStream(args.file),
      length: size,
      sink,
      format: "cms_envelope",
      certificate: args.certificate ? { thumbprint: args.certificate } : undefined,
      signal,
      onProgress,
    }),
  );
  process.stderr.write(`opened with certificate ${result.certificate}: ${args.out} (${result.output.length} bytes)\n`);
}

/** A failure for people: the KeyBridge message in Chinese and English, with its code. */
function describe(e) {
  if (e instanceof KeyBridgeError) {
    const retries = e.retriesLeft !== undefined ? ` (剩余 ${e.retriesLeft} 次 / ${e.retriesLeft} tries left)` : "";
    return `错误 ${e.code} ${e.name}: ${e.messageFor("zh-CN")} / ${e.messageFor("en")}${retries}${e.detail ? `\n  ${e.detail}` : ""}`;
  }
  if (e instanceof ConnectionError) return `${e.messageFor("zh-CN")} / ${e.message}`;
  return e instanceof Error ? e.message : String(e);
}

async function main(argv) {
  let args;
  try {
    args = parse(argv);
  } catch (e) {
    process.stderr.write(`${e.message}\n${USAGE}\n`);
    return 2;
  }
  if (args.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const abort = new AbortController();
  process.once("SIGINT", () => abort.abort());
  let client;
  try {
    const secret = await readSecret(args["secret-file"]);
    client = await connect({ url: args.url, WebSocket, secret, sdk: "bid-tool", sdkVersion: "0.1.0", signal: abort.signal });
    if (args.decrypt) await unseal(client, args, abort.signal);
    else await seal(client, args, abort.signal);
    return 0;
  } catch (e) {
    process.stderr.write(`\n${describe(e)}\n`);
    return 1;
  } finally {
    await client?.close();
  }
}

process.exitCode = await main(process.argv.slice(2));
