#!/usr/bin/env python3
"""Checks src-tauri/tauri.conf.json's bundle configuration as far as a Linux machine can,
for every platform (the msi and dmg ones are never built here):

- the whole file validates against the JSON schema of the pinned Tauri CLI
  (packaging/node_modules/@tauri-apps/cli/config.schema.json, installed by
  `installer/bootstrap.sh --package`);
- every file the bundle section names exists (icons, desktop template, maintainer scripts,
  changelog, extra files, the WiX fragment), the icons are what each platform needs
  (PNG sizes for Linux, .ico for Windows, .icns for macOS);
- the WiX fragment is well-formed and defines every componentGroupRefs id, and its
  Components have GUIDs; the wix upgradeCode is a GUID (it must never change);
- the Debian maintainer scripts are POSIX sh with `set -e`, the rpm ones never fail
  (end with `exit 0`).

Exit status 0 when all holds; every problem is printed.
"""

import json
import re
import sys
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONF = ROOT / "src-tauri" / "tauri.conf.json"
SCHEMA = ROOT / "packaging" / "node_modules" / "@tauri-apps" / "cli" / "config.schema.json"
WIX_NS = "{http://schemas.microsoft.com/wix/2006/wi}"

problems = []


def problem(msg):
    problems.append(msg)


def conf_path(p):
    return (CONF.parent / p).resolve()


def main():
    conf = json.loads(CONF.read_text())
    try:
        import jsonschema
    except ImportError:
        problem("python3-jsonschema is missing (Debian: python3-jsonschema)")
        jsonschema = None
    if jsonschema is not None:
        if not SCHEMA.exists():
            problem(f"{SCHEMA} missing: run installer/bootstrap.sh --package")
        else:
            schema = json.loads(SCHEMA.read_text())
            for e in jsonschema.Draft7Validator(schema).iter_errors(conf):
                problem(f"schema: {'/'.join(map(str, e.absolute_path))}: {e.message}")

    b = conf["bundle"]
    linux, windows, macos = b.get("linux", {}), b.get("windows", {}), b.get("macOS", {})

    # Files named by the bundle section.
    named = list(b.get("icon", []))
    for kind in ("deb", "rpm"):
        c = linux.get(kind, {})
        for key in ("desktopTemplate", "preInstallScript", "postInstallScript", "preRemoveScript", "postRemoveScript", "changelog"):
            if key in c:
                named.append(c[key])
        named.extend(c.get("files", {}).values())
    named.extend(windows.get("wix", {}).get("fragmentPaths", []))
    for p in named:
        if not conf_path(p).is_file():
            problem(f"bundle names {p}, which does not exist")

    # Icons: Linux PNG sizes, Windows .ico, macOS .icns.
    icons = b.get("icon", [])
    if not any(i.endswith(".ico") for i in icons):
        problem("no .ico icon: the Windows build needs one")
    if not any(i.endswith(".icns") for i in icons):
        problem("no .icns icon: the macOS build needs one")
    for i in icons:
        p = conf_path(i)
        if i.endswith(".png") and p.is_file():
            data = p.read_bytes()
            if data[:8] != b"\x89PNG\r\n\x1a\n":
                problem(f"{i} is not a PNG")
            w, h = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
            if w != h:
                problem(f"{i} is {w}x{h}; icons must be square")
        if i.endswith(".icns") and p.is_file() and p.read_bytes()[:4] != b"icns":
            problem(f"{i} is not an .icns file")
        if i.endswith(".ico") and p.is_file() and p.read_bytes()[:4] != b"\x00\x00\x01\x00":
            problem(f"{i} is not an .ico file")

    # Windows: the upgrade code and the fragment.
    wix = windows.get("wix", {})
    try:
        uuid.UUID(wix.get("upgradeCode", ""))
    except ValueError:
        problem("bundle.windows.wix.upgradeCode must be a GUID (and never change)")
    defined = set()
    for frag in wix.get("fragmentPaths", []):
        p = conf_path(frag)
        if not p.is_file():
            continue
        try:
            tree = ET.parse(p)
        except ET.ParseError as e:
            problem(f"{frag}: not well-formed XML: {e}")
            continue
        for g in tree.iter(WIX_NS + "ComponentGroup"):
            defined.add(g.get("Id"))
        for c in tree.iter(WIX_NS + "Component"):
            try:
                uuid.UUID(c.get("Guid", ""))
            except ValueError:
                problem(f"{frag}: Component {c.get('Id')} has no GUID")
        refs = {r.get("Id") for r in tree.iter(WIX_NS + "ComponentRef")}
        comps = {c.get("Id") for c in tree.iter(WIX_NS + "Component")}
        for r in refs - comps:
            problem(f"{frag}: ComponentRef {r} names no Component")
    for ref in wix.get("componentGroupRefs", []):
        if ref not in defined:
            problem(f"bundle.windows.wix.componentGroupRefs names {ref}, which no fragment defines")

    # macOS: a minimum version the Tauri 2 runtime supports (10.15+).
    mv = macos.get("minimumSystemVersion")
    if mv is not None and tuple(int(x) for x in mv.split(".")) < (10, 15):
        problem(f"bundle.macOS.minimumSystemVersion {mv} is below Tauri 2's 10.15")

    # Maintainer scripts.
    deb = linux.get("deb", {})
    for key in ("postInstallScript", "postRemoveScript", "preInstallScript", "preRemoveScript"):
        if key in deb and conf_path(deb[key]).is_file():
            text = conf_path(deb[key]).read_text()
            if not text.startswith("#!/bin/sh\n"):
                problem(f"{deb[key]}: a Debian maintainer script starts with #!/bin/sh")
            if not re.search(r"^set -e$", text, re.M):
                problem(f"{deb[key]}: a Debian maintainer script uses set -e")
    rpm = linux.get("rpm", {})
    for key in ("postInstallScript", "postRemoveScript"):
        if key in rpm and conf_path(rpm[key]).is_file():
            if not conf_path(rpm[key]).read_text().rstrip().endswith("exit 0"):
                problem(f"{rpm[key]}: an rpm scriptlet must not fail the transaction (end with exit 0)")

    for p in problems:
        print(f"check-config: {p}", file=sys.stderr)
    if problems:
        return 1
    print("check-config: tauri.conf.json bundle configuration ok (deb, rpm, appimage, msi, dmg)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
