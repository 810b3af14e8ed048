"""``docknet demo --data-plane``: a master and slave processes on this
machine, the data plane measured end to end, everything torn down afterwards
(also on Ctrl-C).

It needs nothing configured: the master runs in a temporary directory with
the default subnet. The service-mesh demo is ``mesh_demo.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from typing import Any

from aiodocknet.control import request
from bench.mesh_demo import ProcessGroup, docknet_master

__all__ = ["main", "run_demo"]

STEPS: list[tuple[str, list[str]]] = [
    ("64 B request/response, 1 connection", ["rr", "--size", "64", "--conns", "1"]),
    ("64 B request/response, 32 connections", ["rr", "--size", "64", "--conns", "32"]),
    ("64 KiB streaming, 1 connection", ["stream", "--size", "65536"]),
]


def _line(p: subprocess.Popen[str]) -> dict[str, Any]:
    assert p.stdout is not None
    raw = p.stdout.readline()
    if not raw:
        raise RuntimeError(f"process {p.args!r} exited with {p.wait()}")
    return dict(json.loads(raw))


def _measure(procs: ProcessGroup, env: dict[str, str], seconds: float) -> tuple[list[tuple[str, dict[str, Any]]],
                                                                                 dict[str, Any]]:
    py = sys.executable
    server = procs.start([py, "-m", "bench.native_loops", "serve", "--name", "demo-server"], env)
    ready = _line(server)
    print(f"server endpoint attached at {ready['address']}", flush=True)
    rows = []
    for i, (title, args) in enumerate(STEPS):
        print(f"  {title} ...", flush=True)
        client = procs.start([py, "-m", "bench.native_loops", *args, "--name", f"demo-client{i}",
                              "--target", ready["address"], "--seconds", str(seconds)], env)
        rows.append((title, _line(client)))
        client.wait()
    return rows, request(env["DOCKNET_MASTER"], {"op": "status"})


def run_demo(seconds: float = 3.0) -> int:
    procs = ProcessGroup()
    with tempfile.TemporaryDirectory(prefix="docknet-demo-") as run_dir:
        try:
            print(f"starting a DockNet master in {run_dir} ...", flush=True)
            with docknet_master(run_dir) as env:
                try:
                    rows, status = _measure(procs, env, seconds)
                finally:
                    procs.stop()
        except KeyboardInterrupt:
            print("interrupted; tearing down", flush=True)
            return 130
    print()
    print("DockNet data plane: slave -> master switch -> slave (shared-memory rings + lwIP), native loops")
    print(f"{'test':42} {'result':>18} {'p50':>9} {'p99':>9}")
    for title, r in rows:
        if "rt_per_s" in r:
            print(f"{title:42} {r['rt_per_s']:>12,.0f} rt/s {r['p50_us']:>7.1f}us {r['p99_us']:>7.1f}us")
        else:
            print(f"{title:42} {r['gbit_per_s']:>12.2f} Gbit/s")
    sw = status["switch"]
    print(f"\nmaster switch: {sw['loops']:,} loop iterations, {sw['sleeps']:,} sleeps; "
          f"slave DPDK heap {rows[0][1]['dpdk_heap_reserved_mb']} MiB")
    print("compare with the kernel: `make bench`")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``docknet demo``'s entry in the checkout: the mesh, or the data plane."""
    import argparse

    from bench.mesh_demo import run_mesh_demo

    p = argparse.ArgumentParser(prog="docknet demo")
    p.add_argument("--data-plane", action="store_true")
    p.add_argument("--seconds", type=float)
    p.add_argument("--users", type=int, default=16)
    p.add_argument("--rounds", type=int)
    args = p.parse_args(argv)
    if args.data_plane:
        return run_demo(args.seconds or 3.0)
    return run_mesh_demo(args.seconds, args.users, rounds=args.rounds)


if __name__ == "__main__":
    sys.exit(main())
