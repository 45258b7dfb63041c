#!/usr/bin/env python3
"""Runs the workspace's test binaries two at a time (run-all's first phase).

`cargo test --workspace` runs its test binaries one after another. Many of ours mostly wait
on peers (pcscd, D-Bus, Chromium, nats-server, the network stand-ins), so on CI's two cores
one core idled while they did. Cargo cannot run two `cargo test -p …` selections side by
side without building twice (it resolves features per selection), so this builds the
workspace once, exactly as `cargo test --workspace` would, then runs the executables it
produced itself, the way cargo runs them: from the package's directory, with the CARGO_*
variables cargo sets, no arguments (the test harness's defaults). Doc tests run after,
through cargo. PC/SC tests still run one at a time: the rig takes a file lock. Binaries that
do not include the PC/SC rig are pointed at no pcscd (PCSCLITE_CSOCK_NAME), so the virtual
cards the rig inserts into the machine's one pcscd never appear in their media lists.

    tests/run-tests.py [--jobs N] [--build-all-targets]
                                         (N = 2 by default; 1 = cargo test's order)
    tests/run-tests.py --run KIND:NAME [-- ARGS…]   run one binary built by --build-all-targets

--build-all-targets also builds, after the tests, every other target of the workspace (the
binaries, examples, benchmarks, the SKF module) in one `cargo build --workspace
--all-targets`: it resolves features exactly as the test build did, so it only compiles
those leaf targets. The later phases of tests/run-all.sh run what it built (through --run,
or from target/debug) instead of their own `cargo run -p …`/`cargo build -p …`, each of
which would resolve features for its own selection and compile much of the tree again.
The built targets are listed in target/kb-artifacts.json ("bin:keybridge",
"bench:bridge_load", "example:walkthrough", …). --run starts one as cargo would: a
benchmark from its package's directory, a binary or example from the current one.

The slowest binaries (by the previous run's times, kept in target/kb-test-times.json, or on a
fresh clone by tests/test-times.json) start first, so the two queues end together. Each binary's output is printed whole when it
ends; a summary of the failures comes last, and the exit status is non-zero if any failed.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CARGO = os.environ.get("CARGO", "cargo")


def artifacts(cmd):
    """Runs a cargo build with JSON messages; yields each artifact built (or fresh)."""
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    for line in proc.stdout:
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if msg.get("reason") == "compiler-artifact":
            yield msg
    if proc.wait() != 0:
        sys.exit(f"run-tests: the build failed ({' '.join(cmd[1:3])})")


def describe(msg):
    target = msg["target"]
    manifest = msg["manifest_path"]
    package = package_name(msg["package_id"], manifest)
    return {
        "pcsc": package == "kb-pcsc" or uses_pcsc_rig(target.get("src_path", "")),
        "exe": msg["executable"],
        "dir": os.path.dirname(manifest),
        "manifest": manifest,
        "package": package,
        "kind": target["kind"][0],
        "name": f"{target['kind'][0]} {target['name']}",
    }


def build():
    """Builds every test target once; returns what to run."""
    cmd = [CARGO, "test", "--workspace", "--locked", "--no-run", "--message-format=json-render-diagnostics"]
    # Binaries without profile.test were built for an integration test to start; not tests.
    return [describe(m) for m in artifacts(cmd) if m.get("executable") and m.get("profile", {}).get("test")]


def artifacts_file():
    return os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "kb-artifacts.json")


def build_all_targets():
    """Builds the workspace's other targets with the test build's features; lists them."""
    cmd = [CARGO, "build", "--workspace", "--all-targets", "--locked", "--message-format=json-render-diagnostics"]
    built = {}
    for m in artifacts(cmd):
        # Benchmarks come with profile.test set (cargo builds them like tests); the other
        # test-profile executables are the test phase's unit and integration tests.
        kind = m["target"]["kind"][0]
        if m.get("executable") and (kind == "bench" or not m.get("profile", {}).get("test")):
            t = describe(m)
            built[f"{t['kind']}:{m['target']['name']}"] = t
    with open(artifacts_file(), "w") as f:
        json.dump(built, f, indent=1, sort_keys=True)
    print(f"run-tests: built {len(built)} binaries, examples and benchmarks with the test build's features")


def run_built(name, args):
    """Runs one target listed by build_all_targets, as cargo run / cargo bench would."""
    try:
        with open(artifacts_file()) as f:
            t = json.load(f)[name]
    except (OSError, ValueError, KeyError):
        sys.exit(f"run-tests: {name} is not in {artifacts_file()} (run with --build-all-targets first)")
    cwd = t["dir"] if t["kind"] == "bench" else os.getcwd()
    sys.exit(subprocess.run([t["exe"]] + args, cwd=cwd, env=cargo_env(t)).returncode)


def package_name(pkg_id, manifest):
    # "path+file:///…/drivers/kb-types#0.1.0" or "…#kb-types@0.1.0"
    frag = pkg_id.rsplit("#", 1)[-1]
    if "@" in frag:
        return frag.split("@", 1)[0]
    return os.path.basename(os.path.dirname(manifest))


def uses_pcsc_rig(src_path):
    """Whether a test target includes the PC/SC rig (drivers/kb-pcsc/tests/rig)."""
    try:
        with open(src_path, encoding="utf-8", errors="replace") as f:
            return "kb-pcsc/tests/rig" in f.read()
    except OSError:
        return False


# Where the binaries that do not use the PC/SC rig look for pcscd: nowhere. There is one
# pcscd per machine; a virtual card the rig puts into it (or a real key on a developer's
# machine) must not show up in another binary's media list while the two run side by side.
NO_PCSCD = os.path.join(tempfile.gettempdir(), f"kb-run-tests-{os.getpid()}", "no-pcscd.comm")


def cargo_env(t):
    env = dict(os.environ)
    if not t["pcsc"]:
        env["PCSCLITE_CSOCK_NAME"] = NO_PCSCD
    env["CARGO_MANIFEST_DIR"] = t["dir"]
    env["CARGO_MANIFEST_PATH"] = t["manifest"]
    env["CARGO_PKG_NAME"] = t["package"]
    env.setdefault("CARGO", CARGO)
    # As cargo does: the build's own library directories first on the library path.
    deps = os.path.dirname(t["exe"])
    env["LD_LIBRARY_PATH"] = os.pathsep.join(
        [deps, os.path.dirname(deps)] + [p for p in env.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p])
    return env


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--build-all-targets", action="store_true")
    ap.add_argument("--run", metavar="KIND:NAME")
    ap.add_argument("args", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    if args.run:
        run_built(args.run, args.args[1:] if args.args[:1] == ["--"] else args.args)

    tests = build()
    if args.build_all_targets:
        build_all_targets()
    target_dir = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    times_file = os.path.join(target_dir, "kb-test-times.json")
    past = {}
    # The previous run's times, else the ones kept in the repository (a fresh clone).
    for f in (times_file, os.path.join(ROOT, "tests", "test-times.json")):
        try:
            with open(f) as fh:
                past = json.load(fh)
            break
        except (OSError, ValueError):
            continue
    key = lambda t: f"{t['package']}/{t['name']}"
    # Slowest first; unknown ones in cargo's order after them.
    order = sorted(range(len(tests)), key=lambda i: (-past.get(key(tests[i]), 0.0), i))
    queue = [tests[i] for i in order]
    lock = threading.Lock()
    failed, times = [], {}

    def worker():
        while True:
            with lock:
                if not queue:
                    return
                t = queue.pop(0)
            start = time.monotonic()
            p = subprocess.run([t["exe"]], cwd=t["dir"], env=cargo_env(t), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, errors="replace")
            took = time.monotonic() - start
            with lock:
                times[key(t)] = round(took, 2)
                rel = os.path.relpath(t["exe"], ROOT)
                print(f"     Running {t['name']} ({t['package']}, {rel}) [{took:.1f} s]")
                sys.stdout.write(p.stdout)
                sys.stdout.flush()
                if p.returncode != 0:
                    failed.append(f"{t['package']} {t['name']} (exit {p.returncode})")

    workers = [threading.Thread(target=worker) for _ in range(max(1, args.jobs))]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    try:
        with open(times_file, "w") as f:
            json.dump(times, f, indent=1, sort_keys=True)
    except OSError:
        pass

    print("   Doc-tests (cargo test --workspace --doc)", flush=True)
    if subprocess.run([CARGO, "test", "--workspace", "--locked", "--doc"], cwd=ROOT).returncode != 0:
        failed.append("doc tests")

    if failed:
        print(f"run-tests: {len(failed)} failed:", file=sys.stderr)
        for f in failed:
            print(f"  {f}", file=sys.stderr)
        sys.exit(1)
    print(f"run-tests: {len(tests)} test binaries and the doc tests passed")


if __name__ == "__main__":
    main()
