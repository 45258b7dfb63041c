import { describe, expect, it } from "vitest";
import jsQR from "jsqr";
import { qrMatrix, qrPath } from "../src/qr";
import QrCode from "../src/components/QrCode.vue";
import { mountWith } from "./helpers";

/** Render the modules to RGBA pixels (4 px a module, quiet zone) and decode them independently. */
function decode(m: boolean[][]): string | null {
  const scale = 4;
  const margin = 4;
  const size = (m.length + 2 * margin) * scale;
  const px = new Uint8ClampedArray(size * size * 4).fill(255);
  m.forEach((row, r) =>
    row.forEach((dark, c) => {
      if (!dark) return;
      for (let y = 0; y < scale; y++)
        for (let x = 0; x < scale; x++) {
          const i = (((r + margin) * scale + y) * size + (c + margin) * scale + x) * 4;
          px[i] = px[i + 1] = px[i + 2] = 0;
        }
    }),
  );
  return jsQR(px, size, size)?.data ?? null;
}

describe("QR code", () => {
  it.each([
    "https://wx.example.com/bind?ticket=8f2a1c&cert=3A5F",
    "kb-pair:v1;host=192.168.1.20;port=17311;key=MFkwEwYHKoZIzj0CAQYIKoEcz1UBgi0DQgAE",
    "微信绑定：演示用户 (DEMO)",
  ])("encodes %s so that an independent decoder reads it back", (payload) => {
    expect(decode(qrMatrix(payload))).toBe(payload);
  });

  it("draws one square per dark module", () => {
    const m = qrMatrix("abc");
    const dark = m.flat().filter(Boolean).length;
    expect(qrPath(m).match(/M/g)).toHaveLength(dark);
  });

  it("renders an SVG sized to the matrix plus the quiet zone", () => {
    const { wrapper } = mountWith(QrCode, { props: { text: "hello" } });
    const n = qrMatrix("hello").length;
    expect(wrapper.find("svg").attributes("viewBox")).toBe(`0 0 ${n + 8} ${n + 8}`);
  });
});
