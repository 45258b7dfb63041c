// QR code modules for a payload (qrcode-generator: MIT, no dependencies, ~50 KB source).
import qrcode from "qrcode-generator";

/** The module matrix (true = dark) of `text`, UTF-8 encoded, error correction M. */
export function qrMatrix(text: string): boolean[][] {
  // The library's byte mode takes one char per byte: hand it the UTF-8 bytes that way.
  const bytes = new TextEncoder().encode(text);
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  const qr = qrcode(0, "M");
  qr.addData(binary, "Byte");
  qr.make();
  const n = qr.getModuleCount();
  return Array.from({ length: n }, (_, r) => Array.from({ length: n }, (_, c) => qr.isDark(r, c)));
}

/** An SVG path drawing the dark modules, one unit per module, offset by `margin`. */
export function qrPath(m: boolean[][], margin = 4): string {
  let d = "";
  m.forEach((row, r) =>
    row.forEach((dark, c) => {
      if (dark) d += `M${c + margin} ${r + margin}h1v1h-1z`;
    }),
  );
  return d;
}
