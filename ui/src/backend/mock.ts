// A Backend that answers the generated commands from a fixture (fixture.ts), for
// `npm run dev` in a plain browser and for the component tests. It holds no domain rules:
// it does not check PINs, count tries, apply PIN policies or work out expiry. A test that
// needs such an outcome scripts it (`script`, `fail`); the fixture states what is listed.

import { commands, ERROR_CODES, type BleKeyView, type BleStatus, type CertDetails, type CertRef, type CertSummary, type Medium, type PairedPhone, type PhoneLinkError, type PinState, type PromptAnswer, type PromptBody, type PromptRequest } from "../bindings";
import {
  BackendError,
  type Backend,
  type Calls,
  type CommandArgs,
  type CommandData,
  type CommandName,
  type ErrorName,
  type EventName,
  type EventPayload,
  type Unsubscribe,
} from "./index";
import { appError, bleKeyMedium, certDetailsOf, certKey, demoFixture, hexOf, pairedPhone, thumbprintOf, type Fixture, type StoredSeal } from "./fixture";
import { RENEWAL_ANSWERS } from "./renewal";

export * from "./fixture";
export * from "./renewal";

/** How the mock answers one call of command `K`: it returns the data or throws. */
export type Handler<K extends CommandName> = (m: MockBackend, ...args: CommandArgs<K>) => CommandData<K> | Promise<CommandData<K>>;
/** A scripted error of the one table (its message in the fixture's language). */
export interface ScriptedError {
  error: ErrorName;
  detail?: string;
  triesLeft?: number | null;
}
export type Outcome<K extends CommandName> = Handler<K> | ScriptedError;

/**
 * Each command's answer from the fixture. A command missing here (added to the bindings
 * and not yet used by a screen) rejects with `not_supported`; give it an answer when a
 * screen starts to call it.
 */
const FIXTURE_ANSWERS: { [K in CommandName]?: Handler<K> } = {
  appInfo: (m) => m.fixture.appInfo,
  appReady: () => null,
  // No operation of the mock waits on a medium, so there is never one to cancel.
  cancelOperation: () => false,
  acceptAgreement: (m) => {
    m.fixture.appInfo.agreementAccepted = true;
    return null;
  },
  quitApp: (m) => {
    m.quitRequested = true;
    return null;
  },
  listMedia: (m) => m.fixture.media,
  certDetails: (m, ref) => m.details(ref),
  certThumbprint: (m, ref, alg) => thumbprintOf(m.cert(ref), alg),
  exportCert: (m, ref, path) => {
    m.cert(ref);
    return path;
  },
  changePin: (m, device, kind) => {
    m.updatePin(device, kind === "user" ? "userPin" : "soPin", { isDefault: false });
    m.record(device, "change_pin", null, "pin_entered");
    return null;
  },
  unblockPin: (m, device) => {
    m.updatePin(device, "userPin", { isDefault: false });
    m.record(device, "unblock_pin", null, "pin_entered");
    return null;
  },
  deleteCertificate: async (m, ref) => {
    const c = m.cert(ref);
    const auth = await m.unlock(ref.device, "delete_certificate");
    m.removeCertificate(ref);
    m.record(ref.device, "delete_certificate", `CN=${c.subjectCn}`, auth);
    return null;
  },
  listSeals: (m, device) => m.sealsOf(device).map((s) => s.view),
  readSeal: (m, device, id) => {
    const s = m.seal(device, id);
    return { id, mime: s.view.mime, dataBase64: s.dataBase64 };
  },
  writeSeal: async (m, device, name, mime, dataBase64) => {
    const seals = m.sealsOf(device);
    const auth = await m.unlock(device, "write_seal");
    const view = { id: `seal-${m.nextId()}`, name, mime, size: Math.floor((dataBase64.replace(/=+$/, "").length * 3) / 4) };
    seals.push({ view, dataBase64 });
    m.record(device, "write_seal", null, auth);
    return view;
  },
  deleteSeal: async (m, device, id) => {
    m.seal(device, id);
    const auth = await m.unlock(device, "delete_seal");
    m.fixture.seals[device] = m.sealsOf(device).filter((s) => s.view.id !== id);
    m.record(device, "delete_seal", null, auth);
    return null;
  },
  auditQuery: (m, fromMs, toMs, limit) => {
    const all = m.fixture.audit.filter((e) => e.timeMs >= fromMs && e.timeMs < toMs).sort((a, b) => b.timeMs - a.timeMs);
    return { entries: all.slice(0, limit), total: all.length };
  },
  getSettings: (m) => m.fixture.settings,
  saveSettings: (m, settings) => (m.fixture.settings = clone(settings)),
  clearPinCache: (m) => {
    m.fixture.pinCached = false;
    return null;
  },
  listGrants: (m) => m.fixture.grants,
  revokeGrant: (m, origin) => {
    if (!m.fixture.grants.some((g) => g.origin === origin)) throw m.error("not_found", { detail: `no grant for ${origin}` });
    m.fixture.grants = m.fixture.grants.filter((g) => g.origin !== origin);
    return null;
  },
  exportLogs: async (m, path) => {
    for (const p of m.fixture.logExport.progress) {
      m.emit("logExportProgress", p);
      await m.pause();
    }
    return { path, files: m.fixture.logExport.files, bytes: m.fixture.logExport.bytes };
  },
  checkUpdate: (m) => m.fixture.update,
  privacyInfo: (m) => m.fixture.privacy[m.fixture.settings.language],
  answerPrompt: (m, id, answer) => {
    m.resolvePrompt(id, answer);
    return null;
  },
  pendingPrompts: (m) => m.pendingRequests(),
  bleState: (m) => m.fixture.ble,
  bleScan: async (m) => {
    const ble = m.bluetooth();
    m.setBle({ ...ble, scanning: true });
    await m.pause();
    const known = [...ble.notConnected.filter((k) => k.remembered), ...ble.connected];
    const found = m.fixture.bleInRange.filter((k) => !known.some((x) => x.address === k.address));
    const remembered = ble.notConnected.filter((k) => k.remembered).map((k) => ({ ...k, inRange: m.fixture.bleInRange.some((x) => x.address === k.address) }));
    return m.setBle({ ...ble, scanning: false, notConnected: [...found, ...remembered] });
  },
  bleConnect: (m, address) => {
    const ble = m.bluetooth();
    const k = m.bleKeyIn(ble.notConnected, address);
    const medium = m.fixture.bleMedia[address] ?? bleKeyMedium(address, k.name ?? address);
    m.addMedium(medium);
    return m.setBle({ ...ble, notConnected: ble.notConnected.filter((x) => x !== k), connected: [...ble.connected, { ...k, remembered: true, device: medium.id }] });
  },
  bleDisconnect: (m, address) => {
    const ble = m.bluetooth();
    const k = m.bleKeyIn(ble.connected, address);
    if (k.device) m.removeMedium(k.device);
    return m.setBle({ ...ble, connected: ble.connected.filter((x) => x !== k), notConnected: [{ ...k, autoReconnect: false }, ...ble.notConnected] });
  },
  bleForget: (m, address) => {
    const ble = m.bluetooth();
    const k = [...ble.connected, ...ble.notConnected].find((x) => x.address === address && x.remembered);
    if (!k) throw m.error("unknown_device", { detail: address });
    if (k.device && ble.connected.includes(k)) m.removeMedium(k.device);
    const rest = ble.notConnected.filter((x) => x !== k);
    return m.setBle({ ...ble, connected: ble.connected.filter((x) => x !== k), notConnected: k.inRange ? [...rest, { ...k, remembered: false, autoReconnect: false, device: null }] : rest });
  },
  bleSetAutoReconnect: (m, address, on) => {
    const ble = m.bluetooth();
    const set = (list: BleKeyView[]) => list.map((x) => (x.address === address && x.remembered ? { ...x, autoReconnect: on } : x));
    if (![...ble.connected, ...ble.notConnected].some((x) => x.address === address && x.remembered)) throw m.error("unknown_device", { detail: address });
    return m.setBle({ ...ble, connected: set(ble.connected), notConnected: set(ble.notConnected) });
  },
  ...RENEWAL_ANSWERS,
  phonePage: (m) => m.fixture.phone,
  startPhonePairing: (m) => {
    const page = m.fixture.phone;
    if (!page.pairingAvailable) throw m.error("link_no_endpoint", { detail: `set phone_listen or phone_relay_url in ${page.settingsFile}` });
    page.listening = [...page.listen];
    const secs = m.fixture.phoneOfferSecs;
    return {
      text: `KB1:${hexOf(`offer/${m.nextId()}`, 48)}`,
      expiresMs: Date.now() + secs * 1000,
      secondsLeft: secs,
      endpoints: page.listen.map((a) => `ws://${a}/kb-link/1`),
    };
  },
  cancelPhonePairing: () => null,
  confirmPhonePairing: (m, request) => {
    const r = m.phoneRequest(request);
    const phone = pairedPhone(r.name, { peer: r.peer, online: false, media: [], pairedAtMs: Date.now(), lastSeenMs: null });
    m.fixture.phone.phones.push(phone);
    m.emit("phoneEvent", { kind: "paired", peer: r.peer, name: r.name });
    return null;
  },
  rejectPhonePairing: (m, request) => {
    m.phoneRequest(request);
    m.emit("phoneEvent", { kind: "pairingEnded", request, error: m.linkError("pairing_rejected") });
    return null;
  },
  renamePhone: (m, peer, name) => {
    m.phone(peer).name = name.trim();
    return null;
  },
  revokePhone: (m, peer) => {
    const p = m.phone(peer);
    const wasOnline = p.online;
    Object.assign(p, { revoked: true, online: false });
    if (wasOnline) m.emit("phoneEvent", { kind: "offline", peer });
    return null;
  },
};

function clone<T>(v: T): T {
  return v === undefined ? v : (JSON.parse(JSON.stringify(v)) as T);
}

interface Pending {
  request: PromptRequest;
  resolve: (a: PromptAnswer) => void;
}

/** The generated commands are methods of the mock (added in the constructor, one per command). */
export interface MockBackend extends Calls {}

export class MockBackend implements Backend {
  /** What the commands answer with; tests and the browser demo may change it at any time. */
  fixture: Fixture;
  /** `quitApp` was called. */
  quitRequested = false;
  /** Command names (and `chooseSavePath`) in call order. */
  readonly calls: (CommandName | "chooseSavePath")[] = [];
  /** Prompt answers given, PINs redacted. */
  readonly answers: { id: number; answer: PromptAnswer }[] = [];

  private scripts = new Map<CommandName, { outcome: Outcome<never>; times: number }[]>();
  private listeners = new Map<EventName, Set<(payload: never) => void>>();
  private pending = new Map<number, Pending>();
  /** Phones that scanned the QR code and wait for the user's answer, by request id. */
  private phoneRequests = new Map<number, { peer: string; name: string }>();
  private lastId = 0;
  private latencyMs: number;

  constructor(fixture: Fixture = demoFixture(), opts: { latencyMs?: number } = {}) {
    this.fixture = fixture;
    this.latencyMs = opts.latencyMs ?? 0;
    const self = this as unknown as Record<string, unknown>;
    for (const name of Object.keys(commands) as CommandName[]) self[name] = (...args: unknown[]) => this.call(name, args);
  }

  // --- scripting ----------------------------------------------------------------------

  /**
   * Answer the next `times` calls of `method` with `outcome` (a handler, or an error of the
   * table), after any outcome scripted before it; then the fixture answers again.
   */
  script<K extends CommandName>(method: K, outcome: Outcome<K>, times = 1): this {
    const queue = this.scripts.get(method) ?? [];
    queue.push({ outcome: outcome as Outcome<never>, times });
    this.scripts.set(method, queue);
    return this;
  }

  /** Make `method` reject with the table's error `name` for the next `times` calls (default: until cleared). */
  fail(method: CommandName, name: ErrorName, extra: Omit<ScriptedError, "error"> = {}, times = Infinity): this {
    return this.script(method, { error: name, ...extra }, times);
  }

  /** What the fixture answers (for a script that adds a step, then goes on as usual). */
  async answerFromFixture<K extends CommandName>(method: K, ...args: CommandArgs<K>): Promise<CommandData<K>> {
    const answer = FIXTURE_ANSWERS[method] as Handler<K> | undefined;
    if (!answer) throw this.error("not_supported", { detail: `the mock has no answer for ${method}` });
    return answer(this, ...args);
  }

  clearScript(method: CommandName): void {
    this.scripts.delete(method);
  }

  /** An error of the table, its message in the fixture's UI language. */
  error(name: ErrorName, extra: Omit<ScriptedError, "error"> = {}): BackendError {
    return new BackendError(appError(name, this.fixture.settings.language, extra));
  }

  // --- events and prompts ---------------------------------------------------------------

  on<K extends EventName>(event: K, cb: (payload: EventPayload<K>) => void): Unsubscribe {
    const set = this.listeners.get(event) ?? new Set();
    this.listeners.set(event, set);
    set.add(cb as (payload: never) => void);
    return () => set.delete(cb as (payload: never) => void);
  }

  /** Send a generated event, as the service does. */
  emit<K extends EventName>(event: K, payload: EventPayload<K>): void {
    for (const cb of this.listeners.get(event) ?? []) (cb as (p: EventPayload<K>) => void)(clone(payload));
  }

  /** Ask the user something, as the service does; resolves with the answer. */
  ask(body: PromptBody, client = "desktop"): Promise<PromptAnswer> {
    const request: PromptRequest = { id: this.nextId(), client, body };
    return new Promise((resolve) => {
      this.pending.set(request.id, { request, resolve });
      this.emit("promptRequest", request);
    });
  }

  /** The service gave up waiting (timeout, request cancelled). */
  closePrompt(id: number): void {
    const p = this.pending.get(id);
    if (!p) return;
    this.pending.delete(id);
    p.resolve({ kind: "cancel" });
    this.emit("promptClosed", { id });
  }

  pendingCount(): number {
    return this.pending.size;
  }

  pendingRequests(): PromptRequest[] {
    return [...this.pending.values()].map((p) => p.request);
  }

  resolvePrompt(id: number, answer: PromptAnswer): void {
    const p = this.pending.get(id);
    if (!p) throw this.error("not_found", { detail: `prompt ${id}` });
    this.pending.delete(id);
    this.answers.push({ id, answer: answer.kind === "pin" ? { kind: "pin", pin: "•" } : clone(answer) });
    p.resolve(answer);
  }

  /**
   * The PIN step of a key operation: none while the fixture says a PIN is cached, else one
   * PIN prompt (with the tries the fixture lists). Any PIN goes through: the mock checks
   * none. Returns the audit's auth type.
   */
  async unlock(device: string, operation: string): Promise<string> {
    if (this.fixture.pinCached) return "pin_cached";
    const m = this.medium(device);
    const answer = await this.ask(this.pinPrompt(m, operation));
    if (answer.kind !== "pin") throw this.error("cancelled");
    return "pin_entered";
  }

  /** The user-PIN prompt for `operation` on `m`, as the service words it. */
  pinPrompt(m: Medium, operation: string, extra: Partial<Extract<PromptBody, { kind: "pin" }>> = {}): PromptBody {
    return {
      kind: "pin",
      device: m.id,
      deviceLabel: m.label,
      pinKind: "user",
      operation,
      triesLeft: m.userPin?.triesLeft ?? null,
      previousWrong: false,
      cachedPinRejected: false,
      certificate: "",
      ...extra,
    };
  }

  // --- the phone link ---------------------------------------------------------------------

  /** A phone scans the QR code: the page is asked to compare `code`. Returns the request id. */
  phoneScans(name: string, code: string): number {
    const request = this.nextId();
    const peer = hexOf(`phone/${name}/${request}`, 16).toLowerCase();
    this.phoneRequests.set(request, { peer, name });
    this.emit("phoneEvent", { kind: "confirmCode", request, peer, name, code });
    return request;
  }

  /** A paired phone's link comes up (`true`) or goes down, as the host reports it. */
  phoneLink(peer: string, up: boolean): void {
    const p = this.phone(peer);
    p.online = up;
    if (up) {
      p.lastSeenMs = Date.now();
      this.emit("phoneEvent", { kind: "online", peer, name: p.name, media: p.media });
    } else {
      this.emit("phoneEvent", { kind: "offline", peer });
    }
  }

  phoneRequest(request: number): { peer: string; name: string } {
    const r = this.phoneRequests.get(request);
    if (!r) throw this.error("pairing_offer_unknown", { detail: `request ${request}` });
    this.phoneRequests.delete(request);
    return r;
  }

  phone(peer: string): PairedPhone {
    const p = this.fixture.phone.phones.find((x) => x.peer === peer);
    if (!p) throw this.error("phone_not_paired", { detail: peer });
    return p;
  }

  /** A phone-link error of the table, as events carry it. */
  linkError(name: ErrorName, detail = ""): PhoneLinkError {
    const e = appError(name, this.fixture.settings.language);
    return { code: e.code, name: e.name, detail };
  }

  // --- fixture access -------------------------------------------------------------------

  medium(id: string): Medium {
    const m = this.fixture.media.find((x) => x.id === id);
    if (!m) throw this.error("unknown_device", { detail: id });
    return m;
  }

  cert(ref: CertRef): CertSummary {
    const c = this.medium(ref.device).certificates.find((x) => x.ref.container === ref.container && x.ref.usage === ref.usage);
    if (!c) throw this.error("not_found", { detail: `${ref.container}/${ref.usage}` });
    return c;
  }

  /** The fixture's details, else realistic ones built from the listed summary; a chain's reason from the table. */
  details(ref: CertRef): CertDetails {
    const d = clone(this.fixture.details[certKey(ref)] ?? certDetailsOf(this.medium(ref.device), this.cert(ref)));
    const failed = ERROR_CODES.find((e) => e.code === d.chain.code);
    if (failed) d.chain.reason = this.error(failed.name).message;
    return d;
  }

  sealsOf(device: string): StoredSeal[] {
    if (!this.medium(device).supportsSeals) throw this.error("not_supported", { detail: device });
    return (this.fixture.seals[device] ??= []);
  }

  seal(device: string, id: string): StoredSeal {
    const s = this.sealsOf(device).find((x) => x.view.id === id);
    if (!s) throw this.error("not_found", { detail: id });
    return s;
  }

  /** The 蓝牙设备 page, or 蓝牙不可用 as the fixture states it. */
  bluetooth(): BleStatus {
    if (!this.fixture.ble.available) throw this.error("bluetooth_unavailable", { detail: this.fixture.ble.reason ?? "" });
    return this.fixture.ble;
  }

  /** The listed key at `address` in `list` (else `unknown_device`). */
  bleKeyIn(list: BleKeyView[], address: string): BleKeyView {
    const k = list.find((x) => x.address === address);
    if (!k) throw this.error("unknown_device", { detail: address });
    return k;
  }

  /** Change the 蓝牙设备 page and tell the views (`ble-status`), as the service does. */
  setBle(s: BleStatus): BleStatus {
    this.fixture.ble = s;
    this.emit("bleStatus", s);
    return s;
  }

  addMedium(m: Medium): void {
    this.fixture.media.push(m);
    this.emit("mediaChanged", { change: "added", device: m.id });
  }

  removeMedium(id: string): void {
    this.fixture.media = this.fixture.media.filter((m) => m.id !== id);
    this.emit("mediaChanged", { change: "removed", device: id });
  }

  removeCertificate(ref: CertRef): void {
    const m = this.medium(ref.device);
    m.certificates = m.certificates.filter((c) => certKey(c.ref) !== certKey(ref));
    this.emit("mediaChanged", { change: "changed", device: ref.device });
  }

  /** Change what a medium reports about a PIN (as a test's script says), and tell the views. */
  updatePin(device: string, pin: "userPin" | "soPin", patch: Partial<PinState>): void {
    const m = this.medium(device);
    if (m[pin]) m[pin] = { ...m[pin], ...patch };
    this.emit("mediaChanged", { change: "changed", device });
  }

  /** Append a successful operation of the desktop to the audit records. */
  record(device: string, operation: string, certificate: string | null, auth: string): void {
    this.fixture.audit.push({ timeMs: Date.now(), client: "desktop", device, operation, certificate, ok: true, code: null, reason: null, auth });
  }

  nextId(): number {
    return ++this.lastId;
  }

  /** One step of a long operation: the configured latency, or a timer turn. */
  pause(): Promise<void> {
    return new Promise((r) => setTimeout(r, this.latencyMs));
  }

  async chooseSavePath(defaultName: string, _extensions: string[]): Promise<string | null> {
    this.calls.push("chooseSavePath");
    if (this.fixture.savePath !== undefined) return this.fixture.savePath;
    return `/home/demo/Downloads/${defaultName}`;
  }

  // --- the generic command path -----------------------------------------------------------

  private async call<K extends CommandName>(name: K, args: unknown[]): Promise<CommandData<K>> {
    this.calls.push(name);
    if (this.latencyMs > 0) await this.pause();
    else await Promise.resolve();
    const scripted = this.takeScripted(name) as Outcome<K> | undefined;
    if (scripted && typeof scripted !== "function") throw this.error(scripted.error, scripted);
    const data = scripted ? await scripted(this, ...(args as CommandArgs<K>)) : await this.answerFromFixture(name, ...(args as CommandArgs<K>));
    return clone(data);
  }

  private takeScripted(name: CommandName): Outcome<never> | undefined {
    const queue = this.scripts.get(name);
    const next = queue?.[0];
    if (!queue || !next) return undefined;
    if (--next.times <= 0) queue.shift();
    return next.outcome;
  }
}

export function createMockBackend(fixture?: Fixture, opts?: { latencyMs?: number }): MockBackend {
  return new MockBackend(fixture, opts);
}
