// Chromium's Local Network Access (Chrome ≥ 147 for WebSockets): a page from a public site
// needs the "local network access" permission before it may reach 127.0.0.1. Without it
// the browser opens the TCP connection and closes it without a WebSocket upgrade, and the
// page only sees close code 1006 — indistinguishable from "KeyBridge is not running" unless
// someone looks at the permission. This module looks.

import { ConnectionError, KeyBridgeError } from "./errors.js";

/** The page's local-network permission: `"unsupported"` where the browser has none. */
export type LocalNetworkAccess = "granted" | "prompt" | "denied" | "unsupported";

interface PermissionsLike {
  query(descriptor: { name: string }): Promise<{ state: string }>;
}

/**
 * The state of this page's permission to reach KeyBridge on loopback. Chromium calls it
 * `loopback-network` (since it split the permission) or `local-network-access` (before);
 * browsers without Local Network Access answer `"unsupported"`.
 */
export async function localNetworkAccess(): Promise<LocalNetworkAccess> {
  const permissions = (globalThis as { navigator?: { permissions?: PermissionsLike } }).navigator?.permissions;
  if (!permissions) return "unsupported";
  for (const name of ["loopback-network", "local-network-access"]) {
    try {
      const { state } = await permissions.query({ name });
      if (state === "granted" || state === "prompt" || state === "denied") return state;
    } catch {
      // This browser does not know the name: try the next.
    }
  }
  return "unsupported";
}

/** Whether `hostname` is this machine or a private network (Local Network Access does not
 * gate such pages' connections to loopback). */
export function isLocalHost(hostname: string): boolean {
  const h = hostname.replace(/^\[|\]$/g, "").toLowerCase();
  if (h === "localhost" || h.endsWith(".localhost") || h.endsWith(".local")) return true;
  const v4 = /^(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(h);
  if (v4) {
    const a = Number(v4[1]);
    const b = Number(v4[2]);
    return a === 127 || a === 10 || a === 0 || (a === 172 && b >= 16 && b <= 31) || (a === 192 && b === 168) || (a === 169 && b === 254);
  }
  return h === "::1" || /^f[cd][0-9a-f]{2}:/.test(h) || /^fe[89ab][0-9a-f]:/.test(h);
}

/**
 * A connection that failed before any WebSocket upgrade, from a public page: explain it by
 * the page's local-network permission when that is the reason (`denied` →
 * `local_network_access_denied`, `prompt` → `local_network_access_required`: blocked, or the
 * browser is still asking). Anything else comes back unchanged.
 */
export async function explainConnectFailure(error: unknown): Promise<unknown> {
  if (!(error instanceof ConnectionError) || error.kind !== "connect_failed") return error;
  if (error.closeCode !== undefined && error.closeCode !== 1006) return error;
  const hostname = (globalThis as { location?: { hostname?: string } }).location?.hostname;
  if (hostname === undefined || isLocalHost(hostname)) return error;
  const state = await localNetworkAccess();
  if (state === "denied") {
    return KeyBridgeError.of("local_network_access_denied", `the page on ${hostname} may not reach this computer`, { cause: error });
  }
  if (state === "prompt") {
    return KeyBridgeError.of("local_network_access_required", `the page on ${hostname} has no local network access yet`, { cause: error });
  }
  return error;
}
