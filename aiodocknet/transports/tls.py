"""TLS over a DockNet transport, built in one place.

The TLS protocol sits between a DockNet transport (lwIP or a fast channel)
and the application's protocol. It is uvloop's compiled ``SSLProtocol``
(``uvloop.loop.SSLProtocol``, the one uvloop puts over its own sockets)
whenever the loop is a uvloop ``Loop``, as ``DockNetLoop`` is: that class
is typed to uvloop's loop and needs of the transport only the public
stream methods plus ``_force_close(exc)``, which DockNet's transports
have. It is a buffered protocol without being an ``asyncio.BufferedProtocol``
(a Cython class has no Python base), so the transports ask
``is_buffered_protocol`` rather than ``isinstance``.

asyncio's pure-Python ``SSLProtocol`` remains for a loop that is not
uvloop's and for a uvloop that has no ``SSLProtocol`` to give.
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import ssl as ssl_mod
from typing import Any

import uvloop

from ..log import get_logger

__all__ = ["app_transport", "is_buffered_protocol", "tls_protocol"]

try:
    from uvloop.loop import SSLProtocol as _UVSSLProtocol
except ImportError:  # a uvloop build without it: asyncio's protocol for all
    _UVSSLProtocol = None

log = get_logger("aiodocknet.tls")
_BUFFERED: tuple[type, ...] = (asyncio.BufferedProtocol,) + ((_UVSSLProtocol,) if _UVSSLProtocol else ())


def is_buffered_protocol(protocol: Any) -> bool:
    """Whether protocol takes bytes through get_buffer()/buffer_updated()."""
    return isinstance(protocol, _BUFFERED)


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
    if server_side:
        # Nobody awaits a server connection's handshake: a failed one ends
        # that connection only (as on asyncio's and uvloop's servers), and
        # its exception is taken here so that it is not reported as a
        # future's exception never retrieved.
        waiter.add_done_callback(_handshake_done)
    if _UVSSLProtocol is not None and isinstance(loop, uvloop.Loop):
        # The same checks of the timeouts as asyncio's (both raise
        # ValueError for one that is not positive).
        tls = _UVSSLProtocol(
            loop, app, context, waiter, server_side, server_hostname,
            call_connection_made=call_connection_made,
            ssl_handshake_timeout=handshake_timeout, ssl_shutdown_timeout=shutdown_timeout,
        )
    else:
        tls = asyncio.sslproto.SSLProtocol(
            loop, app, context, waiter, server_side, server_hostname,
            ssl_handshake_timeout=handshake_timeout, ssl_shutdown_timeout=shutdown_timeout,
            call_connection_made=call_connection_made,
        )
    return tls, waiter


def _handshake_done(waiter: asyncio.Future[Any]) -> None:
    if not waiter.cancelled() and waiter.exception() is not None:
        log.debug("tls handshake failed", side="server", error=repr(waiter.exception()))


def app_transport(tls: Any) -> asyncio.Transport:
    """The transport the application writes to: the TLS protocol's own
    (uvloop's keeps it in a C field; both make it through this method, once)."""
    return tls._get_app_transport()  # type: ignore[no-any-return]
