"""A slave process that runs one native benchmark loop (bench/native/dn_bench.h).

``python -m bench.native_loops serve|rr|stream --name ENDPOINT ...``
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
from typing import Any

from aiodocknet.native.errors import check
from aiodocknet.native._lib import ffi, lib
from aiodocknet.native.eal import eal_memory
from aiodocknet.native.stack import SlaveStack
from bench.dnbench import ffi as loops_ffi, lib as loops

__all__ = ["main"]


def _memory() -> dict[str, float]:
    in_use, total = eal_memory()
    return {
        "dpdk_heap_in_use_mb": round(in_use / 2**20, 1),
        "dpdk_heap_reserved_mb": round(total / 2**20, 1),
        "rss_max_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def _result(res: object) -> dict[str, float]:
    r = loops_ffi.cast("struct dn_bench_result *", res)
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


def _blast(args: argparse.Namespace) -> int:
    """The switch's forwarding rate: many endpoints in one process, no
    TCP/IP, each sending small UDP frames to the next."""
    import os as _os

    from aiodocknet.control import default_master_path
    from aiodocknet.native.eal import init_eal
    from aiodocknet.native.stack import request_attach

    k = args.endpoints
    init_eal("slave", 64 + 4 * k)
    held: list[Any] = []
    names: list[Any] = []  # the link names, alive while the links are
    links = ffi.new("struct dn_link *[]", k)
    ips = ffi.new("uint32_t[]", k)
    try:
        for i in range(k):
            control, info, fds = request_attach(f"{args.name}-{i}", default_master_path())
            held.append((control, fds))
            cfg = ffi.new("struct dn_link_config *")
            name = ffi.new("char[]", f"b{i}".encode())
            names.append(name)
            cfg.name = name
            cfg.mtu = info.mtu
            cfg.n_mbufs = 1023
            cfg.priv_size = 0
            cfg.shm_fd, cfg.wake_fd, cfg.peer_wake_fd = fds
            cfg.small = 1
            check(lib.dn_link_open(cfg, ffi.addressof(links, i)))
            ips[i] = int(ipaddress.IPv4Address(info.address))
        res = loops_ffi.new("struct dn_bench_result *")
        check(loops.dn_bench_blast(links, ips, k, args.size, args.seconds, res))
        out = {"event": "result", "mode": "blast", "endpoints": k, "size": args.size,
               "frames": int(res.round_trips), "offered": int(res.bytes),
               "links_reached": int(res.links_reached), "seconds": round(res.seconds, 4),
               "frames_per_s": round(res.round_trips / res.seconds, 1)}
        print(json.dumps(out), flush=True)
    finally:
        for i in range(k):
            if links[i] != ffi.NULL:
                lib.dn_link_close(links[i])
        for control, fds in held:
            for fd in fds:
                _os.close(fd)
            control.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.native_loops")
    p.add_argument("mode", choices=["serve", "rr", "stream", "blast"])
    p.add_argument("--endpoints", type=int, default=1, help="blast: links through the switch")
    p.add_argument("--name", required=True)
    p.add_argument("--target")
    p.add_argument("--port", type=int, default=7100)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--conns", type=int, default=1)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--spin-us", type=int, default=int(os.environ.get("DOCKNET_SPIN_US", "100")))
    args = p.parse_args(argv)

    if args.mode == "blast":
        return _blast(args)
    with SlaveStack.attach(args.name) as st:
        raw = st._st
        if args.mode == "serve":
            print(json.dumps({"event": "ready", "address": st.address, **_memory()}), flush=True)
            check(loops.dn_bench_serve(raw, args.port, 3600.0, args.spin_us))
            return 0
        ip = int(ipaddress.IPv4Address(args.target))
        res = loops_ffi.new("struct dn_bench_result *")
        if args.mode == "rr":
            check(loops.dn_bench_rr(raw, ip, args.port, args.size, args.conns, args.seconds, args.spin_us, res))
        else:
            check(loops.dn_bench_stream(raw, ip, args.port, args.size, args.seconds, args.spin_us, res))
        out = {"event": "result", "mode": args.mode, "size": args.size, "conns": args.conns,
               **_result(res), **_memory(), "stack": st.stats()}
        print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
