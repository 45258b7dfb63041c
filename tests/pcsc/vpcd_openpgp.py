#!/usr/bin/env python3
"""An OpenPGP card in vsmartcard's virtual reader: the independent PyPI emulator
`smartcard-app-openpgp` (python-smartcard) bridged to vpcd.

vpcd (the pcscd driver) listens on 127.0.0.1:PORT; a virtual card is its TCP client.
Frames are a 2-byte big-endian length and a payload; 1-byte payloads are control
(00 power off, 01 power on, 02 reset, 04 get ATR, answered with the ATR), anything
else is a command APDU answered with the response APDU.

The card's state (keys, PINs, retry counters, certificate) lives in a ZODB FileStorage
under --state, so killing this process and starting it again is pulling the card out
and putting the same card back. While the process runs the card stays "inserted": if
vpcd goes away (pcscd restarted) it reconnects, as a card stays in its reader.

Loopback only; no other network use. Used by drivers/kb-pcsc/tests.
"""

import argparse
import os
import socket
import struct
import sys
import time

import ZODB
import ZODB.FileStorage
from smartcard import Card, MASTER_FILE_IDENTIFIER
from smartcard.app.openpgp import OpenPGP
from smartcard.utils import transaction_manager

OPENPGP_FILE_ID = b"\x12\x34"
PSO = 0x2A


def open_card(state_dir, serial):
    os.makedirs(state_dir, exist_ok=True)
    db = ZODB.DB(ZODB.FileStorage.FileStorage(os.path.join(state_dir, "card.fs")), pool_size=1)
    conn = db.open(transaction_manager=transaction_manager)
    root = conn.root
    try:
        card = root.card
    except AttributeError:
        with transaction_manager:
            card = root.card = Card(name=b"py-openpgp")
            # Manufacturer FFxx: the range the spec leaves for random serial numbers.
            app = OpenPGP(identifier=OPENPGP_FILE_ID, manufacturer=b"\xff\x4b", serial=bytes.fromhex(serial))
            app.activateSelf()
            card.createFile(card.traverse((MASTER_FILE_IDENTIFIER,)), app)
    with transaction_manager:
        card.traverse(path=(MASTER_FILE_IDENTIFIER, OPENPGP_FILE_ID))
    return card


def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        # vpcd writes the length and the payload separately; without a quick ACK here,
        # Nagle on its side and delayed ACK on ours cost ~40 ms per APDU.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return buf


def send_frame(sock, payload):
    sock.sendall(struct.pack(">H", len(payload)) + payload)


def serve(sock, card, slow_sign):
    while True:
        (length,) = struct.unpack(">H", recv_exact(sock, 2))
        payload = recv_exact(sock, length)
        if length == 1:
            ctl = payload[0]
            if ctl in (0x00, 0x01, 0x02):
                # Power off/on and reset lose volatile state (selection, verified PINs).
                card.clearVolatile()
            elif ctl == 0x04:
                send_frame(sock, bytes(card.getATR()))
            continue
        if slow_sign and len(payload) >= 4 and payload[1] == PSO and payload[2:4] == b"\x9e\x9a":
            # Said before the stall, so a fault test can wait for it instead of guessing.
            print("stalling PSO:CDS", file=sys.stderr, flush=True)
            time.sleep(slow_sign)
        send_frame(sock, bytes(card.runAPDU(bytearray(payload))))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--state", required=True, help="directory holding the card's state")
    p.add_argument("--serial", default="00000001", help="4-byte card serial, hex")
    p.add_argument("--slow-sign", type=float, default=0.0, help="seconds to stall every PSO:CDS (fault tests)")
    args = p.parse_args()
    card = open_card(args.state, args.serial)
    announced = False
    while True:
        try:
            sock = socket.create_connection(("127.0.0.1", args.port), timeout=None)
        except OSError:
            time.sleep(0.05)
            continue
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if not announced:
            print("inserted", flush=True)
            announced = True
        try:
            serve(sock, card, args.slow_sign)
        except (EOFError, OSError):
            pass
        finally:
            sock.close()
        time.sleep(0.05)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(0)
