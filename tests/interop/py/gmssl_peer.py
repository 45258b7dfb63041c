#!/usr/bin/env python3
"""JSON-over-stdio driver for PyPI gmssl, an independent SM2/SM3/SM4 peer for
KeyBridge's interop tests (tests/interop/tests/gmssl.rs).

Reads one JSON object on stdin, writes one on stdout. Byte strings are hex.
On failure the reply is {"error": "..."} and the exit status is 1.

gmssl facts this relies on (read from gmssl 3.2.2's source):
- CryptSM2 wants the private key as hex and the public key as 128 hex chars, x||y,
  without the 04 prefix. Its constructor strips a prefix with public_key.lstrip("04"),
  which removes *every* leading '0' and '4' character, so a key whose x starts with
  0 or 4 gets corrupted; we set the attribute again after construction.
- sign_with_sm3 / verify_with_sm3 hash with the fixed ID 1234567812345678 and use raw
  r||s (64 hex each).
- mode=1 is C1C3C2, mode=0 is C1C2C3; C1 is x||y without 04. decrypt does not check C3.
- sm4.CryptSM4 crypt_ecb / crypt_cbc always pad with PKCS#7.
"""

import json
import sys
from importlib.metadata import version

from gmssl import sm2, sm3, sm4


def pub_xy(h):
    h = h.lower()
    if len(h) == 130 and h.startswith("04"):
        h = h[2:]
    if len(h) != 128:
        raise ValueError("public key must be x||y (128 hex chars)")
    return h


def crypt_sm2(req, mode=1):
    pub = pub_xy(req["pub"])
    c = sm2.CryptSM2(private_key=req.get("d", ""), public_key=pub, mode=mode)
    c.public_key = pub  # undo the constructor's lstrip("04") (see module doc)
    return c


def sm2_sign(req):
    c = crypt_sm2(req)
    msg = bytes.fromhex(req["msg"])
    while True:
        sig = c.sign_with_sm3(msg)
        if sig is not None:  # None when r == 0 or r + k == n: retry with a new k
            return {"sig": sig}


def sm2_verify(req):
    c = crypt_sm2(req)
    return {"valid": bool(c.verify_with_sm3(req["sig"], bytes.fromhex(req["msg"])))}


def sm2_encrypt(req):
    c = crypt_sm2(req, mode=int(req["mode"]))
    ct = c.encrypt(bytes.fromhex(req["msg"]))
    if ct is None:
        raise ValueError("gmssl encrypt returned None")
    return {"ct": ct.hex()}


def sm2_decrypt(req):
    c = crypt_sm2(req, mode=int(req["mode"]))
    return {"pt": c.decrypt(bytes.fromhex(req["ct"])).hex()}


def sm3_hash(req):
    return {"digest": sm3.sm3_hash(list(bytes.fromhex(req["data"])))}


def sm4_op(req):
    decrypt = bool(req.get("decrypt", False))
    c = sm4.CryptSM4()
    c.set_key(bytes.fromhex(req["key"]), sm4.SM4_DECRYPT if decrypt else sm4.SM4_ENCRYPT)
    data = bytes.fromhex(req["data"])
    if req["mode"] == "cbc":
        out = c.crypt_cbc(bytes.fromhex(req["iv"]), data)
    elif req["mode"] == "ecb":
        out = c.crypt_ecb(data)
    else:
        raise ValueError("mode must be cbc or ecb")
    return {"out": out.hex()}


OPS = {
    "version": lambda req: {"version": version("gmssl")},
    "sm2_sign": sm2_sign,
    "sm2_verify": sm2_verify,
    "sm2_encrypt": sm2_encrypt,
    "sm2_decrypt": sm2_decrypt,
    "sm3": sm3_hash,
    "sm4": sm4_op,
}


def main():
    try:
        req = json.load(sys.stdin)
        if req["op"] == "batch":  # {"op": "batch", "requests": [...]} -> {"replies": [...]}
            reply = {"replies": [OPS[r["op"]](r) for r in req["requests"]]}
        else:
            reply = OPS[req["op"]](req)
    except Exception as e:  # report every failure as JSON for the Rust side
        json.dump({"error": "%s: %s" % (type(e).__name__, e)}, sys.stdout)
        return 1
    json.dump(reply, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
