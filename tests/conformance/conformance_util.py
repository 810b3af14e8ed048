"""Helpers of the conformance suite."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import uvloop

import aiodocknet
from dn_harness import Proc


@dataclass
class Peer:
    """A running tests/aio_peer.py: its address and where each service listens."""

    kind: str
    host: str
    ports: dict[int, int]
    proc: Proc

    @classmethod
    def from_ready(cls, kind: str, ready: dict[str, Any], proc: Proc) -> Peer:
        return cls(kind, ready["host"], {int(n): p for n, p in ready["ports"].items()}, proc)

    def port(self, service: int) -> int:
        return self.ports[service]


def loop_kind() -> str:
    """The kind of the running loop, and of the peer it talks to."""
    loop = asyncio.get_running_loop()
    if isinstance(loop, aiodocknet.DockNetLoop):
        return "docknet"
    return "uvloop" if isinstance(loop, uvloop.Loop) else "asyncio"


def expect_transport(writer_or_transport: Any) -> None:
    """The connection went the way the loop says it should: a fast channel
    to a DockNet peer of the same master, lwIP when fast channels are off,
    the kernel under uvloop and asyncio."""
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
