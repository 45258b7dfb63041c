// @keybridge/client: the KeyBridge local bridge from web pages and Node tools.
// Browser-safe; Node-only helpers (the bridge secret file) are in `@keybridge/client/node`.

export * from "./generated.js";
export * from "./protocol.js";
export { ConnectionError, KeyBridgeError, errorInfo, type ConnectionErrorKind, type ErrorInfo } from "./errors.js";
export { EXTENSION_ATTRIBUTE, ExtensionSocket, extensionVersion, useExtension, type Transport } from "./extension.js";
export { explainConnectFailure, isLocalHost, localNetworkAccess, type LocalNetworkAccess } from "./lna.js";
export { FrameError, Sequencer, decodeFrame, encodeFrame, isAbort, isFin, writeHeader, type Frame } from "./frame.js";
export {
  base64ToText,
  fromBase64,
  isUploadSource,
  rechunk,
  sourceLength,
  toBase64,
  toBytes,
  type BytesLike,
  type UploadSource,
} from "./bytes.js";
export {
  DownloadStream,
  KeyBridgeClient,
  SDK_NAME,
  SDK_VERSION,
  UploadStream,
  connect,
  type CallArgs,
  type CallOptions,
  type ConnectOptions,
  type DecryptStreamOptions,
  type DownloadSink,
  type EncryptStreamOptions,
  type SignStreamOptions,
  type StreamCallOptions,
  type StreamHost,
  type VerifyStreamOptions,
  type WebSocketConstructor,
  type WebSocketLike,
} from "./client.js";
