"""Run one service: ``python -m services.run NAME [--loop ...] [--host H] [--port P] [--upstream name=URL ...]``.

Prints ``{"event": "ready", "service", "host", "port"}`` on stdout once
listening, serves until SIGTERM or SIGINT, then cleans up and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import signal
import sys
from collections.abc import Sequence

from aiohttp import web

import aiodocknet

from .mesh import PORT, SERVICES
from .upstreams import Upstreams

LOOPS = ("docknet", "uvloop", "asyncio")
WILDCARD_HOST = "0.0.0.0"


def make_service_app(name: str, up: Upstreams) -> web.Application:
    if name not in SERVICES:
        raise ValueError(f"unknown service {name!r}")
    module = importlib.import_module(f"{__package__}.{name}")
    app: web.Application = module.make_app(up)
    return app


def _docknet_host() -> str:
    # A DockNet process listens on its own DockNet address: the wildcard
    # would put the listener on the kernel path instead.
    ep = asyncio.get_running_loop()._docknet()  # type: ignore[attr-defined]
    if ep is None:
        raise SystemExit(
            "--loop docknet: this process has no DockNet endpoint (no master, or DOCKNET_DISABLE=1); pass --host"
        )
    address: str = ep.address
    return address


def _bound_port(runner: web.AppRunner, requested: int) -> int:
    # Port 0 asks for any free port; report the one given when it is known.
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2 and isinstance(address[1], int):
            return address[1]
    return requested


async def serve(name: str, host: str | None, port: int, up: Upstreams, loop_kind: str) -> None:
    if host is None:
        host = _docknet_host() if loop_kind == "docknet" else WILDCARD_HOST
    runner = web.AppRunner(make_service_app(name, up), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        # Handlers go in before "ready": a launcher may signal as soon as it reads it.
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        ready = {"event": "ready", "service": name, "host": host, "port": _bound_port(runner, port),
                 "pid": os.getpid()}
        print(json.dumps(ready), flush=True)
        await stop.wait()
    finally:
        await runner.cleanup()


def _upstream(text: str) -> tuple[str, str]:
    name, sep, url = text.partition("=")
    if not sep or not name or not url:
        raise argparse.ArgumentTypeError(f"expected name=URL, not {text!r}")
    if name not in SERVICES:
        raise argparse.ArgumentTypeError(f"unknown service {name!r} in {text!r}")
    return name, url


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m services.run", description="Run one hotel-reservation service.")
    parser.add_argument("service", choices=SERVICES)
    parser.add_argument("--loop", choices=LOOPS, default="asyncio", help="event loop (default: asyncio)")
    parser.add_argument(
        "--host", default=None, help="listen address (default: the DockNet address with --loop docknet, else 0.0.0.0)"
    )
    parser.add_argument("--port", type=int, default=PORT, help=f"listen port (default: {PORT})")
    parser.add_argument(
        "--upstream", type=_upstream, action="append", default=[], metavar="NAME=URL",
        help="base URL of a dependency (default http://NAME:8080); repeatable",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    up = Upstreams(dict(args.upstream))
    aiodocknet.run_on(args.loop, serve(args.service, args.host, args.port, up, args.loop))
    return 0


if __name__ == "__main__":
    sys.exit(main())
