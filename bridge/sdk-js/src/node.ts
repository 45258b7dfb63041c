// Node-only helpers for native tools: where KeyBridge keeps the per-user bridge secret,
// and reading it. Native clients (no Origin) authenticate with
// `Authorization: Bearer <secret>`; the file is owner-only (0600), so any program of the
// same user can read it and nobody else.
//
//   import WebSocket from "ws";
//   import { connect } from "@keybridge/client";
//   import { readSecret } from "@keybridge/client/node";
//   const client = await connect({ WebSocket, secret: await readSecret(), sdk: "my-bid-tool" });

import { readFile } from "node:fs/promises";
import { homedir } from "node:os";
import path from "node:path";

/** File name of the secret in KeyBridge's config directory. */
export const SECRET_FILE_NAME = "bridge-secret";

/**
 * KeyBridge's per-user config directory, as the service computes it: `$KEYBRIDGE_HOME/config`
 * when `KEYBRIDGE_HOME` is set and not empty, else the platform's config directory for
 * KeyBridge (Linux `$XDG_CONFIG_HOME/keybridge` or `~/.config/keybridge`; macOS
 * `~/Library/Application Support/cn.KeyBridge.KeyBridge`; Windows
 * `%APPDATA%\KeyBridge\KeyBridge\config`).
 */
export function configDir(env: NodeJS.ProcessEnv = process.env, platform: NodeJS.Platform = process.platform): string {
  const home = env.KEYBRIDGE_HOME;
  if (home) return path.resolve(home, "config");
  switch (platform) {
    case "win32":
      return path.win32.join(env.APPDATA || path.win32.join(homedir(), "AppData", "Roaming"), "KeyBridge", "KeyBridge", "config");
    case "darwin":
      return path.join(homedir(), "Library", "Application Support", "cn.KeyBridge.KeyBridge");
    default: {
      const xdg = env.XDG_CONFIG_HOME;
      return path.join(xdg && path.isAbsolute(xdg) ? xdg : path.join(homedir(), ".config"), "keybridge");
    }
  }
}

/** The secret file's path (see `configDir`). */
export function secretPath(env: NodeJS.ProcessEnv = process.env, platform: NodeJS.Platform = process.platform): string {
  return platform === "win32"
    ? path.win32.join(configDir(env, platform), SECRET_FILE_NAME)
    : path.join(configDir(env, platform), SECRET_FILE_NAME);
}

/**
 * Reads the bridge secret (64 hex digits) from `file` (default `secretPath()`). Throws
 * when the file is missing — KeyBridge creates it on its first start — or malformed.
 * Keep the value out of logs and command lines.
 */
export async function readSecret(file: string = secretPath()): Promise<string> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT") {
      throw new Error(`no bridge secret at ${file}: start KeyBridge once (it creates the file), or pass the right path`, {
        cause: e,
      });
    }
    throw e;
  }
  const secret = text.trim();
  if (!/^[0-9a-fA-F]{64}$/.test(secret)) throw new Error(`${file} does not hold a bridge secret (64 hex digits)`);
  return secret;
}
