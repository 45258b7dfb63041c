// KeyBridge on a machine without the tray library: libayatana-appindicator, which the
// core loads at run time through tray-icon, is shadowed under each name tray-icon tries by
// an empty file on LD_LIBRARY_PATH, so the dynamic loader finds that first and fails, as it
// does where the package is not installed. The core carries on without a tray: the window
// opens and is painted, and closing it quits KeyBridge (there is no tray to stay in).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { join, dirname } from 'node:path';
import { mkdirSync, writeFileSync, readFileSync, readdirSync, existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { spawn, execFileSync } from 'node:child_process';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { sleep } from './webdriver.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const bin = process.env.KB_DESKTOP_BIN;
const home = process.env.KB_DESKTOP_HOME;
const PAINTED_COLORS = 64;
let app;

const xwin = (...args) => execFileSync('python3', [join(here, 'xwin.py'), ...args.map(String)], { encoding: 'utf8' }).trim();

async function until(what, f, timeoutMs = 60000) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = f();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await sleep(50);
  }
}

/** Everything the app has logged so far. */
function appLog() {
  const dir = join(home, 'logs');
  if (!existsSync(dir)) return '';
  return readdirSync(dir)
    .filter((f) => f.endsWith('.log'))
    .map((f) => readFileSync(join(dir, f), 'utf8'))
    .join('\n');
}

after(() => {
  if (app && app.exitCode === null && app.signalCode === null) app.kill();
});

test('without the tray library the window opens painted, and closing it quits KeyBridge', async () => {
  const shadow = mkdtempSync(join(tmpdir(), 'kb-notray-'));
  for (const lib of ['libayatana-appindicator3.so.1', 'libappindicator3.so.1', 'libayatana-appindicator3.so', 'libappindicator3.so']) writeFileSync(join(shadow, lib), '');
  mkdirSync(join(home, 'config'), { recursive: true });
  const port = await new Promise((resolve) => {
    const srv = createServer().listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
  writeFileSync(join(home, 'config', 'settings.toml'), `bridge_port = ${port}\n`);
  const env = { ...process.env, LD_LIBRARY_PATH: [shadow, process.env.LD_LIBRARY_PATH].filter(Boolean).join(':') };
  app = spawn(bin, ['--home', home, '--report-paints'], { env, stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  app.stdout.on('data', (d) => (out += d));
  const exited = new Promise((resolve) => app.once('exit', (code, signal) => resolve({ code, signal })));

  await until('the window reports its first paint', () => out.split('\n').includes('painted'));
  assert.match(appLog(), /no tray icon: the tray library could not be loaded/, 'the core knows it has no tray');
  await until('the window is on screen', () => Number(xwin('mapped', app.pid)) === 1);
  await until('the X server shows the page in the window', () => Number(xwin('colors', app.pid)) >= PAINTED_COLORS);

  // Closed as a user closes it: with no tray to stay in, KeyBridge ends, cleanly.
  xwin('close', app.pid);
  const end = await Promise.race([exited, sleep(60000).then(() => null)]);
  assert.ok(end, 'KeyBridge did not quit when its window closed');
  assert.deepEqual(end, { code: 0, signal: null });
});
