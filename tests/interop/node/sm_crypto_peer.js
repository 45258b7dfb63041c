#!/usr/bin/env node
// JSON-over-stdio driver for npm sm-crypto, an independent SM2/SM3/SM4 peer for
// KeyBridge's interop tests (tests/interop/tests/sm_crypto.rs).
//
// Reads one JSON object on stdin, writes one on stdout. Byte strings are hex.
// On failure the reply is {"error": "..."} and the exit status is 1.
//
// sm-crypto facts this relies on (read from sm-crypto 0.3.13's source):
// - Private keys are 64 hex chars; generateKeyPairHex / getPublicKeyFromPrivateKey give
//   public keys as 04||x||y (130 hex). doVerifySignature and doEncrypt decode the key
//   with decodePointHex, so they need the 04 (or 02/03) prefix.
// - doSignature / doVerifySignature with {hash: true} compute e = SM3(ZA || M) with
//   userId (a UTF-8 string, default '1234567812345678'); {der: true} is ASN.1 DER,
//   otherwise raw r||s. A message given as an array is taken as bytes.
// - doEncrypt(msg, pub, cipherMode): 1 = C1C3C2, 0 = C1C2C3, C1 without 04.
//   doDecrypt checks C3 and returns [] (with output 'array') on failure.
// - sm4.encrypt / decrypt: ECB unless {mode: 'cbc', iv}; padding 'pkcs#7' or 'none'.
'use strict'

const fs = require('fs')
const { sm2, sm3, sm4 } = require('sm-crypto')

const bytes = (h) => Array.from(Buffer.from(h, 'hex'))
const hex = (a) => Buffer.from(a).toString('hex')

function checkHex (h, what) {
  if (typeof h !== 'string' || !/^([0-9a-fA-F]{2})*$/.test(h)) throw new Error(`${what} is not hex`)
  return h
}

const OPS = {
  version: () => ({ version: require('sm-crypto/package.json').version }),

  keygen: () => {
    const kp = sm2.generateKeyPairHex()
    return { d: kp.privateKey, pub: kp.publicKey }
  },

  public_key: (req) => ({ pub: sm2.getPublicKeyFromPrivateKey(checkHex(req.d, 'd')) }),

  sm2_sign: (req) => {
    const opts = { hash: true, der: !!req.der }
    if (req.id !== undefined && req.id !== null) opts.userId = req.id
    if (req.pub) opts.publicKey = req.pub
    return { sig: sm2.doSignature(bytes(checkHex(req.msg, 'msg')), checkHex(req.d, 'd'), opts) }
  },

  sm2_verify: (req) => {
    const opts = { hash: true, der: !!req.der }
    if (req.id !== undefined && req.id !== null) opts.userId = req.id
    return { valid: sm2.doVerifySignature(bytes(checkHex(req.msg, 'msg')), checkHex(req.sig, 'sig'), checkHex(req.pub, 'pub'), opts) === true }
  },

  sm2_encrypt: (req) => ({ ct: sm2.doEncrypt(bytes(checkHex(req.msg, 'msg')), checkHex(req.pub, 'pub'), req.mode) }),

  sm2_decrypt: (req) => ({ pt: hex(sm2.doDecrypt(checkHex(req.ct, 'ct'), checkHex(req.d, 'd'), req.mode, { output: 'array' })) }),

  sm3: (req) => ({ digest: sm3(bytes(checkHex(req.data, 'data'))) }),

  sm4: (req) => {
    const opts = { output: 'array', padding: req.padding || 'pkcs#7' }
    if (req.mode === 'cbc') {
      opts.mode = 'cbc'
      opts.iv = checkHex(req.iv, 'iv')
    } else if (req.mode !== 'ecb') {
      throw new Error('mode must be cbc or ecb')
    }
    const f = req.decrypt ? sm4.decrypt : sm4.encrypt
    return { out: hex(f(bytes(checkHex(req.data, 'data')), checkHex(req.key, 'key'), opts)) }
  }
}

function dispatch (req) {
  const op = OPS[req.op]
  if (!op) throw new Error(`unknown op ${req.op}`)
  return op(req)
}

// {"op": "batch", "requests": [...]} answers {"replies": [...]}, in order, in one process.
function main () {
  let reply
  try {
    const req = JSON.parse(fs.readFileSync(0, 'utf8'))
    reply = req.op === 'batch' ? { replies: req.requests.map(dispatch) } : dispatch(req)
  } catch (e) {
    process.stdout.write(JSON.stringify({ error: String(e && e.stack ? e.stack : e) }))
    process.exitCode = 1
    return
  }
  process.stdout.write(JSON.stringify(reply))
}

main()
