"""Native (C) ping-pong over a fast channel between two processes: the floor
the Python rows run on. No master: this process makes the channel and
hands the other side to a child, as the broker would.

    python bench/fc_native.py [--size 64] [--seconds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiodocknet.native.errors import check  # noqa: E402
from aiodocknet.native.fastchan import FastChannel, make_channel  # noqa: E402
from bench.dnbench import ffi as loops_ffi, lib as loops  # noqa: E402


def echo(fds: list[int], seconds: float) -> int:
    fc = FastChannel(fds[0], 1, fds[1], fds[2])
    try:
        check(loops.dn_bench_fc_echo(fc._fc, seconds))
    finally:
        fc.close()
    return 0


def ping(size: int, seconds: float) -> dict[str, float]:
    memfd, efd0, efd1 = make_channel()
    child_fds = [os.dup(memfd), os.dup(efd1), os.dup(efd0)]
    child = subprocess.Popen([sys.executable, __file__, "--echo", ",".join(map(str, child_fds)),
                              "--seconds", str(seconds + 30)], pass_fds=child_fds)
    for fd in child_fds:
        os.close(fd)
    fc = FastChannel(memfd, 0, efd0, efd1)
    out = loops_ffi.new("struct dn_bench_result *")
    try:
        check(loops.dn_bench_fc_ping(fc._fc, size, seconds, out))
    finally:
        fc.close()
        child.wait(30)
    return {"round_trips": out.round_trips, "seconds": round(out.seconds, 3),
            "rt_per_s": round(out.round_trips / out.seconds, 1), "p50_us": round(out.p50_us, 2),
            "p99_us": round(out.p99_us, 2), "size": size}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--echo", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.echo:
        return echo([int(x) for x in args.echo.split(",")], args.seconds)
    print(json.dumps({"event": "result", **ping(args.size, args.seconds)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
