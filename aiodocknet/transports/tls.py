"""TLS over a DockNet transport: asyncio's ``SSLProtocol`` between the
transport and the application's protocol, built in one place."""

from __future__ import annotations

import asyncio
import ssl as ssl_mod
from typing import Any

__all__ = ["tls_protocol"]


def tls_protocol(
    loop: asyncio.AbstractEventLoop,
    app: asyncio.BaseProtocol,
    context: ssl_mod.SSLContext,
    *,
    server_side: bool,
    server_hostname: str | None = None,
    handshake_timeout: float | None = None,
    shutdown_timeout: float | None = None,
    call_connection_made: bool = True,
) -> tuple[Any, asyncio.Future[Any]]:
    """The TLS protocol for app and the future its handshake completes."""
    waiter = loop.create_future()
    tls = asyncio.sslproto.SSLProtocol(
        loop, app, context, waiter, server_side, server_hostname,
        ssl_handshake_timeout=handshake_timeout, ssl_shutdown_timeout=shutdown_timeout,
        call_connection_made=call_connection_made,
    )
    return tls, waiter
