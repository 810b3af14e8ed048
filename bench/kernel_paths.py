#!/usr/bin/env python3
"""Kernel TCP baselines: two network namespaces joined by a veth pair, by a
Linux bridge or by an Open vSwitch bridge (userspace datapath, see
bench/ovs_baseline.py), measured with bench/kernel_rr (built here on demand).

    python3 bench/kernel_paths.py --repeats 3 [--seconds 2]

Importable: ``build_kernel_rr()`` and ``run_kernel(path, mode, size, seconds, conns)``.
Needs root, iproute2 and gcc.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
SOURCE = BENCH_DIR / "kernel_rr.c"
BUILD_DIR = BENCH_DIR / "build"
BINARY = BUILD_DIR / "kernel_rr"

# Run as a script (see above), the checkout is not on the path yet.
sys.path.insert(0, str(REPO_ROOT))
from bench.topology import NetnsTopology  # noqa: E402
from ovs_baseline import OvsTopology  # noqa: E402

PATHS = ("veth", "bridge", "ovs")
CFLAGS = ["-std=c11", "-O2", "-Wall", "-Wextra"]
SERVER_START_TIMEOUT = 5.0


def build_kernel_rr(force: bool = False) -> Path:
    """Compile kernel_rr into bench/build/ if missing or older than its source."""
    if (not force and BINARY.exists()
            and BINARY.stat().st_mtime >= SOURCE.stat().st_mtime):
        return BINARY
    BUILD_DIR.mkdir(exist_ok=True)
    tmp = BINARY.with_name(BINARY.name + ".tmp%d" % os.getpid())
    proc = subprocess.run(["gcc", *CFLAGS, "-o", str(tmp), str(SOURCE)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise RuntimeError("building kernel_rr failed:\n" + proc.stderr)
    # Rename so a concurrent run never executes a half-written binary.
    os.replace(tmp, BINARY)
    return BINARY


def _wait_listening(server: subprocess.Popen[str], timeout: float) -> int:
    """Port from the server's "listening PORT" line; raises if it never comes."""
    assert server.stdout is not None
    deadline = time.monotonic() + timeout
    fd = server.stdout.fileno()
    buf = b""
    while b"\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            raise RuntimeError("kernel_rr server did not start within %.0f s" % timeout)
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 256)
            if not chunk:
                _, err = server.communicate(timeout=5)
                raise RuntimeError("kernel_rr server exited (status %s): %s"
                                   % (server.returncode, (err or "").strip()))
            buf += chunk
    line = buf.split(b"\n", 1)[0].decode()
    word, _, port = line.partition(" ")
    if word != "listening" or not port.isdigit():
        raise RuntimeError("unexpected kernel_rr server output: %r" % line)
    return int(port)


def _stop_server(server: subprocess.Popen[str]) -> str | None:
    """SIGTERM the server; returns a problem description or None if it exited cleanly."""
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
    try:
        _, err = server.communicate(timeout=5)
    except subprocess.TimeoutExpired:
        server.kill()
        server.communicate()
        return "kernel_rr server ignored SIGTERM and was killed"
    if server.returncode != 0:
        return "kernel_rr server exited with status %d: %s" % (server.returncode,
                                                               (err or "").strip())
    return None


def run_kernel(path: str, mode: str, size: int, seconds: float,
               conns: int = 1) -> dict[str, Any]:
    """One measurement: server in namespace 0, client in namespace 1.

    Returns kernel_rr's JSON result plus {"path": path}.
    """
    if path not in PATHS:
        raise ValueError("path must be one of %s, not %r" % (PATHS, path))
    if mode not in ("rr", "stream"):
        raise ValueError("mode must be 'rr' or 'stream', not %r" % (mode,))
    if mode == "stream" and conns != 1:
        raise ValueError("stream mode uses exactly one connection")
    if path == "ovs":
        # A fresh OVS per measurement: its PMD thread spins a core while it lives.
        ovs = OvsTopology(2)
        with ovs:
            result = run_kernel_in(ovs, mode, size, seconds, conns)
        result.update(ovs_attach=ovs.attach, ovs_start_s=round(ovs.start_s, 2),
                      ovs_stop_s=round(ovs.stop_s, 2), ovs_no_huge=ovs.no_huge)
    else:
        with NetnsTopology(2, mode=path) as topo:  # type: ignore[arg-type]
            result = run_kernel_in(topo, mode, size, seconds, conns)
    result["path"] = path
    return result


def run_kernel_in(topo: NetnsTopology | OvsTopology, mode: str, size: int, seconds: float,
                  conns: int = 1) -> dict[str, Any]:
    """One measurement in an existing topology: server in namespace 0,
    client in namespace 1."""
    binary = str(build_kernel_rr())
    # ip netns exec execs the program, so the Popen pid is the server itself.
    server = subprocess.Popen(topo.exec_argv(0, [binary, "server", "0"]),
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        port = _wait_listening(server, SERVER_START_TIMEOUT)
        argv = [binary, mode, topo.addr(0), str(port), "--size", str(size),
                "--seconds", repr(float(seconds))]
        if mode == "rr":
            argv += ["--conns", str(conns)]
        client = subprocess.run(topo.exec_argv(1, argv), capture_output=True,
                                text=True, timeout=seconds + 30)
    finally:
        problem = _stop_server(server)
    if client.returncode != 0:
        raise RuntimeError("kernel_rr %s failed (exit %d): %s"
                           % (mode, client.returncode, client.stderr.strip()))
    if problem is not None:
        raise RuntimeError(problem)
    lines = client.stdout.strip().splitlines()
    if not lines:
        raise RuntimeError("kernel_rr %s printed no result" % mode)
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def _summary(values: list[float], fmt: str) -> str:
    med = statistics.median(values)
    if len(values) == 1:
        return fmt % med
    return (fmt + " (" + fmt + "–" + fmt + ")") % (med, min(values), max(values))


def markdown_table(results: list[dict[str, Any]]) -> str:
    rows = ["| path | 64 B rr round trips/s | p50 µs | p99 µs | 64 KiB stream Gbit/s |",
            "|---|---|---|---|---|"]
    for path in PATHS:
        rr = [r for r in results if r["path"] == path and r["mode"] == "rr"]
        st = [r for r in results if r["path"] == path and r["mode"] == "stream"]
        if not rr and not st:
            continue
        def cell(rs: list[dict[str, Any]], key: str, fmt: str) -> str:
            return _summary([r[key] for r in rs], fmt) if rs else "—"
        rows.append("| kernel TCP, %s | %s | %s | %s | %s |" % (
            path, cell(rr, "rt_per_s", "%.0f"), cell(rr, "p50_us", "%.1f"),
            cell(rr, "p99_us", "%.1f"), cell(st, "gbit_per_s", "%.1f")))
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Kernel TCP baselines over veth, bridge and OVS.")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--rr-size", type=int, default=64)
    ap.add_argument("--stream-size", type=int, default=65536)
    ap.add_argument("--json", metavar="FILE", help="also write every raw result here")
    args = ap.parse_args(argv)

    if os.geteuid() != 0:
        print("kernel_paths: needs root (network namespaces)", file=sys.stderr)
        return 1
    build_kernel_rr()

    results: list[dict[str, Any]] = []
    # Interleaving spreads slow drifts of the machine over both paths alike.
    for rep in range(args.repeats):
        for path in PATHS:
            for mode, size in (("rr", args.rr_size), ("stream", args.stream_size)):
                r = run_kernel(path, mode, size, args.seconds, 1)
                results.append(r)
                figure = ("%.0f rt/s" % r["rt_per_s"] if mode == "rr"
                          else "%.2f Gbit/s" % r["gbit_per_s"])
                print("[%d/%d] %s %s %d B: %s" % (rep + 1, args.repeats, path, mode,
                                                 size, figure), file=sys.stderr)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    print("Kernel baselines, %d repeats of %.3g s, median (min–max):\n"
          % (args.repeats, args.seconds))
    print(markdown_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
