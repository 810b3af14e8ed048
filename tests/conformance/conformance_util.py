"""Helpers of the conformance suite."""

from __future__ import annotations

import asyncio
import json
import socket
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
    family: int = socket.AF_INET

    @classmethod
    def from_ready(cls, kind: str, ready: dict[str, Any], proc: Proc, family: int = 4) -> Peer:
        """The peer's services on one family's address (4 or 6)."""
        key = "" if family == 4 else "6"
        assert f"host{key}" in ready, f"the {kind} peer has no IPv{family} address: {ready}"
        return cls(kind, ready[f"host{key}"], {int(n): p for n, p in ready[f"ports{key}"].items()}, proc,
                   socket.AF_INET if family == 4 else socket.AF_INET6)

    def port(self, service: int) -> int:
        return self.ports[service]

    def sockaddr(self, service: int) -> tuple[Any, ...]:
        """A service's address as a socket of its family names it."""
        return (self.host, self.port(service)) + ((0, 0) if self.family == socket.AF_INET6 else ())


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
