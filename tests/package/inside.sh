#!/bin/bash
# Runs inside the fresh Debian 12 root after `apt install ./keybridge_*.deb`, as an
# ordinary user (tests/package/run.sh). Every step must succeed; the first failure stops it.
#
#   inside.sh libs   right after the install, before any test tool is added to the root:
#                    every packaged binary finds its libraries
#   inside.sh run    the CLI (version, demo, sign + verify) and the desktop app under Xvfb
set -euo pipefail
cd "$HOME"
step() { echo "inside: $*"; }

if [ "${1:-}" = libs ]; then
  step "every packaged binary finds its libraries (the declared dependencies pulled them in)"
  for f in /usr/bin/keybridge /usr/bin/keybridge-desktop /usr/bin/keybridge-tray /usr/lib/keybridge/libkb_skf_module.so; do
    [ -e "$f" ] || { echo "inside: $f is missing" >&2; exit 1; }
    if ldd "$f" | grep 'not found'; then
      echo "inside: $f has unresolved libraries" >&2
      exit 1
    fi
  done
  exit 0
fi
[ "${1:-}" = run ] || { echo "usage: inside.sh libs|run" >&2; exit 2; }

step "keybridge --version"
v="$(keybridge --version)"
echo "$v"
[[ "$v" == "keybridge "* ]]

# The SKF module exports the GM/T 0016 entry points applications look up.
for sym in SKF_EnumDev SKF_ConnectDev SKF_ECCSignData; do
  grep -aq "$sym" /usr/lib/keybridge/libkb_skf_module.so || { echo "inside: $sym not exported" >&2; exit 1; }
done

step "keybridge demo"
keybridge demo
keybridge certs | tee certs.txt
grep -q . certs.txt

step "sign + verify (CMS detached, PIN from stdin)"
echo 投标文件 > bid.txt
printf '12345678\n' | keybridge --pin-stdin sign --in bid.txt --out bid.p7s --format cms-detached
[ -s bid.p7s ]
keybridge verify --sig bid.p7s --in bid.txt
# A changed file must not verify.
echo 改动 >> bid.txt
if keybridge verify --sig bid.p7s --in bid.txt > tampered.txt 2>&1; then
  cat tampered.txt
  echo "inside: a changed file verified" >&2
  exit 1
fi

step "the desktop app paints its first window under Xvfb"
# -nolisten local: no abstract socket, so the display cannot collide with the host's
# (abstract sockets are shared across chroots); -displayfd picks a free number.
Xvfb -displayfd 3 -nolisten tcp -nolisten local -screen 0 1280x800x24 3> display.txt 2> xvfb.log &
xvfb=$!
trap 'kill $xvfb 2>/dev/null || true; wait $xvfb 2>/dev/null || true' EXIT
for _ in $(seq 600); do [ -s display.txt ] && break; sleep 0.1; done
[ -s display.txt ] || { cat xvfb.log >&2; echo "inside: Xvfb did not start" >&2; exit 1; }
export DISPLAY=":$(tr -d '\n' < display.txt)" NO_AT_BRIDGE=1
# The app's own stdout goes to a file: services the session bus starts (the desktop
# portal WebKit asks for) share dbus-run-session's stdout.
dbus-run-session -- sh -c 'exec timeout 120 keybridge-desktop --exit-after-paint > app.out 2> app.log' 2> session.log || true
line="$(head -n 1 app.out)"
if [ "$line" != "painted" ]; then
  cat session.log app.out >&2
  cat app.log >&2
  echo "inside: the app did not report a painted window" >&2
  exit 1
fi
echo "inside: painted"
step "ok"
