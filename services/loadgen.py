"""The mesh's users: the load scenario (services/workload.py) against the
frontend for a fixed time, every response body checked.

    python -m services.loadgen --url http://frontend:8080 [--loop docknet|uvloop|asyncio]
        [--seconds 15] [--concurrency 16] [--seed 1]

Prints {"event": "progress", "done"} lines while it runs and one
{"event": "result", ...} line: requests/s, p50/p99 in ms, errors with the
first samples, requests per kind, and this process's CPU seconds.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
from typing import Any

from aiohttp import ClientSession

import aiodocknet

from .workload import run_load


def _cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _session(concurrency: int) -> ClientSession:
    from aiodocknet.aiohttp import DockNetConnector

    return ClientSession(connector=DockNetConnector(limit=concurrency))


async def drive(args: argparse.Namespace) -> dict[str, Any]:
    def progress(done: float) -> None:
        print(json.dumps({"event": "progress", "done": round(done, 3)}), flush=True)

    cpu0 = _cpu()
    res = await run_load(args.url, args.seconds, args.concurrency, args.seed, lambda: _session(args.concurrency),
                         progress)
    cpu = _cpu() - cpu0
    lat = sorted(res["latencies"])
    n = len(lat)
    return {"event": "result", "loop": args.loop, "concurrency": args.concurrency, "requests": res["requests"],
            "seconds": round(res["elapsed"], 3), "req_per_s": round(res["requests"] / res["elapsed"], 1),
            "p50_ms": round(lat[n // 2] * 1e3, 3) if n else 0.0,
            "p99_ms": round(lat[min(n - 1, int(n * 0.99))] * 1e3, 3) if n else 0.0,
            "errors": res["errors"], "error_samples": res["error_samples"], "by_kind": res["by_kind"],
            "client_cpu_s": round(cpu, 3)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m services.loadgen")
    p.add_argument("--url", required=True)
    p.add_argument("--loop", choices=["docknet", "uvloop", "asyncio"], default="asyncio")
    p.add_argument("--seconds", type=float, default=15.0)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    out: dict[str, Any] = {}

    async def go() -> None:
        out.update(await drive(args))

    aiodocknet.run_on(args.loop, go())
    print(json.dumps(out), flush=True)
    return 1 if out.get("errors") else 0


if __name__ == "__main__":
    sys.exit(main())
