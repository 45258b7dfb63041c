// Example trading-platform page on the KeyBridge bridge: connect, list the user's
// signing certificates, sign a text (CMS detached signature), verify it. Messages are
// shown in zh-CN by default, English on request; errors use KeyBridge's own messages.
//
// Serve it over http://localhost (or https): KeyBridge refuses file:// pages. From
// bridge/sdk-js after `npm run build`:
//   python3 -m http.server 8080 --bind 127.0.0.1   →   http://localhost:8080/examples/web/
// The first request from a new web origin raises a consent prompt in KeyBridge.

import { ConnectionError, KeyBridgeError, connect, errorInfo, toBase64 } from "../../dist/index.js";

const TEXT = {
  "zh-CN": {
    title: "示例公共资源交易平台 · 投标文件签名",
    intro: "本页通过本机的 KeyBridge 安全客户端（ws://127.0.0.1:17210）使用您的数字证书。口令只在 KeyBridge 自己的窗口中输入，本页永远不会得到它。",
    step1: "1. 连接安全客户端",
    step2: "2. 选择签名证书",
    step3: "3. 签名并验证",
    connect: "连接",
    connecting: "正在连接…",
    connected: "已连接",
    disconnected: "未连接",
    certificate: "签名证书",
    refresh: "刷新",
    text: "待签名内容",
    sign: "签名",
    verify: "验证签名",
    signature: "签名值（PKCS#7 分离式，Base64）",
    noCertificates: "没有可用的签名证书，请插入您的 USB Key 或智能卡",
    signing: "正在签名，请在 KeyBridge 窗口中输入口令…",
    signed: "签名成功",
    verifying: "正在验证…",
    valid: "签名有效",
    invalid: "签名无效",
    signer: "签名者",
    issuer: "颁发者",
    serial: "序列号",
    chain: "证书链",
    trusted: "受信任",
    untrusted: "不受信任",
    not_checked: "未检查",
    signingTime: "签名时间",
    expiring_soon: "临期",
    expired: "过期",
    not_yet_valid: "未生效",
    retriesLeft: (n) => `剩余尝试次数：${n}`,
    code: "错误码",
  },
  en: {
    title: "Example e-procurement platform · bid signing",
    intro: "This page uses your certificates through KeyBridge on this computer (ws://127.0.0.1:17210). The PIN is entered only in KeyBridge's own window; this page never sees it.",
    step1: "1. Connect to KeyBridge",
    step2: "2. Choose a signing certificate",
    step3: "3. Sign and verify",
    connect: "Connect",
    connecting: "Connecting…",
    connected: "Connected",
    disconnected: "Not connected",
    certificate: "Signing certificate",
    refresh: "Refresh",
    text: "Text to sign",
    sign: "Sign",
    verify: "Verify",
    signature: "Signature (detached PKCS#7, base64)",
    noCertificates: "No signing certificate: insert your USB key or smart card",
    signing: "Signing; enter the PIN in the KeyBridge window…",
    signed: "Signed",
    verifying: "Verifying…",
    valid: "The signature is valid",
    invalid: "The signature is NOT valid",
    signer: "Signer",
    issuer: "Issuer",
    serial: "Serial",
    chain: "Chain",
    trusted: "trusted",
    untrusted: "untrusted",
    not_checked: "not checked",
    signingTime: "Signing time",
    expiring_soon: "expiring soon",
    expired: "expired",
    not_yet_valid: "not yet valid",
    retriesLeft: (n) => `${n} tries left`,
    code: "Code",
  },
};

let lang = "zh-CN";
let client;

const $ = (id) => document.getElementById(id);
/** The text for `key` in the current language, falling back to English. */
const t = (key) => TEXT[lang][key] ?? TEXT.en[key] ?? key;

function applyLanguage() {
  document.documentElement.lang = lang;
  for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  $("lang").textContent = lang === "zh-CN" ? "English" : "中文";
  $("status").textContent = t(client && !client.closed ? "connected" : "disconnected");
}

function show(text, ok) {
  const el = $("message");
  el.textContent = text;
  el.className = ok === undefined ? "muted" : ok ? "ok" : "bad";
}

/** An error for people: KeyBridge's message in the page language (English fallback) and its code. */
function showError(e) {
  if (e instanceof KeyBridgeError) {
    const retries = e.retriesLeft !== undefined ? `\n${t("retriesLeft")(e.retriesLeft)}` : "";
    show(`${e.messageFor(lang)}${retries}\n${t("code")}: ${e.code} (${e.name})`, false);
  } else if (e instanceof ConnectionError) {
    show(e.messageFor(lang), false);
  } else {
    show(String(e?.message ?? e), false);
  }
}

/** A KeyBridge error number from a result (verify's `error`, `chain_error`) as a message. */
function codeMessage(code) {
  const info = errorInfo(code);
  return info ? `${info.messages[lang] ?? info.messages.en} (${code})` : String(code);
}

function details(rows) {
  const dl = $("details");
  dl.replaceChildren();
  for (const [k, v] of rows) {
    const dt = document.createElement("dt");
    dt.textContent = k;
    const dd = document.createElement("dd");
    dd.textContent = v;
    dl.append(dt, dd);
  }
}

function setConnected(on) {
  for (const id of ["cert", "refresh", "sign", "verify"]) $(id).disabled = !on;
  $("connect").disabled = on;
  $("status").textContent = t(on ? "connected" : "disconnected");
}

async function loadCertificates() {
  const now = Math.floor(Date.now() / 1000);
  const certs = await client.certificates({ usage: "sign", valid_at: now });
  const select = $("cert");
  select.replaceChildren();
  for (const c of certs) {
    const option = document.createElement("option");
    option.value = c.thumbprint;
    option.dataset.device = c.device;
    const badge = c.status === "valid" ? "" : ` [${t(c.status)}]`;
    option.textContent = `${c.subject}${badge} — ${c.device}`;
    select.append(option);
  }
  if (certs.length === 0) show(t("noCertificates"), false);
}

async function onConnect() {
  $("connect").disabled = true;
  $("status").textContent = t("connecting");
  try {
    // KeyBridge listens on 17210 unless configured otherwise; ?port= overrides it.
    const port = Number(new URLSearchParams(location.search).get("port")) || undefined;
    client = await connect({ port, sdk: "example-trading-platform", sdkVersion: "0.1.0" });
    client.onClose((e) => {
      setConnected(false);
      showError(e);
    });
    setConnected(true);
    show("");
    // Keep the list current when keys are plugged in or pulled out.
    await client.subscribe(["device.added", "device.removed", "certificates.changed"]);
    for (const event of ["device.added", "device.removed", "certificates.changed"]) {
      client.on(event, () => loadCertificates().catch(showError));
    }
    await loadCertificates();
  } catch (e) {
    client = undefined;
    setConnected(false);
    showError(e);
  }
}

function selectedCertificate() {
  const option = $("cert").selectedOptions[0];
  return option ? { thumbprint: option.value, device: option.dataset.device } : undefined;
}

async function onSign() {
  const certificate = selectedCertificate();
  if (!certificate) return show(t("noCertificates"), false);
  $("signature").value = "";
  details([]);
  show(t("signing"));
  try {
    const result = await client.sign({
      certificate,
      input: { data: toBase64($("text").value) },
      format: "cms_detached",
    });
    $("signature").value = result.signature;
    show(`${t("signed")} (${result.hash.toUpperCase()})`, true);
  } catch (e) {
    showError(e);
  }
}

async function onVerify() {
  details([]);
  show(t("verifying"));
  try {
    const r = await client.verify({
      signature: $("signature").value.trim(),
      format: "cms_detached",
      content: { data: toBase64($("text").value) },
    });
    show(r.valid ? t("valid") : `${t("invalid")}: ${codeMessage(r.error)}`, r.valid);
    const rows = [];
    if (r.signer) {
      rows.push([t("signer"), r.signer.subject], [t("issuer"), r.signer.issuer], [t("serial"), r.signer.serial]);
    }
    rows.push([t("chain"), r.chain_error !== undefined ? `${t(r.chain)}: ${codeMessage(r.chain_error)}` : t(r.chain)]);
    if (r.signing_time !== undefined) rows.push([t("signingTime"), new Date(r.signing_time * 1000).toLocaleString(lang)]);
    details(rows);
  } catch (e) {
    showError(e);
  }
}

$("connect").addEventListener("click", onConnect);
$("refresh").addEventListener("click", () => loadCertificates().catch(showError));
$("sign").addEventListener("click", onSign);
$("verify").addEventListener("click", onVerify);
$("lang").addEventListener("click", () => {
  lang = lang === "zh-CN" ? "en" : "zh-CN";
  applyLanguage();
  $("message").textContent = "";
});
applyLanguage();
