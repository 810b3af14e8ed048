"""aiohttp over DockNet: an app served through DockNetLoop (``web.run_app``
and ``AppRunner`` + ``TCPSite``) and called with ``DockNetConnector``.

Server and client are separate processes (``tests/aiohttp_peer.py``), each
its own DockNet endpoint, because an endpoint stays attached to the first
master it reaches for the life of its process and this test process may
already belong to another suite's master. The test checks their reports.
"""

from __future__ import annotations

import errno
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvloop
from aiohttp import ClientSession, web

from aiodocknet.aiohttp import DockNetConnector
from dn_harness import Master, Proc, running_master, self_signed

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (DPDK, hugepages)")

PEER = Path(__file__).resolve().parent / "aiohttp_peer.py"
STYLES = ("run_app", "runner")
BIG = 10 * 1024 * 1024


def server_name(style: str) -> str:
    return f"aiohttp-{style.replace('_', '')}"


@pytest.fixture(scope="module")
def dn_master() -> Iterator[Master]:
    with running_master("dn-aiohttp-") as m:
        yield m


@pytest.fixture(scope="module")
def tls_files() -> Iterator[tuple[str, str]]:
    """A self-signed certificate naming the runner service (not its address)."""
    name = server_name("runner")
    with tempfile.TemporaryDirectory(prefix="dn-aiohttp-tls-") as d:
        yield self_signed(d, name)


# Both paths between two DockNet services of one master: a fast channel (the
# default) and lwIP through the switch (DOCKNET_FAST_CHANNELS=0).
PATHS = {"fast": ("FastChannelTransport", "DockNetSocket"), "lwip": ("DockNetTCPTransport", "DockNetSocket")}


@pytest.fixture(scope="module", params=list(PATHS))
def path(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def servers(dn_master: Master, tls_files: tuple[str, str], path: str) -> Iterator[dict[str, dict[str, Any]]]:
    """Both serving styles, each reporting ``ready``; at teardown, SIGTERM
    must shut each down cleanly (run_app's and AppRunner.cleanup's closing of
    DockNet sites) and detach it from the master."""
    procs: dict[str, Proc] = {}
    out: dict[str, dict[str, Any]] = {}
    try:
        for style in STYLES:
            extra = ["--tls-cert", tls_files[0], "--tls-key", tls_files[1]] if style == "runner" else []
            env = dict(dn_master.env, DOCKNET_ENDPOINT=server_name(style),
                       DOCKNET_FAST_CHANNELS="1" if path == "fast" else "0")
            procs[style] = Proc([sys.executable, str(PEER), "server", "--style", style, *extra], env,
                                server_name(style))
            out[style] = procs[style].expect("ready", timeout=60)
        yield out
        for p in procs.values():
            p.kill()
        rcs = {style: p.wait(30) for style, p in procs.items()}
        assert rcs == {s: 0 for s in procs}, (rcs, {s: p.stderr_tail() for s, p in procs.items()})
        names = {e["name"] for e in dn_master.status().get("endpoints", [])}
        assert not names & {server_name(s) for s in STYLES}, names
    finally:
        for p in procs.values():
            p.stop()


def run_client(master: Master, style: str, ready: dict[str, Any], cafile: str, path: str) -> dict[str, Any]:
    args = ["--name", server_name(style), "--ip", ready["address"], "--port", str(ready["port"]),
            "--kernel-port", str(ready["kernel_port"])]
    if ready.get("tls_port"):
        args += ["--tls-port", str(ready["tls_port"]), "--cafile", cafile]
    if ready.get("address6"):
        args += ["--ip6", ready["address6"]]
    env = dict(master.env, DOCKNET_ENDPOINT=f"aiohttp-client-{style.replace('_', '')}",
               DOCKNET_FAST_CHANNELS="1" if path == "fast" else "0")
    p = Proc([sys.executable, str(PEER), "client", *args], env, f"client-{style}")
    try:
        result = p.expect("result", timeout=60)
        assert p.wait(30) == 0, p.stderr_tail()
    finally:
        p.stop()
    return result


@needs_root
@pytest.mark.parametrize("style", STYLES)
def test_aiohttp_over_docknet(dn_master: Master, servers: dict[str, dict[str, Any]],
                              tls_files: tuple[str, str], style: str, path: str) -> None:
    transport, sock = PATHS[path]
    ready = servers[style]
    assert ready["loop"] == "DockNetLoop"
    addr = ready["address"]
    assert addr.startswith("10.77."), ready
    if style == "runner":
        # runner.addresses reads the DockNet listener like a kernel one.
        assert [addr, ready["port"]] in ready["addresses"], ready
        assert ["127.0.0.1", ready["kernel_port"]] in ready["addresses"], ready

    before = dn_master.status()["fast_channels"]["made"]
    res = run_client(dn_master, style, ready, tls_files[0], path)
    made = dn_master.status()["fast_channels"]["made"] - before
    # Every DockNet connection of the client (plain and TLS) was a fast
    # channel, or none was.
    assert (made > 0) == (path == "fast"), made
    client_addr = res["address"]
    assert client_addr.startswith("10.77.") and client_addr != addr

    # Server side: by name and by address the request came over a DockNet
    # transport (of the path under test) from the client's DockNet address;
    # 127.0.0.1 is the kernel's.
    for label in ("name", "ip"):
        info = res[f"info_{label}"]
        assert info["transport"] == transport, (label, info)
        assert info["socket"] == sock, (label, info)
        assert info["peer"][0] == client_addr and info["sockname"] == [addr, ready["port"]], (label, info)
    kinfo = res["info_kernel"]
    assert kinfo["transport"] == "TCPTransport" and kinfo["socket"] == "PseudoSocket", kinfo  # uvloop's
    assert kinfo["peer"][0] == "127.0.0.1"

    # Client side: what the connector opened, per origin.
    opened = res["opened"]
    for c in opened:
        if "127.0.0.1" in c["url"]:
            assert c["transport"] == "TCPTransport" and c["socket"] == "PseudoSocket", c
        elif "[" in c["url"]:  # over IPv6, checked below
            assert c["socket"] == sock and ":" in c["sockname"][0] and ":" in c["peer"][0], c
        else:
            assert c["socket"] == sock, c
            assert c["sockname"][0] == client_addr and c["peer"][0] == addr, c
    origins = {c["url"] for c in opened}
    assert {f"http://{server_name(style)}:{ready['port']}", f"http://{addr}:{ready['port']}",
            f"http://127.0.0.1:{ready['kernel_port']}"} <= origins, origins

    assert res["refused"] == ["ClientConnectorError", errno.ECONNREFUSED], res["refused"]
    assert res["json_ok"] == [transport] * 12

    up = res["upload"]
    assert up["bytes"] == BIG and up["sha256"] == res["upload_expected"], up
    assert up["chunked"] and up["chunks"] > 1 and up["conn"]["transport"] == transport, up

    down = res["download"]
    assert down["bytes"] == BIG and down["sha256"] == down["header"] == res["download_expected"], down
    assert down["chunked"] and down["server_transport"] == transport, down

    assert res["ws_socket"] == sock
    assert res["ws_echo"] == [True] * 10, res["ws_echo"]
    assert res["ws_close_result"] is True and res["ws_close_code"] == 1000
    assert res["ws_stats"]["ws_closes"] == [1000], res["ws_stats"]
    assert res["ws_stats"]["ws_transports"] == [transport]

    # Over IPv6: the same path, by literal and by name with family=AF_INET6.
    addr6, client6 = ready["address6"], res["address6"]
    assert addr6 and client6 and addr6 != client6, (addr6, client6)
    for key in ("info_ip6", "info_name6"):
        info = res[key]
        assert info["transport"] == transport and info["socket"] == sock, (key, info)
        assert info["peer"][0] == client6 and info["sockname"] == [addr6, ready["port"], 0, 0], (key, info)
    up6 = res["upload6"]
    assert up6["bytes"] == BIG and up6["sha256"] == res["upload6_expected"], up6
    assert up6["conn"]["transport"] == transport and up6["conn"]["peer"][0] == client6, up6

    if style == "runner":
        for key in ("tls_name", "tls_ip_server_hostname"):
            info = res[key]
            assert info["tls"] and info["socket"] == sock, (key, info)
            assert info["peer"][0] == client_addr, (key, info)
        assert res["tls_ip_unverified"] == "ClientConnectorCertificateError", res["tls_ip_unverified"]
        tls = [c for c in opened if c["url"].startswith("https://")]
        assert len(tls) == 2 and all(c["socket"] == sock for c in tls), tls


def test_connector_on_plain_uvloop() -> None:
    """On a loop that is not a DockNetLoop the connector is a TCPConnector."""

    async def main() -> str:
        async def handler(request: web.Request) -> web.Response:
            return web.Response(text=type(request.transport).__name__)

        app = web.Application()
        app.router.add_get("/", handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        try:
            async with ClientSession(connector=DockNetConnector()) as s:
                async with s.get(f"http://127.0.0.1:{site.port}/") as r:
                    return await r.text()
        finally:
            await runner.cleanup()

    assert uvloop.run(main()) == "TCPTransport"
