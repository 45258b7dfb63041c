// The one seam between the screens and whatever answers them: the Tauri shell
// (`tauri.ts`) in the app, an in-memory mock (`mock.ts`) in the browser and in tests.
// Screens call `useBackend()` and never import bindings.ts's `commands` directly.

import { inject, type App, type InjectionKey } from "vue";
import type {
  AppError,
  AppInfo,
  AppSettings,
  AuditEntry,
  AuditPage,
  CertDetails,
  CertRef,
  ExpiryNotice,
  SiteGrant,
  ExportFormat,
  LogExportProgress,
  LogExportResult,
  MediaChanged,
  Medium,
  PinKindView,
  PrivacyInfo,
  PromptAnswer,
  PromptClosed,
  PromptRequest,
  SealImage,
  SealView,
  Thumbprint,
  UpdateStatus,
} from "../bindings";

/** Stable error codes the UI reacts to (docs/error-codes.md); it never matches messages. */
export const ErrorCode = {
  malformedInput: 1001,
  invalidParameter: 1004,
  wrongPin: 4001,
  pinLocked: 4002,
  deviceRemoved: 4003,
  unknownDevice: 4004,
  notFound: 4005,
  pinPolicy: 4006,
  alreadyExists: 4007,
  notSupported: 4010,
  cancelled: 4011,
  io: 9001,
  configInvalid: 9002,
  network: 9003,
  updateManifestInvalid: 9004,
  updateUrlMissing: 9005,
  internal: 9999,
} as const;

/** An `AppError` as a throwable. */
export class BackendError extends Error {
  readonly code: number;
  /** Stable name, e.g. `wrong_pin`. (`Error.name` is reused for it.) */
  override readonly name: string;
  readonly detail: string;
  readonly triesLeft: number | null;

  constructor(e: AppError) {
    super(e.message);
    this.code = e.code;
    this.name = e.name;
    this.detail = e.detail;
    this.triesLeft = e.triesLeft;
  }

  static from(e: unknown): BackendError {
    if (e instanceof BackendError) return e;
    if (isAppError(e)) return new BackendError(e);
    const message = e instanceof Error ? e.message : String(e);
    return new BackendError({ code: ErrorCode.internal, name: "internal", message, detail: "", triesLeft: null });
  }

  toAppError(): AppError {
    return { code: this.code, name: this.name, message: this.message, detail: this.detail, triesLeft: this.triesLeft };
  }
}

function isAppError(e: unknown): e is AppError {
  return typeof e === "object" && e !== null && typeof (e as AppError).code === "number" && typeof (e as AppError).name === "string";
}

/** The update check could not reach the server (9003 `network`). */
export function isNetworkError(e: BackendError): boolean {
  return e.code === ErrorCode.network;
}

export type Unsubscribe = () => void;

export interface Backend {
  appInfo(): Promise<AppInfo>;
  /** The window painted its first screen (start-up measurement; harmless otherwise). */
  appReady(): Promise<null>;
  acceptAgreement(version: string): Promise<null>;
  quitApp(): Promise<null>;
  listMedia(): Promise<Medium[]>;
  certDetails(cert: CertRef): Promise<CertDetails>;
  certThumbprint(cert: CertRef, alg: Thumbprint): Promise<string>;
  exportCert(cert: CertRef, path: string, format: ExportFormat): Promise<string>;
  changePin(device: string, kind: PinKindView, oldPin: string, newPin: string): Promise<null>;
  unblockPin(device: string, soPin: string, newPin: string): Promise<null>;
  deleteCertificate(cert: CertRef): Promise<null>;
  listSeals(device: string): Promise<SealView[]>;
  readSeal(device: string, id: string): Promise<SealImage>;
  writeSeal(device: string, name: string, mime: string, dataBase64: string): Promise<SealView>;
  deleteSeal(device: string, id: string): Promise<null>;
  /** The newest `limit` records of `[fromMs, toMs)`, with the count of all of them. */
  auditQuery(fromMs: number, toMs: number, limit: number): Promise<AuditPage>;
  getSettings(): Promise<AppSettings>;
  saveSettings(settings: AppSettings): Promise<AppSettings>;
  clearPinCache(): Promise<null>;
  /** Web sites with a remembered consent answer. */
  listGrants(): Promise<SiteGrant[]>;
  /** Forget a site's answer: it is asked again next time. */
  revokeGrant(origin: string): Promise<null>;
  exportLogs(path: string): Promise<LogExportResult>;
  checkUpdate(): Promise<UpdateStatus>;
  privacyInfo(): Promise<PrivacyInfo>;
  answerPrompt(id: number, answer: PromptAnswer): Promise<null>;
  pendingPrompts(): Promise<PromptRequest[]>;

  onMediaChanged(cb: (e: MediaChanged) => void): Unsubscribe;
  onPrompt(cb: (e: PromptRequest) => void): Unsubscribe;
  onPromptClosed(cb: (e: PromptClosed) => void): Unsubscribe;
  onLogExportProgress(cb: (e: LogExportProgress) => void): Unsubscribe;
  onExpiryNotice(cb: (e: ExpiryNotice) => void): Unsubscribe;
  /** A scheduled update check (settings: daily / weekly) found a newer version. */
  onUpdateAvailable(cb: (e: UpdateStatus) => void): Unsubscribe;

  /** A native save-file dialog; `null` when the user cancels. */
  chooseSavePath(defaultName: string, extensions: string[]): Promise<string | null>;
}

export const backendKey: InjectionKey<Backend> = Symbol("backend");

export function provideBackend(app: App, backend: Backend): void {
  app.provide(backendKey, backend);
}

export function useBackend(): Backend {
  const b = inject(backendKey);
  if (!b) throw new Error("no Backend provided");
  return b;
}
