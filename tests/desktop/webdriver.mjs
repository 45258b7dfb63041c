// A minimal W3C WebDriver client over fetch (no dependencies): sessions, elements,
// clicks, typing, text, screenshots, waits; and what every desktop test file shares:
// waiting for a condition, the app's home on a free bridge port, the X helper (xwin.py).
import { writeFileSync, openSync, mkdirSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createServer } from 'node:net';
import { spawn, execFileSync } from 'node:child_process';

const W3C_ELEMENT = 'element-6066-11e4-a52e-4f735466cecf';

export class Session {
  constructor(base, id) {
    this.base = base;
    this.id = id;
  }

  static async start(base, capabilities) {
    const res = await request(base, 'POST', '/session', { capabilities: { alwaysMatch: capabilities } });
    return new Session(base, res.sessionId);
  }

  cmd(method, path, body) {
    return request(this.base, method, `/session/${this.id}${path}`, body);
  }

  async quit() {
    await this.cmd('DELETE', '').catch(() => {});
  }

  async find(css) {
    const el = await this.cmd('POST', '/element', { using: 'css selector', value: css });
    return elementId(el);
  }

  async findAll(css) {
    const els = await this.cmd('POST', '/elements', { using: 'css selector', value: css });
    return els.map(elementId);
  }

  /** Wait until `css` matches a displayed element; returns it. */
  async waitFor(css, timeoutMs = 20000) {
    const until = Date.now() + timeoutMs;
    let last;
    while (Date.now() < until) {
      try {
        const id = await this.find(css);
        if (await this.cmd('GET', `/element/${id}/displayed`)) return id;
      } catch (e) {
        last = e;
      }
      await sleep(100);
    }
    throw new Error(`timed out waiting for ${css}${last ? `: ${last.message}` : ''}`);
  }

  /** Wait until `css` matches nothing displayed. */
  async waitGone(css, timeoutMs = 20000) {
    const until = Date.now() + timeoutMs;
    while (Date.now() < until) {
      const els = await this.findAll(css);
      let shown = false;
      for (const id of els) {
        if (await this.cmd('GET', `/element/${id}/displayed`).catch(() => false)) shown = true;
      }
      if (!shown) return;
      await sleep(100);
    }
    throw new Error(`${css} still shown after ${timeoutMs} ms`);
  }

  /** Wait until the text of `css` satisfies `pred`; returns the text. */
  async waitText(css, pred, timeoutMs = 20000) {
    const until = Date.now() + timeoutMs;
    let text = '';
    while (Date.now() < until) {
      try {
        text = await this.text(await this.find(css));
        if (pred(text)) return text;
      } catch {
        // not there yet
      }
      await sleep(100);
    }
    throw new Error(`text of ${css} never matched; last: ${JSON.stringify(text)}`);
  }

  async click(css) {
    const id = await this.waitFor(css);
    await this.cmd('POST', `/element/${id}/click`, {});
    return id;
  }

  async type(css, text) {
    const id = await this.waitFor(css);
    await this.cmd('POST', `/element/${id}/clear`, {});
    await this.cmd('POST', `/element/${id}/value`, { text });
  }

  /** Set a number input as typing would (WebKitWebDriver's clear leaves number inputs
   *  untouched): the value, then `input` and `change` events. */
  async setNumber(css, value) {
    const id = await this.waitFor(css);
    await this.script(
      `const e = arguments[0]; e.focus(); e.value = String(arguments[1]);
       e.dispatchEvent(new Event('input', { bubbles: true }));
       e.dispatchEvent(new Event('change', { bubbles: true }));`,
      [{ [W3C_ELEMENT]: id }, value],
    );
  }

  async text(id) {
    return this.cmd('GET', `/element/${id}/text`);
  }

  async attr(id, name) {
    return this.cmd('GET', `/element/${id}/attribute/${name}`);
  }

  async value(css) {
    return this.cmd('GET', `/element/${await this.find(css)}/property/value`);
  }

  async script(source, args = []) {
    return this.cmd('POST', '/execute/sync', { script: source, args });
  }

  async screenshot(path) {
    const b64 = await this.cmd('GET', '/screenshot');
    writeFileSync(path, Buffer.from(b64, 'base64'));
  }
}

function elementId(el) {
  const id = el && (el[W3C_ELEMENT] ?? el.ELEMENT);
  if (!id) throw new Error(`not an element reference: ${JSON.stringify(el)}`);
  return id;
}

async function request(base, method, path, body) {
  const res = await fetch(base + path, {
    method,
    headers: { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = await res.json().catch(() => ({}));
  if (!res.ok || (json.value && json.value.error)) {
    const v = json.value || {};
    throw new Error(`${method} ${path}: ${v.error || res.status} ${v.message || ''}`.trim());
  }
  return json.value;
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Wait until `f()` (sync or async) is truthy; returns it (the limit only catches a hang). */
export async function until(what, f, timeoutMs = 30000) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await sleep(50);
  }
}

/** Point the app's home at a free loopback port of this run for its local bridge (not
 *  the default 17210, which another KeyBridge on the machine may hold); returns it. */
export async function bridgeOnFreePort(home) {
  const port = await new Promise((resolve) => {
    const srv = createServer().listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
  mkdirSync(join(home, 'config'), { recursive: true });
  writeFileSync(join(home, 'config', 'settings.toml'), `bridge_port = ${port}\n`);
  return port;
}

/** At least this many distinct colours in a window (`xwin.py colors`) is a page on screen:
 *  a blank or unpainted window has 1 or 2. */
export const PAINTED_COLORS = 64;

/** tests/desktop/xwin.py with these arguments; its output, trimmed. */
export const xwin = (...args) =>
  execFileSync('python3', [join(dirname(fileURLToPath(import.meta.url)), 'xwin.py'), ...args.map(String)], { encoding: 'utf8' }).trim();

/**
 * KeyBridge as the tests run it: the core (`keybridge-desktop`, started here) starts its
 * window as a process of its own, and again after each close. WebKitWebDriver runs with
 * `--target` (run.sh) and attaches to whichever window process listens on WebKit's
 * inspector address, which each window inherits from the core's environment
 * (WEBKIT_INSPECTOR_SERVER, with automation on: TAURI_WEBVIEW_AUTOMATION).
 */
export class KeyBridgeApp {
  static start(bin, args) {
    const env = {
      ...process.env,
      WEBKIT_INSPECTOR_SERVER: process.env.KB_INSPECTOR,
      TAURI_WEBVIEW_AUTOMATION: 'true',
    };
    const log = process.env.KB_APP_LOG ? openSync(process.env.KB_APP_LOG, 'a') : 'ignore';
    const proc = spawn(bin, args, { env, stdio: ['ignore', log, log] });
    const app = new KeyBridgeApp(proc);
    proc.on('exit', (code, signal) => (app.exited = { code, signal }));
    return app;
  }

  constructor(proc) {
    this.proc = proc;
    this.pid = proc.pid;
    this.exited = null;
    this.session = null;
  }

  /** A WebDriver session on the window process that runs now (the previous session,
   *  if any, is ended first: its process is gone). `failed()` may return an error that
   *  means no window will come (it is thrown at once); the limit only catches a hang. */
  async attach(base, failed = () => null, timeoutMs = 60000) {
    if (this.session) {
      await this.session.quit();
      this.session = null;
    }
    const until = Date.now() + timeoutMs;
    let last;
    for (;;) {
      const err = failed();
      if (err) throw err;
      if (this.exited) throw new Error(`KeyBridge exited: ${JSON.stringify(this.exited)}`);
      try {
        this.session = await Session.start(base, {});
        return this.session;
      } catch (e) {
        last = e;
      }
      if (Date.now() > until) throw new Error(`no window to attach to: ${last && last.message}`);
      await sleep(200);
    }
  }

  async stop() {
    if (this.session) await this.session.quit();
    if (!this.exited) {
      const gone = new Promise((r) => this.proc.on('exit', r));
      this.proc.kill('SIGTERM');
      await gone;
    }
  }
}
