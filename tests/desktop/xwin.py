#!/usr/bin/env python3
"""The window's close button, as a user presses it, for the tests under Xvfb (no window
manager runs there): the WM_DELETE_WINDOW message a window manager sends to a top-level
window (ICCCM 4.1.2.7), by libX11 through ctypes (no Python package needed).

  xwin.py close PID    ask every KeyBridge window of process PID, or of a process it
                       started (the window process), to close; exit 1 if none
  xwin.py count PID    print how many KeyBridge windows process PID and its descendants have
  xwin.py mapped PID   the same, counting only windows mapped on screen (a window made but
                       not shown yet is not)
  xwin.py click X Y    press and release the left button at X, Y of the screen (XTest: as a
                       user's pointer, which a tray host's own widgets receive)
  xwin.py keys KEYSYM...  press and release each key in turn (XTest), e.g. Down Return
  xwin.py strip HEIGHT the bounding box of what is drawn in the screen's top HEIGHT rows on
                       top of their commonest colour (a panel's background): "X0 Y0 X1 Y1",
                       exit 1 when nothing is
  xwin.py colors PID   how many distinct colours the X server holds for PID's mapped KeyBridge
                       window (XGetImage, every 4th pixel of every 4th row): what is on screen,
                       not what the page says it drew — a blank or unpainted window has 1 or 2,
                       the UI's text and icons hundreds; 0 when no window is mapped
"""
import ctypes
import ctypes.util
import os
import sys

x11 = ctypes.CDLL(ctypes.util.find_library("X11") or "libX11.so.6")
Window = Atom = ctypes.c_ulong
x11.XOpenDisplay.restype = ctypes.c_void_p
x11.XOpenDisplay.argtypes = [ctypes.c_char_p]
x11.XDefaultRootWindow.restype = Window
x11.XDefaultRootWindow.argtypes = [ctypes.c_void_p]
x11.XInternAtom.restype = Atom
x11.XInternAtom.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
x11.XQueryTree.argtypes = [ctypes.c_void_p, Window, ctypes.POINTER(Window), ctypes.POINTER(Window),
                           ctypes.POINTER(ctypes.POINTER(Window)), ctypes.POINTER(ctypes.c_uint)]
x11.XGetWindowProperty.argtypes = [ctypes.c_void_p, Window, Atom, ctypes.c_long, ctypes.c_long, ctypes.c_int, Atom,
                                   ctypes.POINTER(Atom), ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_ulong),
                                   ctypes.POINTER(ctypes.c_ulong), ctypes.POINTER(ctypes.c_void_p)]
x11.XFree.argtypes = [ctypes.c_void_p]
x11.XSendEvent.argtypes = [ctypes.c_void_p, Window, ctypes.c_int, ctypes.c_long, ctypes.c_void_p]
x11.XFlush.argtypes = [ctypes.c_void_p]
x11.XCloseDisplay.argtypes = [ctypes.c_void_p]


class ClientMessage(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("serial", ctypes.c_ulong), ("send_event", ctypes.c_int),
                ("display", ctypes.c_void_p), ("window", Window), ("message_type", Atom),
                ("format", ctypes.c_int), ("l", ctypes.c_long * 5)]


class XEvent(ctypes.Union):
    _fields_ = [("xclient", ClientMessage), ("pad", ctypes.c_long * 24)]


class XWindowAttributes(ctypes.Structure):
    _fields_ = [("x", ctypes.c_int), ("y", ctypes.c_int), ("width", ctypes.c_int), ("height", ctypes.c_int),
                ("border_width", ctypes.c_int), ("depth", ctypes.c_int), ("visual", ctypes.c_void_p),
                ("root", Window), ("class_", ctypes.c_int), ("bit_gravity", ctypes.c_int),
                ("win_gravity", ctypes.c_int), ("backing_store", ctypes.c_int), ("backing_planes", ctypes.c_ulong),
                ("backing_pixel", ctypes.c_ulong), ("save_under", ctypes.c_int), ("colormap", ctypes.c_ulong),
                ("map_installed", ctypes.c_int), ("map_state", ctypes.c_int), ("all_event_masks", ctypes.c_long),
                ("your_event_mask", ctypes.c_long), ("do_not_propagate_mask", ctypes.c_long),
                ("override_redirect", ctypes.c_int), ("screen", ctypes.c_void_p)]


x11.XGetWindowAttributes.argtypes = [ctypes.c_void_p, Window, ctypes.POINTER(XWindowAttributes)]


class XImage(ctypes.Structure):
    # The leading fields of Xlib's XImage (X11/Xlib.h), enough to read a ZPixmap. XDestroyImage
    # is a macro: an image from XGetImage is freed with XFree (its data, then itself).
    _fields_ = [("width", ctypes.c_int), ("height", ctypes.c_int), ("xoffset", ctypes.c_int),
                ("format", ctypes.c_int), ("data", ctypes.c_void_p), ("byte_order", ctypes.c_int),
                ("bitmap_unit", ctypes.c_int), ("bitmap_bit_order", ctypes.c_int), ("bitmap_pad", ctypes.c_int),
                ("depth", ctypes.c_int), ("bytes_per_line", ctypes.c_int), ("bits_per_pixel", ctypes.c_int)]


x11.XGetImage.restype = ctypes.POINTER(XImage)
x11.XGetImage.argtypes = [ctypes.c_void_p, Window, ctypes.c_int, ctypes.c_int, ctypes.c_uint, ctypes.c_uint,
                          ctypes.c_ulong, ctypes.c_int]
Z_PIXMAP = 2
ALL_PLANES = 0xFFFFFFFF
x11.XStringToKeysym.restype = ctypes.c_ulong
x11.XStringToKeysym.argtypes = [ctypes.c_char_p]
x11.XKeysymToKeycode.restype = ctypes.c_ubyte
x11.XKeysymToKeycode.argtypes = [ctypes.c_void_p, ctypes.c_ulong]
x11.XSync.argtypes = [ctypes.c_void_p, ctypes.c_int]


def xtest():
    xt = ctypes.CDLL(ctypes.util.find_library("Xtst") or "libXtst.so.6")
    xt.XTestFakeMotionEvent.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_ulong]
    xt.XTestFakeButtonEvent.argtypes = [ctypes.c_void_p, ctypes.c_uint, ctypes.c_int, ctypes.c_ulong]
    xt.XTestFakeKeyEvent.argtypes = [ctypes.c_void_p, ctypes.c_uint, ctypes.c_int, ctypes.c_ulong]
    return xt


def image(dpy, win, width, height):
    """(bytes, bytes_per_line) of a 32-bit ZPixmap of the area."""
    img = x11.XGetImage(dpy, win, 0, 0, width, height, ALL_PLANES, Z_PIXMAP)
    if not img:
        return None, 0
    try:
        im = img.contents
        if im.bits_per_pixel != 32:
            sys.exit(f"xwin.py: {im.bits_per_pixel}-bit pixels are not read here")
        return ctypes.string_at(im.data, im.bytes_per_line * im.height), im.bytes_per_line
    finally:
        x11.XFree(img.contents.data)
        x11.XFree(img)


def strip(dpy, height):
    """Bounding box of the pixels in the top rows that differ from their commonest colour."""
    attrs = XWindowAttributes()
    root = x11.XDefaultRootWindow(dpy)
    x11.XGetWindowAttributes(dpy, root, ctypes.byref(attrs))
    data, bpl = image(dpy, root, attrs.width, height)
    if data is None:
        return None
    px = lambda x, y: data[y * bpl + 4 * x:y * bpl + 4 * x + 3]  # noqa: E731
    counts = {}
    for y in range(height):
        for x in range(attrs.width):
            c = px(x, y)
            counts[c] = counts.get(c, 0) + 1
    background = max(counts, key=counts.get)
    drawn = [(x, y) for y in range(height) for x in range(attrs.width) if px(x, y) != background]
    if not drawn:
        return None
    xs, ys = [p[0] for p in drawn], [p[1] for p in drawn]
    return min(xs), min(ys), max(xs), max(ys)
CLIENT_MESSAGE = 33
IS_VIEWABLE = 2


def mapped(dpy, win):
    attrs = XWindowAttributes()
    return bool(x11.XGetWindowAttributes(dpy, win, ctypes.byref(attrs))) and attrs.map_state == IS_VIEWABLE


def colors(dpy, win):
    """Distinct pixel values of the window's contents as the X server holds them."""
    attrs = XWindowAttributes()
    if not x11.XGetWindowAttributes(dpy, win, ctypes.byref(attrs)) or attrs.map_state != IS_VIEWABLE:
        return 0
    data, bpl = image(dpy, win, attrs.width, attrs.height)
    if data is None:
        return 0
    seen = set()
    for y in range(0, attrs.height, 4):
        for x in range(0, attrs.width, 4):
            seen.add(data[y * bpl + 4 * x:y * bpl + 4 * x + 3])  # the colour bytes, not the padding
    return len(seen)


def prop(dpy, win, name, kind):
    """A property's bytes (format 8) or longs (format 32), or None."""
    atype, afmt, n, after, data = Atom(), ctypes.c_int(), ctypes.c_ulong(), ctypes.c_ulong(), ctypes.c_void_p()
    if x11.XGetWindowProperty(dpy, win, x11.XInternAtom(dpy, name, 0), 0, 1024, 0, x11.XInternAtom(dpy, kind, 0),
                              ctypes.byref(atype), ctypes.byref(afmt), ctypes.byref(n), ctypes.byref(after),
                              ctypes.byref(data)) != 0 or not data.value:
        return None
    try:
        if afmt.value == 8:
            return ctypes.string_at(data.value, n.value)
        if afmt.value == 32:
            return list((ctypes.c_long * n.value).from_address(data.value))
        return None
    finally:
        x11.XFree(data)


def tree(pid):
    """PID and every process it started, directly or not."""
    kids = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        kids.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def keybridge_windows(dpy, pid):
    root = x11.XDefaultRootWindow(dpy)
    r, parent, children, n = Window(), Window(), ctypes.POINTER(Window)(), ctypes.c_uint()
    if not x11.XQueryTree(dpy, root, ctypes.byref(r), ctypes.byref(parent), ctypes.byref(children), ctypes.byref(n)):
        return []
    wins = [children[i] for i in range(n.value)]
    if children:
        x11.XFree(children)
    found = []
    pids = set(tree(pid))
    for w in wins:
        owner = prop(dpy, w, b"_NET_WM_PID", b"CARDINAL")
        if not owner or owner[0] not in pids:
            continue
        name = prop(dpy, w, b"_NET_WM_NAME", b"UTF8_STRING") or b""
        if b"KeyBridge" in name:
            found.append(w)
    return found


def display():
    dpy = x11.XOpenDisplay(os.environ.get("DISPLAY", "").encode() or None)
    if not dpy:
        sys.exit("xwin.py: cannot open the display")
    return dpy


def pointer_and_keys(args):
    """click X Y | keys KEYSYM... | strip HEIGHT"""
    dpy = display()
    try:
        if args[0] == "strip":
            box = strip(dpy, int(args[1]))
            if not box:
                sys.exit("xwin.py: nothing drawn there")
            print(*box)
            return
        xt = xtest()
        if args[0] == "click":
            xt.XTestFakeMotionEvent(dpy, -1, int(args[1]), int(args[2]), 0)
            xt.XTestFakeButtonEvent(dpy, 1, 1, 0)
            xt.XTestFakeButtonEvent(dpy, 1, 0, 0)
        else:
            for name in args[1:]:
                code = x11.XKeysymToKeycode(dpy, x11.XStringToKeysym(name.encode()))
                if not code:
                    sys.exit(f"xwin.py: no key for {name}")
                xt.XTestFakeKeyEvent(dpy, code, 1, 0)
                xt.XTestFakeKeyEvent(dpy, code, 0, 0)
                x11.XSync(dpy, 0)
        x11.XSync(dpy, 0)
    finally:
        x11.XCloseDisplay(dpy)


def main():
    if len(sys.argv) >= 3 and sys.argv[1] in ("click", "keys", "strip"):
        return pointer_and_keys(sys.argv[1:])
    if len(sys.argv) != 3 or sys.argv[1] not in ("close", "count", "mapped", "colors"):
        sys.exit(__doc__)
    pid = int(sys.argv[2])
    dpy = display()
    wins = keybridge_windows(dpy, pid)
    if sys.argv[1] == "count":
        print(len(wins))
    elif sys.argv[1] == "mapped":
        print(sum(1 for w in wins if mapped(dpy, w)))
    elif sys.argv[1] == "colors":
        print(max((colors(dpy, w) for w in wins), default=0))
    else:
        protocols = x11.XInternAtom(dpy, b"WM_PROTOCOLS", 0)
        delete = x11.XInternAtom(dpy, b"WM_DELETE_WINDOW", 0)
        for w in wins:
            ev = XEvent()
            ev.xclient.type = CLIENT_MESSAGE
            ev.xclient.window = w
            ev.xclient.message_type = protocols
            ev.xclient.format = 32
            ev.xclient.l[0] = delete
            ev.xclient.l[1] = 0  # CurrentTime
            x11.XSendEvent(dpy, w, 0, 0, ctypes.byref(ev))
        x11.XFlush(dpy)
    x11.XCloseDisplay(dpy)
    if sys.argv[1] == "close" and not wins:
        sys.exit(f"xwin.py: process {pid} has no KeyBridge window")


if __name__ == "__main__":
    main()
