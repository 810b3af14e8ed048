"""A slave process that runs one native benchmark loop (dn_bench.h).

``python -m aiodocknet.native_bench serve|rr|stream --name ENDPOINT ...``
attaches to the master in DOCKNET_MASTER and prints one JSON line: ``ready``
(serve) or the result. The loops run in C: no Python between frames.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import resource
import sys

from ._errors import check
from ._native import ffi, lib
from .eal import eal_memory
from .stack import SlaveStack

__all__ = ["main"]


def _memory() -> dict[str, float]:
    in_use, total = eal_memory()
    return {
        "dpdk_heap_in_use_mb": round(in_use / 2**20, 1),
        "dpdk_heap_reserved_mb": round(total / 2**20, 1),
        "rss_max_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def _result(res: object) -> dict[str, float]:
    r = ffi.cast("struct dn_bench_result *", res)
    out = {
        "round_trips": int(r.round_trips),
        "bytes": int(r.bytes),
        "seconds": round(r.seconds, 4),
        "p50_us": round(r.p50_us, 2),
        "p99_us": round(r.p99_us, 2),
        "p999_us": round(r.p999_us, 2),
        "sleeps": int(r.sleeps),
    }
    if r.round_trips:
        out["rt_per_s"] = round(r.round_trips / r.seconds, 1)
    if r.bytes:
        out["gbit_per_s"] = round(r.bytes * 8 / r.seconds / 1e9, 3)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="aiodocknet.native_bench")
    p.add_argument("mode", choices=["serve", "rr", "stream"])
    p.add_argument("--name", required=True)
    p.add_argument("--target")
    p.add_argument("--port", type=int, default=7100)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--conns", type=int, default=1)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--spin-us", type=int, default=int(os.environ.get("DOCKNET_SPIN_US", "100")))
    args = p.parse_args(argv)

    with SlaveStack.attach(args.name) as st:
        raw = st._st
        if args.mode == "serve":
            print(json.dumps({"event": "ready", "address": st.address, **_memory()}), flush=True)
            check(lib.dn_bench_serve(raw, args.port, 3600.0, args.spin_us))
            return 0
        ip = int(ipaddress.IPv4Address(args.target))
        res = ffi.new("struct dn_bench_result *")
        if args.mode == "rr":
            check(lib.dn_bench_rr(raw, ip, args.port, args.size, args.conns, args.seconds, args.spin_us, res))
        else:
            check(lib.dn_bench_stream(raw, ip, args.port, args.size, args.seconds, args.spin_us, res))
        out = {"event": "result", "mode": args.mode, "size": args.size, "conns": args.conns,
               **_result(res), **_memory(), "stack": st.stats()}
        print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
