# Sourced by run.sh and measure.sh: a private display and session bus, cleaned up by
# process id on exit. After sourcing: $DISPLAY is set, $work is a scratch directory,
# and `track PID` adds a process to stop at exit.
#
# First the caller re-executes itself (same arguments) under dbus-run-session: a private
# session bus for the app's single-instance lock and notifications. NO_AT_BRIDGE=1 keeps
# GTK from looking for an accessibility bus.
if [ -z "${KB_DESKTOP_IN_SESSION:-}" ]; then
  export KB_DESKTOP_IN_SESSION=1 NO_AT_BRIDGE=1
  exec dbus-run-session -- "$0" "$@"
fi

work="$(mktemp -d)"
pids=()
track() { pids+=("$1"); }
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# A free display number: the first without a lock file or socket.
d=90
while [ -e "/tmp/.X$d-lock" ] || [ -e "/tmp/.X11-unix/X$d" ]; do d=$((d + 1)); done
Xvfb ":$d" -screen 0 1280x800x24 -nolisten tcp > "$work/xvfb.log" 2>&1 &
track $!
export DISPLAY=":$d"
for _ in $(seq 200); do [ -e "/tmp/.X11-unix/X$d" ] && break; sleep 0.05; done
if [ ! -e "/tmp/.X11-unix/X$d" ]; then
  cat "$work/xvfb.log" >&2
  echo "Xvfb did not start" >&2
  exit 1
fi
