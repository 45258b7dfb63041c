// 证书续期 end to end on one machine (issue 15): the real KeyBridge window (Xvfb,
// WebKitWebDriver) gets a binding QR code from the development CA it runs itself on
// loopback (the PIN answered in the window's dialog); the QR code is decoded by a real
// decoder (jsQR) from the window's screenshot; a phone-sized headless Chromium opens the
// decoded URL, confirms the binding, applies for the renewal and pays; the operator page
// approves; 安装证书 with the PIN in the window; then the key's new certificate is read
// back with the CLI and checked by OpenSSL (chain to the dev CA's root, same public key,
// later expiry, the old certificate gone).
//
// The demo key's certificates are valid for a year and the dev CA (like BJCA) opens
// renewal 90 days before expiry, so before the app starts the demo key's signing
// certificate is replaced by one from the same demo root expiring in 20 days: its request
// is signed on the key (`keybridge filekey csr`) and OpenSSL issues it with the root key.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join, dirname, resolve } from 'node:path';
import { mkdtempSync, readFileSync, readdirSync, writeFileSync, existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { KeyBridgeApp, sleep } from './webdriver.mjs';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
// The npm packages of tests/e2e (installer/bootstrap.sh installs them): Playwright (driving
// Debian's Chromium), jsQR and pngjs.
const require = createRequire(join(ROOT, 'tests/e2e/package.json'));
const { chromium } = require('playwright-core');
const jsQR = require('jsqr');
const { PNG } = require('pngjs');

const base = process.env.KB_WEBDRIVER;
const bin = process.env.KB_DESKTOP_BIN;
const keybridge = process.env.KEYBRIDGE_BIN || join(dirname(bin || ''), 'keybridge');
const CHROMIUM = process.env.CHROMIUM_BIN ?? '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless=new', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];
const PIN = '12345678'; // the demo key's
const DEMO_SUBJECT = 'C=CN,O=KeyBridge 演示单位 (DEMO),CN=演示用户 (DEMO)';
const DISTID = 'distid:1234567812345678';
// A phone: WeChat's in-app browser on an iPhone-sized screen.
const PHONE = {
  viewport: { width: 390, height: 844 },
  deviceScaleFactor: 3,
  isMobile: true,
  hasTouch: true,
  locale: 'zh-CN',
  userAgent:
    'Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) ' +
    'Mobile/15E148 MicroMessenger/8.0.40(0x18002831) NetType/WIFI Language/zh_CN',
};
const HANG = 60000; // only catches hangs: every wait below is for a condition

const dir = mkdtempSync(join(tmpdir(), 'kb-renewal-'));
const home = join(dir, 'home');
const file = (name) => join(dir, name);
let s;
let app;
let browser;
let phone;
/** What the steps learn and later steps use. */
const flow = {};

function kb(args, input) {
  const out = execFileSync(keybridge, ['--home', home, ...args], {
    input,
    env: { ...process.env, KEYBRIDGE_HOME: '', KEYBRIDGE_CA_URL: '' },
    maxBuffer: 16 << 20,
  });
  return out.toString();
}
const openssl = (args) => execFileSync('openssl', args, { stdio: ['ignore', 'pipe', 'pipe'] }).toString();
/** A serial as hex digits to compare (views differ in case, separators and leading zeros). */
const norm = (serial) => serial.replace(/[\s:]/g, '').replace(/^0+/, '').toLowerCase();
const signRow = () => JSON.parse(kb(['--json', 'certs'])).certificates.find((c) => c.device === 'file:demo' && c.usage === 'sign');
const exportSign = (path) => kb(['cert', 'export', '--device', 'file:demo', '--container', 'demo', '--usage', 'sign', '--out', path, '--pem']);
const publicKey = (pem) => openssl(['x509', '-in', pem, '-noout', '-pubkey']);
const notAfter = (pem) => new Date(openssl(['x509', '-in', pem, '-noout', '-enddate']).trim().replace(/^notAfter=/, ''));

/** The demo key, its signing certificate replaced by one expiring in 20 days. */
function nearExpiryDemoKey() {
  kb(['--weak-kdf-for-tests', 'demo']);
  const ca = join(home, 'data', 'demo-ca');
  const slot = ['--device', 'file:demo', '--container', 'demo', '--usage', 'sign'];
  kb(['--pin-stdin', 'filekey', 'csr', ...slot, '--subject', DEMO_SUBJECT, '--out', file('near.csr'), '--pem'], `${PIN}\n`);
  writeFileSync(
    file('leaf.ext'),
    'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,nonRepudiation\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n',
  );
  // Random, and written without a leading zero or sign byte (as every view prints it).
  const serial = `0x4b${[...crypto.getRandomValues(new Uint8Array(11))].map((b) => b.toString(16).padStart(2, '0')).join('')}`;
  openssl([
    'x509', '-req', '-in', file('near.csr'), '-CA', join(ca, 'root.pem'), '-CAkey', join(ca, 'root.key'),
    '-set_serial', serial, '-days', '20', '-sm3', '-sigopt', DISTID, '-vfyopt', DISTID,
    '-extfile', file('leaf.ext'), '-out', file('near.pem'),
  ]);
  kb(['--pin-stdin', '--yes', 'filekey', 'import-cert', ...slot, '--cert', file('near.pem')], `${PIN}\n`);
  exportSign(file('old.pem'));
  const row = signRow();
  assert.equal(row.status, 'expiring_soon', `the signing certificate is 临期: ${JSON.stringify(row)}`);
  return row;
}

before(async () => {
  assert.ok(existsSync(keybridge), `no keybridge CLI at ${keybridge} (cargo build -p keybridge, or set KEYBRIDGE_BIN)`);
  flow.old = nearExpiryDemoKey();
  app = KeyBridgeApp.start(bin, ['--home', home]);
  s = await app.attach(base);
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  phone = await browser.newContext(PHONE);
});

after(async () => {
  if (browser) await browser.close();
  if (app) await app.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** Answer the window's PIN dialog as a user would. */
async function answerPin() {
  await s.waitFor('[data-testid=prompt-dialog][data-kind=pin]', HANG);
  await s.type('[data-testid=prompt-pin-input]', PIN);
  await s.click('[data-testid=prompt-ok]');
  await s.waitGone('[data-testid=prompt-dialog]', HANG);
}

/** The window's renewal card of the (old) signing certificate, as a CSS selector. */
const card = () => `[data-testid=renewal-cert][data-serial="${norm(flow.old.serial)}"]`;
const countdownSeconds = (t) => {
  const m = t.match(/剩余有效时间:\s*(\d+)分(\d{2})秒/);
  return m ? Number(m[1]) * 60 + Number(m[2]) : NaN;
};

test('证书续期 in the window: the dev CA on loopback, the 临期 certificate, 获取二维码 with the PIN and a 30-minute countdown', async () => {
  // The app's first start on this home: the agreement first.
  await s.waitFor('[data-testid=agreement]', HANG);
  await s.click('[data-testid=agreement-accept]');
  await s.waitFor('[data-testid=medium][data-device-id="file:demo"]', HANG);
  await s.click('[data-testid=nav-renewal]');
  await s.waitFor('[data-testid=renewal-dev-ca]', HANG);
  flow.operatorUrl = await s.waitText('[data-testid=renewal-operator-url]', (t) => /^http:\/\/127\.0\.0\.1:\d+\/op\?key=/.test(t), HANG);
  await s.waitFor(card(), HANG);
  assert.match(await s.text(await s.find(`${card()} [data-testid=renewal-validity]`)), /临期/);
  assert.equal(await s.text(await s.find(`${card()} [data-testid=renewal-bound]`)), '未绑定');

  await s.click('[data-testid=renewal-bind]');
  await answerPin();
  await s.waitFor('[data-testid=qr-code]', HANG);
  flow.qrText = await s.waitText('[data-testid=renewal-qr-url]', (t) => /^http:\/\/127\.0\.0\.1:\d+\/m\/bind\?token=/.test(t));
  const first = countdownSeconds(await s.waitText('[data-testid=renewal-countdown]', (t) => countdownSeconds(t) > 0));
  assert.ok(first <= 1800 && first > 1500, `a new code is valid for 30 minutes: ${first} s left`);
  // It counts down (waits for the next tick, whenever it comes).
  const later = countdownSeconds(await s.waitText('[data-testid=renewal-countdown]', (t) => countdownSeconds(t) < first, HANG));
  assert.ok(later < first);
});

test('a real QR decoder reads the QR code from the window screenshot: the URL shown under it', async () => {
  const qr = await s.find('[data-testid=qr-code]');
  await s.script("arguments[0].scrollIntoView({ block: 'center' })", [{ 'element-6066-11e4-a52e-4f735466cecf': qr }]);
  await s.screenshot(file('window.png'));
  const png = PNG.sync.read(readFileSync(file('window.png')));
  const code = jsQR(new Uint8ClampedArray(png.data.buffer, png.data.byteOffset, png.data.length), png.width, png.height);
  assert.ok(code, `jsQR found no QR code in the ${png.width}x${png.height} screenshot`);
  assert.equal(code.data, flow.qrText);
  flow.qrUrl = code.data;
});

test('the phone opens the decoded URL and confirms the binding (确认绑定); the window shows it bound', async () => {
  const page = await phone.newPage();
  await page.goto(flow.qrUrl);
  // The four fields per certificate, and the code's time left.
  const cert = page.locator('.cert').first();
  assert.equal((await cert.locator('.user').textContent()).trim(), '演示用户 (DEMO)');
  assert.ok((await cert.locator('.medium').textContent()).trim().length > 0, '介质编号 shown');
  assert.match(await cert.locator('.service').textContent(), /\S/);
  assert.match(await cert.locator('.not-after').textContent(), /^\d{4}-\d{2}-\d{2}$/);
  assert.match(await page.textContent('body'), /剩余有效时间 \d+分\d{2}秒/);
  await page.getByRole('button', { name: '确认绑定' }).tap();
  await page.locator('#bound').waitFor({ timeout: HANG });
  flow.phonePage = page;

  await s.waitText('[data-testid=renewal-bind-state]', (t) => t.includes('绑定成功'), HANG);
  await s.waitText(`${card()} [data-testid=renewal-bound]`, (t) => t === '已绑定', HANG);
  await s.waitGone('[data-testid=qr-code]', HANG);
});

test('the phone applies for the renewal (1 year, 续期, 意愿表达) and pays; the operator page approves; the window shows it', async () => {
  const page = flow.phonePage;
  await page.locator(`a.renew[href*="serial=${norm(flow.old.serial)}"]`).tap();
  await page.locator('select[name=years]').selectOption('1');
  await page.locator('select[name=kind]').selectOption('renew');
  await page.locator('input[name=consent]').check();
  await page.getByRole('button', { name: '下一步：支付' }).tap();
  const application = (await page.locator('#application').textContent({ timeout: HANG })).trim();
  assert.ok(application);
  await page.getByRole('button', { name: '模拟支付' }).tap();
  await page.locator('#paid').waitFor({ timeout: HANG });

  // The window learns of the application from the CA.
  await waitProgress('applied');

  // The operator (on this PC) approves it on the page the window names.
  const op = await (await browser.newContext()).newPage();
  await op.goto(flow.operatorUrl);
  const row = op.locator('.app', { hasText: application });
  await row.getByRole('button', { name: '审核通过' }).click();
  assert.equal((await op.locator('#notice').textContent({ timeout: HANG })).trim(), '已审核通过');

  await waitProgress('approved');
  await s.waitFor(`${card()} [data-testid=renewal-install]`, HANG);
  // …and the desktop notification went to the session's notification daemon.
  const log = process.env.KB_NOTIFY_LOG;
  if (log) {
    const until = Date.now() + HANG;
    let text = '';
    while (Date.now() < until && !/证书续期已审核通过/.test(text)) {
      text = existsSync(log) ? readFileSync(log, 'utf8') : '';
      await sleep(200);
    }
    assert.match(text, /Notify .*证书续期已审核通过/s, `notification daemon log: ${text.slice(-400)}`);
  }
});

/** Wait until the window shows the certificate's renewal at `state` (the page asks the CA
 *  by itself while a bound certificate waits: nobody presses 刷新). */
async function waitProgress(state) {
  const sel = `${card()} [data-testid=renewal-progress]`;
  const until = Date.now() + HANG;
  let last = '';
  while (Date.now() < until) {
    const els = await s.findAll(sel);
    last = els.length ? await s.attr(els[0], 'data-progress').catch(() => '') : '';
    if (last === state) return;
    await sleep(200);
  }
  throw new Error(`the window never showed the renewal ${state}; last: ${last}`);
}

test('安装证书 with the PIN: a new certificate, same key, later expiry, chained to the dev CA root (OpenSSL); the old one gone', async () => {
  // The PIN typed for the QR code is still cached (30 minutes by default): the user clears
  // the cache in 设置 so that 安装证书 asks for it in the dialog again.
  await s.click('[data-testid=nav-settings]');
  await s.click('[data-testid=clear-pin-cache]');
  await s.waitText('[data-testid=settings-message]', (t) => t.includes('已清除缓存的 PIN'), HANG);
  await s.click('[data-testid=nav-renewal]');
  await s.click(`${card()} [data-testid=renewal-install]`);
  await answerPin();
  const result = await s.waitText('[data-testid=renewal-install-result]', (t) => /证书已安装|失败|错误/.test(t), HANG);
  assert.match(result, /证书已安装：序列号 [0-9a-f]+/, result);
  const newSerial = result.match(/序列号 ([0-9a-f]+)/)[1];

  // Read back from the key by the CLI (another process than the window).
  const row = signRow();
  assert.equal(norm(row.serial), norm(newSerial), 'the key holds the certificate the window reported');
  assert.notEqual(norm(row.serial), norm(flow.old.serial));
  const serials = JSON.parse(kb(['--json', 'certs'])).certificates.map((c) => norm(c.serial));
  assert.ok(!serials.includes(norm(flow.old.serial)), 'the old certificate is gone from the key');
  exportSign(file('new.pem'));
  const verified = openssl(['verify', '-vfyopt', DISTID, '-CAfile', join(home, 'data', 'demo-ca', 'root.pem'), file('new.pem')]);
  assert.match(verified, /new\.pem: OK/);
  assert.equal(publicKey(file('new.pem')), publicKey(file('old.pem')), '续期 keeps the key pair');
  assert.ok(notAfter(file('new.pem')) > notAfter(file('old.pem')), 'the new certificate expires later');
  // The install finished: its journal (the old certificate, kept for rollback until the new
  // one read back) is gone.
  const journals = join(home, 'data', 'renewal');
  assert.ok(existsSync(journals), `the journal folder ${journals}`);
  const left = readdirSync(journals).filter((n) => n.startsWith('install-'));
  assert.deepEqual(left, [], 'no install journal left behind');
  // The window shows the new certificate, nothing left to install.
  await s.waitFor(`[data-testid=renewal-cert][data-serial="${newSerial}"]`, HANG);
});
