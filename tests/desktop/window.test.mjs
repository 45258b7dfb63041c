// The real KeyBridge window (keybridge-desktop under Xvfb, driven by WebKitWebDriver):
// first run, home with the demo key, certificate details, the PIN change form, a wrong PIN
// dropping the tries left, and the one PIN dialog a key operation opens; closing to the
// tray (the webview released, WebKit's web process gone) and opening again from the tray
// menu, a second start, and a bridge client's PIN question, each with no window. Screenshots
// in zh-CN go to $KB_SCREENSHOTS when set (docs/screenshots/ for the README). The window
// is a process of its own, started by KeyBridge's core: closing it ends that process and
// WebKit's; killing it leaves the core serving the bridge.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join, dirname } from 'node:path';
import { mkdirSync, readFileSync, existsSync, copyFileSync, unlinkSync, writeFileSync, readdirSync, realpathSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { spawn, execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { KeyBridgeApp, sleep, until, bridgeOnFreePort, xwin, PAINTED_COLORS } from './webdriver.mjs';
import { BridgeClient } from './bridge-client.mjs';

const base = process.env.KB_WEBDRIVER;
const bin = process.env.KB_DESKTOP_BIN;
const home = process.env.KB_DESKTOP_HOME;
const shots = process.env.KB_SCREENSHOTS || '';
let s;
let kb;

const shot = async (name) => {
  if (shots) await s.screenshot(join(shots, name));
};
const tries = (text) => Number((text.match(/\d+/) || [NaN])[0]);

let bridgePort;

before(async () => {
  bridgePort = await bridgeOnFreePort(home);
  kb = KeyBridgeApp.start(bin, ['--home', home]);
  s = await kb.attach(base);
});

after(async () => {
  if (kb) await kb.stop();
});

test('first run asks for the privacy policy and user agreement, then shows the demo key', async () => {
  // The demo key is created on this first start (real Argon2id KDF): allow for it.
  await s.waitFor('[data-testid=agreement]', 60000);
  const navs = await s.findAll('[data-testid=nav-home]');
  for (const n of navs) {
    assert.equal(await s.cmd('GET', `/element/${n}/displayed`), false, 'nothing else is reachable before accepting');
  }
  await s.click('[data-testid=agreement-accept]');
  const medium = await s.waitFor('[data-testid=medium]');
  assert.equal(await s.attr(medium, 'data-device-id'), 'file:demo');
  const rows = await s.findAll('[data-testid=cert-row]');
  assert.equal(rows.length, 2, 'the demo key holds a signing and an encryption certificate');
  const text = await s.text(medium);
  assert.match(text, /演示用户/);
  assert.match(text, /文件型/);
  await shot('home.png');
});

test('certificate details: the demo signing certificate, chained to the demo root', async () => {
  await s.click('[data-testid=cert-row][data-usage=sign]');
  await s.waitFor('[data-testid=cert-details]');
  const subject = await s.waitText('[data-testid=field-subject]', (t) => t.includes('演示用户'));
  assert.match(subject, /CN=演示用户 \(DEMO\)/);
  const serial = await s.text(await s.find('[data-testid=field-serial]'));
  assert.match(serial, /[0-9A-F]{8,}/);
  const sha1 = await s.waitText('[data-testid=thumbprint-value]', (t) => /[0-9A-F]{40}/.test(t.replace(/[\s:]/g, '')));
  assert.ok(sha1);
  const chain = await s.text(await s.find('[data-testid=chain-status]'));
  assert.doesNotMatch(chain, /失败|不受信任|untrusted/i, chain);
  await shot('details.png');
  await s.click('[data-testid=back]');
  await s.waitFor('[data-testid=medium]');
});

// An OpenSSL-made CRL (`openssl ca -gencrl`, SM2 with the GM/T default ID) from the demo
// CA, revoking the certificate with this serial, dropped into the home's CRL folder.
function opensslCrl(serialHex) {
  const dir = mkdtempSync(join(tmpdir(), 'kb-crl-'));
  const ca = join(home, 'data', 'demo-ca');
  const utc = (d) => d.toISOString().replace(/[-:T]/g, '').slice(2, 14) + 'Z';
  const now = new Date();
  const revoked = utc(new Date(now.getTime() - 60_000));
  const expiry = utc(new Date(now.getTime() + 86_400_000));
  writeFileSync(join(dir, 'index.txt'), `R\t${expiry}\t${revoked},keyCompromise\t${serialHex}\tunknown\t/CN=demo\n`);
  writeFileSync(join(dir, 'crlnumber'), '1000\n');
  writeFileSync(
    join(dir, 'ca.cnf'),
    `[ca]\ndefault_ca = kb\n[kb]\ndatabase = ${dir}/index.txt\ncertificate = ${ca}/root.pem\n` +
      `private_key = ${ca}/root.key\ncrlnumber = ${dir}/crlnumber\ndefault_md = sm3\ndefault_crl_days = 7\n`,
  );
  const out = join(home, 'data', 'crl', 'openssl.crl');
  mkdirSync(join(home, 'data', 'crl'), { recursive: true });
  execFileSync('openssl', ['ca', '-config', join(dir, 'ca.cnf'), '-gencrl', '-out', out, '-sigopt', 'distid:1234567812345678']);
  return out;
}

test('revocation: unknown without a source; an OpenSSL CRL in the CRL folder shows it revoked', async () => {
  await s.click('[data-testid=cert-row][data-usage=sign]');
  await s.waitFor('[data-testid=cert-details]');
  const line = await s.waitFor('[data-testid=revocation-status]');
  assert.equal(await s.attr(line, 'data-state'), 'unknown', 'the demo CA names no CRL or OCSP responder: unknown, never good');
  const serial = (await s.text(await s.find('[data-testid=field-serial]'))).replace(/[\s:]/g, '');
  await s.click('[data-testid=back]');
  await s.waitFor('[data-testid=medium]');
  const crl = opensslCrl(serial.length % 2 ? `0${serial}` : serial);
  try {
    await s.click('[data-testid=cert-row][data-usage=sign]');
    await s.waitFor('[data-testid=cert-details]');
    const text = await s.waitText('[data-testid=revocation-status]', (t) => /已吊销/.test(t));
    assert.match(text, /keyCompromise/);
    assert.match(text, /3030/);
    await shot('revoked.png');
  } finally {
    unlinkSync(crl);
  }
  await s.click('[data-testid=back]');
  await s.waitFor('[data-testid=medium]');
});

test('change the PIN; a wrong PIN drops the tries left', async () => {
  await s.click('[data-testid=nav-pin]');
  const before = tries(await s.waitText('[data-testid=pin-user-tries]', (t) => /\d/.test(t)));
  assert.ok(before > 1, `tries left shown: ${before}`);
  await s.type('[data-testid=pin-old]', '12345678');
  await s.type('[data-testid=pin-new]', '11223344');
  await s.type('[data-testid=pin-confirm]', '11223344');
  await s.click('[data-testid=pin-change-submit]');
  await s.waitText('[data-testid=pin-message]', (t) => /成功|已修改/.test(t));
  // The old PIN is wrong now.
  await s.type('[data-testid=pin-old]', '12345678');
  await s.type('[data-testid=pin-new]', '22334455');
  await s.type('[data-testid=pin-confirm]', '22334455');
  await s.click('[data-testid=pin-change-submit]');
  const msg = await s.waitText('[data-testid=pin-message]', (t) => /错误/.test(t));
  assert.match(msg, new RegExp(String(before - 1)), `the error says ${before - 1} tries left: ${msg}`);
  const after = tries(await s.waitText('[data-testid=pin-user-tries]', (t) => tries(t) === before - 1));
  assert.equal(after, before - 1);
});

test('a key operation asks in the PIN dialog; a wrong PIN there drops the tries too', async () => {
  await s.click('[data-testid=nav-home]');
  await s.click('[data-testid=cert-row][data-usage=encrypt]');
  await s.waitFor('[data-testid=cert-details]');
  await s.click('[data-testid=delete-cert]');
  // The window's own confirmation first, then the PIN dialog of the service.
  await s.click('[data-testid=confirm-ok]');
  const dialog = await s.waitFor('[data-testid=prompt-dialog][data-kind=pin]');
  assert.ok(dialog);
  const shown = tries(await s.waitText('[data-testid=prompt-tries-left]', (t) => /\d/.test(t)));
  await shot('pin-dialog.png');
  await s.type('[data-testid=prompt-pin-input]', '00000000');
  await s.click('[data-testid=prompt-ok]');
  // Asked again, one try fewer.
  const again = tries(await s.waitText('[data-testid=prompt-tries-left]', (t) => tries(t) === shown - 1));
  assert.equal(again, shown - 1);
  await s.click('[data-testid=prompt-cancel]');
  await s.waitGone('[data-testid=prompt-dialog]');
  // Nothing was deleted.
  await s.click('[data-testid=nav-home]');
  await s.waitFor('[data-testid=medium]');
  assert.equal((await s.findAll('[data-testid=cert-row]')).length, 2);
});

test('a certificate entering the near-expiry window: a banner and a desktop notification', async () => {
  await s.click('[data-testid=nav-settings]');
  // The demo certificates are valid for a year: a 400-day window takes them in.
  await s.setNumber('[data-testid=settings-near-expiry]', 400);
  await s.waitText('[data-testid=toast]', (t) => /已保存/.test(t));
  await s.click('[data-testid=nav-home]');
  const banner = await s.waitText('[data-testid=expiry-banner]', (t) => /演示用户/.test(t));
  assert.match(banner, /演示用户/);
  assert.ok((await s.findAll('[data-testid=badge-near-expiry]')).length >= 1, 'the near-expiry badge is shown');
  // The notification went to the session's notification daemon (python-dbusmock).
  const log = process.env.KB_NOTIFY_LOG;
  const until = Date.now() + 10000;
  let text = '';
  while (Date.now() < until) {
    text = existsSync(log) ? readFileSync(log, 'utf8') : '';
    if (/Notify/.test(text)) break;
    await sleep(200);
  }
  assert.match(text, /Notify .*即将过期/s, `notification daemon log: ${text.slice(0, 400)}`);
});

test('one instance only: a second start exits and the first window stays', async () => {
  const second = spawn(bin, ['--home', home], { stdio: 'ignore' });
  const code = await new Promise((resolve) => {
    const timer = setTimeout(() => resolve('still running'), 15000);
    second.on('exit', (c, signal) => {
      clearTimeout(timer);
      resolve(c ?? signal);
    });
  });
  if (code === 'still running') second.kill();
  assert.equal(code, 0, 'the second instance hands over to the first and exits');
  // The first still answers.
  await s.click('[data-testid=nav-home]');
  await s.waitFor('[data-testid=medium]');
});

test('home follows media live: a key file appearing and disappearing', async () => {
  await s.click('[data-testid=nav-home]');
  await s.waitFor('[data-testid=medium]');
  const keys = join(home, 'data', 'keys');
  const second = join(keys, 'second.kbkey');
  copyFileSync(join(keys, 'demo.kbkey'), second); // "inserting" a second file-type key
  await s.waitFor('[data-testid=medium][data-device-id="file:second"]', 15000);
  assert.equal((await s.findAll('[data-testid=medium]')).length, 2);
  unlinkSync(second); // "pulling it out"
  await s.waitGone('[data-testid=medium][data-device-id="file:second"]', 15000);
  assert.equal((await s.findAll('[data-testid=medium]')).length, 1);
});

// --- The tray: the window released and built again ---------------------------------

const here = fileURLToPath(new URL('.', import.meta.url));
const binPath = realpathSync(bin);

/** Processes whose parent is `pid`: [{ pid, comm, exe }]. */
function children(pid) {
  const out = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid !== pid) continue;
      let exe = '';
      try {
        exe = realpathSync(`/proc/${d}/exe`);
      } catch {
        // a process of another user, or gone
      }
      out.push({ pid: Number(d), comm: readFileSync(`/proc/${d}/comm`, 'utf8').trim(), exe });
    } catch {
      // gone meanwhile
    }
  }
  return out;
}
/** Every process `pid` started, directly or not. */
const descendants = (pid) => children(pid).flatMap((c) => [c, ...descendants(c.pid)]);
const alive = (pid) => existsSync(`/proc/${pid}`);
/** The running app: KeyBridge's core (the test started it). */
function appPid() {
  assert.ok(kb && !kb.exited && alive(kb.pid), 'the core runs');
  return kb.pid;
}
/** The core's window processes (the same binary, `--window`). */
const windowProcesses = (app) => children(app).filter((c) => c.exe === binPath).map((c) => c.pid);
/** WebKit's web processes, under the window process. */
const webProcesses = (app) => descendants(app).filter((c) => c.comm.startsWith('WebKitWebProces')).map((c) => c.pid);
/** Every WebKit process (web and network) under the core. */
const webkitProcesses = (app) => descendants(app).filter((c) => c.comm.startsWith('WebKit')).map((c) => c.pid);
const windowsOf = (app) => Number(xwin('count', app));
/** Distinct colours of the app's mapped window as the X server holds them: the page on
 *  screen, not the page's word that it drew (a blank window has 1 or 2). */
const windowColors = (app) => Number(xwin('colors', app));


/** Close the window as a user does (its close button: WM_DELETE_WINDOW); wait until
 *  it, its process and WebKit's processes are gone. Returns the web process's pids. */
async function closeToTray(app) {
  const web = webProcesses(app);
  assert.ok(web.length >= 1, 'a web process draws the open window');
  const windows = windowProcesses(app);
  assert.equal(windows.length, 1, 'one window process');
  const webkit = webkitProcesses(app);
  xwin('close', app);
  await until('the window is destroyed', () => windowsOf(app) === 0);
  await until(`the window process exits (${windows})`, () => windows.every((p) => !alive(p)));
  await until(`WebKit's processes exit (${webkit.join(', ')})`, () => webkit.every((p) => !alive(p)));
  assert.ok(alive(app), 'KeyBridge stays in the tray');
  assert.deepEqual(descendants(app), [], 'the core alone: no window, no WebKit process');
  return web;
}

/** Attach the WebDriver session to the window KeyBridge started again. `failed()` may
 *  return an error that means no window will come (it is thrown at once). */
async function followNewWindow(failed = () => null) {
  s = await kb.attach(base, failed);
}

test('closed to the tray, the window process and WebKit end; the tray menu opens it again, painted and usable', async () => {
  const app = appPid();
  const before = await closeToTray(app);
  assert.deepEqual(webProcesses(app), [], 'no web process while in the tray');
  // The tray menu's 打开 KeyBridge, clicked as a tray host does (dbusmenu on the session bus).
  execFileSync('/usr/bin/python3', [join(here, 'tray.py'), 'click', String(app), '打开 KeyBridge']);
  await followNewWindow();
  const medium = await s.waitFor('[data-testid=medium]');
  assert.equal(await s.attr(medium, 'data-device-id'), 'file:demo');
  await until('the X server shows the page in the window', () => windowColors(app) >= PAINTED_COLORS);
  // Rendered in software, the window keeps GDK's OpenGL off as the core does: no GLX probe.
  const [win] = windowProcesses(app);
  assert.ok(readFileSync(`/proc/${win}/environ`, 'utf8').split('\0').includes('GDK_GL=disable'), 'GDK_GL=disable in the window');
  assert.ok(!readFileSync(`/proc/${win}/maps`, 'utf8').includes('libGLX_mesa'), "the window maps no Mesa GLX (GDK's probe)");
  const now = webProcesses(app);
  assert.ok(now.length >= 1 && now.every((p) => !before.includes(p)), `a new web process draws it: ${now} (before: ${before})`);
  assert.equal(windowsOf(app), 1, 'one window');
  // Usable: another screen answers from the core.
  await s.click('[data-testid=nav-pin]');
  await s.waitText('[data-testid=pin-user-tries]', (t) => /\d/.test(t));
  await s.click('[data-testid=nav-home]');
  await s.waitFor('[data-testid=medium]');
});

/** The tray menu shown or closed, as a tray host reports it (tray.py opened|closed). */
const trayMenu = (app, what) => execFileSync('/usr/bin/python3', [join(here, 'tray.py'), what, String(app)]);
const mappedWindows = (app) => Number(xwin('mapped', app));

test('the tray menu opening starts the window hidden; 打开 shows that same process; a menu closed without it ends it', async () => {
  const app = appPid();
  await closeToTray(app);
  // Opened: a window process starts and loads its page (a web process), with nothing on screen.
  trayMenu(app, 'opened');
  const [warm] = await until('a window process starts when the menu opens', () => {
    const w = windowProcesses(app);
    return w.length === 1 && webProcesses(app).length >= 1 && w;
  });
  assert.equal(mappedWindows(app), 0, 'nothing on screen before 打开');
  // 打开: the same process's window is mapped, painted and usable.
  execFileSync('/usr/bin/python3', [join(here, 'tray.py'), 'click', String(app), '打开 KeyBridge']);
  trayMenu(app, 'closed');
  await followNewWindow();
  await s.waitFor('[data-testid=medium]');
  await until('the window is on screen', () => mappedWindows(app) === 1);
  // A WebKitGTK view mapped while its page loaded once stayed blank though the page drew.
  await until('the X server shows the page in the window', () => windowColors(app) >= PAINTED_COLORS);
  assert.deepEqual(windowProcesses(app), [warm], 'the window the menu started is the one shown');
  // Past the lingering time it stays: it was shown.
  await sleep(4000);
  assert.deepEqual(windowProcesses(app), [warm], 'a shown window is not ended');
  await closeToTray(app);
  // Opened, then closed without 打开: the hidden window and WebKit's processes end.
  trayMenu(app, 'opened');
  const [unused] = await until('a window process starts', () => windowProcesses(app).length === 1 && windowProcesses(app));
  trayMenu(app, 'closed');
  await until(`the unused window process ends (${unused})`, () => !alive(unused), 60000);
  await until('the core alone again', () => descendants(app).length === 0, 60000);
  assert.ok(alive(app), 'KeyBridge stays in the tray');
  assert.equal(windowsOf(app), 0);
  // Leave the window open, as the tests after this one expect.
  execFileSync('/usr/bin/python3', [join(here, 'tray.py'), 'click', String(app), '打开 KeyBridge']);
  await followNewWindow();
  await s.waitFor('[data-testid=medium]');
});

test('in the tray, a second start opens the window again', async () => {
  const app = appPid();
  await closeToTray(app);
  const second = spawn(bin, ['--home', home], { stdio: 'ignore' });
  const code = await new Promise((resolve) => second.on('exit', resolve));
  assert.equal(code, 0, 'the second instance hands over to the first and exits');
  await followNewWindow();
  await s.waitFor('[data-testid=medium]');
  assert.equal(windowsOf(app), 1);
});

test('in the tray, a bridge client asking to sign brings the window back with the PIN dialog', async () => {
  const app = appPid();
  await closeToTray(app);
  const secret = readFileSync(join(home, 'config', 'bridge-secret'), 'utf8').trim();
  const c = await BridgeClient.connect(bridgePort, secret);
  try {
    await c.call('hello', { schema_version: 1, sdk: 'tray-test' });
    const { certificates } = await c.call('certificates.list', { usage: 'sign' });
    assert.ok(certificates.length >= 1, 'the demo signing certificate is listed with no window');
    const signing = c.call('sign', {
      certificate: { thumbprint: certificates[0].thumbprint },
      input: { data: Buffer.from('投标文件').toString('base64') },
      format: 'raw',
    });
    let signFailed = null;
    signing.catch((e) => (signFailed = e)); // awaited below
    // No window was open: the question builds it, with the dialog naming the client.
    await followNewWindow(() => signFailed);
    await s.waitFor('[data-testid=prompt-dialog][data-kind=pin]');
    assert.match(await s.text(await s.find('[data-testid=prompt-dialog]')), /tray-test/);
    assert.equal(windowsOf(app), 1);
    await s.type('[data-testid=prompt-pin-input]', '11223344'); // changed by the PIN test above
    await s.click('[data-testid=prompt-ok]');
    const res = await signing;
    assert.equal(res.format, 'raw');
    assert.ok(Buffer.from(res.signature, 'base64').length > 64, 'a DER SM2 signature');
    await s.waitGone('[data-testid=prompt-dialog]');
  } finally {
    c.close();
  }
});

test('the window process killed: the core keeps serving the bridge and opens a window on the next PIN question', async () => {
  const app = appPid();
  // The signature below must ask for the PIN: forget the one cached by the test above.
  await s.click('[data-testid=nav-settings]');
  await s.click('[data-testid=clear-pin-cache]');
  await s.waitText('[data-testid=settings-message]', (t) => /已清除缓存的 PIN/.test(t));
  const windows = windowProcesses(app);
  assert.equal(windows.length, 1, 'a window process runs');
  const webkit = webkitProcesses(app);
  assert.ok(webkit.length >= 1, 'with WebKit under it');
  process.kill(windows[0], 'SIGKILL');
  await until('the window process is gone', () => !alive(windows[0]));
  await until(`WebKit's processes end with it (${webkit})`, () => webkit.every((p) => !alive(p)));
  assert.ok(alive(app), 'the core lives on');
  assert.equal(windowsOf(app), 0, 'no window');
  const secret = readFileSync(join(home, 'config', 'bridge-secret'), 'utf8').trim();
  const c = await BridgeClient.connect(bridgePort, secret);
  try {
    await c.call('hello', { schema_version: 1, sdk: 'crash-test' });
    const { certificates } = await c.call('certificates.list', { usage: 'sign' });
    assert.ok(certificates.length >= 1, 'the bridge answers with no window');
    assert.equal(windowsOf(app), 0, 'listing needs no window');
    const signing = c.call('sign', {
      certificate: { thumbprint: certificates[0].thumbprint },
      input: { data: Buffer.from('崩溃之后').toString('base64') },
      format: 'raw',
    });
    let signFailed = null;
    signing.catch((e) => (signFailed = e)); // awaited below
    await followNewWindow(() => signFailed);
    await s.waitFor('[data-testid=prompt-dialog][data-kind=pin]');
    assert.match(await s.text(await s.find('[data-testid=prompt-dialog]')), /crash-test/);
    const now = windowProcesses(app);
    assert.ok(now.length === 1 && now[0] !== windows[0], `a new window process: ${now} (killed: ${windows})`);
    await s.type('[data-testid=prompt-pin-input]', '11223344');
    await s.click('[data-testid=prompt-ok]');
    const res = await signing;
    assert.ok(Buffer.from(res.signature, 'base64').length > 64, 'a DER SM2 signature');
    await s.waitGone('[data-testid=prompt-dialog]');
  } finally {
    c.close();
  }
});

test('in the tray, a key with certificates in the near-expiry window still notifies, with no window', async () => {
  const app = appPid();
  await closeToTray(app);
  const log = process.env.KB_NOTIFY_LOG;
  const notifies = () => (existsSync(log) ? readFileSync(log, 'utf8').match(/Notify /g) || [] : []).length;
  const before = notifies();
  // The near-expiry window is 400 days since the test above; the notices remembered so
  // far are forgotten, so the certificates of the key "inserted" now count as new.
  unlinkSync(join(home, 'data', 'expiry-notified.json'));
  const third = join(home, 'data', 'keys', 'third.kbkey');
  copyFileSync(join(home, 'data', 'keys', 'demo.kbkey'), third);
  try {
    await until('a desktop notification', () => notifies() > before);
    assert.match(readFileSync(log, 'utf8').split('\n').filter((l) => /Notify /.test(l)).pop(), /即将过期/);
    assert.equal(windowsOf(app), 0, 'a notification builds no window');
    assert.deepEqual(webProcesses(app), []);
  } finally {
    unlinkSync(third);
  }
});

test('the tray is the core\'s: a process without WebKit, its menu on the session bus', async () => {
  const app = appPid();
  assert.equal(windowsOf(app), 0, 'in the tray (the test above closed the window)');
  // keybridge-desktop replaced itself with the core installed beside it: same pid.
  const exe = realpathSync(`/proc/${app}/exe`);
  assert.equal(exe, join(dirname(binPath), 'keybridge-tray'), 'the long-lived process is the core binary');
  const maps = readFileSync(`/proc/${app}/maps`, 'utf8');
  for (const lib of ['libwebkit2gtk', 'libjavascriptcoregtk', 'libsoup']) {
    assert.ok(!maps.includes(lib), `the core maps no ${lib}`);
  }
  assert.ok(/libgtk-3/.test(maps), 'the core maps GTK (the tray)');
  assert.ok(!/libLLVM|swrast_dri/.test(maps), "GDK's OpenGL is off in the core: no Mesa");
  const labels = execFileSync('/usr/bin/python3', [join(here, 'tray.py'), 'labels', String(app)], { encoding: 'utf8' })
    .trim()
    .split('\n');
  assert.deepEqual(labels.slice(1), ['打开 KeyBridge · Open', '清除已缓存的 PIN · Clear cached PINs', '退出 · Quit']);
  const count = Number((labels[0].match(/^已连接介质：(\d+) 个 · \d+ key\(s\)$/) || [])[1]);
  assert.ok(count >= 1, `the first item counts the media: ${labels[0]}`);
  // The count follows the media: a second file-type key "inserted".
  const keys = join(home, 'data', 'keys');
  const extra = join(keys, 'tray-count.kbkey');
  copyFileSync(join(keys, 'demo.kbkey'), extra);
  try {
    const label = () => execFileSync('/usr/bin/python3', [join(here, 'tray.py'), 'labels', String(app)], { encoding: 'utf8' });
    await until(`the tray counts ${count + 1} keys`, () => label().includes(`已连接介质：${count + 1} 个`));
  } finally {
    unlinkSync(extra);
  }
});

test('the tray menu\'s 退出 quits KeyBridge: the core ends', async () => {
  const app = appPid();
  execFileSync('/usr/bin/python3', [join(here, 'tray.py'), 'click', String(app), '退出']);
  await until('the core exits', () => kb.exited);
  assert.deepEqual(kb.exited, { code: 0, signal: null });
  assert.ok(!alive(app));
});
