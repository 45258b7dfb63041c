// Generated from Rust by bridge/kb-bridge-protocol/examples/typescript.rs: do not edit.
// Regenerate with
//   cargo run -q -p kb-bridge-protocol --example typescript > bridge/sdk-js/src/generated.ts
// `cargo test -p kb-bridge-protocol --test typescript` fails when this file is stale.

/** The schema version this SDK speaks; sent in `hello`. */
export const SCHEMA_VERSION = 1;
/** The oldest client schema version a server still serves. */
export const MIN_SCHEMA_VERSION = 1;
/** Default TCP port on 127.0.0.1 (settings key `bridge_port`). */
export const DEFAULT_PORT = 17210;
/** Default cap on one text frame, in bytes. */
export const DEFAULT_MAX_MESSAGE_BYTES = 1048576;
/** Default cap on one binary frame's payload, in bytes. */
export const DEFAULT_MAX_CHUNK_BYTES = 262144;
/** Longest string request id, in characters. */
export const MAX_ID_LEN = 128;
/** Binary frame format version (header byte 0). */
export const FRAME_VERSION = 1;
/** Binary frame header length in bytes. */
export const FRAME_HEADER_LEN = 12;
/** Frame flag: last frame of the stream. */
export const FLAG_FIN = 1;
/** Frame flag: the sender abandons the stream. */
export const FLAG_ABORT = 2;

/** Every method, in document order. */
export const METHODS = [
  "hello",
  "devices.list",
  "certificates.list",
  "certificates.get",
  "sign",
  "verify",
  "encrypt",
  "decrypt",
  "stream.open",
  "stream.close",
  "cancel",
  "subscribe",
  "unsubscribe",
] as const;
/** One of {@link METHODS}. */
export type MethodName = (typeof METHODS)[number];

/** Capability names announced in `hello`. */
export const CAPABILITIES = [
  "sign.raw",
  "sign.cms",
  "verify",
  "encrypt.sm2_raw",
  "encrypt.cms_envelope",
  "encrypt.cms_envelope.signer",
  "streams",
  "events",
] as const;
/** One of {@link CAPABILITIES}. */
export type Capability = (typeof CAPABILITIES)[number];

/** Every server notification (event) name. */
export const EVENTS = [
  "device.added",
  "device.removed",
  "certificates.changed",
  "device.offline",
  "device.online",
  "operation.status",
  "progress",
] as const;
/** One of {@link EVENTS}. */
export type EventName = (typeof EVENTS)[number];

/** Events a connection subscribes to (`progress` needs no subscription). */
export const SUBSCRIBABLE_EVENTS = [
  "device.added",
  "device.removed",
  "certificates.changed",
  "device.offline",
  "device.online",
] as const;
/** One of {@link SUBSCRIBABLE_EVENTS}. */
export type EventKind = (typeof SUBSCRIBABLE_EVENTS)[number];

/** How a medium is reached (`DeviceInfo.transport`). */
export const TRANSPORTS = [
  "file",
  "pcsc",
  "pkcs11",
  "skf",
  "hid",
  "ble",
  "phone",
] as const;
/** One of {@link TRANSPORTS}. */
export type TransportKind = (typeof TRANSPORTS)[number];

/**
 * Every KeyBridge error code by stable name: `error.code` on the wire is `code`
 * (positive), `error.data.name` is the key. Numbers never change meaning.
 */
export const ERROR_CODES = {
  malformed_input: { code: 1001, category: "input", messages: { "zh-CN": "输入数据格式错误", en: "malformed input" } },
  unsupported_algorithm: { code: 1002, category: "input", messages: { "zh-CN": "不支持的算法", en: "unsupported algorithm" } },
  invalid_key: { code: 1003, category: "input", messages: { "zh-CN": "密钥无效", en: "invalid key" } },
  invalid_parameter: { code: 1004, category: "input", messages: { "zh-CN": "参数无效", en: "invalid parameter" } },
  input_too_large: { code: 1005, category: "input", messages: { "zh-CN": "输入数据过大", en: "input too large" } },
  signature_invalid: { code: 2001, category: "crypto", messages: { "zh-CN": "签名验证失败", en: "signature verification failed" } },
  decryption_failed: { code: 2002, category: "crypto", messages: { "zh-CN": "解密失败：密钥不匹配或密文已被篡改", en: "decryption failed: wrong key or altered ciphertext" } },
  integrity_check_failed: { code: 2003, category: "crypto", messages: { "zh-CN": "完整性校验失败", en: "integrity check failed" } },
  random_failed: { code: 2004, category: "system", messages: { "zh-CN": "随机数生成失败", en: "random number generator failed" } },
  certificate_malformed: { code: 3001, category: "certificate", messages: { "zh-CN": "证书格式错误", en: "malformed certificate" } },
  certificate_expired: { code: 3002, category: "certificate", messages: { "zh-CN": "证书已过期", en: "certificate has expired" } },
  certificate_not_yet_valid: { code: 3003, category: "certificate", messages: { "zh-CN": "证书尚未生效", en: "certificate is not yet valid" } },
  unknown_issuer: { code: 3004, category: "certificate", messages: { "zh-CN": "找不到受信任的颁发者", en: "unknown or untrusted issuer" } },
  certificate_signature_invalid: { code: 3005, category: "certificate", messages: { "zh-CN": "证书签名无效", en: "certificate signature is invalid" } },
  issuer_not_ca: { code: 3006, category: "certificate", messages: { "zh-CN": "颁发者不是 CA 证书", en: "issuer is not a CA" } },
  chain_too_long: { code: 3007, category: "certificate", messages: { "zh-CN": "证书链过长", en: "certificate chain too long" } },
  certificate_usage_mismatch: { code: 3008, category: "certificate", messages: { "zh-CN": "证书用途不符", en: "certificate not valid for this use" } },
  csr_invalid: { code: 3010, category: "certificate", messages: { "zh-CN": "证书请求无效", en: "invalid certificate request" } },
  cms_malformed: { code: 3020, category: "input", messages: { "zh-CN": "PKCS#7/CMS 数据格式错误", en: "malformed PKCS#7/CMS data" } },
  cms_digest_mismatch: { code: 3021, category: "crypto", messages: { "zh-CN": "签名原文已被修改", en: "signed content does not match its digest" } },
  cms_no_recipient: { code: 3022, category: "crypto", messages: { "zh-CN": "数字信封中没有与此证书匹配的接收者", en: "no matching recipient in the envelope" } },
  cms_content_missing: { code: 3023, category: "input", messages: { "zh-CN": "分离式签名缺少原文", en: "detached signature needs its content" } },
  cms_signature_non_conformant: { code: 3024, category: "crypto", messages: { "zh-CN": "签名不符合 GM/T 0009/0010 规范（摘要计算方式非标准）", en: "signature is not GM/T 0009/0010 conformant (non-standard digest)" } },
  certificate_revoked: { code: 3030, category: "certificate", messages: { "zh-CN": "证书已被吊销", en: "the certificate has been revoked" } },
  revocation_unknown: { code: 3031, category: "certificate", messages: { "zh-CN": "无法确认证书是否已被吊销", en: "the certificate's revocation status is unknown" } },
  crl_malformed: { code: 3032, category: "certificate", messages: { "zh-CN": "证书吊销列表（CRL）格式错误", en: "malformed certificate revocation list (CRL)" } },
  crl_signature_invalid: { code: 3033, category: "certificate", messages: { "zh-CN": "证书吊销列表（CRL）的签名无效", en: "the CRL's signature is invalid" } },
  ocsp_malformed: { code: 3034, category: "certificate", messages: { "zh-CN": "OCSP 数据格式错误", en: "malformed OCSP data" } },
  ocsp_signature_invalid: { code: 3035, category: "certificate", messages: { "zh-CN": "OCSP 响应的签名无效或签发者未获授权", en: "the OCSP response's signature is invalid or its signer is not authorised" } },
  wrong_pin: { code: 4001, category: "token", messages: { "zh-CN": "口令错误", en: "wrong PIN" } },
  pin_locked: { code: 4002, category: "token", messages: { "zh-CN": "口令已锁定，请使用管理员口令解锁", en: "PIN is locked; unblock it with the SO PIN" } },
  device_removed: { code: 4003, category: "token", messages: { "zh-CN": "介质已拔出", en: "the key medium was removed" } },
  unknown_device: { code: 4004, category: "token", messages: { "zh-CN": "找不到该介质", en: "unknown device" } },
  not_found: { code: 4005, category: "token", messages: { "zh-CN": "找不到指定的容器或证书", en: "container or certificate not found" } },
  pin_policy: { code: 4006, category: "token", messages: { "zh-CN": "新口令不符合要求", en: "the new PIN does not meet the policy" } },
  already_exists: { code: 4007, category: "token", messages: { "zh-CN": "同名容器或印章已存在", en: "a container or seal with that name already exists" } },
  token_corrupt: { code: 4008, category: "token", messages: { "zh-CN": "介质数据已损坏", en: "the key medium's data is corrupt" } },
  certificate_key_mismatch: { code: 4009, category: "token", messages: { "zh-CN": "证书与密钥对不匹配", en: "the certificate does not match the key pair" } },
  not_supported: { code: 4010, category: "token", messages: { "zh-CN": "该介质不支持此操作", en: "this medium does not support the operation" } },
  cancelled: { code: 4011, category: "token", messages: { "zh-CN": "用户已取消", en: "cancelled by the user" } },
  device_busy: { code: 4012, category: "token", messages: { "zh-CN": "介质正忙", en: "the key medium is busy" } },
  card_error: { code: 4013, category: "token", messages: { "zh-CN": "卡片返回错误", en: "the card reported an error" } },
  module_load_failed: { code: 4014, category: "token", messages: { "zh-CN": "无法加载介质驱动模块", en: "the key medium's driver module could not be loaded" } },
  medium_offline: { code: 4015, category: "token", messages: { "zh-CN": "介质已离线", en: "the key medium is offline" } },
  operation_timed_out: { code: 4016, category: "token", messages: { "zh-CN": "操作超时", en: "the operation timed out" } },
  outcome_unknown: { code: 4017, category: "token", messages: { "zh-CN": "介质未返回结果，操作可能已执行也可能未执行", en: "the key medium did not answer: the operation may or may not have been carried out" } },
  medium_signature_invalid: { code: 4018, category: "token", messages: { "zh-CN": "介质返回的签名验证失败（驱动模块可能有误）", en: "the key medium returned a signature that does not verify (its driver module may be faulty)" } },
  medium_result_invalid: { code: 4019, category: "token", messages: { "zh-CN": "介质返回的解密结果无效", en: "the key medium returned an invalid decryption result" } },
  refused_on_medium: { code: 4020, category: "token", messages: { "zh-CN": "用户在介质（手机）上拒绝了此操作", en: "the user refused the operation on the key medium (phone)" } },
  aborted_on_medium: { code: 4021, category: "token", messages: { "zh-CN": "介质（手机）已离开等待确认页面，操作已中止", en: "the key medium (phone) left its confirmation screen; the operation was aborted" } },
  ble_frame_invalid: { code: 4030, category: "token", messages: { "zh-CN": "蓝牙Key发来的数据帧格式错误", en: "the BLE key sent a malformed frame" } },
  ble_key_error: { code: 4031, category: "token", messages: { "zh-CN": "蓝牙Key报告错误", en: "the BLE key reported an error" } },
  bluetooth_unavailable: { code: 4032, category: "token", messages: { "zh-CN": "蓝牙不可用", en: "Bluetooth is unavailable (no adapter, switched off, or the Bluetooth service is not running)" } },
  ble_service_invalid: { code: 4033, category: "token", messages: { "zh-CN": "该蓝牙设备不是受支持的蓝牙Key（服务不符合要求）", en: "the Bluetooth device is not a supported BLE key (its service is missing or not as documented)" } },
  enveloped_key_invalid: { code: 4040, category: "token", messages: { "zh-CN": "加密密钥信封无效（格式错误或不是发给本容器签名密钥的），未导入介质", en: "the enveloped encryption key is invalid (malformed, or not sealed to this container's signing key); nothing was imported" } },
  host_rejected: { code: 5001, category: "bridge", messages: { "zh-CN": "拒绝连接：Host 不是本机地址", en: "connection refused: Host is not a loopback address" } },
  origin_rejected: { code: 5002, category: "bridge", messages: { "zh-CN": "拒绝连接：该网页来源未获授权", en: "connection refused: this web origin is not allowed" } },
  client_unauthenticated: { code: 5003, category: "bridge", messages: { "zh-CN": "客户端未认证：缺少有效的客户端密钥", en: "client not authenticated: missing or wrong client secret" } },
  consent_denied: { code: 5004, category: "bridge", messages: { "zh-CN": "用户拒绝了该应用的访问请求", en: "the user denied this client access" } },
  schema_version_unsupported: { code: 5005, category: "bridge", messages: { "zh-CN": "协议版本不受支持，请升级客户端或安全客户端", en: "protocol schema version not supported; update the client or KeyBridge" } },
  hello_required: { code: 5006, category: "bridge", messages: { "zh-CN": "请先调用 hello 完成协商", en: "call hello first" } },
  too_many_requests: { code: 5007, category: "bridge", messages: { "zh-CN": "请求过多，请稍后再试", en: "too many requests; try again later" } },
  request_timeout: { code: 5008, category: "bridge", messages: { "zh-CN": "请求超时", en: "request timed out" } },
  bridge_unavailable: { code: 5012, category: "bridge", messages: { "zh-CN": "本地签名服务未能启动（端口可能已被占用）", en: "the local signing bridge could not start (is its port in use?)" } },
  request_cancelled: { code: 5009, category: "bridge", messages: { "zh-CN": "请求已被客户端取消", en: "request cancelled by the client" } },
  unknown_stream: { code: 5010, category: "bridge", messages: { "zh-CN": "数据流不存在或已关闭", en: "unknown or closed stream" } },
  stream_frame_invalid: { code: 5011, category: "bridge", messages: { "zh-CN": "数据流分片无效或顺序错误", en: "invalid or out-of-sequence stream frame" } },
  local_network_access_required: { code: 5013, category: "bridge", messages: { "zh-CN": "浏览器阻止了网页连接本机安全客户端：请在地址栏的网站权限中允许“本地网络访问”，或请管理员将本网站加入浏览器策略", en: "the browser blocked this page from reaching KeyBridge on this computer: allow \"local network access\" in the site's permissions, or ask your administrator to add this site to the browser policy" } },
  local_network_access_denied: { code: 5014, category: "bridge", messages: { "zh-CN": "已拒绝本网站的“本地网络访问”权限，网页无法连接本机安全客户端：请在网站权限中重新允许", en: "this site was denied \"local network access\", so the page cannot reach KeyBridge: allow it again in the site's permissions" } },
  extension_host_not_installed: { code: 5020, category: "bridge", messages: { "zh-CN": "浏览器扩展无法启动本机安全客户端：请重新安装安全客户端，或运行 keybridge browser install-host", en: "the browser extension cannot start KeyBridge on this computer: reinstall KeyBridge, or run keybridge browser install-host" } },
  extension_host_exited: { code: 5021, category: "bridge", messages: { "zh-CN": "浏览器扩展与本机安全客户端的连接意外中断", en: "the browser extension's connection to KeyBridge ended unexpectedly (the native host exited)" } },
  extension_message_too_large: { code: 5022, category: "bridge", messages: { "zh-CN": "经浏览器扩展传递的消息过大", en: "a message through the browser extension is larger than native messaging allows" } },
  native_host_bridge_unreachable: { code: 5023, category: "bridge", messages: { "zh-CN": "安全客户端未运行：请启动 KeyBridge 后重试", en: "KeyBridge is not running: start it and try again" } },
  phone_message_invalid: { code: 6050, category: "phone_link", messages: { "zh-CN": "手机发来的消息格式错误或超出限制", en: "a message on the phone link is malformed or exceeds a limit" } },
  phone_protocol_unsupported: { code: 6051, category: "phone_link", messages: { "zh-CN": "手机端协议版本不受支持，请升级手机应用或安全客户端", en: "the phone speaks an unsupported message protocol version; update the phone app or KeyBridge" } },
  pairing_offer_invalid: { code: 6001, category: "phone_link", messages: { "zh-CN": "配对二维码无效", en: "the pairing QR code is invalid" } },
  pairing_offer_version: { code: 6002, category: "phone_link", messages: { "zh-CN": "配对二维码版本不受支持，请升级手机或电脑端", en: "the pairing QR code's version is not supported; update the phone or the PC" } },
  pairing_offer_expired: { code: 6003, category: "phone_link", messages: { "zh-CN": "配对二维码已过期，请刷新后重新扫描", en: "the pairing QR code has expired; refresh it and scan again" } },
  pairing_offer_used: { code: 6004, category: "phone_link", messages: { "zh-CN": "配对二维码已被使用，请刷新后重新扫描", en: "the pairing QR code was already used; refresh it and scan again" } },
  pairing_offer_unknown: { code: 6005, category: "phone_link", messages: { "zh-CN": "电脑端没有该配对二维码（已刷新或已取消）", en: "the PC has no such pairing QR code (it was refreshed or cancelled)" } },
  pairing_proof_failed: { code: 6006, category: "phone_link", messages: { "zh-CN": "配对验证失败：手机未持有该二维码的密钥", en: "pairing failed: the phone does not hold the QR code's secret" } },
  link_handshake_failed: { code: 6007, category: "phone_link", messages: { "zh-CN": "手机连接握手失败", en: "the phone link handshake failed" } },
  link_handshake_timeout: { code: 6008, category: "phone_link", messages: { "zh-CN": "手机连接握手超时", en: "the phone link handshake timed out" } },
  phone_not_paired: { code: 6009, category: "phone_link", messages: { "zh-CN": "该手机未与本机配对，请扫码配对", en: "this phone is not paired with this PC; pair it by scanning a QR code" } },
  phone_revoked: { code: 6010, category: "phone_link", messages: { "zh-CN": "该手机的配对已被撤销", en: "this phone's pairing was revoked" } },
  pairing_rejected: { code: 6011, category: "phone_link", messages: { "zh-CN": "电脑端拒绝了该手机的配对", en: "the pairing was rejected on the PC" } },
  pairing_not_confirmed: { code: 6012, category: "phone_link", messages: { "zh-CN": "未在规定时间内在电脑端确认配对", en: "the pairing was not confirmed on the PC in time" } },
  link_integrity: { code: 6013, category: "phone_link", messages: { "zh-CN": "手机连接数据校验失败（被篡改、重放或乱序），连接已断开", en: "a phone link frame failed authentication (tampered, replayed, reordered or truncated); the link was closed" } },
  link_frame_too_large: { code: 6014, category: "phone_link", messages: { "zh-CN": "手机连接数据帧过大", en: "a phone link frame or message is too large" } },
  link_protocol: { code: 6015, category: "phone_link", messages: { "zh-CN": "手机连接协议错误", en: "the peer broke the phone link protocol" } },
  link_peer_timeout: { code: 6016, category: "phone_link", messages: { "zh-CN": "手机连接已超时（对端无响应）", en: "the phone link timed out: the peer stopped answering" } },
  link_lost: { code: 6017, category: "phone_link", messages: { "zh-CN": "手机连接已中断", en: "the phone link was lost" } },
  link_busy: { code: 6018, category: "phone_link", messages: { "zh-CN": "电脑端连接过多，请稍后再试", en: "the PC is busy with too many phone connections; try again" } },
  link_unreachable: { code: 6019, category: "phone_link", messages: { "zh-CN": "无法连接到电脑（局域网与中继均不可达）", en: "could not reach the PC (neither directly nor through the relay)" } },
  link_listen_failed: { code: 6020, category: "phone_link", messages: { "zh-CN": "无法打开手机连接端口", en: "could not open the phone link's listening port" } },
  link_no_endpoint: { code: 6021, category: "phone_link", messages: { "zh-CN": "没有可供手机连接的地址（请打开局域网端口或配置中继）", en: "no endpoint is open for phones (open the LAN port or configure a relay)" } },
  pairing_store_failed: { code: 6022, category: "phone_link", messages: { "zh-CN": "无法读写已配对手机的记录", en: "the paired phones' records could not be read or written" } },
  link_closed_by_peer: { code: 6023, category: "phone_link", messages: { "zh-CN": "对端关闭了手机连接", en: "the peer closed the phone link" } },
  relay_endpoint_invalid: { code: 6040, category: "phone_link", messages: { "zh-CN": "中继地址无效", en: "invalid relay endpoint" } },
  relay_unreachable: { code: 6041, category: "phone_link", messages: { "zh-CN": "无法连接中继服务器", en: "the relay server could not be reached" } },
  relay_refused: { code: 6042, category: "phone_link", messages: { "zh-CN": "中继服务器拒绝了连接", en: "the relay server refused the connection" } },
  relay_payload_limit: { code: 6043, category: "phone_link", messages: { "zh-CN": "中继服务器的消息大小上限过小", en: "the relay server's message size limit is too small" } },
  relay_lost: { code: 6044, category: "phone_link", messages: { "zh-CN": "与中继服务器的连接已断开", en: "the connection to the relay server was lost" } },
  relay_peer_timeout: { code: 6045, category: "phone_link", messages: { "zh-CN": "对方未在规定时间内连接中继", en: "the other end did not reach the relay in time" } },
  relay_frames_lost: { code: 6046, category: "phone_link", messages: { "zh-CN": "中继丢失了数据，需重新连接", en: "frames were lost on the relay; reconnect" } },
  relay_peer_left: { code: 6047, category: "phone_link", messages: { "zh-CN": "对方已离开中继通道", en: "the other end left the relay tunnel" } },
  ca_unreachable: { code: 7001, category: "ca", messages: { "zh-CN": "无法连接证书颁发机构（CA）服务器，请检查网络", en: "could not reach the certificate authority's server; check the network" } },
  ca_timed_out: { code: 7002, category: "ca", messages: { "zh-CN": "CA 服务器响应超时，请稍后再试", en: "the certificate authority's server did not answer in time; try again later" } },
  ca_response_invalid: { code: 7003, category: "ca", messages: { "zh-CN": "CA 服务器返回的内容无效", en: "the certificate authority's server sent an invalid answer" } },
  ca_refused: { code: 7004, category: "ca", messages: { "zh-CN": "CA 拒绝了该请求", en: "the certificate authority refused the request" } },
  binding_token_invalid: { code: 7005, category: "ca", messages: { "zh-CN": "绑定二维码无效或已被使用", en: "the binding QR code is invalid or was already used" } },
  binding_expired: { code: 7006, category: "ca", messages: { "zh-CN": "绑定二维码已过期，请重新获取", en: "the binding QR code has expired; get a new one" } },
  binding_proof_invalid: { code: 7007, category: "ca", messages: { "zh-CN": "绑定证明签名无效：证书与介质中的密钥不匹配", en: "the binding proof does not verify with the certificate's key" } },
  renewal_not_approved: { code: 7008, category: "ca", messages: { "zh-CN": "该证书的续期申请尚未审核通过", en: "the renewal of this certificate has not been approved" } },
  enrolment_refused: { code: 7009, category: "ca", messages: { "zh-CN": "CA 拒绝签发证书", en: "the certificate authority refused to issue the certificate" } },
  enrolment_pending: { code: 7010, category: "ca", messages: { "zh-CN": "证书正在签发中，请稍后再试", en: "the certificate is being issued; try again later" } },
  new_certificate_invalid: { code: 7011, category: "ca", messages: { "zh-CN": "CA 下发的新证书未通过检查，未写入介质", en: "the new certificate failed its checks and was not installed" } },
  install_rolled_back: { code: 7012, category: "ca", messages: { "zh-CN": "证书安装失败，已恢复原证书", en: "installing the certificate failed; the previous certificate was restored" } },
  install_incomplete: { code: 7013, category: "ca", messages: { "zh-CN": "证书安装未完成，请重新插入介质后再次安装", en: "the certificate install did not complete; plug the key in again and retry the install" } },
  ca_not_configured: { code: 7014, category: "ca", messages: { "zh-CN": "未配置证书颁发机构（CA）", en: "no certificate authority is configured" } },
  multiple_media_present: { code: 7015, category: "ca", messages: { "zh-CN": "检测到多个介质，续期时请只插入一个", en: "more than one key is plugged in; plug in only the key to renew" } },
  ca_not_found: { code: 7016, category: "ca", messages: { "zh-CN": "CA 未找到该证书或申请", en: "the certificate authority does not know this certificate or application" } },
  ca_api_version_unsupported: { code: 7017, category: "ca", messages: { "zh-CN": "CA 服务接口版本不受支持", en: "the certificate authority's API version is not supported" } },
  io: { code: 9001, category: "system", messages: { "zh-CN": "读写失败", en: "I/O error" } },
  config_invalid: { code: 9002, category: "system", messages: { "zh-CN": "配置文件无效", en: "invalid settings file" } },
  network: { code: 9003, category: "system", messages: { "zh-CN": "无法连接服务器，请检查网络", en: "could not reach the server; check the network" } },
  update_manifest_invalid: { code: 9004, category: "system", messages: { "zh-CN": "更新服务器返回的信息无效", en: "the update server's answer is not a valid update manifest" } },
  update_url_missing: { code: 9005, category: "system", messages: { "zh-CN": "未配置更新地址", en: "no update URL is configured" } },
  update_signature_invalid: { code: 9006, category: "system", messages: { "zh-CN": "更新信息的签名无效，已拒绝（可能被篡改）", en: "the update manifest's signature is missing or invalid: refused (it may have been tampered with)" } },
  autostart_unavailable: { code: 9010, category: "system", messages: { "zh-CN": "无法设置登录时自动启动", en: "starting KeyBridge at login could not be set up" } },
  window_unauthenticated: { code: 9020, category: "system", messages: { "zh-CN": "拒绝了未经认证的窗口连接", en: "a window connection without KeyBridge's token was refused" } },
  window_link_lost: { code: 9021, category: "system", messages: { "zh-CN": "窗口与 KeyBridge 后台服务的连接已断开", en: "the window lost its link to KeyBridge's background service" } },
  internal: { code: 9999, category: "system", messages: { "zh-CN": "内部错误", en: "internal error" } },
} as const;

/** The four standard JSON-RPC failures (negative codes), by stable name. */
export const PROTOCOL_ERRORS = {
  parse_error: { code: -32700, messages: { "zh-CN": "消息不是有效的 JSON", en: "parse error: not valid JSON" } },
  invalid_request: { code: -32600, messages: { "zh-CN": "请求格式无效", en: "invalid request" } },
  method_not_found: { code: -32601, messages: { "zh-CN": "方法不存在", en: "method not found" } },
  invalid_params: { code: -32602, messages: { "zh-CN": "参数无效", en: "invalid params" } },
} as const;

/** A KeyBridge error name (positive code). */
export type KeyBridgeErrorName = keyof typeof ERROR_CODES;
/** A JSON-RPC protocol error name (negative code). */
export type ProtocolErrorName = keyof typeof PROTOCOL_ERRORS;
/** Any stable error name a response can carry in `error.data.name`. */
export type ErrorName = KeyBridgeErrorName | ProtocolErrorName;
