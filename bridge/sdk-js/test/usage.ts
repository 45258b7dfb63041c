// Type-level checks of the public API, compiled with `tsc --noEmit` by
// doc-types.test.mjs. Every `@ts-expect-error` line must fail to compile (tsc reports an
// unused directive otherwise), so the misuse checks below cannot pass vacuously.

import WsWebSocket from "ws";
import { KeyBridgeError, METHODS, connect, type KeyBridgeClient, type SignResult } from "../src/index.js";
import { readSecret } from "../src/node.js";

export async function node(): Promise<SignResult> {
  // Node: the ws package's class and the secret; browsers pass nothing.
  const client = await connect({ WebSocket: WsWebSocket, secret: await readSecret(), sdk: "bid-tool" });
  await connect({ WebSocket: globalThis.WebSocket });
  const result = await client.call("sign", {
    certificate: { thumbprint: "3F2A9C1B7D4E5F60718293A4B5C6D7E8F9012345" },
    input: { data: "5oqV5qCH5paH5Lu2" },
    format: "cms_detached",
  });
  const devices = await client.call("devices.list"); // every param optional: params may be left out
  devices.devices.map((d) => d.transport satisfies "file" | "pcsc" | "pkcs11" | "skf" | "hid" | "ble" | "phone");
  return result;
}

export async function misuse(client: KeyBridgeClient): Promise<void> {
  // @ts-expect-error sign needs params
  await client.call("sign");
  // @ts-expect-error no such method
  await client.call("sign.pin", {});
  await client.sign({
    certificate: { thumbprint: "3F2A9C1B7D4E5F60718293A4B5C6D7E8F9012345" },
    input: { data: "" },
    format: "raw",
    // @ts-expect-error there is no PIN parameter: KeyBridge asks for the PIN itself
    pin: "12345678",
  });
  // @ts-expect-error not a signature format
  await client.sign({ certificate: { thumbprint: "" }, input: { data: "" }, format: "pkcs7" });
  // @ts-expect-error progress is not subscribable
  await client.subscribe(["progress"]);
  client.on("progress", (p) => p.done satisfies number);
  // @ts-expect-error no such event
  client.on("device.inserted", () => undefined);
  const e = KeyBridgeError.of("wrong_pin");
  e.messageFor("en") satisfies string;
  // @ts-expect-error not a known error name
  KeyBridgeError.of("wrong_password");
  METHODS satisfies readonly string[];
}

export async function streams(client: KeyBridgeClient, file: AsyncIterable<Uint8Array>): Promise<void> {
  const certificate = { thumbprint: "3F2A9C1B7D4E5F60718293A4B5C6D7E8F9012345" };
  await client.signStream({ certificate, source: file, length: 10, onProgress: (p) => p.total });
  await client.encryptStream({ recipients: [{ der: "MIIB" }], source: new Blob([]), sink: async (chunk: Uint8Array) => void chunk });
  // @ts-expect-error a streamed encryption needs a sink for the envelope
  await client.encryptStream({ recipients: [{ der: "MIIB" }], source: file });
  // @ts-expect-error the helper makes `input` from `source`
  await client.decryptStream({ source: file, sink: () => undefined, input: { stream: 1 } });
  // @ts-expect-error not an encryption format
  await client.decryptStream({ source: file, sink: () => undefined, format: "cms_detached" });
  const up = await client.upload(file, { length: 10 });
  const down = await client.download((chunk) => void chunk.length);
  await client.decrypt({ format: "cms_envelope", input: { stream: up.stream }, output: { stream: down.stream } });
  (await up.done) satisfies number;
}
