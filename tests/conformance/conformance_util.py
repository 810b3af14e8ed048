"""Helpers of the conformance suite."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import aiodocknet
from dn_harness import Proc


@dataclass
class Peer:
    kind: str
    host: str
    base: int
    proc: Proc

    def port(self, service: int) -> int:
        return self.base + service


def loop_kind() -> str:
    loop = asyncio.get_running_loop()
    return "docknet" if isinstance(loop, aiodocknet.DockNetLoop) else "uvloop"


def expect_transport(writer_or_transport: Any) -> None:
    """The connection went the way the loop says it should: a fast channel
    to a DockNet peer of the same master, lwIP when fast channels are off,
    the kernel under uvloop."""
    t = getattr(writer_or_transport, "transport", writer_or_transport)
    name = type(t).__name__
    loop = asyncio.get_running_loop()
    if loop_kind() == "docknet":
        want = "FastChannelTransport" if loop._dn_fast_channels else "DockNetTCPTransport"  # type: ignore[attr-defined]
        assert name in (want, "_SSLProtocolTransport"), name
    else:
        assert name not in ("DockNetTCPTransport", "FastChannelTransport"), name


def json_line(data: bytes) -> dict[str, Any]:
    return dict(json.loads(data))
