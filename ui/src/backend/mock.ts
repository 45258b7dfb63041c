// An in-memory Backend: the demo medium of `keybridge demo`, with real PIN counters, for
// `npm run dev` in a plain browser and for the component tests. Not a fake of the Rust
// logic in every detail; a faithful enough partner to exercise every screen and error.

import type {
  AppError,
  AppInfo,
  AppSettings,
  AuditEntry,
  AuditPage,
  CertDetails,
  CertRef,
  CertStatus,
  CertSummary,
  ExpiryNotice,
  SiteGrant,
  UpdateStatus,
  LogExportProgress,
  MediaChanged,
  Medium,
  MediumKind,
  PinKindView,
  PrivacyInfo,
  PromptAnswer,
  PromptBody,
  PromptClosed,
  PromptRequest,
  SealView,
  Thumbprint,
  Usage,
} from "../bindings";
import { BackendError, ErrorCode, type Backend, type Unsubscribe } from "./index";

const DAY = 86_400_000;

export const DEMO_DEVICE = "file:demo";
export const DEMO_USER_PIN = "12345678";
export const DEMO_SO_PIN = "87654321";

type MethodName = Exclude<keyof Backend, `on${string}`>;

/** One certificate of a mock medium. */
export interface MockCertSpec {
  container?: string;
  usage: Usage;
  cn: string;
  issuerCn?: string;
  /** Days from now until notAfter (negative: expired). */
  daysLeft: number;
  /** Days from now of notBefore (positive: not yet valid). */
  startsInDays?: number;
  trusted?: boolean;
}

/** A mock medium and its secrets. */
export interface MockTokenSpec {
  id: string;
  label: string;
  kind?: MediumKind;
  manufacturer?: string;
  model?: string;
  serial?: string;
  demo?: boolean;
  userPin?: string;
  soPin?: string;
  maxTries?: number;
  userTries?: number;
  soTries?: number;
  /** The medium does not report PIN counters (userPin/soPin null in the list). */
  hidesPinState?: boolean;
  supportsSeals?: boolean;
  certs?: MockCertSpec[];
}

export interface MockOptions {
  agreementAccepted?: boolean;
  /** What appInfo reports went wrong at start (default none). */
  startupProblems?: AppError[];
  language?: AppSettings["language"];
  /** Media present at start; default: the demo medium alone. */
  tokens?: MockTokenSpec[];
  /** Audit records at start; default: a few sample records. */
  audit?: AuditEntry[];
  /** What the save dialog answers (undefined: a path in ~/Downloads). */
  savePath?: string | null;
  /** Milliseconds each call waits (for the browser demo). */
  latencyMs?: number;
  now?: () => number;
}

interface MockCert {
  spec: Required<Pick<MockCertSpec, "container" | "usage" | "cn" | "issuerCn" | "daysLeft" | "startsInDays" | "trusted">>;
  serial: string;
  notBefore: number;
  notAfter: number;
}

interface MockToken {
  spec: MockTokenSpec;
  userPin: string;
  soPin: string;
  maxTries: number;
  userTries: number;
  soTries: number;
  isDefault: boolean;
  certs: MockCert[];
  seals: { view: SealView; mime: string; data: string }[];
}

interface Pending {
  request: PromptRequest;
  resolve: (a: PromptAnswer) => void;
}

export function demoToken(): MockTokenSpec {
  return {
    id: DEMO_DEVICE,
    label: "KeyBridge 演示介质 (DEMO)",
    kind: "file",
    manufacturer: "KeyBridge",
    model: "文件型设备 v1",
    serial: "DEMO-2024-0001",
    demo: true,
    userPin: DEMO_USER_PIN,
    soPin: DEMO_SO_PIN,
    maxTries: 10,
    supportsSeals: true,
    certs: [
      { container: "demo", usage: "sign", cn: "演示用户 (DEMO)", issuerCn: "KeyBridge 演示 CA (DEMO)", daysLeft: 365 },
      { container: "demo", usage: "encrypt", cn: "演示用户 (DEMO)", issuerCn: "KeyBridge 演示 CA (DEMO)", daysLeft: 365 },
    ],
  };
}

function hexOf(seed: string, chars: number): string {
  // Deterministic pseudo-hex (FNV-1a rounds) — thumbprints of a mock, not real digests.
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

function iso(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");
}

function err(code: number, name: string, message: string, triesLeft: number | null = null, detail = ""): BackendError {
  return new BackendError({ code, name, message, detail, triesLeft });
}

function clone<T>(v: T): T {
  return JSON.parse(JSON.stringify(v)) as T;
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

export class MockBackend implements Backend {
  agreementAccepted: boolean;
  /** Web sites' remembered consent answers. */
  grants: SiteGrant[] = [
    { origin: "https://ggzy.example.gov.cn", allowed: true, sinceMs: Date.UTC(2026, 9, 8, 2, 0) },
    { origin: "https://phish.example.com", allowed: false, sinceMs: Date.UTC(2026, 10, 1, 9, 30) },
  ];
  startupProblems: AppError[];
  agreementVersion = "2024.1";
  quitRequested = false;
  settings: AppSettings;
  tokens: MockToken[];
  auditLog: AuditEntry[];
  savePath: string | null | undefined;
  /** The update server cannot be reached. */
  offline = false;
  /** While set, exportLogs stops half-way until it resolves. */
  exportGate: Promise<void> | null = null;
  /** Method names in call order. */
  readonly calls: MethodName[] = [];
  /** Prompt answers given, PINs redacted. */
  readonly answers: { id: number; answer: PromptAnswer }[] = [];

  private failures = new Map<MethodName, { error: BackendError; times: number }>();
  private pending = new Map<number, Pending>();
  private nextPromptId = 1;
  private nextSealId = 1;
  private pinCache = new Map<string, string>();
  private latencyMs: number;
  private now: () => number;
  private listeners = {
    media: new Set<(e: MediaChanged) => void>(),
    prompt: new Set<(e: PromptRequest) => void>(),
    promptClosed: new Set<(e: PromptClosed) => void>(),
    progress: new Set<(e: LogExportProgress) => void>(),
    expiry: new Set<(e: ExpiryNotice) => void>(),
    update: new Set<(e: UpdateStatus) => void>(),
  };

  constructor(opts: MockOptions = {}) {
    this.now = opts.now ?? (() => Date.now());
    this.agreementAccepted = opts.agreementAccepted ?? true;
    this.startupProblems = opts.startupProblems ?? [];
    this.latencyMs = opts.latencyMs ?? 0;
    this.savePath = opts.savePath;
    this.settings = {
      pinCacheMinutes: 30,
      nearExpiryWarningDays: 90,
      logsEnabled: true,
      logRetentionDays: 30,
      updateCheck: "weekly",
      updateUrl: "https://update.keybridge.example/manifest.json",
      language: opts.language ?? "zh-CN",
    };
    this.tokens = (opts.tokens ?? [demoToken()]).map((s) => this.makeToken(s));
    const now = this.now();
    this.auditLog = opts.audit ?? [
      { timeMs: now - 3_600_000, client: "https://ggzy.example.gov.cn", device: DEMO_DEVICE, operation: "sign", certificate: "CN=演示用户 (DEMO)", ok: true, code: null, reason: null, auth: "pin_entered" },
      { timeMs: now - 3_000_000, client: "desktop", device: DEMO_DEVICE, operation: "change_pin", certificate: null, ok: false, code: 4001, reason: "口令错误", auth: "pin_entered" },
      { timeMs: now - 3 * DAY, client: "native:bid-tool", device: DEMO_DEVICE, operation: "decrypt", certificate: "CN=演示用户 (DEMO)", ok: true, code: null, reason: null, auth: "pin_cached" },
      { timeMs: now - 12 * DAY, client: "cli", device: DEMO_DEVICE, operation: "write_seal", certificate: null, ok: true, code: null, reason: null, auth: "pin_entered" },
      { timeMs: now - 45 * DAY, client: "cli", device: DEMO_DEVICE, operation: "sign", certificate: "CN=演示用户 (DEMO)", ok: true, code: null, reason: null, auth: "pin_entered" },
    ];
  }

  // --- test and demo controls -------------------------------------------------------

  /** Make `method` reject with `error` for the next `times` calls (default: until cleared). */
  fail(method: MethodName, error: Partial<AppError> & { code: number; name: string }, times = Infinity): void {
    this.failures.set(method, {
      error: new BackendError({ message: error.name, detail: "", triesLeft: null, ...error }),
      times,
    });
  }

  clearFailure(method: MethodName): void {
    this.failures.delete(method);
  }

  token(id: string): MockToken {
    const t = this.tokens.find((x) => x.spec.id === id);
    if (!t) throw err(ErrorCode.unknownDevice, "unknown_device", "找不到该介质", null, id);
    return t;
  }

  addToken(spec: MockTokenSpec): void {
    this.tokens.push(this.makeToken(spec));
    this.emitMediaChanged({ change: "added", device: spec.id });
  }

  removeToken(id: string): void {
    this.tokens = this.tokens.filter((t) => t.spec.id !== id);
    this.emitMediaChanged({ change: "removed", device: id });
  }

  emitMediaChanged(e: MediaChanged): void {
    for (const cb of this.listeners.media) cb(clone(e));
  }

  emitExpiryNotice(e: ExpiryNotice): void {
    for (const cb of this.listeners.expiry) cb(clone(e));
  }

  emitUpdateAvailable(e: UpdateStatus): void {
    for (const cb of this.listeners.update) cb(clone(e));
  }

  emitLogExportProgress(e: LogExportProgress): void {
    for (const cb of this.listeners.progress) cb(clone(e));
  }

  /** Ask the user something, as the service does; resolves with the answer. */
  ask(body: PromptBody, client = "desktop"): Promise<PromptAnswer> {
    const request: PromptRequest = { id: this.nextPromptId++, client, body };
    return new Promise((resolve) => {
      this.pending.set(request.id, { request, resolve });
      for (const cb of this.listeners.prompt) cb(clone(request));
    });
  }

  /** The service gave up waiting (timeout, request cancelled). */
  closePrompt(id: number): void {
    const p = this.pending.get(id);
    if (!p) return;
    this.pending.delete(id);
    p.resolve({ kind: "cancel" });
    for (const cb of this.listeners.promptClosed) cb({ id });
  }

  pendingCount(): number {
    return this.pending.size;
  }

  // --- Backend --------------------------------------------------------------------------

  private async run<T>(method: MethodName, body: () => T | Promise<T>): Promise<T> {
    this.calls.push(method);
    if (this.latencyMs > 0) await new Promise((r) => setTimeout(r, this.latencyMs));
    else await Promise.resolve();
    const f = this.failures.get(method);
    if (f) {
      if (--f.times <= 0) this.failures.delete(method);
      throw f.error;
    }
    return clone(await body());
  }

  appInfo(): Promise<AppInfo> {
    return this.run("appInfo", () => ({
      version: "0.1.0",
      agreementVersion: this.agreementVersion,
      agreementAccepted: this.agreementAccepted,
      demoDevice: this.tokens.some((t) => t.spec.id === DEMO_DEVICE) ? DEMO_DEVICE : null,
      dataDir: "/home/demo/.local/share/keybridge",
      logDir: "/home/demo/.local/state/keybridge/logs",
      bridgeUrl: this.startupProblems.some((p) => p.name === "bridge_unavailable") ? null : "ws://127.0.0.1:17210",
      startupProblems: this.startupProblems,
    }));
  }

  appReady(): Promise<null> {
    return this.run("appReady", () => null);
  }

  acceptAgreement(version: string): Promise<null> {
    return this.run("acceptAgreement", () => {
      if (version !== this.agreementVersion) throw err(ErrorCode.invalidParameter, "invalid_parameter", "参数无效", null, version);
      this.agreementAccepted = true;
      return null;
    });
  }

  quitApp(): Promise<null> {
    return this.run("quitApp", () => {
      this.quitRequested = true;
      return null;
    });
  }

  listMedia(): Promise<Medium[]> {
    return this.run("listMedia", () => this.tokens.map((t) => this.medium(t)));
  }

  certDetails(cert: CertRef): Promise<CertDetails> {
    return this.run("certDetails", () => {
      const t = this.token(cert.device);
      const c = this.cert(t, cert);
      const s = this.summary(t, c);
      const en = this.settings.language === "en";
      return {
        summary: s,
        deviceLabel: t.spec.label,
        subjectAttrs: [
          { name: "CN", value: c.spec.cn },
          { name: "OU", value: "投标部" },
          { name: "O", value: "演示科技有限公司" },
          { name: "C", value: "CN" },
        ],
        issuer: `CN=${c.spec.issuerCn}, O=KeyBridge, C=CN`,
        issuerAttrs: [
          { name: "CN", value: c.spec.issuerCn },
          { name: "O", value: "KeyBridge" },
          { name: "C", value: "CN" },
        ],
        version: 3,
        signatureAlgorithm: "SM3withSM2 (1.2.156.10197.1.501)",
        publicKeyAlgorithm: "SM2 (256 bit)",
        certType: c.spec.usage,
        keyUsage: c.spec.usage === "sign" ? ["digitalSignature", "nonRepudiation"] : ["keyEncipherment", "dataEncipherment", "keyAgreement"],
        extendedKeyUsage: c.spec.usage === "sign" ? ["clientAuth", "emailProtection"] : [],
        extensions: [
          { oid: "2.5.29.15", name: "keyUsage", critical: true, value: c.spec.usage === "sign" ? "digitalSignature, nonRepudiation" : "keyEncipherment, dataEncipherment, keyAgreement" },
          { oid: "2.5.29.19", name: "basicConstraints", critical: true, value: "CA:FALSE" },
          { oid: "2.5.29.14", name: "subjectKeyIdentifier", critical: false, value: hexOf(c.serial + "ski", 40) },
          { oid: "2.5.29.35", name: "authorityKeyIdentifier", critical: false, value: hexOf(c.spec.issuerCn + "aki", 40) },
          { oid: "1.2.156.10260.4.1.1", name: null, critical: false, value: "0C0A3931313130303030" },
        ],
        thumbprintSha1: hexOf(c.serial + "sha1", 40),
        chain: c.spec.trusted
          ? { trusted: true, code: null, reason: null, path: [s.subject, `CN=${c.spec.issuerCn}, O=KeyBridge, C=CN`] }
          : { trusted: false, code: 3004, reason: en ? "unknown or untrusted issuer" : "找不到受信任的颁发者", path: [] },
      };
    });
  }

  certThumbprint(cert: CertRef, alg: Thumbprint): Promise<string> {
    return this.run("certThumbprint", () => {
      const c = this.cert(this.token(cert.device), cert);
      const len = { sha1: 40, sm3: 64, sha256: 64, md5: 32 }[alg];
      return hexOf(c.serial + alg, len);
    });
  }

  exportCert(cert: CertRef, path: string, _format: "der" | "pem"): Promise<string> {
    return this.run("exportCert", () => {
      this.cert(this.token(cert.device), cert);
      if (!path) throw err(ErrorCode.io, "io", "读写失败");
      return path;
    });
  }

  changePin(device: string, kind: PinKindView, oldPin: string, newPin: string): Promise<null> {
    return this.run("changePin", () => {
      const t = this.token(device);
      if (kind === "user") {
        this.checkPin(t, "user", oldPin, "change_pin");
        this.checkPolicy(newPin);
        t.userPin = newPin;
        t.isDefault = false;
        this.pinCache.delete(device);
      } else {
        this.checkPin(t, "so", oldPin, "change_pin");
        this.checkPolicy(newPin);
        t.soPin = newPin;
      }
      this.audit(device, "change_pin", null, true, "pin_entered");
      this.emitMediaChanged({ change: "changed", device });
      return null;
    });
  }

  unblockPin(device: string, soPin: string, newPin: string): Promise<null> {
    return this.run("unblockPin", () => {
      const t = this.token(device);
      this.checkPin(t, "so", soPin, "unblock_pin");
      this.checkPolicy(newPin);
      t.userPin = newPin;
      t.userTries = t.maxTries;
      t.isDefault = false;
      this.audit(device, "unblock_pin", null, true, "pin_entered");
      this.emitMediaChanged({ change: "changed", device });
      return null;
    });
  }

  deleteCertificate(cert: CertRef): Promise<null> {
    return this.run("deleteCertificate", async () => {
      const t = this.token(cert.device);
      const c = this.cert(t, cert);
      await this.withPin(t, "delete_certificate");
      t.certs = t.certs.filter((x) => x !== c);
      this.audit(cert.device, "delete_certificate", `CN=${c.spec.cn}`, true, "pin_entered");
      this.emitMediaChanged({ change: "changed", device: cert.device });
      return null;
    });
  }

  listSeals(device: string): Promise<SealView[]> {
    return this.run("listSeals", () => this.sealToken(device).seals.map((s) => s.view));
  }

  readSeal(device: string, id: string) {
    return this.run("readSeal", () => {
      const s = this.sealToken(device).seals.find((x) => x.view.id === id);
      if (!s) throw err(ErrorCode.notFound, "not_found", "找不到指定的容器或证书", null, id);
      return { id, mime: s.mime, dataBase64: s.data };
    });
  }

  writeSeal(device: string, name: string, mime: string, dataBase64: string): Promise<SealView> {
    return this.run("writeSeal", async () => {
      const t = this.sealToken(device);
      if (!name.trim()) throw err(ErrorCode.invalidParameter, "invalid_parameter", "参数无效", null, "name");
      if (!["image/png", "image/jpeg"].includes(mime)) throw err(ErrorCode.malformedInput, "malformed_input", "输入数据格式错误", null, mime);
      if (t.seals.some((s) => s.view.name === name)) throw err(ErrorCode.alreadyExists, "already_exists", "同名容器或印章已存在", null, name);
      await this.withPin(t, "write_seal");
      const size = Math.floor((dataBase64.replace(/=+$/, "").length * 3) / 4);
      const view: SealView = { id: `seal-${this.nextSealId++}`, name, mime, size };
      t.seals.push({ view, mime, data: dataBase64 });
      this.audit(device, "write_seal", null, true, "pin_entered");
      return view;
    });
  }

  deleteSeal(device: string, id: string): Promise<null> {
    return this.run("deleteSeal", async () => {
      const t = this.sealToken(device);
      if (!t.seals.some((s) => s.view.id === id)) throw err(ErrorCode.notFound, "not_found", "找不到指定的容器或证书", null, id);
      await this.withPin(t, "delete_seal");
      t.seals = t.seals.filter((s) => s.view.id !== id);
      this.audit(device, "delete_seal", null, true, "pin_entered");
      return null;
    });
  }

  auditQuery(fromMs: number, toMs: number, limit: number): Promise<AuditPage> {
    return this.run("auditQuery", () => {
      const all = this.auditLog.filter((e) => e.timeMs >= fromMs && e.timeMs < toMs).sort((a, b) => b.timeMs - a.timeMs);
      return { entries: all.slice(0, limit), total: all.length };
    });
  }

  getSettings(): Promise<AppSettings> {
    return this.run("getSettings", () => this.settings);
  }

  saveSettings(s: AppSettings): Promise<AppSettings> {
    return this.run("saveSettings", () => {
      if (![0, 1, 5, 10, 30, 60].includes(s.pinCacheMinutes))
        throw err(ErrorCode.invalidParameter, "invalid_parameter", "参数无效", null, "pinCacheMinutes");
      if (!(s.nearExpiryWarningDays >= 1 && s.nearExpiryWarningDays <= 3650))
        throw err(ErrorCode.invalidParameter, "invalid_parameter", "参数无效", null, "nearExpiryWarningDays");
      if (s.updateUrl && !/^(https:\/\/|http:\/\/(127\.0\.0\.1|localhost|\[::1\])[:/])/.test(s.updateUrl))
        throw err(ErrorCode.invalidParameter, "invalid_parameter", "参数无效", null, "updateUrl");
      this.settings = clone(s);
      if (s.pinCacheMinutes === 0) this.pinCache.clear();
      return this.settings;
    });
  }

  listGrants(): Promise<SiteGrant[]> {
    return this.run("listGrants", () => this.grants);
  }

  revokeGrant(origin: string): Promise<null> {
    return this.run("revokeGrant", () => {
      const before = this.grants.length;
      this.grants = this.grants.filter((g) => g.origin !== origin);
      if (this.grants.length === before) {
        throw new BackendError({ code: 4005, name: "not_found", message: "找不到指定的容器或证书", detail: `no grant for ${origin}`, triesLeft: null });
      }
      return null;
    });
  }

  clearPinCache(): Promise<null> {
    return this.run("clearPinCache", () => {
      this.pinCache.clear();
      return null;
    });
  }

  exportLogs(path: string) {
    return this.run("exportLogs", async () => {
      const total = 4 * 1_048_576;
      for (let i = 1; i <= 4; i++) {
        if (i === 3 && this.exportGate) await this.exportGate;
        this.emitLogExportProgress({ done: (total * i) / 4, total });
        await new Promise((r) => setTimeout(r, this.latencyMs ? 200 : 0));
      }
      return { path, files: 7, bytes: 183_204 };
    });
  }

  checkUpdate() {
    return this.run("checkUpdate", () => {
      if (!this.settings.updateUrl) throw err(ErrorCode.updateUrlMissing, "update_url_missing", "未配置更新地址");
      if (this.offline) throw err(ErrorCode.network, "network", "无法连接服务器，请检查网络", null, this.settings.updateUrl);
      return {
        current: "0.1.0",
        latest: "0.2.0",
        available: true,
        notes: "支持更多 USB Key 型号；修复若干问题。",
        downloadUrl: "https://update.keybridge.example/keybridge-0.2.0.deb",
      };
    });
  }

  privacyInfo(): Promise<PrivacyInfo> {
    return this.run("privacyInfo", () => {
      const en = this.settings.language === "en";
      const dataItems = en
        ? [
            { what: "Certificates and key media identifiers", why: "To list your keys and pick one for signing", kept: "On this computer only" },
            { what: "Audit log (time, client, operation, result)", why: "So you can see every use of your keys", kept: "On this computer (SQLite), never uploaded" },
            { what: "Log files", why: "Troubleshooting; exported only when you choose to", kept: "On this computer, rotated daily" },
            { what: "Web origins you allowed", why: "To remember your consent", kept: "On this computer; revocable" },
          ]
        : [
            { what: "证书与介质标识", why: "列出您的介质并用于签名", kept: "仅保存在本机" },
            { what: "审计日志（时间、调用方、操作、结果）", why: "让您查看每一次密钥使用", kept: "本机（SQLite），从不上传" },
            { what: "运行日志", why: "故障排查；仅在您主动导出时离开本机", kept: "本机，按天轮转" },
            { what: "已授权的网页来源", why: "记住您的授权决定", kept: "本机，可随时撤销" },
          ];
      return { dataItems, libraries: LIBRARIES.map(([name, version, license, ecosystem]) => ({ name, version, license, ecosystem })) };
    });
  }

  answerPrompt(id: number, answer: PromptAnswer): Promise<null> {
    return this.run("answerPrompt", () => {
      const p = this.pending.get(id);
      if (!p) throw err(ErrorCode.notFound, "not_found", "找不到该请求", null, String(id));
      this.pending.delete(id);
      this.answers.push({ id, answer: answer.kind === "pin" ? { kind: "pin", pin: "•" } : clone(answer) });
      p.resolve(answer);
      return null;
    });
  }

  pendingPrompts(): Promise<PromptRequest[]> {
    return this.run("pendingPrompts", () => [...this.pending.values()].map((p) => p.request));
  }

  onMediaChanged(cb: (e: MediaChanged) => void): Unsubscribe {
    return this.sub(this.listeners.media, cb);
  }
  onPrompt(cb: (e: PromptRequest) => void): Unsubscribe {
    return this.sub(this.listeners.prompt, cb);
  }
  onPromptClosed(cb: (e: PromptClosed) => void): Unsubscribe {
    return this.sub(this.listeners.promptClosed, cb);
  }
  onLogExportProgress(cb: (e: LogExportProgress) => void): Unsubscribe {
    return this.sub(this.listeners.progress, cb);
  }
  onExpiryNotice(cb: (e: ExpiryNotice) => void): Unsubscribe {
    return this.sub(this.listeners.expiry, cb);
  }
  onUpdateAvailable(cb: (e: UpdateStatus) => void): Unsubscribe {
    return this.sub(this.listeners.update, cb);
  }

  async chooseSavePath(defaultName: string, _extensions: string[]): Promise<string | null> {
    this.calls.push("chooseSavePath");
    if (this.savePath !== undefined) return this.savePath;
    return `/home/demo/Downloads/${defaultName}`;
  }

  // --- internals ----------------------------------------------------------------------

  private sub<T>(set: Set<(e: T) => void>, cb: (e: T) => void): Unsubscribe {
    set.add(cb);
    return () => set.delete(cb);
  }

  private makeToken(spec: MockTokenSpec): MockToken {
    const now = this.now();
    const maxTries = spec.maxTries ?? 10;
    return {
      spec,
      userPin: spec.userPin ?? DEMO_USER_PIN,
      soPin: spec.soPin ?? DEMO_SO_PIN,
      maxTries,
      userTries: spec.userTries ?? maxTries,
      soTries: spec.soTries ?? maxTries,
      isDefault: spec.demo ?? false,
      certs: (spec.certs ?? []).map((c, i) => ({
        spec: {
          container: c.container ?? "default",
          usage: c.usage,
          cn: c.cn,
          issuerCn: c.issuerCn ?? "演示 CA",
          daysLeft: c.daysLeft,
          startsInDays: c.startsInDays ?? 0,
          trusted: c.trusted ?? true,
        },
        serial: hexOf(`${spec.id}/${i}/${c.cn}`, 32),
        notBefore: now + (c.startsInDays ?? 0) * DAY - (c.startsInDays ? 0 : 30 * DAY),
        notAfter: now + c.daysLeft * DAY,
      })),
      seals: [],
    };
  }

  private summary(t: MockToken, c: MockCert): CertSummary {
    const now = this.now();
    const daysLeft = Math.floor((c.notAfter - now) / DAY);
    let status: CertStatus = "valid";
    if (now < c.notBefore) status = "notYetValid";
    else if (now > c.notAfter) status = "expired";
    else if (daysLeft <= this.settings.nearExpiryWarningDays) status = "nearExpiry";
    return {
      ref: { device: t.spec.id, container: c.spec.container, usage: c.spec.usage },
      subjectCn: c.spec.cn,
      subject: `CN=${c.spec.cn}, OU=投标部, O=演示科技有限公司, C=CN`,
      issuerCn: c.spec.issuerCn,
      algorithm: "SM2 (256 bit)",
      serial: c.serial,
      notBefore: iso(c.notBefore),
      notAfter: iso(c.notAfter),
      daysLeft,
      status,
    };
  }

  private medium(t: MockToken): Medium {
    const pin = (tries: number): Medium["userPin"] =>
      t.spec.hidesPinState ? null : { triesLeft: tries, maxTries: t.maxTries, locked: tries === 0, isDefault: t.isDefault };
    return {
      id: t.spec.id,
      label: t.spec.label,
      kind: t.spec.kind ?? "file",
      manufacturer: t.spec.manufacturer ?? "KeyBridge",
      model: t.spec.model ?? "",
      serial: t.spec.serial ?? t.spec.id,
      demo: t.spec.demo ?? false,
      userPin: pin(t.userTries),
      soPin: pin(t.soTries),
      certificates: t.certs.map((c) => this.summary(t, c)),
      supportsSeals: t.spec.supportsSeals ?? false,
    };
  }

  private cert(t: MockToken, ref: CertRef): MockCert {
    const c = t.certs.find((x) => x.spec.container === ref.container && x.spec.usage === ref.usage);
    if (!c) throw err(ErrorCode.notFound, "not_found", "找不到指定的容器或证书", null, `${ref.container}/${ref.usage}`);
    return c;
  }

  private sealToken(device: string): MockToken {
    const t = this.token(device);
    if (!t.spec.supportsSeals) throw err(ErrorCode.notSupported, "not_supported", "该介质不支持此操作");
    return t;
  }

  private checkPolicy(pin: string): void {
    if (pin.length < 6 || pin.length > 16) throw err(ErrorCode.pinPolicy, "pin_policy", "新口令不符合要求", null, "6–16");
  }

  /** Verify a PIN against its counter: a wrong one costs a try, the last one locks. */
  private checkPin(t: MockToken, kind: PinKindView, pin: string, operation: string): void {
    const tries = kind === "user" ? t.userTries : t.soTries;
    if (tries === 0) throw err(ErrorCode.pinLocked, "pin_locked", "口令已锁定，请使用管理员口令解锁", 0);
    if (pin === (kind === "user" ? t.userPin : t.soPin)) {
      if (kind === "user") t.userTries = t.maxTries;
      else t.soTries = t.maxTries;
      return;
    }
    const left = tries - 1;
    if (kind === "user") t.userTries = left;
    else t.soTries = left;
    this.audit(t.spec.id, operation, null, false, "pin_entered", left === 0 ? 4002 : 4001);
    this.emitMediaChanged({ change: "changed", device: t.spec.id });
    if (left === 0) throw err(ErrorCode.pinLocked, "pin_locked", "口令已锁定，请使用管理员口令解锁", 0);
    throw err(ErrorCode.wrongPin, "wrong_pin", "口令错误", left);
  }

  /** The user PIN for a key operation: from the cache, else through a prompt. */
  private async withPin(t: MockToken, operation: string): Promise<void> {
    let cachedPinRejected = false;
    const cached = this.settings.pinCacheMinutes > 0 ? this.pinCache.get(t.spec.id) : undefined;
    if (cached !== undefined) {
      if (cached === t.userPin) return;
      this.pinCache.delete(t.spec.id);
      cachedPinRejected = true;
    }
    let previousWrong = false;
    for (;;) {
      if (t.userTries === 0) throw err(ErrorCode.pinLocked, "pin_locked", "口令已锁定，请使用管理员口令解锁", 0);
      const answer = await this.ask({
        kind: "pin",
        device: t.spec.id,
        deviceLabel: t.spec.label,
        pinKind: "user",
        operation,
        triesLeft: t.spec.hidesPinState ? null : t.userTries,
        previousWrong,
        cachedPinRejected,
      });
      if (answer.kind !== "pin") throw err(ErrorCode.cancelled, "cancelled", "用户已取消");
      try {
        this.checkPin(t, "user", answer.pin, operation);
      } catch (e) {
        if (e instanceof BackendError && e.code === ErrorCode.wrongPin) {
          previousWrong = true;
          cachedPinRejected = false;
          continue;
        }
        throw e;
      }
      if (this.settings.pinCacheMinutes > 0) this.pinCache.set(t.spec.id, answer.pin);
      return;
    }
  }

  private audit(device: string, operation: string, certificate: string | null, ok: boolean, auth: string, code: number | null = null): void {
    this.auditLog.push({
      timeMs: this.now(),
      client: "desktop",
      device,
      operation,
      certificate,
      ok,
      code,
      reason: code === 4001 ? "口令错误" : code === 4002 ? "口令已锁定" : null,
      auth,
    });
  }
}

export function createMockBackend(opts?: MockOptions): MockBackend {
  return new MockBackend(opts);
}
