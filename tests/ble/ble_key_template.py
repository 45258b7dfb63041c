"""A BLE key (docs/ble-keys.md) on python-dbusmock's bluez5 mock: a dbusmock template
loaded on top of `bluez5` with the Mock API's AddTemplate, once per key.

It adds the APDU service's GATT objects under an existing mock device
(org.bluez.GattService1 and three GattCharacteristic1 objects, with AddObject and
AddMethods, and InterfacesAdded emitted for each), advertises the service in the device's
UUIDs (UpdateProperties), and replaces the template's Device1.Connect/Disconnect so that
they also set ServicesResolved (btleplug waits for it) and keep the properties true.

Behind the control point sits the key side of the FIDO BLE framing, written here again
in Python, independently of the Rust codec: WriteValue reassembles fragments, a complete
MSG is forwarded to a card over TCP (the vpcd protocol: 2-byte big-endian length +
payload; tests/pcsc/vpcd_openpgp.py connects as the card and runs the PyPI OpenPGP card
emulator), and the response is fragmented at the key's control-point length and sent as
PropertiesChanged(Value) on the status characteristic, as BlueZ reports notifications.

Faults, set through org.keybridge.RigKey1 on /org/keybridge/rig/dev_XX_..:
DropLinkOn(y ins): the next command APDU with that INS reaches the card, then the link
drops (Connected=false) instead of an answer; RawAnswers(aay): fragments sent instead of
the next answer (malformed frames).

Parameters: adapter (hci0), address, fragment (control-point length), port (TCP port to
listen on for the card). Loopback only.
"""

import socket
import struct

import dbus
from gi.repository import GLib

from dbusmock import OBJECT_MANAGER_IFACE, mockobject

SERVICE = "6b62a5d0-7e3c-4d0b-9a43-2f1c0b5e0001"
CONTROL_POINT = "6b62a5d0-7e3c-4d0b-9a43-2f1c0b5e0002"
STATUS = "6b62a5d0-7e3c-4d0b-9a43-2f1c0b5e0003"
CONTROL_POINT_LENGTH = "6b62a5d0-7e3c-4d0b-9a43-2f1c0b5e0004"
DEVICE_IFACE = "org.bluez.Device1"
SERVICE_IFACE = "org.bluez.GattService1"
CHAR_IFACE = "org.bluez.GattCharacteristic1"
RIG_IFACE = "org.keybridge.RigKey1"

MSG, KEEPALIVE, CANCEL, ERROR, PING = 0x83, 0x82, 0xBE, 0xBF, 0x81
ERR_INVALID_CMD, ERR_INVALID_LEN, ERR_INVALID_SEQ = 0x01, 0x03, 0x04


class Key:
    """One key: framing state, faults, and the card connection."""

    def __init__(self, device, status, fragment, port):
        self.device = device
        self.status = status
        self.fragment = fragment
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", port))
        self.listener.listen(1)
        self.card = None
        self.partial = None  # [cmd, announced, bytearray, next_seq]
        self.drop_on = None
        self.raw = []

    # --- the card (vpcd protocol) ---
    def card_sock(self):
        if self.card is None:
            self.listener.settimeout(30)
            self.card, _ = self.listener.accept()
            self.card.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.card.settimeout(60)
            self.card.sendall(struct.pack(">HB", 1, 0x01))  # power on
        return self.card

    def transmit(self, apdu):
        s = self.card_sock()
        s.sendall(struct.pack(">H", len(apdu)) + bytes(apdu))
        (n,) = struct.unpack(">H", self.recv_exact(s, 2))
        return self.recv_exact(s, n)

    @staticmethod
    def recv_exact(s, n):
        buf = b""
        while len(buf) < n:
            chunk = s.recv(n - len(buf))
            if not chunk:
                raise EOFError("the card went away")
            buf += chunk
        return buf

    # --- the framing, key side ---
    def fragments(self, cmd, data):
        out = [bytes([cmd]) + struct.pack(">H", len(data)) + data[: self.fragment - 3]]
        rest, seq = data[self.fragment - 3 :], 0
        while rest:
            out.append(bytes([seq]) + rest[: self.fragment - 1])
            rest, seq = rest[self.fragment - 1 :], (seq + 1) & 0x7F
        return out

    def notify(self, frags):
        for f in frags:
            self.status.UpdateProperties(CHAR_IFACE, {"Value": dbus.Array(f, signature="y")})

    def error(self, code):
        self.partial = None
        self.notify(self.fragments(ERROR, bytes([code])))

    def on_write(self, value):
        value = bytes(value)
        if not value:
            return self.error(ERR_INVALID_LEN)
        head = value[0]
        if head & 0x80:
            if self.partial is not None or len(value) < 3:
                return self.error(ERR_INVALID_SEQ if self.partial is not None else ERR_INVALID_LEN)
            (announced,) = struct.unpack(">H", value[1:3])
            if len(value) - 3 > announced:
                return self.error(ERR_INVALID_LEN)
            self.partial = [head, announced, bytearray(value[3:]), 0]
        else:
            if self.partial is None or head != self.partial[3]:
                return self.error(ERR_INVALID_SEQ)
            self.partial[2] += value[1:]
            self.partial[3] = (self.partial[3] + 1) & 0x7F
            if len(self.partial[2]) > self.partial[1]:
                return self.error(ERR_INVALID_LEN)
        if len(self.partial[2]) == self.partial[1]:
            cmd, _, data, _ = self.partial
            self.partial = None
            # Answer after the WriteValue reply, as a key's notifications follow the write.
            GLib.idle_add(self.on_message, cmd, bytes(data))
        return None

    def on_message(self, cmd, data):
        if cmd == CANCEL:
            return False
        if cmd == PING:
            self.notify(self.fragments(PING, data))
            return False
        if cmd != MSG:
            self.error(ERR_INVALID_CMD)
            return False
        if self.drop_on is not None and len(data) >= 2 and data[1] == self.drop_on:
            self.drop_on = None
            self.transmit(data)  # it reached the card...
            set_connected(self.device, False)  # ...and the link drops before the answer
            return False
        if self.raw:
            self.notify([bytes(f) for f in self.raw.pop(0)])
            return False
        self.notify(self.fragments(MSG, self.transmit(data)))
        return False


def set_connected(device, up):
    device.connected = up
    device.UpdateProperties(DEVICE_IFACE, {
        "Connected": dbus.Boolean(up),
        "ServicesResolved": dbus.Boolean(up),
    })


def device_connect(device):
    if device.connected:
        raise dbus.exceptions.DBusException("Already Connected", name="org.bluez.Error.AlreadyConnected")
    set_connected(device, True)


def device_disconnect(device):
    if not device.connected:
        raise dbus.exceptions.DBusException("Not Connected", name="org.bluez.Error.NotConnected")
    set_connected(device, False)


def emit_added(path):
    obj = mockobject.objects[path]
    mockobject.objects["/"].EmitSignal(OBJECT_MANAGER_IFACE, "InterfacesAdded", "oa{sa{sv}}", [
        dbus.ObjectPath(path), obj.props,
    ])


def load(mock, parameters):
    adapter = str(parameters.get("adapter", "hci0"))
    address = str(parameters["address"])
    fragment = int(parameters["fragment"])
    port = int(parameters["port"])
    dev_path = f"/org/bluez/{adapter}/dev_{address.replace(':', '_').upper()}"
    device = mockobject.objects[dev_path]
    device.connected = False
    device.UpdateProperties(DEVICE_IFACE, {
        "UUIDs": dbus.Array([SERVICE], signature="s"),
        "RSSI": dbus.Int16(-52),
    })
    device.AddMethods(DEVICE_IFACE, [
        ("Connect", "", "", device_connect),
        ("Disconnect", "", "", device_disconnect),
    ])

    svc = f"{dev_path}/service0010"
    mock.AddObject(svc, SERVICE_IFACE, {
        "UUID": dbus.String(SERVICE),
        "Primary": dbus.Boolean(True),
        "Device": dbus.ObjectPath(dev_path),
        "Includes": dbus.Array([], signature="o"),
    }, [
        # Not BlueZ API: dbusmock writes an interface that has no methods after the
        # object's child nodes in its introspection XML, which the dbus crate's parser
        # (used by btleplug) rejects; one method keeps the interface in its place.
        ("RigIntrospectionOrder", "", "", ""),
    ])
    emit_added(svc)

    def characteristic(n, uuid, flags, value, methods):
        path = f"{svc}/char{n:04x}"
        mock.AddObject(path, CHAR_IFACE, {
            "UUID": dbus.String(uuid),
            "Service": dbus.ObjectPath(svc),
            "Value": dbus.Array(value, signature="y"),
            "Flags": dbus.Array(flags, signature="s"),
            "Notifying": dbus.Boolean(False),
        }, methods)
        emit_added(path)
        return mockobject.objects[path]

    def read_value(obj, _options):
        return dbus.Array(obj.props[CHAR_IFACE]["Value"], signature="y")

    def start_notify(obj):
        obj.UpdateProperties(CHAR_IFACE, {"Notifying": dbus.Boolean(True)})

    def stop_notify(obj):
        obj.UpdateProperties(CHAR_IFACE, {"Notifying": dbus.Boolean(False)})

    key = None

    def write_value(_obj, value, _options):
        if not device.connected:
            raise dbus.exceptions.DBusException("Not connected", name="org.bluez.Error.Failed")
        key.on_write(value)

    characteristic(0x11, CONTROL_POINT, ["write"], [], [
        ("WriteValue", "aya{sv}", "", write_value),
    ])
    status = characteristic(0x13, STATUS, ["notify"], [], [
        ("StartNotify", "", "", start_notify),
        ("StopNotify", "", "", stop_notify),
        ("ReadValue", "a{sv}", "ay", read_value),
    ])
    characteristic(0x15, CONTROL_POINT_LENGTH, ["read"], list(struct.pack(">H", fragment)), [
        ("ReadValue", "a{sv}", "ay", read_value),
    ])
    key = Key(device, status, fragment, port)

    def drop_link_on(_obj, ins):
        key.drop_on = int(ins)

    def raw_answers(_obj, frags):
        key.raw.append([bytes(f) for f in frags])

    mock.AddObject(f"/org/keybridge/rig/dev_{address.replace(':', '_').upper()}", RIG_IFACE, {}, [
        ("DropLinkOn", "y", "", drop_link_on),
        ("RawAnswers", "aay", "", raw_answers),
    ])
