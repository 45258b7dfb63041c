// A minimal W3C WebDriver client over fetch (no dependencies): sessions, elements,
// clicks, typing, text, screenshots, waits.
import { writeFileSync } from 'node:fs';

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
