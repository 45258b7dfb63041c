use serde::{Deserialize, Serialize};
use std::fmt;

/// Language of a human-readable message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Lang {
    /// Simplified Chinese, the default UI language.
    #[default]
    #[serde(rename = "zh-CN")]
    ZhCn,
    /// English.
    #[serde(rename = "en")]
    En,
}

/// Whose fault an error is, so callers can decide between "fix your input",
/// "check the key/certificate" and "report a bug".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// The caller sent something malformed or unsupported.
    Input,
    /// A cryptographic check failed (bad signature, wrong key, tampered data).
    Crypto,
    /// A certificate or chain problem.
    Certificate,
    /// A key medium problem: PIN, device, container.
    Token,
    /// The local bridge refused or could not complete a client's request
    /// (handshake, consent, limits, streams).
    Bridge,
    /// The phone link (a phone acting as the PC's key): pairing QR, handshake, encrypted
    /// channel, relay.
    PhoneLink,
    /// A certificate authority: binding, renewal status, enrolment (EST), certificate install.
    Ca,
    /// Local I/O or an internal failure.
    System,
}

macro_rules! error_codes {
    ($( $(#[$doc:meta])* $name:ident = $num:literal, $slug:literal, $cat:ident, $zh:literal, $en:literal; )*) => {
        /// Stable error codes. The numbers and names never change meaning once
        /// released; new codes are only ever appended.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum ErrorCode {
            $( $(#[$doc])* $name, )*
        }

        impl ErrorCode {
            /// Every code, in table order.
            pub const ALL: &'static [ErrorCode] = &[ $( ErrorCode::$name, )* ];

            /// The stable number.
            pub const fn number(self) -> u32 {
                match self { $( ErrorCode::$name => $num, )* }
            }

            /// The stable snake_case name.
            pub const fn name(self) -> &'static str {
                match self { $( ErrorCode::$name => $slug, )* }
            }

            /// Whose fault it is.
            pub const fn category(self) -> Category {
                match self { $( ErrorCode::$name => Category::$cat, )* }
            }

            /// Human message in the given language. Never contains secrets:
            /// these are fixed strings.
            pub const fn message(self, lang: Lang) -> &'static str {
                match (self, lang) {
                    $( (ErrorCode::$name, Lang::ZhCn) => $zh,
                       (ErrorCode::$name, Lang::En) => $en, )*
                }
            }

            /// Look a code up by its number.
            pub fn from_number(n: u32) -> Option<Self> {
                Self::ALL.iter().copied().find(|c| c.number() == n)
            }

            /// Look a code up by its name.
            pub fn from_name(s: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|c| c.name() == s)
            }
        }
    };
}

error_codes! {
    // 1xxx: the caller's input
    /// Input could not be parsed (bad DER/PEM/hex/length).
    MalformedInput = 1001, "malformed_input", Input, "输入数据格式错误", "malformed input";
    /// Algorithm or parameter combination is not supported.
    UnsupportedAlgorithm = 1002, "unsupported_algorithm", Input, "不支持的算法", "unsupported algorithm";
    /// Key material is invalid (wrong length, not on curve, zero scalar).
    InvalidKey = 1003, "invalid_key", Input, "密钥无效", "invalid key";
    /// A parameter is out of range (IV length, tag length, ID too long).
    InvalidParameter = 1004, "invalid_parameter", Input, "参数无效", "invalid parameter";
    /// Input exceeds a size limit.
    InputTooLarge = 1005, "input_too_large", Input, "输入数据过大", "input too large";

    // 2xxx: cryptographic checks
    /// A signature did not verify.
    SignatureInvalid = 2001, "signature_invalid", Crypto, "签名验证失败", "signature verification failed";
    /// Decryption failed: wrong key, or the ciphertext was altered.
    DecryptionFailed = 2002, "decryption_failed", Crypto, "解密失败：密钥不匹配或密文已被篡改", "decryption failed: wrong key or altered ciphertext";
    /// An authentication tag or padding check failed.
    IntegrityCheckFailed = 2003, "integrity_check_failed", Crypto, "完整性校验失败", "integrity check failed";
    /// The random number generator failed.
    RandomFailed = 2004, "random_failed", System, "随机数生成失败", "random number generator failed";

    // 3xxx: certificates, chains, CMS
    /// The certificate could not be parsed.
    CertificateMalformed = 3001, "certificate_malformed", Certificate, "证书格式错误", "malformed certificate";
    /// The certificate has expired.
    CertificateExpired = 3002, "certificate_expired", Certificate, "证书已过期", "certificate has expired";
    /// The certificate is not valid yet.
    CertificateNotYetValid = 3003, "certificate_not_yet_valid", Certificate, "证书尚未生效", "certificate is not yet valid";
    /// No trusted issuer could be found for the chain.
    UnknownIssuer = 3004, "unknown_issuer", Certificate, "找不到受信任的颁发者", "unknown or untrusted issuer";
    /// A certificate's signature does not verify with its issuer's key.
    CertificateSignatureInvalid = 3005, "certificate_signature_invalid", Certificate, "证书签名无效", "certificate signature is invalid";
    /// An issuer in the chain is not allowed to issue certificates.
    IssuerNotCa = 3006, "issuer_not_ca", Certificate, "颁发者不是 CA 证书", "issuer is not a CA";
    /// The chain is longer than allowed or loops.
    ChainTooLong = 3007, "chain_too_long", Certificate, "证书链过长", "certificate chain too long";
    /// The certificate may not be used for this purpose (key usage).
    CertificateUsageMismatch = 3008, "certificate_usage_mismatch", Certificate, "证书用途不符", "certificate not valid for this use";
    /// A PKCS#10 request could not be parsed or its signature is wrong.
    CsrInvalid = 3010, "csr_invalid", Certificate, "证书请求无效", "invalid certificate request";
    /// A CMS/PKCS#7 structure could not be parsed.
    CmsMalformed = 3020, "cms_malformed", Input, "PKCS#7/CMS 数据格式错误", "malformed PKCS#7/CMS data";
    /// The CMS content digest does not match the signed attributes.
    CmsDigestMismatch = 3021, "cms_digest_mismatch", Crypto, "签名原文已被修改", "signed content does not match its digest";
    /// No recipient in an envelope matches the given certificate/key.
    CmsNoRecipient = 3022, "cms_no_recipient", Crypto, "数字信封中没有与此证书匹配的接收者", "no matching recipient in the envelope";
    /// Detached signature verified without its content.
    CmsContentMissing = 3023, "cms_content_missing", Input, "分离式签名缺少原文", "detached signature needs its content";
    /// A CMS signature verifies only over a non-standard digest (e.g. SM3 without ZA, or
    /// over the whole ContentInfo): not GM/T 0009/0010 conformant, so refused.
    CmsSignatureNonConformant = 3024, "cms_signature_non_conformant", Crypto, "签名不符合 GM/T 0009/0010 规范（摘要计算方式非标准）", "signature is not GM/T 0009/0010 conformant (non-standard digest)";
    /// The certificate was revoked (date and reason in the error data).
    CertificateRevoked = 3030, "certificate_revoked", Certificate, "证书已被吊销", "the certificate has been revoked";
    /// Whether the certificate was revoked could not be established (offline, stale or
    /// unverifiable revocation data); never treated as "not revoked".
    RevocationUnknown = 3031, "revocation_unknown", Certificate, "无法确认证书是否已被吊销", "the certificate's revocation status is unknown";
    /// A certificate revocation list could not be parsed.
    CrlMalformed = 3032, "crl_malformed", Certificate, "证书吊销列表（CRL）格式错误", "malformed certificate revocation list (CRL)";
    /// A CRL is not signed by the certificate's issuer (or the issuer may not sign CRLs).
    CrlSignatureInvalid = 3033, "crl_signature_invalid", Certificate, "证书吊销列表（CRL）的签名无效", "the CRL's signature is invalid";
    /// An OCSP request or response could not be parsed.
    OcspMalformed = 3034, "ocsp_malformed", Certificate, "OCSP 数据格式错误", "malformed OCSP data";
    /// An OCSP response is not signed by the issuer or a responder it authorised.
    OcspSignatureInvalid = 3035, "ocsp_signature_invalid", Certificate, "OCSP 响应的签名无效或签发者未获授权", "the OCSP response's signature is invalid or its signer is not authorised";

    // 4xxx: key media (used by the token layer)
    /// Wrong PIN; the retry count travels in the error data.
    WrongPin = 4001, "wrong_pin", Token, "口令错误", "wrong PIN";
    /// The PIN is locked after too many wrong attempts.
    PinLocked = 4002, "pin_locked", Token, "口令已锁定，请使用管理员口令解锁", "PIN is locked; unblock it with the SO PIN";
    /// The medium was removed during the operation.
    DeviceRemoved = 4003, "device_removed", Token, "介质已拔出", "the key medium was removed";
    /// No such device.
    UnknownDevice = 4004, "unknown_device", Token, "找不到该介质", "unknown device";
    /// No such container or certificate on the medium.
    NotFound = 4005, "not_found", Token, "找不到指定的容器或证书", "container or certificate not found";
    /// The new PIN does not meet the medium's policy (length, characters).
    PinPolicy = 4006, "pin_policy", Token, "新口令不符合要求", "the new PIN does not meet the policy";
    /// A container or seal with that name already exists.
    AlreadyExists = 4007, "already_exists", Token, "同名容器或印章已存在", "a container or seal with that name already exists";
    /// The medium's stored data is corrupt or truncated.
    TokenCorrupt = 4008, "token_corrupt", Token, "介质数据已损坏", "the key medium's data is corrupt";
    /// A certificate does not match the key pair it is installed for.
    CertificateKeyMismatch = 4009, "certificate_key_mismatch", Token, "证书与密钥对不匹配", "the certificate does not match the key pair";
    /// The medium does not support this operation.
    NotSupported = 4010, "not_supported", Token, "该介质不支持此操作", "this medium does not support the operation";
    /// The user cancelled a prompt (PIN, confirmation).
    Cancelled = 4011, "cancelled", Token, "用户已取消", "cancelled by the user";
    /// The medium is in use by another operation or process.
    DeviceBusy = 4012, "device_busy", Token, "介质正忙", "the key medium is busy";
    /// The card answered a command with an error status word (the word travels in the error).
    CardError = 4013, "card_error", Token, "卡片返回错误", "the card reported an error";
    /// A driver module (PKCS#11 or SKF library) is missing, is not such a module, or lacks a required function.
    ModuleLoadFailed = 4014, "module_load_failed", Token, "无法加载介质驱动模块", "the key medium's driver module could not be loaded";
    /// The medium is known but out of reach (a phone or BLE key that disconnected, a medium whose link dropped); it may come back online.
    MediumOffline = 4015, "medium_offline", Token, "介质已离线", "the key medium is offline";
    /// The operation's deadline passed before the medium answered (the request was withdrawn; it did not reach the medium, or the medium said it did not run it).
    OperationTimedOut = 4016, "operation_timed_out", Token, "操作超时", "the operation timed out";
    /// The request reached the medium but no answer came back (link lost or deadline passed mid-operation): it may or may not have been carried out.
    OutcomeUnknown = 4017, "outcome_unknown", Token, "介质未返回结果，操作可能已执行也可能未执行", "the key medium did not answer: the operation may or may not have been carried out";
    /// The medium (or its driver module) returned a signature that does not verify with the key pair's public key; it was not handed out.
    MediumSignatureInvalid = 4018, "medium_signature_invalid", Token, "介质返回的签名验证失败（驱动模块可能有误）", "the key medium returned a signature that does not verify (its driver module may be faulty)";
    /// The medium returned a decryption result that cannot be right (wrong length or format for what was asked); it was not used.
    MediumResultInvalid = 4019, "medium_result_invalid", Token, "介质返回的解密结果无效", "the key medium returned an invalid decryption result";
    /// The user refused the operation on the medium itself (a phone's refuse button).
    RefusedOnMedium = 4020, "refused_on_medium", Token, "用户在介质（手机）上拒绝了此操作", "the user refused the operation on the key medium (phone)";
    /// The user left the medium's waiting screen (the phone app's confirmation page): aborted.
    AbortedOnMedium = 4021, "aborted_on_medium", Token, "介质（手机）已离开等待确认页面，操作已中止", "the key medium (phone) left its confirmation screen; the operation was aborted";
    /// A BLE key sent a frame that breaks the framing of docs/ble-keys.md (wrong sequence number, more data than announced, unknown command, a fragment longer than the key's own control-point length).
    BleFrameInvalid = 4030, "ble_frame_invalid", Token, "蓝牙Key发来的数据帧格式错误", "the BLE key sent a malformed frame";
    /// A BLE key answered with an error frame (invalid command, parameter, length or sequence, timeout, busy); the key's error byte travels in the message.
    BleKeyError = 4031, "ble_key_error", Token, "蓝牙Key报告错误", "the BLE key reported an error";
    /// No Bluetooth adapter, Bluetooth is off, or the Bluetooth service (bluetoothd) is not running.
    BluetoothUnavailable = 4032, "bluetooth_unavailable", Token, "蓝牙不可用", "Bluetooth is unavailable (no adapter, switched off, or the Bluetooth service is not running)";
    /// The BLE device does not offer the APDU service of docs/ble-keys.md as documented (a characteristic missing, an invalid control-point length).
    BleServiceInvalid = 4033, "ble_service_invalid", Token, "该蓝牙设备不是受支持的蓝牙Key（服务不符合要求）", "the Bluetooth device is not a supported BLE key (its service is missing or not as documented)";
    /// An SM2 enveloped key (GM/T 0009 SM2EnvelopedKey, SKF ENVELOPEDKEYBLOB) could not be opened by the medium: malformed, not sealed to the container's signing key, or its private key does not match its public key. Nothing was imported.
    EnvelopedKeyInvalid = 4040, "enveloped_key_invalid", Token, "加密密钥信封无效（格式错误或不是发给本容器签名密钥的），未导入介质", "the enveloped encryption key is invalid (malformed, or not sealed to this container's signing key); nothing was imported";

    // 5xxx: the local bridge (WebSocket JSON-RPC); see docs/bridge-protocol.md
    /// The handshake's Host header is not a loopback name (DNS rebinding).
    HostRejected = 5001, "host_rejected", Bridge, "拒绝连接：Host 不是本机地址", "connection refused: Host is not a loopback address";
    /// The handshake's Origin is not allowed (cross-site WebSocket hijacking) or was revoked.
    OriginRejected = 5002, "origin_rejected", Bridge, "拒绝连接：该网页来源未获授权", "connection refused: this web origin is not allowed";
    /// A native client without an Origin sent no valid client secret or pairing.
    ClientUnauthenticated = 5003, "client_unauthenticated", Bridge, "客户端未认证：缺少有效的客户端密钥", "client not authenticated: missing or wrong client secret";
    /// The user declined the consent prompt for this client.
    ConsentDenied = 5004, "consent_denied", Bridge, "用户拒绝了该应用的访问请求", "the user denied this client access";
    /// The client's schema version is not supported by this bridge.
    SchemaVersionUnsupported = 5005, "schema_version_unsupported", Bridge, "协议版本不受支持，请升级客户端或安全客户端", "protocol schema version not supported; update the client or KeyBridge";
    /// A method was called before `hello`.
    HelloRequired = 5006, "hello_required", Bridge, "请先调用 hello 完成协商", "call hello first";
    /// Too many requests in flight, or too many failures in a short time.
    TooManyRequests = 5007, "too_many_requests", Bridge, "请求过多，请稍后再试", "too many requests; try again later";
    /// The request did not finish within its time limit.
    RequestTimeout = 5008, "request_timeout", Bridge, "请求超时", "request timed out";
    /// The local bridge could not start (its port is taken, e.g. by another KeyBridge).
    BridgeUnavailable = 5012, "bridge_unavailable", Bridge, "本地签名服务未能启动（端口可能已被占用）", "the local signing bridge could not start (is its port in use?)";
    /// The client cancelled the request (`cancel`) or closed its stream.
    RequestCancelled = 5009, "request_cancelled", Bridge, "请求已被客户端取消", "request cancelled by the client";
    /// No open stream has that id, or it is already in use or closed.
    UnknownStream = 5010, "unknown_stream", Bridge, "数据流不存在或已关闭", "unknown or closed stream";
    /// A binary frame is malformed, out of sequence, or larger than the stream allows.
    StreamFrameInvalid = 5011, "stream_frame_invalid", Bridge, "数据流分片无效或顺序错误", "invalid or out-of-sequence stream frame";
    /// The browser blocked the page's connection to KeyBridge on this computer: the page is a public site and has not been given the "local network access" permission yet (the browser may be asking). Reported by the SDK.
    LocalNetworkAccessRequired = 5013, "local_network_access_required", Bridge, "浏览器阻止了网页连接本机安全客户端：请在地址栏的网站权限中允许“本地网络访问”，或请管理员将本网站加入浏览器策略", "the browser blocked this page from reaching KeyBridge on this computer: allow \"local network access\" in the site's permissions, or ask your administrator to add this site to the browser policy";
    /// The user or the browser's policy denied this page the "local network access" permission, so it cannot reach KeyBridge. Reported by the SDK.
    LocalNetworkAccessDenied = 5014, "local_network_access_denied", Bridge, "已拒绝本网站的“本地网络访问”权限，网页无法连接本机安全客户端：请在网站权限中重新允许", "this site was denied \"local network access\", so the page cannot reach KeyBridge: allow it again in the site's permissions";
    /// The KeyBridge browser extension is installed but its native messaging host is not (or the browser may not start it: the host manifest is missing, names another path, or does not allow the extension). Reported by the SDK.
    ExtensionHostNotInstalled = 5020, "extension_host_not_installed", Bridge, "浏览器扩展无法启动本机安全客户端：请重新安装安全客户端，或运行 keybridge browser install-host", "the browser extension cannot start KeyBridge on this computer: reinstall KeyBridge, or run keybridge browser install-host";
    /// The native messaging host started by the KeyBridge browser extension exited without closing the connection (it crashed or was killed). Reported by the SDK.
    ExtensionHostExited = 5021, "extension_host_exited", Bridge, "浏览器扩展与本机安全客户端的连接意外中断", "the browser extension's connection to KeyBridge ended unexpectedly (the native host exited)";
    /// A message between the page and KeyBridge through the browser extension exceeds the native messaging size cap (1 MiB from KeyBridge to the browser, 2 MiB from the browser to KeyBridge); large data goes through streams.
    ExtensionMessageTooLarge = 5022, "extension_message_too_large", Bridge, "经浏览器扩展传递的消息过大", "a message through the browser extension is larger than native messaging allows";
    /// The native messaging host could not reach KeyBridge's bridge on this computer (the desktop app or `keybridge serve` is not running).
    NativeHostBridgeUnreachable = 5023, "native_host_bridge_unreachable", Bridge, "安全客户端未运行：请启动 KeyBridge 后重试", "KeyBridge is not running: start it and try again";

    // 6xxx: the phone link; see docs/phone-link.md
    /// An application message on the phone link is malformed or exceeds a limit (see
    /// docs/phone-link-messages.md); the link is closed.
    PhoneMessageInvalid = 6050, "phone_message_invalid", PhoneLink, "手机发来的消息格式错误或超出限制", "a message on the phone link is malformed or exceeds a limit";
    /// The peer speaks a phone-link message version this side does not.
    PhoneProtocolUnsupported = 6051, "phone_protocol_unsupported", PhoneLink, "手机端协议版本不受支持，请升级手机应用或安全客户端", "the phone speaks an unsupported message protocol version; update the phone app or KeyBridge";
    /// A pairing QR string could not be read (wrong prefix, bad base32, truncated, bad key or endpoint).
    PairingOfferInvalid = 6001, "pairing_offer_invalid", PhoneLink, "配对二维码无效", "the pairing QR code is invalid";
    /// The pairing QR is of a protocol version this side does not speak.
    PairingOfferVersion = 6002, "pairing_offer_version", PhoneLink, "配对二维码版本不受支持，请升级手机或电脑端", "the pairing QR code's version is not supported; update the phone or the PC";
    /// The pairing QR has expired: show a new one.
    PairingOfferExpired = 6003, "pairing_offer_expired", PhoneLink, "配对二维码已过期，请刷新后重新扫描", "the pairing QR code has expired; refresh it and scan again";
    /// The pairing QR was already used by a phone (each QR pairs one phone once).
    PairingOfferUsed = 6004, "pairing_offer_used", PhoneLink, "配对二维码已被使用，请刷新后重新扫描", "the pairing QR code was already used; refresh it and scan again";
    /// The PC has no open pairing with that QR (it was replaced, cancelled, or never shown).
    PairingOfferUnknown = 6005, "pairing_offer_unknown", PhoneLink, "电脑端没有该配对二维码（已刷新或已取消）", "the PC has no such pairing QR code (it was refreshed or cancelled)";
    /// The phone did not prove it holds the QR's one-time secret (wrong secret or a tampered handshake).
    PairingProofFailed = 6006, "pairing_proof_failed", PhoneLink, "配对验证失败：手机未持有该二维码的密钥", "pairing failed: the phone does not hold the QR code's secret";
    /// The link handshake failed: a malformed message, a key that does not match, or tampering.
    LinkHandshakeFailed = 6007, "link_handshake_failed", PhoneLink, "手机连接握手失败", "the phone link handshake failed";
    /// The link handshake did not finish in time (a slow or silent peer).
    LinkHandshakeTimeout = 6008, "link_handshake_timeout", PhoneLink, "手机连接握手超时", "the phone link handshake timed out";
    /// The phone is not paired with this PC: pair it by scanning a QR code.
    PhoneNotPaired = 6009, "phone_not_paired", PhoneLink, "该手机未与本机配对，请扫码配对", "this phone is not paired with this PC; pair it by scanning a QR code";
    /// The phone's pairing was revoked on this PC.
    PhoneRevoked = 6010, "phone_revoked", PhoneLink, "该手机的配对已被撤销", "this phone's pairing was revoked";
    /// The user rejected the new phone on the PC (the confirmation codes did not match).
    PairingRejected = 6011, "pairing_rejected", PhoneLink, "电脑端拒绝了该手机的配对", "the pairing was rejected on the PC";
    /// The new phone was not confirmed on the PC in time.
    PairingNotConfirmed = 6012, "pairing_not_confirmed", PhoneLink, "未在规定时间内在电脑端确认配对", "the pairing was not confirmed on the PC in time";
    /// A link frame failed authentication: tampered, replayed, reordered, dropped or truncated. The link was closed.
    LinkIntegrity = 6013, "link_integrity", PhoneLink, "手机连接数据校验失败（被篡改、重放或乱序），连接已断开", "a phone link frame failed authentication (tampered, replayed, reordered or truncated); the link was closed";
    /// A link frame or message is larger than the link allows.
    LinkFrameTooLarge = 6014, "link_frame_too_large", PhoneLink, "手机连接数据帧过大", "a phone link frame or message is too large";
    /// The peer broke the link protocol (an unexpected or malformed record).
    LinkProtocol = 6015, "link_protocol", PhoneLink, "手机连接协议错误", "the peer broke the phone link protocol";
    /// Nothing arrived from the peer within the keep-alive bound: the peer is gone.
    LinkPeerTimeout = 6016, "link_peer_timeout", PhoneLink, "手机连接已超时（对端无响应）", "the phone link timed out: the peer stopped answering";
    /// The transport under the link ended without a close (network lost, peer process killed).
    LinkLost = 6017, "link_lost", PhoneLink, "手机连接已中断", "the phone link was lost";
    /// The PC is handling too many link handshakes at once; try again.
    LinkBusy = 6018, "link_busy", PhoneLink, "电脑端连接过多，请稍后再试", "the PC is busy with too many phone connections; try again";
    /// None of the PC's endpoints (direct or relay) could be reached.
    LinkUnreachable = 6019, "link_unreachable", PhoneLink, "无法连接到电脑（局域网与中继均不可达）", "could not reach the PC (neither directly nor through the relay)";
    /// The phone link's direct listener could not be opened on the given addresses.
    LinkListenFailed = 6020, "link_listen_failed", PhoneLink, "无法打开手机连接端口", "could not open the phone link's listening port";
    /// No way for a phone to reach the PC is open (no direct listener and no relay), so no pairing QR can be made.
    LinkNoEndpoint = 6021, "link_no_endpoint", PhoneLink, "没有可供手机连接的地址（请打开局域网端口或配置中继）", "no endpoint is open for phones (open the LAN port or configure a relay)";
    /// The pairing store (paired phones, link secrets) could not be read or written.
    PairingStoreFailed = 6022, "pairing_store_failed", PhoneLink, "无法读写已配对手机的记录", "the paired phones' records could not be read or written";
    /// The peer closed the link with an error of its own (the detail names it).
    LinkClosedByPeer = 6023, "link_closed_by_peer", PhoneLink, "对端关闭了手机连接", "the peer closed the phone link";
    /// A relay endpoint (URL and tunnel id from the pairing QR) is malformed.
    RelayEndpointInvalid = 6040, "relay_endpoint_invalid", PhoneLink, "中继地址无效", "invalid relay endpoint";
    /// The relay (nats-server) could not be reached.
    RelayUnreachable = 6041, "relay_unreachable", PhoneLink, "无法连接中继服务器", "the relay server could not be reached";
    /// The relay refused the credentials or the tunnel's subjects.
    RelayRefused = 6042, "relay_refused", PhoneLink, "中继服务器拒绝了连接", "the relay server refused the connection";
    /// The relay's message size limit is below what a phone-link frame needs.
    RelayPayloadLimit = 6043, "relay_payload_limit", PhoneLink, "中继服务器的消息大小上限过小", "the relay server's message size limit is too small";
    /// The relay connection was lost and the tunnel could not be re-established in time.
    RelayLost = 6044, "relay_lost", PhoneLink, "与中继服务器的连接已断开", "the connection to the relay server was lost";
    /// The other end did not arrive at the relay in time.
    RelayPeerTimeout = 6045, "relay_peer_timeout", PhoneLink, "对方未在规定时间内连接中继", "the other end did not reach the relay in time";
    /// Frames were lost on the relay; the link must be set up again.
    RelayFramesLost = 6046, "relay_frames_lost", PhoneLink, "中继丢失了数据，需重新连接", "frames were lost on the relay; reconnect";
    /// The other end closed or reopened the relay tunnel.
    RelayPeerLeft = 6047, "relay_peer_left", PhoneLink, "对方已离开中继通道", "the other end left the relay tunnel";

    // 7xxx: certificate authorities and renewal; see docs/ca-api.md
    /// The CA's server could not be reached (offline, DNS, connection refused, TLS).
    CaUnreachable = 7001, "ca_unreachable", Ca, "无法连接证书颁发机构（CA）服务器，请检查网络", "could not reach the certificate authority's server; check the network";
    /// The CA's server did not answer within the time limit.
    CaTimedOut = 7002, "ca_timed_out", Ca, "CA 服务器响应超时，请稍后再试", "the certificate authority's server did not answer in time; try again later";
    /// The CA's server answered with something that is not a valid answer (garbage, too large, wrong type).
    CaResponseInvalid = 7003, "ca_response_invalid", Ca, "CA 服务器返回的内容无效", "the certificate authority's server sent an invalid answer";
    /// The CA refused the request (the message gives its reason).
    CaRefused = 7004, "ca_refused", Ca, "CA 拒绝了该请求", "the certificate authority refused the request";
    /// The binding token is unknown or was already used.
    BindingTokenInvalid = 7005, "binding_token_invalid", Ca, "绑定二维码无效或已被使用", "the binding QR code is invalid or was already used";
    /// The binding QR code expired (30 minutes); get a new one.
    BindingExpired = 7006, "binding_expired", Ca, "绑定二维码已过期，请重新获取", "the binding QR code has expired; get a new one";
    /// The proof signature does not verify with the certificate's key (a binding for someone else's key).
    BindingProofInvalid = 7007, "binding_proof_invalid", Ca, "绑定证明签名无效：证书与介质中的密钥不匹配", "the binding proof does not verify with the certificate's key";
    /// No approved renewal for this certificate.
    RenewalNotApproved = 7008, "renewal_not_approved", Ca, "该证书的续期申请尚未审核通过", "the renewal of this certificate has not been approved";
    /// The CA refused the enrolment (EST): request invalid, not authorised, or key not allowed.
    EnrolmentRefused = 7009, "enrolment_refused", Ca, "CA 拒绝签发证书", "the certificate authority refused to issue the certificate";
    /// The CA accepted the enrolment but has not issued the certificate yet.
    EnrolmentPending = 7010, "enrolment_pending", Ca, "证书正在签发中，请稍后再试", "the certificate is being issued; try again later";
    /// The delivered certificate failed a check before install (key, chain, validity or subject); nothing was written.
    NewCertificateInvalid = 7011, "new_certificate_invalid", Ca, "CA 下发的新证书未通过检查，未写入介质", "the new certificate failed its checks and was not installed";
    /// Installing the new certificate failed; the key holds its previous working certificate.
    InstallRolledBack = 7012, "install_rolled_back", Ca, "证书安装失败，已恢复原证书", "installing the certificate failed; the previous certificate was restored";
    /// Installing failed and the previous state could not be restored yet; the journal keeps both certificates for recovery.
    InstallIncomplete = 7013, "install_incomplete", Ca, "证书安装未完成，请重新插入介质后再次安装", "the certificate install did not complete; plug the key in again and retry the install";
    /// No certificate authority is configured.
    CaNotConfigured = 7014, "ca_not_configured", Ca, "未配置证书颁发机构（CA）", "no certificate authority is configured";
    /// More than one key is plugged in; renewal works on one key at a time.
    MultipleMediaPresent = 7015, "multiple_media_present", Ca, "检测到多个介质，续期时请只插入一个", "more than one key is plugged in; plug in only the key to renew";
    /// The CA does not know this certificate, binding or application.
    CaNotFound = 7016, "ca_not_found", Ca, "CA 未找到该证书或申请", "the certificate authority does not know this certificate or application";
    /// The CA speaks an API version this client does not.
    CaApiVersionUnsupported = 7017, "ca_api_version_unsupported", Ca, "CA 服务接口版本不受支持", "the certificate authority's API version is not supported";

    // 9xxx: system
    /// File or stream I/O failed.
    Io = 9001, "io", System, "读写失败", "I/O error";
    /// The settings file is invalid.
    ConfigInvalid = 9002, "config_invalid", System, "配置文件无效", "invalid settings file";
    /// A server (update check) could not be reached: offline, DNS, refused, TLS or timeout.
    Network = 9003, "network", System, "无法连接服务器，请检查网络", "could not reach the server; check the network";
    /// The update server answered with something that is not an update manifest.
    UpdateManifestInvalid = 9004, "update_manifest_invalid", System, "更新服务器返回的信息无效", "the update server's answer is not a valid update manifest";
    /// No update URL is configured.
    UpdateUrlMissing = 9005, "update_url_missing", System, "未配置更新地址", "no update URL is configured";
    /// The update manifest is unsigned, signed by a key the app does not pin, or was altered: refused.
    UpdateSignatureInvalid = 9006, "update_signature_invalid", System, "更新信息的签名无效，已拒绝（可能被篡改）", "the update manifest's signature is missing or invalid: refused (it may have been tampered with)";
    /// Starting at login could not be turned on or off (no XDG autostart on this system,
    /// or its entry could not be written or removed).
    AutostartUnavailable = 9010, "autostart_unavailable", System, "无法设置登录时自动启动", "starting KeyBridge at login could not be set up";
    /// A process that is not KeyBridge's own window tried to drive the core over its
    /// private window channel (no or a wrong one-time token): refused.
    WindowUnauthenticated = 9020, "window_unauthenticated", System, "拒绝了未经认证的窗口连接", "a window connection without KeyBridge's token was refused";
    /// The window lost its link to KeyBridge's core (the core quit or the channel broke).
    WindowLinkLost = 9021, "window_link_lost", System, "窗口与 KeyBridge 后台服务的连接已断开", "the window lost its link to KeyBridge's background service";
    /// A bug: an invariant did not hold.
    Internal = 9999, "internal", System, "内部错误", "internal error";
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "E{} {}", self.number(), self.name())
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(self.number())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = u32::deserialize(d)?;
        ErrorCode::from_number(n).ok_or_else(|| serde::de::Error::custom(format!("unknown error code {n}")))
    }
}

/// Implemented by every library error type that can reach a user.
pub trait HasErrorCode {
    /// The stable code of this error.
    fn code(&self) -> ErrorCode;
}

/// The code table as a Markdown table (what docs/error-codes.md holds).
pub fn markdown_table() -> String {
    let mut s = String::from("| code | name | category | zh-CN | en |\n|---|---|---|---|---|\n");
    for c in ErrorCode::ALL {
        s.push_str(&format!(
            "| {} | `{}` | {:?} | {} | {} |\n",
            c.number(),
            c.name(),
            c.category(),
            c.message(Lang::ZhCn),
            c.message(Lang::En)
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn numbers_and_names_are_unique() {
        let mut nums = HashSet::new();
        let mut names = HashSet::new();
        for c in ErrorCode::ALL {
            assert!(nums.insert(c.number()), "duplicate number {}", c.number());
            assert!(names.insert(c.name()), "duplicate name {}", c.name());
            assert_eq!(ErrorCode::from_number(c.number()), Some(*c));
            assert_eq!(ErrorCode::from_name(c.name()), Some(*c));
            assert!(!c.message(Lang::ZhCn).is_empty() && !c.message(Lang::En).is_empty());
            assert_ne!(c.message(Lang::ZhCn), c.message(Lang::En));
        }
    }

    #[test]
    fn number_ranges_match_categories() {
        for c in ErrorCode::ALL {
            let ok = match c.number() / 1000 {
                1 => c.category() == Category::Input,
                2 => matches!(c.category(), Category::Crypto | Category::System),
                3 => matches!(c.category(), Category::Certificate | Category::Crypto | Category::Input),
                4 => c.category() == Category::Token,
                5 => c.category() == Category::Bridge,
                6 => c.category() == Category::PhoneLink,
                7 => c.category() == Category::Ca,
                9 => c.category() == Category::System,
                _ => false,
            };
            assert!(ok, "{c} is in the wrong range for {:?}", c.category());
        }
    }

    #[test]
    fn serializes_as_number() {
        let s = serde_json::to_string(&ErrorCode::WrongPin).unwrap_or_default();
        assert_eq!(s, "4001");
        let back: ErrorCode = serde_json::from_str("3002").unwrap_or(ErrorCode::Internal);
        assert_eq!(back, ErrorCode::CertificateExpired);
        assert!(serde_json::from_str::<ErrorCode>("12345").is_err());
    }

    /// docs/error-codes.md is the published contract; it must list exactly this table.
    #[test]
    fn docs_table_matches() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/error-codes.md");
        let doc = std::fs::read_to_string(path).unwrap_or_default();
        let expected = markdown_table();
        assert!(
            doc.contains(&expected),
            "docs/error-codes.md is out of date; regenerate with:\n  cargo run -p kb-types --example error_table > docs/error-codes.md"
        );
    }

    fn markdown_table() -> String {
        crate::error_code::markdown_table()
    }
}
