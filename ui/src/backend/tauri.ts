// The Backend over the Tauri shell: every call goes through the (generated) bindings.
import { save } from "@tauri-apps/plugin-dialog";
import { commands, events } from "../bindings";
import type { AppError } from "../bindings";

/** What every generated command resolves with (tauri-specta's shape). */
type Result<T, E> = { status: "ok"; data: T } | { status: "error"; error: E };
import { BackendError, type Backend, type Unsubscribe } from "./index";

async function unwrap<T>(call: Promise<Result<T, AppError>>): Promise<T> {
  let r: Result<T, AppError>;
  try {
    r = await call;
  } catch (e) {
    // invoke itself failed (command missing, IPC down): still a BackendError.
    throw BackendError.from(e);
  }
  if (r.status === "ok") return r.data;
  throw new BackendError(r.error);
}

/** Tauri's listen() resolves later; the returned function works either way. */
function subscribe<T>(listen: (cb: (e: { payload: T }) => void) => Promise<() => void>, cb: (p: T) => void): Unsubscribe {
  let unlisten: (() => void) | null = null;
  let done = false;
  listen((e) => {
    if (!done) cb(e.payload);
  }).then(
    (u) => {
      if (done) u();
      else unlisten = u;
    },
    (err) => console.error("event subscription failed", err),
  );
  return () => {
    done = true;
    unlisten?.();
  };
}

export function createTauriBackend(): Backend {
  return {
    appInfo: () => unwrap(commands.appInfo()),
    appReady: () => unwrap(commands.appReady()),
    acceptAgreement: (version) => unwrap(commands.acceptAgreement(version)),
    quitApp: () => unwrap(commands.quitApp()),
    listMedia: () => unwrap(commands.listMedia()),
    certDetails: (cert) => unwrap(commands.certDetails(cert)),
    certThumbprint: (cert, alg) => unwrap(commands.certThumbprint(cert, alg)),
    exportCert: (cert, path, format) => unwrap(commands.exportCert(cert, path, format)),
    changePin: (device, kind, oldPin, newPin) => unwrap(commands.changePin(device, kind, oldPin, newPin)),
    unblockPin: (device, soPin, newPin) => unwrap(commands.unblockPin(device, soPin, newPin)),
    deleteCertificate: (cert) => unwrap(commands.deleteCertificate(cert)),
    listSeals: (device) => unwrap(commands.listSeals(device)),
    readSeal: (device, id) => unwrap(commands.readSeal(device, id)),
    writeSeal: (device, name, mime, data) => unwrap(commands.writeSeal(device, name, mime, data)),
    deleteSeal: (device, id) => unwrap(commands.deleteSeal(device, id)),
    auditQuery: (fromMs, toMs, limit) => unwrap(commands.auditQuery(fromMs, toMs, limit)),
    getSettings: () => unwrap(commands.getSettings()),
    saveSettings: (s) => unwrap(commands.saveSettings(s)),
    clearPinCache: () => unwrap(commands.clearPinCache()),
    listGrants: () => unwrap(commands.listGrants()),
    revokeGrant: (origin) => unwrap(commands.revokeGrant(origin)),
    exportLogs: (path) => unwrap(commands.exportLogs(path)),
    checkUpdate: () => unwrap(commands.checkUpdate()),
    privacyInfo: () => unwrap(commands.privacyInfo()),
    answerPrompt: (id, answer) => unwrap(commands.answerPrompt(id, answer)),
    pendingPrompts: () => unwrap(commands.pendingPrompts()),

    onMediaChanged: (cb) => subscribe((h) => events.mediaChanged.listen(h), cb),
    onPrompt: (cb) => subscribe((h) => events.promptRequest.listen(h), cb),
    onPromptClosed: (cb) => subscribe((h) => events.promptClosed.listen(h), cb),
    onLogExportProgress: (cb) => subscribe((h) => events.logExportProgress.listen(h), cb),
    onExpiryNotice: (cb) => subscribe((h) => events.expiryNotice.listen(h), cb),
    onUpdateAvailable: (cb) => subscribe((h) => events.updateStatus.listen(h), cb),

    async chooseSavePath(defaultName, extensions) {
      const path = await save({
        defaultPath: defaultName,
        filters: extensions.length ? [{ name: extensions.map((e) => `*.${e}`).join(", "), extensions }] : [],
      });
      return path ?? null;
    },
  };
}
