// KeyBridge on a machine without the tray library: libayatana-appindicator, which the
// core loads at run time through tray-icon, is shadowed under each name tray-icon tries by
// an empty file on LD_LIBRARY_PATH, so the dynamic loader finds that first and fails, as it
// does where the package is not installed. The core carries on without a tray: the window
// opens and is painted, and closing it quits KeyBridge (there is no tray to stay in).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { writeFileSync, readFileSync, readdirSync, existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { spawn } from 'node:child_process';
import { until, bridgeOnFreePort, xwin, PAINTED_COLORS } from './webdriver.mjs';

const bin = process.env.KB_DESKTOP_BIN;
const home = process.env.KB_DESKTOP_HOME;
let app;

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
  await bridgeOnFreePort(home);
  const env = { ...process.env, LD_LIBRARY_PATH: [shadow, process.env.LD_LIBRARY_PATH].filter(Boolean).join(':') };
  app = spawn(bin, ['--home', home, '--report-paints'], { env, stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  app.stdout.on('data', (d) => (out += d));

  await until('the window reports its first paint', () => out.split('\n').includes('painted'), 60000);
  assert.match(appLog(), /no tray icon: the tray library could not be loaded/, 'the core knows it has no tray');
  await until('the window is on screen', () => Number(xwin('mapped', app.pid)) === 1);
  await until('the X server shows the page in the window', () => Number(xwin('colors', app.pid)) >= PAINTED_COLORS);

  // Closed as a user closes it: with no tray to stay in, KeyBridge ends, cleanly.
  xwin('close', app.pid);
  await until('KeyBridge quits when its window closes', () => app.exitCode !== null || app.signalCode !== null, 60000);
  assert.deepEqual({ code: app.exitCode, signal: app.signalCode }, { code: 0, signal: null });
});
