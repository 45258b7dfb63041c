// Plain data the mock answers with: media, certificates, seals, settings, audit records,
// consent grants, … as the service would report them. Nothing here decides anything: a
// certificate's status, a PIN's tries and whether it is locked are written down, not
// computed; error messages come from the generated ERROR_CODES table.

import type {
  AppError,
  AppInfo,
  AppSettings,
  AuditEntry,
  BleKeyView,
  BleStatus,
  CertDetails,
  CertRef,
  CertStatus,
  CertSummary,
  Language,
  LogExportProgress,
  Medium,
  PinState,
  PairedPhone,
  PhonePage,
  PrivacyInfo,
  SealView,
  SiteGrant,
  Thumbprint,
  UpdateStatus,
  Usage,
} from "../bindings";
import { errorEntry, type ErrorName } from "./index";
import type { RenewalFixture } from "./renewal";

export const DAY = 86_400_000;

/** The demo key of `keybridge demo`; its PINs are public (printed on its label). */
export const DEMO_DEVICE = "file:demo";
export const DEMO_USER_PIN = "12345678";
export const DEMO_SO_PIN = "87654321";

export interface StoredSeal {
  view: SealView;
  dataBase64: string;
}

export interface Fixture {
  appInfo: AppInfo;
  settings: AppSettings;
  media: Medium[];
  /** Certificate details by `certKey`; a certificate without an entry shows `certDetailsOf` its summary. */
  details: Record<string, CertDetails>;
  /** Seal images by device id. */
  seals: Record<string, StoredSeal[]>;
  audit: AuditEntry[];
  grants: SiteGrant[];
  /** The privacy page in each UI language. */
  privacy: Record<Language, PrivacyInfo>;
  /** What an update check finds. */
  update: UpdateStatus;
  /** What a log export reports: its progress events, then the archive written. */
  logExport: { progress: LogExportProgress[]; files: number; bytes: number };
  /** The service holds a PIN, so PIN operations do not prompt (`clearPinCache` clears it). */
  pinCached: boolean;
  /** What the save dialog answers; absent: `~/Downloads/<suggested name>`. */
  savePath?: string | null;
  /** The 蓝牙设备 page as the service reports it (`bleScan` lists `bleInRange` afterwards). */
  ble: BleStatus;
  /** The BLE keys a scan finds. */
  bleInRange: BleKeyView[];
  /** The medium a BLE key is listed as once connected, by address (absent: a plain one). */
  bleMedia: Record<string, Medium>;
  /** What the CA says for the 证书续期 page; absent: the embedded dev CA, nothing applied for. */
  renewal?: RenewalFixture;
  /** The phone keys page: paired phones, secret store, listener and relay. */
  phone: PhonePage;
  /** How long a pairing QR code stays valid, in seconds. */
  phoneOfferSecs: number;
}

/** An `AppError` of the one table, its message in `lang`. */
export function appError(name: ErrorName, lang: Language, extra: { detail?: string; triesLeft?: number | null } = {}): AppError {
  const e = errorEntry(name);
  return { code: e.code, name: e.name, message: lang === "en" ? e.en : e.zh, detail: extra.detail ?? "", triesLeft: extra.triesLeft ?? null };
}

/** The key of a certificate slot in `Fixture.details`. */
export function certKey(r: CertRef): string {
  return `${r.device}/${r.container}/${r.usage}`;
}

/** Deterministic pseudo-hex (FNV-1a rounds): serials and thumbprints of a fixture, not real digests. */
export function hexOf(seed: string, chars: number): string {
  let out = "";
  let h = 0x811c9dc5;
  for (let round = 0; out.length < chars; round++) {
    for (const c of seed + round) {
      h ^= c.charCodeAt(0);
      h = Math.imul(h, 0x01000193) >>> 0;
    }
    out += h.toString(16).padStart(8, "0");
  }
  return out.slice(0, chars).toUpperCase();
}

const THUMBPRINT_CHARS: Record<Thumbprint, number> = { sha1: 40, sm3: 64, sha256: 64, md5: 32 };

export function thumbprintOf(c: CertSummary, alg: Thumbprint): string {
  return hexOf(c.serial + alg, THUMBPRINT_CHARS[alg]);
}

function iso(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");
}

/** A PIN state as the medium reports it (`locked` and `isDefault` are stated, never derived). */
export function pinState(triesLeft: number, maxTries = 10, extra: Partial<Pick<PinState, "locked" | "isDefault">> = {}): PinState {
  return { triesLeft, maxTries, locked: false, isDefault: false, ...extra };
}

export interface CertSpec {
  container?: string;
  usage: Usage;
  cn: string;
  issuerCn?: string;
  /** Whole days until notAfter, as listed (negative: expired). */
  daysLeft: number;
  /** As listed; default `valid`. */
  status?: CertStatus;
  /** notBefore this many days from now (default: two years before notAfter). */
  startsInDays?: number;
}

/** A certificate as `listMedia` lists it; the dates are placed around `daysLeft`. */
export function certificate(device: string, s: CertSpec, now = Date.now()): CertSummary {
  const container = s.container ?? "default";
  const notAfter = now + s.daysLeft * DAY;
  const notBefore = s.startsInDays !== undefined ? now + s.startsInDays * DAY : notAfter - 730 * DAY;
  return {
    ref: { device, container, usage: s.usage },
    subjectCn: s.cn,
    subject: `CN=${s.cn}, OU=投标部, O=演示科技有限公司, C=CN`,
    issuerCn: s.issuerCn ?? "演示 CA",
    algorithm: "SM2 (256 bit)",
    serial: hexOf(`${device}/${container}/${s.usage}/${s.cn}`, 32),
    notBefore: iso(notBefore),
    notAfter: iso(notAfter),
    daysLeft: s.daysLeft,
    status: s.status ?? "valid",
  };
}

/** A medium; whatever is not given is a plain file-type key with fresh PINs and no certificates. */
export function medium(m: Partial<Medium> & Pick<Medium, "id" | "label">): Medium {
  return {
    kind: "file",
    manufacturer: "KeyBridge",
    model: "",
    serial: m.id,
    demo: false,
    userPin: pinState(10),
    soPin: pinState(10),
    certificates: [],
    supportsSeals: false,
    online: true,
    verifiesUser: false,
    ...m,
  };
}

/** Realistic details of an SM2 certificate, trusted unless `chain` says otherwise. */
export function certDetailsOf(m: Medium, s: CertSummary, chain?: CertDetails["chain"]): CertDetails {
  const sign = s.ref.usage === "sign";
  const issuer = `CN=${s.issuerCn}, O=KeyBridge, C=CN`;
  return {
    summary: s,
    deviceLabel: m.label,
    subjectAttrs: [
      { name: "CN", value: s.subjectCn },
      { name: "OU", value: "投标部" },
      { name: "O", value: "演示科技有限公司" },
      { name: "C", value: "CN" },
    ],
    issuer,
    issuerAttrs: [
      { name: "CN", value: s.issuerCn },
      { name: "O", value: "KeyBridge" },
      { name: "C", value: "CN" },
    ],
    version: 3,
    signatureAlgorithm: "SM3withSM2 (1.2.156.10197.1.501)",
    publicKeyAlgorithm: "SM2 (256 bit)",
    certType: s.ref.usage,
    keyUsage: sign ? ["digitalSignature", "nonRepudiation"] : ["keyEncipherment", "dataEncipherment", "keyAgreement"],
    extendedKeyUsage: sign ? ["clientAuth", "emailProtection"] : [],
    extensions: [
      { oid: "2.5.29.15", name: "keyUsage", critical: true, value: sign ? "digitalSignature, nonRepudiation" : "keyEncipherment, dataEncipherment, keyAgreement" },
      { oid: "2.5.29.19", name: "basicConstraints", critical: true, value: "CA:FALSE" },
      { oid: "2.5.29.14", name: "subjectKeyIdentifier", critical: false, value: hexOf(s.serial + "ski", 40) },
      { oid: "2.5.29.35", name: "authorityKeyIdentifier", critical: false, value: hexOf(s.issuerCn + "aki", 40) },
      { oid: "1.2.156.10260.4.1.1", name: null, critical: false, value: "0C0A3931313130303030" },
    ],
    thumbprintSha1: thumbprintOf(s, "sha1"),
    chain: chain ?? { trusted: true, code: null, reason: null, path: [s.subject, issuer] },
    revocation: { state: "unknown", code: 3031, text: "未知: no CRL or OCSP responder is known for it" },
  };
}

/** The demo key: container `demo` with an SM2 sign + encrypt pair, still on its factory PINs. */
export function demoMedium(now = Date.now()): Medium {
  const cert = (usage: Usage) =>
    certificate(DEMO_DEVICE, { container: "demo", usage, cn: "演示用户 (DEMO)", issuerCn: "KeyBridge 演示 CA (DEMO)", daysLeft: 365 }, now);
  return medium({
    id: DEMO_DEVICE,
    label: "KeyBridge 演示介质 (DEMO)",
    kind: "file",
    model: "文件型设备 v1",
    serial: "DEMO-2024-0001",
    demo: true,
    userPin: pinState(10, 10, { isDefault: true }),
    soPin: pinState(10, 10, { isDefault: true }),
    certificates: [cert("sign"), cert("encrypt")],
    supportsSeals: true,
    online: true,
    verifiesUser: false,
  });
}

/** A BLE key as the page lists it; whatever is not given: in range, not paired or remembered. */
export function bleKey(k: Partial<BleKeyView> & Pick<BleKeyView, "address">): BleKeyView {
  return { name: null, rssi: -60, paired: false, remembered: false, autoReconnect: false, inRange: true, device: null, needs: null, ...k };
}

/** The 蓝牙设备 page before any scan: Bluetooth on, nothing listed. */
export function bleIdle(): BleStatus {
  return { available: true, reason: null, scanning: false, notConnected: [], connected: [] };
}

/** A BLE key with an SM2 signing certificate, as the home screen lists it once connected. */
export function bleKeyMedium(address: string, label: string, now = Date.now()): Medium {
  const id = `ble:openpgp-${address.replace(/:/g, "")}`;
  return medium({
    id,
    label,
    kind: "ble",
    manufacturer: "演示厂商",
    model: "蓝牙Key",
    serial: address.replace(/:/g, ""),
    userPin: pinState(3, 3),
    soPin: pinState(3, 3),
    certificates: [certificate(id, { container: "openpgp", usage: "sign", cn: "王五", issuerCn: "演示 CA", daysLeft: 300 }, now)],
  });
}

/** A bidding USB key whose signing certificate is near expiry (for the browser demo). */
export function usbKeyMedium(now = Date.now()): Medium {
  const id = "pcsc:Feitian ePass3000GM 00";
  const ca = "CFCA SM2 OCA1";
  return medium({
    id,
    label: "投标专用 USB Key",
    kind: "pcsc",
    manufacturer: "飞天诚信",
    model: "ePass3000GM",
    serial: "FT0012345678",
    userPin: pinState(6, 6),
    soPin: pinState(6, 6),
    certificates: [
      certificate(id, { container: "bid", usage: "sign", cn: "张三", issuerCn: ca, daysLeft: 20, status: "nearExpiry" }, now),
      certificate(id, { container: "bid", usage: "encrypt", cn: "张三", issuerCn: ca, daysLeft: 410 }, now),
    ],
    supportsSeals: true,
    online: true,
    verifiesUser: false,
  });
}

const LIBRARIES: [string, string, string, string][] = [
  ["tauri", "2.8.5", "Apache-2.0 OR MIT", "rust"],
  ["tauri-plugin-dialog", "2.4.0", "Apache-2.0 OR MIT", "rust"],
  ["tauri-specta", "2.0.0-rc.26", "MIT", "rust"],
  ["serde", "1.0.228", "MIT OR Apache-2.0", "rust"],
  ["serde_json", "1.0.145", "MIT OR Apache-2.0", "rust"],
  ["sm2", "0.13.3", "Apache-2.0 OR MIT", "rust"],
  ["sm3", "0.4.2", "MIT OR Apache-2.0", "rust"],
  ["rsa", "0.9.8", "MIT OR Apache-2.0", "rust"],
  ["p256", "0.13.2", "Apache-2.0 OR MIT", "rust"],
  ["der", "0.7.10", "Apache-2.0 OR MIT", "rust"],
  ["x509-cert", "0.2.5", "Apache-2.0 OR MIT", "rust"],
  ["argon2", "0.5.3", "MIT OR Apache-2.0", "rust"],
  ["zeroize", "1.8.2", "Apache-2.0 OR MIT", "rust"],
  ["rusqlite", "0.37.0", "MIT", "rust"],
  ["tokio", "1.48.0", "MIT", "rust"],
  ["tokio-tungstenite", "0.28.0", "MIT", "rust"],
  ["tracing", "0.1.41", "MIT", "rust"],
  ["tracing-appender", "0.2.3", "MIT", "rust"],
  ["flate2", "1.1.5", "MIT OR Apache-2.0", "rust"],
  ["tar", "0.4.44", "MIT OR Apache-2.0", "rust"],
  ["thiserror", "2.0.17", "MIT OR Apache-2.0", "rust"],
  ["cryptoki", "0.10.0", "Apache-2.0", "rust"],
  ["pcsc", "2.9.0", "MIT", "rust"],
  ["hidapi", "2.6.3", "MIT", "rust"],
  ["libloading", "0.8.9", "ISC", "rust"],
  ["vue", "3.5.25", "MIT", "npm"],
  ["vue-i18n", "11.2.2", "MIT", "npm"],
  ["@tauri-apps/api", "2.9.0", "Apache-2.0 OR MIT", "npm"],
  ["@tauri-apps/plugin-dialog", "2.4.2", "Apache-2.0 OR MIT", "npm"],
];

function privacy(dataItems: [string, string, string][]): PrivacyInfo {
  return {
    dataItems: dataItems.map(([what, why, kept]) => ({ what, why, kept })),
    libraries: LIBRARIES.map(([name, version, license, ecosystem]) => ({ name, version, license, ecosystem })),
  };
}

/** An audit record: by default the desktop signing with the demo key, the PIN typed. */
export function auditEntry(timeMs: number, over: Partial<AuditEntry> = {}): AuditEntry {
  return {
    timeMs,
    client: "desktop",
    device: DEMO_DEVICE,
    operation: "sign",
    certificate: "CN=演示用户 (DEMO)",
    ok: true,
    code: null,
    reason: null,
    auth: "pin_entered",
    ...over,
  };
}

/** A paired phone as the phone keys page lists it (online, seen now, unless `over` says otherwise). */
export function pairedPhone(name: string, over: Partial<PairedPhone> = {}, now = Date.now()): PairedPhone {
  const peer = hexOf(`phone/${name}`, 16).toLowerCase();
  return {
    peer,
    name,
    pairedAtMs: now - 30 * DAY,
    lastSeenMs: now,
    online: true,
    revoked: false,
    media: [`phone:${peer}`],
    relay: false,
    ...over,
  };
}

/** The phone keys page on a PC whose settings open the LAN listener; secrets in the OS keyring. */
export function phonePage(phones: PairedPhone[] = []): PhonePage {
  return {
    phones,
    secrets: { kind: "keyring", path: null, fallback: false, reason: null },
    pairingAvailable: true,
    listen: ["192.168.1.20:17211"],
    listening: [],
    relayUrl: null,
    settingsFile: "/home/demo/.config/keybridge/settings.toml",
  };
}

/** What a fresh install with the demo key reports: the default of the mock and of the tests. */
export function demoFixture(now = Date.now()): Fixture {
  const record = (agoMs: number, e: Partial<AuditEntry>) => auditEntry(now - agoMs, e);
  const wrongPin = appError("wrong_pin", "zh-CN");
  return {
    appInfo: {
      version: "0.1.0",
      agreementVersion: "2024.1",
      agreementAccepted: true,
      demoDevice: DEMO_DEVICE,
      dataDir: "/home/demo/.local/share/keybridge",
      logDir: "/home/demo/.local/state/keybridge/logs",
      bridgeUrl: "ws://127.0.0.1:17210",
      startupProblems: [],
    },
    settings: {
      pinCacheMinutes: 30,
      nearExpiryWarningDays: 90,
      logsEnabled: true,
      logRetentionDays: 30,
      autostart: false,
      updateCheck: "weekly",
      updateUrl: "https://update.keybridge.example/manifest.json",
      language: "zh-CN",
    },
    media: [demoMedium(now)],
    details: {},
    seals: {},
    audit: [
      record(3_600_000, { client: "https://ggzy.example.gov.cn" }),
      record(3_000_000, { operation: "change_pin", certificate: null, ok: false, code: wrongPin.code, reason: wrongPin.message }),
      record(3 * DAY, { client: "native:bid-tool", operation: "decrypt", auth: "pin_cached" }),
      record(12 * DAY, { client: "cli", operation: "write_seal", certificate: null }),
      record(45 * DAY, { client: "cli" }),
    ],
    grants: [
      { origin: "https://ggzy.example.gov.cn", allowed: true, sinceMs: Date.UTC(2026, 9, 8, 2, 0) },
      { origin: "https://phish.example.com", allowed: false, sinceMs: Date.UTC(2026, 10, 1, 9, 30) },
    ],
    privacy: {
      "zh-CN": privacy([
        ["证书与介质标识", "列出您的介质并用于签名", "仅保存在本机"],
        ["审计日志（时间、调用方、操作、结果）", "让您查看每一次密钥使用", "本机（SQLite），从不上传"],
        ["运行日志", "故障排查；仅在您主动导出时离开本机", "本机，按天轮转"],
        ["已授权的网页来源", "记住您的授权决定", "本机，可随时撤销"],
      ]),
      en: privacy([
        ["Certificates and key media identifiers", "To list your keys and pick one for signing", "On this computer only"],
        ["Audit log (time, client, operation, result)", "So you can see every use of your keys", "On this computer (SQLite), never uploaded"],
        ["Log files", "Troubleshooting; exported only when you choose to", "On this computer, rotated daily"],
        ["Web origins you allowed", "To remember your consent", "On this computer; revocable"],
      ]),
    },
    update: {
      current: "0.1.0",
      latest: "0.2.0",
      available: true,
      notes: "支持更多 USB Key 型号；修复若干问题。",
      downloadUrl: "https://update.keybridge.example/keybridge-0.2.0.deb",
    },
    logExport: {
      progress: [1, 2, 3, 4].map((i) => ({ done: i * 1_048_576, total: 4 * 1_048_576 })),
      files: 7,
      bytes: 183_204,
    },
    pinCached: false,
    ble: bleIdle(),
    bleInRange: [bleKey({ address: "C0:FF:EE:00:00:01", name: "蓝牙Key 投标", rssi: -58 }), bleKey({ address: "C0:FF:EE:00:00:02", name: "蓝牙Key 备用", rssi: -77 })],
    bleMedia: {},
    phone: phonePage(),
    phoneOfferSecs: 300,
  };
}

/** The browser demo (`npm run dev`): the demo key beside a USB key with a near-expiry certificate. */
export function showcaseFixture(now = Date.now()): Fixture {
  const f = demoFixture(now);
  f.media.push(usbKeyMedium(now));
  f.phone.phones.push(pairedPhone("张三的手机", { online: false, lastSeenMs: now - 2 * 3_600_000 }, now));
  return f;
}
