"""A DockNetLoop client for tests/test_tcp_timeouts.py: what an asyncio
application sees when its peer goes silent. JSON lines on stdout.

    python tests/aio_timeout_client.py HOST PORT send     connect, say
        "connected", on a line on stdin send 64 KiB and read; report the
        exception that ends the read
    python tests/aio_timeout_client.py HOST PORT connect  report the
        exception that ends the connect
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import aiodocknet  # noqa: E402


def say(event: str, **kw: object) -> None:
    print(json.dumps({"event": event, **kw}), flush=True)


def outcome(exc: BaseException, t0: float) -> None:
    say("error", type=type(exc).__name__, errno=getattr(exc, "errno", None), seconds=round(time.monotonic() - t0, 3))


async def main(host: str, port: int, mode: str) -> None:
    t0 = time.monotonic()
    try:
        r, w = await asyncio.open_connection(host, port)
    except OSError as exc:
        outcome(exc, t0)
        return
    say("connected", transport=type(w.transport).__name__)
    if mode == "connect":
        return
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.readline)
    t0 = time.monotonic()
    w.write(os.urandom(65536))
    try:
        await r.read()
    except OSError as exc:
        outcome(exc, t0)
        return
    say("eof", seconds=round(time.monotonic() - t0, 3))


if __name__ == "__main__":
    aiodocknet.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3]), require=True)
