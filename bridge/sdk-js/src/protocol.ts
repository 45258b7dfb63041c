// TypeScript types of the KeyBridge bridge protocol, schema version 1: one type per
// params, result and event type of the Rust crate `bridge/kb-bridge-protocol`, with the
// same field names and the same optionality (a Rust `Option` or serde default is an
// optional field here). The contract is `docs/bridge-protocol.md`; the SDK's tests
// type-check every JSON example of that document against these types, as the Rust
// crate's tests parse them with its types. Names, codes and constants that can be
// generated from Rust are in `generated.ts`.
//
// Results are read leniently: a server may add result fields and events within a
// schema version, and clients must ignore what they do not know.

import type { EventKind, EventName, MethodName, TransportKind } from "./generated.js";

export type { EventKind, EventName, MethodName, TransportKind } from "./generated.js";

// ---- small wire types ----

/** Bytes as standard padded base64 (RFC 4648 §4). */
export type Base64 = string;
/** A certificate's SHA-1 thumbprint: 40 hex digits (answers use upper case). */
export type Thumbprint = string;
/** A device id, `<transport>:<local id>`, e.g. `file:demo`, `pcsc:ACME-0001`. */
export type DeviceId = string;
/** A stream id from `stream.open` (never 0). */
export type StreamId = number;
/** A request id: an integer or a string of at most 128 characters. */
export type Id = number | string;
/** Unix seconds. */
export type UnixTime = number;

/** Public-key algorithm. */
export type Algorithm = "sm2" | "ecdsa_p256" | { rsa: { bits: number } };
/** Digest algorithms. */
export type HashAlgorithm = "sm3" | "sha1" | "sha256" | "sha384" | "sha512" | "md5";
/** Signing certificate, encryption certificate, or one for both. */
export type KeyUsage = "sign" | "encrypt" | "both";
/** A certificate's validity now: 临期 is `expiring_soon`, 过期 is `expired`. */
export type ValidityStatus = "valid" | "expiring_soon" | "expired" | "not_yet_valid";
/** Signature formats. */
export type SignFormat = "raw" | "cms_attached" | "cms_detached";
/** Encryption formats. */
export type EncryptFormat = "sm2_raw" | "cms_envelope";
/** SM2 ciphertext layouts. */
export type Sm2Layout = "asn1" | "c1c3c2" | "c1c2c3";
/** CMS OID profiles. */
export type CmsProfile = "gm_t0010" | "rfc5652";
/** Direction of a stream. */
export type StreamDirection = "upload" | "download";
/** Chain status of a verified signer. */
export type ChainStatus = "trusted" | "untrusted" | "not_checked";

/** A certificate on a present medium, by thumbprint (optionally on one medium). */
export interface CertificateRef {
  thumbprint: Thumbprint;
  device?: DeviceId;
}

/** A certificate on a medium (by thumbprint) or by value (DER, base64). */
export type CertificateSource = { thumbprint: Thumbprint } | { der: Base64 };

/** Input data for encrypt/decrypt: inline, or an upload stream. */
export type Input = { data: Base64 } | { stream: StreamId };

/** Input for sign/verify: the message, a precomputed digest, or an upload stream. */
export type SignInput = { data: Base64 } | { digest: Base64 } | { stream: StreamId };

/** Where a method puts its output: inline in the result, or a download stream. */
export type OutputMode = "inline" | { stream: StreamId };

/** A method's output: inline data, or the stream it went to, and its length. */
export interface Output {
  data?: Base64;
  stream?: StreamId;
  length: number;
}

// ---- devices ----

/** What a medium can do. */
export interface Capabilities {
  algorithms: Algorithm[];
  key_generation: boolean;
  seals: boolean;
  so_pin: boolean;
  /** Who verifies the user: KeyBridge's PIN dialog (`host_pin`), or the medium itself (`on_medium`: a phone, a PIN pad). */
  user_verification?: "host_pin" | "on_medium";
}

/** A key medium, as shown before any PIN is entered. */
export interface DeviceInfo {
  id: DeviceId;
  label: string;
  serial: string;
  manufacturer: string;
  model: string;
  transport: TransportKind;
  capabilities: Capabilities;
}

// ---- hello ----

export interface HelloParams {
  /** The newest schema version the client speaks. */
  schema_version: number;
  /** The client's name (`keybridge-js`, or a tool's own name): shown in consent prompts and the audit log. */
  sdk: string;
  sdk_version?: string;
}

/** Server limits, announced in `hello`. */
export interface Limits {
  max_message_bytes: number;
  max_chunk_bytes: number;
  max_in_flight: number;
  request_timeout_ms: number;
}

export interface HelloResult {
  /** The schema version this connection uses: min(client's, server's). */
  schema_version: number;
  product: string;
  product_version: string;
  capabilities: string[];
  limits: Limits;
}

// ---- devices.list ----

/** `devices.list` takes no params. */
export type DevicesListParams = Record<string, never>;

export interface DevicesListResult {
  devices: DeviceInfo[];
  /** Listed media that are out of reach now (a phone or BLE key that disconnected). */
  offline?: DeviceId[];
}

// ---- certificates ----

/** Every filter is optional; they combine with AND. */
export interface CertificatesListParams {
  /** `sign` or `encrypt` (a `both` certificate matches either). */
  usage?: KeyUsage;
  issuer_contains?: string;
  subject_contains?: string;
  device?: DeviceId;
  /** Only certificates valid at this time. */
  valid_at?: UnixTime;
  /** `false`: leave out revoked certificates (for a choice offered to the user); `true`: only revoked ones. */
  revoked?: boolean;
}

/** Good, revoked, unknown (offline, no source, stale: never read it as good) or not checked. */
export type RevocationState = "good" | "revoked" | "unknown" | "not_checked";

/** What KeyBridge knows about a certificate's revocation. */
export interface Revocation {
  status: RevocationState;
  /** 3030 certificate_revoked or 3031 revocation_unknown. */
  code?: number;
  /** When it was revoked. */
  revoked_at?: UnixTime;
  /** RFC 5280's name for why (`keyCompromise`, …). */
  reason?: string;
  /** Where the answer came from, or why there is none. */
  detail: string;
}

/** A certificate as listed. */
export interface CertificateSummary {
  thumbprint: Thumbprint;
  device: DeviceId;
  container: string;
  usage: KeyUsage;
  algorithm: Algorithm;
  subject: string;
  issuer: string;
  /** Upper-case hex. */
  serial: string;
  not_before: UnixTime;
  not_after: UnixTime;
  status: ValidityStatus;
  revocation: Revocation;
}

export interface CertificatesListResult {
  certificates: CertificateSummary[];
}

export interface CertificatesGetParams {
  certificate: CertificateRef;
}

/** One extension, decoded for display. */
export interface ExtensionDetails {
  oid: string;
  name?: string;
  critical: boolean;
  value: string;
}

/** `certificates.get` result: the summary plus encodings and parsed fields. */
export interface CertificateDetails extends CertificateSummary {
  der: Base64;
  pem: string;
  version: number;
  public_key_description: string;
  signature_algorithm: string;
  key_usage: string[];
  extended_key_usage: string[];
  is_ca: boolean;
  /** Whole days until notAfter (negative when expired). */
  days_left: number;
  extensions: ExtensionDetails[];
}

// ---- sign / verify ----

/** `sign` params. There is no PIN field: KeyBridge asks for the PIN in its own window. */
export interface SignParams {
  certificate: CertificateRef;
  /** Data, a precomputed digest (`raw` and `cms_detached` only), or an upload stream. */
  input: SignInput;
  format: SignFormat;
  /** Default `sm3` for SM2, `sha256` otherwise. */
  hash?: HashAlgorithm;
  /** SM2 distinguishing ID; default `1234567812345678`. */
  sm2_id?: string;
  profile?: CmsProfile;
}

export interface SignResult {
  signature: Base64;
  format: SignFormat;
  algorithm: Algorithm;
  hash: HashAlgorithm;
  certificate: Thumbprint;
}

export interface VerifyParams {
  signature: Base64;
  format: SignFormat;
  /** The signed content: required for `raw` and `cms_detached`. */
  content?: SignInput;
  /** The signer's certificate: required for `raw`; CMS carries its own. */
  certificate?: CertificateSource;
  hash?: HashAlgorithm;
  sm2_id?: string;
  /** Check the signer's chain against KeyBridge's trust store (default true). */
  check_chain?: boolean;
  /** Check validity at this time (default: the CMS signing time, else now). */
  at?: UnixTime;
  /** Check the signer's revocation when the chain is trusted (default true); a revoked signer fails with 3030. */
  check_revocation?: boolean;
}

/** Who signed. */
export interface SignerSummary {
  subject: string;
  issuer: string;
  serial: string;
  thumbprint: Thumbprint;
}

/**
 * A signature that does not verify is a result with `valid: false` and `error` set to
 * its KeyBridge code; malformed input is an error.
 */
export interface VerifyResult {
  valid: boolean;
  error?: number;
  signer?: SignerSummary;
  chain: ChainStatus;
  chain_error?: number;
  signing_time?: UnixTime;
  /** The signer certificate's revocation. */
  revocation?: Revocation;
}

// ---- encrypt / decrypt ----

export interface EncryptParams {
  format: EncryptFormat;
  /** Exactly one for `sm2_raw`. */
  recipients: CertificateSource[];
  input: Input;
  /** Default `"inline"`. */
  output?: OutputMode;
  sm2_layout?: Sm2Layout;
  profile?: CmsProfile;
  /** `cms_envelope` only: also sign the content with this signing certificate, in the same pass (capability `encrypt.cms_envelope.signer`). */
  signer?: CertificateRef;
}

export interface EncryptResult {
  format: EncryptFormat;
  output: Output;
  /** With `signer`: the detached CMS SignedData over the content (DER, base64). */
  signature?: string;
}

export interface DecryptParams {
  format: EncryptFormat;
  /** Required for `sm2_raw`; for an envelope, default = the first present matching certificate. */
  certificate?: CertificateRef;
  input: Input;
  output?: OutputMode;
  sm2_layout?: Sm2Layout;
  /** Open old data with a certificate known to be revoked (otherwise refused with 3030). */
  allow_revoked?: boolean;
}

export interface DecryptResult {
  output: Output;
  /** The certificate whose key decrypted. */
  certificate: Thumbprint;
}

// ---- streams ----

export interface StreamOpenParams {
  direction: StreamDirection;
  /** Total length when known (used for progress events). */
  length?: number;
}

export interface StreamOpenResult {
  stream: StreamId;
  max_chunk_bytes: number;
}

export interface StreamCloseParams {
  stream: StreamId;
}

export interface StreamCloseResult {
  stream: StreamId;
  bytes: number;
}

// ---- cancel, subscriptions ----

export interface CancelParams {
  id: Id;
}

export interface CancelResult {
  cancelled: boolean;
}

export interface SubscribeParams {
  events: EventKind[];
}

export interface SubscriptionResult {
  events: EventKind[];
}

// ---- the method table ----

/** Every method: its params and result types. */
export interface Methods {
  hello: [HelloParams, HelloResult];
  "devices.list": [DevicesListParams, DevicesListResult];
  "certificates.list": [CertificatesListParams, CertificatesListResult];
  "certificates.get": [CertificatesGetParams, CertificateDetails];
  sign: [SignParams, SignResult];
  verify: [VerifyParams, VerifyResult];
  encrypt: [EncryptParams, EncryptResult];
  decrypt: [DecryptParams, DecryptResult];
  "stream.open": [StreamOpenParams, StreamOpenResult];
  "stream.close": [StreamCloseParams, StreamCloseResult];
  cancel: [CancelParams, CancelResult];
  subscribe: [SubscribeParams, SubscriptionResult];
  unsubscribe: [SubscribeParams, SubscriptionResult];
}

/** A method's params type. */
export type ParamsOf<M extends MethodName> = Methods[M][0];
/** A method's result type. */
export type ResultOf<M extends MethodName> = Methods[M][1];

// ---- events ----

export interface DeviceAddedEvent {
  device: DeviceInfo;
}

export interface DeviceRemovedEvent {
  device: DeviceId;
}

export interface CertificatesChangedEvent {
  device: DeviceId;
}

export interface DeviceOfflineEvent {
  device: DeviceId;
}

export interface DeviceOnlineEvent {
  device: DeviceId;
}

/** What a request waits for (sent without subscription). */
export interface OperationStatusEvent {
  /** The id of the request. */
  request: Id;
  status: "waiting_for_pin" | "waiting_for_medium" | "working";
  /** For `waiting_for_medium`: the medium, in the user's words. */
  medium?: string;
}

/** Progress of a streaming request (sent without subscription). */
export interface ProgressEvent {
  /** The id of the request making progress. */
  request: Id;
  /** Bytes processed so far. */
  done: number;
  /** Total bytes, when the stream's length was declared. */
  total?: number;
}

/** Every event: its params type. */
export interface EventMap {
  "device.added": DeviceAddedEvent;
  "device.removed": DeviceRemovedEvent;
  "certificates.changed": CertificatesChangedEvent;
  "device.offline": DeviceOfflineEvent;
  "device.online": DeviceOnlineEvent;
  "operation.status": OperationStatusEvent;
  progress: ProgressEvent;
}

// ---- envelopes and errors ----

/** A message in both languages. */
export interface Messages {
  "zh-CN": string;
  en: string;
}

/** A display language. */
export type Lang = keyof Messages;

/** `error.data`. */
export interface ErrorData {
  /** Stable snake_case name of the code (`wrong_pin`). */
  name: string;
  messages: Messages;
  /** Technical detail for logs (never a secret). */
  detail?: string;
  /** PIN tries left, with `wrong_pin`. */
  retries_left?: number;
}

/** A JSON-RPC error object: `code > 0` is a KeyBridge code, `code < 0` a protocol error. */
export interface ErrorObject {
  code: number;
  message: string;
  data: ErrorData;
}

/** A request as sent. */
export interface RpcRequest<M extends MethodName = MethodName> {
  jsonrpc: "2.0";
  id: Id;
  method: M;
  params?: ParamsOf<M>;
}

/** A response as received. */
export interface RpcResponse {
  jsonrpc: "2.0";
  id: Id | null;
  result?: unknown;
  error?: ErrorObject;
}

/** A server notification as received. */
export interface RpcNotification<E extends EventName = EventName> {
  jsonrpc: "2.0";
  method: E;
  params: EventMap[E];
}

// ---- compile-time checks against the generated (Rust) name lists ----

type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
/** Fails to compile unless `T` is `true`. */
type Assert<T extends true> = T;
// Every method of Rust's `Method::ALL` has an entry in `Methods`, and no other.
export type _MethodsMatchRust = Assert<Same<keyof Methods, MethodName>>;
// Every event of Rust's `Event::NAMES` has an entry in `EventMap`, and no other.
export type _EventsMatchRust = Assert<Same<keyof EventMap, EventName>>;
