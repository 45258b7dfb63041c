// A native tool on KeyBridge's local bridge, for the window tests: a minimal WebSocket
// client (RFC 6455: the upgrade, masked text frames out, unfragmented frames in, ping →
// pong) with no dependencies (Node 20 has no WebSocket client), JSON-RPC calls over it,
// authenticated by the per-user secret as `Authorization: Bearer` with no Origin
// (docs/bridge-protocol.md). Loopback only.
import net from 'node:net';
import { randomBytes, createHash } from 'node:crypto';

export class BridgeClient {
  static connect(port, secret) {
    return new Promise((resolve, reject) => {
      const sock = net.connect({ host: '127.0.0.1', port });
      const key = randomBytes(16).toString('base64');
      let head = Buffer.alloc(0);
      const onData = (chunk) => {
        head = Buffer.concat([head, chunk]);
        const end = head.indexOf('\r\n\r\n');
        if (end < 0) return;
        sock.off('data', onData);
        const status = head.subarray(0, end).toString();
        const accept = createHash('sha1').update(key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64');
        if (!/^HTTP\/1\.1 101/.test(status) || !status.includes(accept)) {
          sock.destroy();
          reject(new Error(`upgrade refused: ${status.split('\r\n')[0]}`));
          return;
        }
        const c = new BridgeClient(sock);
        c.feed(head.subarray(end + 4));
        sock.on('data', (d) => c.feed(d));
        resolve(c);
      };
      sock.on('data', onData);
      sock.on('error', reject);
      sock.on('connect', () => {
        sock.write(
          `GET / HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
            `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer ${secret}\r\n\r\n`,
        );
      });
    });
  }

  constructor(sock) {
    this.sock = sock;
    this.buf = Buffer.alloc(0);
    this.next = 1;
    this.waiting = new Map();
    this.closed = null;
    sock.on('close', () => {
      this.closed = new Error('the bridge closed the connection');
      for (const w of this.waiting.values()) w.reject(this.closed);
      this.waiting.clear();
    });
  }

  feed(data) {
    this.buf = Buffer.concat([this.buf, data]);
    for (;;) {
      if (this.buf.length < 2) return;
      const op = this.buf[0] & 0x0f;
      let len = this.buf[1] & 0x7f;
      let at = 2;
      if (len === 126) {
        if (this.buf.length < 4) return;
        len = this.buf.readUInt16BE(2);
        at = 4;
      } else if (len === 127) {
        if (this.buf.length < 10) return;
        len = Number(this.buf.readBigUInt64BE(2));
        at = 10;
      }
      if (this.buf.length < at + len) return;
      const payload = this.buf.subarray(at, at + len);
      this.buf = this.buf.subarray(at + len);
      if (op === 0x9) this.frame(0xa, payload);
      else if (op === 0x1) this.message(JSON.parse(payload.toString('utf8')));
    }
  }

  message(m) {
    // Responses carry an id; events (no id) are not needed here.
    const w = m.id !== undefined && this.waiting.get(m.id);
    if (!w) return;
    this.waiting.delete(m.id);
    if (m.error) w.reject(Object.assign(new Error(`${m.error.code} ${m.error.message}`), { rpc: m.error }));
    else w.resolve(m.result);
  }

  frame(op, payload) {
    const mask = randomBytes(4);
    const len = payload.length;
    const head = len < 126 ? Buffer.from([0x80 | op, 0x80 | len]) : Buffer.alloc(4);
    if (len >= 126) {
      if (len > 0xffff) throw new Error('message too large for this test client');
      head[0] = 0x80 | op;
      head[1] = 0x80 | 126;
      head.writeUInt16BE(len, 2);
    }
    const body = Buffer.from(payload);
    for (let i = 0; i < body.length; i++) body[i] ^= mask[i & 3];
    this.sock.write(Buffer.concat([head, mask, body]));
  }

  call(method, params) {
    if (this.closed) return Promise.reject(this.closed);
    const id = this.next++;
    const p = new Promise((resolve, reject) => this.waiting.set(id, { resolve, reject }));
    this.frame(0x1, Buffer.from(JSON.stringify({ jsonrpc: '2.0', id, method, params })));
    return p;
  }

  close() {
    this.sock.destroy();
  }
}
