#!/usr/bin/python3
"""Drive the BLE rig's mock BlueZ (python-dbusmock `bluez5` on a private bus, the one
DBUS_SYSTEM_BUS_ADDRESS names) through dbusmock's Mock API.

  rig_ctl.py wait                         wait until org.bluez is on the bus
  rig_ctl.py adapter                      add adapter hci0 (bluez5's AddAdapter)
  rig_ctl.py key ADDRESS NAME FRAGMENT PORT
                                          add a device (AddDevice) and load
                                          ble_key_template.py on it (AddTemplate)
  rig_ctl.py device ADDRESS NAME UUID     add a device advertising another service (no GATT)
  rig_ctl.py drop-on ADDRESS INS          drop the link at the next APDU with INS (hex)
  rig_ctl.py raw ADDRESS HEX[,HEX...]     send these fragments instead of the next answer
  rig_ctl.py power off|on                 switch the adapter off/on (Powered)

Used by drivers/kb-ble/tests/rig. Needs Debian's python3-dbusmock (system python).
"""

import os
import sys
import time

import dbus

TEMPLATE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ble_key_template.py")


def bus():
    return dbus.SystemBus()


def mock():
    return dbus.Interface(bus().get_object("org.bluez", "/"), "org.bluez.Mock")


def main(argv):
    cmd = argv[1]
    if cmd == "wait":
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                if bus().name_has_owner("org.bluez"):
                    return 0
            except dbus.exceptions.DBusException:
                pass
            time.sleep(0.05)
        print("org.bluez did not appear", file=sys.stderr)
        return 1
    if cmd == "adapter":
        mock().AddAdapter("hci0", "KeyBridge rig")
        return 0
    if cmd == "key":
        address, name, fragment, port = argv[2], argv[3], int(argv[4]), int(argv[5])
        mock().AddDevice("hci0", address, name)
        dbus.Interface(bus().get_object("org.bluez", "/"), "org.freedesktop.DBus.Mock").AddTemplate(
            TEMPLATE,
            dbus.Dictionary({
                "adapter": "hci0",
                "address": address,
                "fragment": dbus.Int32(fragment),
                "port": dbus.Int32(port),
            }, signature="sv"),
        )
        return 0
    if cmd == "device":
        # A device that is not a KeyBridge key: it advertises another service (a FIDO
        # security key's 0xFFFD, a heart-rate sensor's 0x180D) and has no GATT objects.
        address, name, service = argv[2], argv[3], argv[4]
        path = mock().AddDevice("hci0", address, name)
        dev = dbus.Interface(bus().get_object("org.bluez", path), "org.freedesktop.DBus.Mock")
        dev.UpdateProperties("org.bluez.Device1", {
            "UUIDs": dbus.Array([service], signature="s"),
            "RSSI": dbus.Int16(-61),
        })
        return 0
    path = None
    if cmd in ("drop-on", "raw"):
        path = "/org/keybridge/rig/dev_" + argv[2].replace(":", "_").upper()
        rig = dbus.Interface(bus().get_object("org.bluez", path), "org.keybridge.RigKey1")
        if cmd == "drop-on":
            rig.DropLinkOn(dbus.Byte(int(argv[3], 16)))
        else:
            frags = [dbus.ByteArray(bytes.fromhex(h)) for h in argv[3].split(",")]
            rig.RawAnswers(dbus.Array(frags, signature="ay"))
        return 0
    if cmd == "power":
        adapter = dbus.Interface(bus().get_object("org.bluez", "/org/bluez/hci0"), "org.freedesktop.DBus.Mock")
        adapter.UpdateProperties("org.bluez.Adapter1", {"Powered": dbus.Boolean(argv[2] == "on")})
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
