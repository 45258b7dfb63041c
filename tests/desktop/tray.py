#!/usr/bin/python3
"""The tray menu of a running keybridge-desktop, as a tray host sees it: the app's
StatusNotifierItem exports its menu on the session bus (com.canonical.dbusmenu, through
libayatana-appindicator); a tray host shows that menu and reports a click with the
menu's Event method. Uses Debian's python3-dbus (the system interpreter).

  tray.py find PID LABEL    print "BUS_NAME MENU_PATH ITEM_ID" of the menu item whose
                            label contains LABEL; exit 1 if there is none
  tray.py click PID LABEL   click it
  tray.py labels PID        print the label of every item of PID's tray menu, one a line;
                            exit 1 if PID exports no tray menu
  tray.py opened PID        report the menu shown, as a host does when it draws it
                            (AboutToShow and Event "opened" on the menu's root, id 0)
  tray.py closed PID        report the menu closed (Event "closed" on the root)

A click from the shell without Python's start-up: `gdbus call --session --dest BUS_NAME
--object-path MENU_PATH --method com.canonical.dbusmenu.Event ITEM_ID clicked '<0>' 0`.
"""
import sys
import xml.etree.ElementTree as ET

import dbus

MENU = "com.canonical.dbusmenu"


def menu_paths(bus, name, path="/"):
    """Every object under `path` of `name` that implements the dbusmenu interface."""
    xml = dbus.Interface(bus.get_object(name, path, introspect=False), "org.freedesktop.DBus.Introspectable").Introspect()
    root = ET.fromstring(str(xml))
    if any(i.get("name") == MENU for i in root.findall("interface")):
        yield path
    for node in root.findall("node"):
        child = node.get("name")
        yield from menu_paths(bus, name, (path.rstrip("/") + "/" + child))


def items(layout):
    """(id, label) of every item of a GetLayout answer, depth first."""
    ident, props, children = layout
    yield int(ident), str(props.get("label", ""))
    for c in children:
        yield from items(c)


def find(pid, label):
    """(bus, bus name, menu path, item id) of the first item of `pid`'s menu whose label
    contains `label` ("" matches the menu's root), or None."""
    bus = dbus.SessionBus()
    daemon = dbus.Interface(bus.get_object("org.freedesktop.DBus", "/org/freedesktop/DBus"), "org.freedesktop.DBus")
    for name in daemon.ListNames():
        if not name.startswith(":"):
            continue
        try:
            if int(daemon.GetConnectionUnixProcessID(name)) != pid:
                continue
            for path in menu_paths(bus, name):
                menu = dbus.Interface(bus.get_object(name, path, introspect=False), MENU)
                _, layout = menu.GetLayout(0, -1, dbus.Array([], signature="s"))
                for ident, text in items(layout):
                    if label in text:
                        return bus, name, path, ident
        except dbus.exceptions.DBusException:
            continue
    return None


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "labels":
        found = find(int(sys.argv[2]), "")
        if not found:
            sys.exit(f"tray.py: process {sys.argv[2]} exports no tray menu on the session bus")
        bus, name, path, _ = found
        _, layout = dbus.Interface(bus.get_object(name, path, introspect=False), MENU).GetLayout(0, -1, dbus.Array([], signature="s"))
        for _, text in items(layout):
            if text:
                print(text)
        return
    if len(sys.argv) == 3 and sys.argv[1] in ("opened", "closed"):
        found = find(int(sys.argv[2]), "")
        if not found:
            sys.exit(f"tray.py: process {sys.argv[2]} exports no tray menu on the session bus")
        bus, name, path, _ = found
        menu = dbus.Interface(bus.get_object(name, path, introspect=False), MENU)
        if sys.argv[1] == "opened":
            menu.AboutToShow(dbus.Int32(0))
        menu.Event(dbus.Int32(0), sys.argv[1], dbus.Int32(0, variant_level=1), dbus.UInt32(0))
        return
    if len(sys.argv) != 4 or sys.argv[1] not in ("find", "click"):
        sys.exit(__doc__)
    found = find(int(sys.argv[2]), sys.argv[3])
    if not found:
        sys.exit(f"tray.py: no tray menu item {sys.argv[3]!r} of process {sys.argv[2]} on the session bus")
    bus, name, path, ident = found
    if sys.argv[1] == "find":
        print(name, path, ident)
    else:
        menu = dbus.Interface(bus.get_object(name, path, introspect=False), MENU)
        menu.Event(dbus.Int32(ident), "clicked", dbus.Int32(0, variant_level=1), dbus.UInt32(0))


if __name__ == "__main__":
    main()
