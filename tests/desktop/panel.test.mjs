// KeyBridge in a real tray host nobody here wrote: Xfce's panel (Debian's xfce4-panel, its
// Status Tray plugin: the StatusNotifierWatcher and host, and libdbusmenu-gtk3 drawing the
// menu), on the private display and session bus run.sh gives this file. The other desktop
// tests play the host themselves (tray.py); here the icon is found on screen, clicked with
// the pointer, and the menu is worked with the keyboard (XTest, tests/desktop/xwin.py), so
// what is checked is what the panel does with KeyBridge's item: it registers and draws it,
// it reports its menu shown (the core starts the window hidden then) and closed (the core
// ends that window), and 打开 shows the window, painted on the X server.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { mkdirSync, writeFileSync, readFileSync, existsSync, mkdtempSync, realpathSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { spawn, execFileSync } from 'node:child_process';
import { until, bridgeOnFreePort, xwin, PAINTED_COLORS } from './webdriver.mjs';

const bin = process.env.KB_DESKTOP_BIN;
const home = process.env.KB_DESKTOP_HOME;
const XFCONFD = '/usr/lib/x86_64-linux-gnu/xfce4/xfconf/xfconfd';
const PANEL_HEIGHT = 32;

const procs = [];
let app;
let paints = 0;

const gdbus = (...args) => execFileSync('gdbus', ['call', '--session', ...args], { encoding: 'utf8' }).trim();
const hasOwner = (name) =>
  gdbus('--dest', 'org.freedesktop.DBus', '--object-path', '/org/freedesktop/DBus', '--method', 'org.freedesktop.DBus.NameHasOwner', name) === '(true,)';
const alive = (pid) => existsSync(`/proc/${pid}`);

/** The window processes the core started (children running the window binary). */
function windowProcesses() {
  const exe = realpathSync(bin);
  return readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .filter((d) => {
      try {
        const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
        const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
        return ppid === app.pid && realpathSync(`/proc/${d}/exe`) === exe;
      } catch {
        return false;
      }
    })
    .map(Number);
}

/** The items the watcher (the panel) has registered, as "BUS_NAME/PATH". */
function registeredItems() {
  const out = gdbus(
    '--dest', 'org.kde.StatusNotifierWatcher', '--object-path', '/StatusNotifierWatcher',
    '--method', 'org.freedesktop.DBus.Properties.Get', 'org.kde.StatusNotifierWatcher', 'RegisteredStatusNotifierItems',
  );
  return [...out.matchAll(/'([^']+)'/g)].map((m) => m[1]);
}

/** The pid behind a unique bus name. */
const busPid = (name) =>
  Number(
    gdbus('--dest', 'org.freedesktop.DBus', '--object-path', '/org/freedesktop/DBus', '--method', 'org.freedesktop.DBus.GetConnectionUnixProcessID', name)
      .match(/(\d+),?\)$/)[1], // "(uint32 PID,)"
  );

/** The icon in the panel: the middle of what is drawn on the panel's background. */
function icon() {
  const [x0, y0, x1, y1] = xwin('strip', PANEL_HEIGHT).split(' ').map(Number);
  return { x: Math.round((x0 + x1) / 2), y: Math.round((y0 + y1) / 2), w: x1 - x0 + 1, h: y1 - y0 + 1 };
}

function start(cmd, args, env = {}) {
  const p = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'inherit'] });
  procs.push(p);
  return p;
}

before(async () => {
  assert.ok(existsSync(XFCONFD) && existsSync('/usr/bin/xfce4-panel'), 'xfce4-panel is installed (installer/bootstrap.sh)');
  // One panel at the top with the Status Tray plugin alone; its settings (xfconf) in a
  // directory of this test, read by an xfconfd started here (one D-Bus activated would
  // read the bus's environment, not this one).
  const xdg = mkdtempSync(join(tmpdir(), 'kb-panel-'));
  const channel = join(xdg, 'xfce4', 'xfconf', 'xfce-perchannel-xml');
  mkdirSync(channel, { recursive: true });
  writeFileSync(
    join(channel, 'xfce4-panel.xml'),
    `<?xml version="1.0" encoding="UTF-8"?>
<channel name="xfce4-panel" version="1.0">
  <property name="configver" type="int" value="2"/>
  <property name="panels" type="array">
    <value type="int" value="1"/>
    <property name="panel-1" type="empty">
      <property name="position" type="string" value="p=6;x=0;y=0"/>
      <property name="length" type="uint" value="100"/>
      <property name="position-locked" type="bool" value="true"/>
      <property name="size" type="uint" value="${PANEL_HEIGHT}"/>
      <property name="plugin-ids" type="array"><value type="int" value="1"/></property>
    </property>
  </property>
  <property name="plugins" type="empty">
    <property name="plugin-1" type="string" value="systray"/>
  </property>
</channel>
`,
  );
  const env = { XDG_CONFIG_HOME: xdg, XDG_CACHE_HOME: join(xdg, 'cache'), XDG_DATA_HOME: join(xdg, 'data') };
  start(XFCONFD, [], env);
  await until('xfconfd on the bus', () => hasOwner('org.xfce.Xfconf'));
  start('xfce4-panel', [], env);
  await until('the panel is the StatusNotifierWatcher', () => hasOwner('org.kde.StatusNotifierWatcher'));

  await bridgeOnFreePort(home);
  // In the tray from the start, as the login auto-start runs it; `painted` on stdout for
  // each window that paints.
  app = spawn(bin, ['--home', home, '--hidden', '--report-paints'], { stdio: ['ignore', 'pipe', 'inherit'] });
  procs.push(app);
  let buf = '';
  app.stdout.on('data', (d) => {
    buf += d;
    const lines = buf.split('\n');
    buf = lines.pop();
    paints += lines.filter((l) => l === 'painted').length;
  });
});

after(async () => {
  for (const p of procs.reverse()) {
    if (p.exitCode === null && p.signalCode === null) {
      p.kill();
      await new Promise((r) => p.once('exit', r));
    }
  }
});

test("the panel registers KeyBridge's item and draws its icon", async () => {
  const mine = await until("the panel lists KeyBridge's item", () =>
    registeredItems().find((i) => {
      try {
        return busPid(i.slice(0, i.indexOf('/'))) === app.pid;
      } catch {
        return false;
      }
    }),
  );
  assert.match(mine, /^:[\d.]+\//, `a unique bus name and an object path: ${mine}`);
  const ic = await until('an icon drawn in the panel', () => {
    try {
      return icon();
    } catch {
      return null;
    }
  });
  assert.ok(ic.w >= 8 && ic.w <= PANEL_HEIGHT && ic.h >= 8 && ic.h <= PANEL_HEIGHT, `an icon-sized drawing: ${JSON.stringify(ic)}`);
  assert.deepEqual(windowProcesses(), [], 'no window while in the tray');
});

test('clicking the icon shows the menu; the panel reports it and the window starts hidden; 打开 shows it painted', async (t) => {
  const ic = icon();
  xwin('click', ic.x, ic.y);
  // libdbusmenu-gtk3 tells the item its menu is shown: the core starts the window then.
  const [warm] = await until('the window process starts when the menu opens', () => {
    const w = windowProcesses();
    return w.length === 1 && w;
  });
  assert.equal(Number(xwin('mapped', app.pid)), 0, 'nothing on screen while the menu is open');
  // The first item (the media count) is disabled: Down selects 打开 KeyBridge.
  const before = paints;
  const t0 = Date.now();
  xwin('keys', 'Down', 'Return');
  await until('the window reports its first paint', () => paints > before);
  const ms = Date.now() - t0;
  await until('the window is on screen', () => Number(xwin('mapped', app.pid)) === 1);
  await until('the X server shows the page in the window', () => Number(xwin('colors', app.pid)) >= PAINTED_COLORS);
  assert.deepEqual(windowProcesses(), [warm], 'the window the menu started is the one shown');
  t.diagnostic(`through Xfce's panel: 打开 pressed to the painted window: ${ms} ms (the window started when the menu opened)`);
});

test('a menu closed without 打开 ends the window it started', async () => {
  // Close the shown window as a user does; the core stays in the tray.
  xwin('close', app.pid);
  await until('the window process ends', () => windowProcesses().length === 0, 60000);
  xwin('click', icon().x, icon().y);
  const [unused] = await until('the menu opening starts a window', () => {
    const w = windowProcesses();
    return w.length === 1 && w;
  });
  xwin('keys', 'Escape');
  await until(`the unused window process ends (${unused})`, () => !alive(unused), 60000);
  assert.ok(alive(app.pid), 'KeyBridge stays in the tray');
  assert.equal(Number(xwin('count', app.pid)), 0, 'no window');
});
