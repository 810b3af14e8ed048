"""The master dies (SIGKILL) and a new one starts on the same run directory
while services keep running: they re-attach by themselves, with the
address, name, tenant and listeners they had; their connections of the
old master's time end with a reset, and new ones work over fast channels
and through the switch."""

from __future__ import annotations

import errno
import json
import os
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dn_harness import Master, Proc, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (DPDK, hugepages)")

FC_PEER = Path(__file__).resolve().parent / "fc_peer.py"


class Host:
    """Masters that follow each other on one run directory, and the
    services that outlive them."""

    def __init__(self, run_dir: str, extra: list[str] | None = None) -> None:
        self.run_dir = run_dir
        self.master = Master(run_dir, extra)
        self.services: list[Proc] = []

    def service(self, name: str, *args: str, fast: bool = True, via_run: str | None = None) -> Proc:
        env = dict(self.master.env, DOCKNET_ENDPOINT=name, DOCKNET_FAST_CHANNELS="1" if fast else "0")
        argv = [sys.executable, str(FC_PEER), *args]
        if via_run is not None:  # `docknet run`: its own namespace, registered with a secret
            argv = [sys.executable, "-m", "aiodocknet.cli", "--api", os.path.join(self.run_dir, "api.sock"),
                    "run", "--name", name, "--tenant", via_run, "--", *argv]
        p = Proc(argv, env, name)
        self.services.append(p)
        return p

    def kill_master(self) -> None:
        self.master.proc.kill(signal.SIGKILL)
        self.master.proc.wait(10)
        self.master.proc.stop()

    def restart_master(self) -> None:
        self.master = Master(self.run_dir)

    def endpoints(self) -> dict[str, dict[str, Any]]:
        return {e["name"]: e for e in self.master.status()["endpoints"]}

    def close(self) -> None:
        for p in self.services:
            p.stop()
        if self.master.proc.popen.poll() is None:
            self.master.stop()


@pytest.fixture
def host() -> Iterator[Host]:
    with tempfile.TemporaryDirectory(prefix="dn-restart-") as run_dir:
        h = Host(run_dir)
        try:
            yield h
        finally:
            h.close()




def connect(host: Host, name: str, srv: dict[str, Any], fast: bool = True) -> dict[str, Any]:
    c = host.service(name, "client", "--host", srv["address"], "--port", str(srv["port"]), "connect", fast=fast)
    res = c.expect("result", timeout=60)
    assert c.wait(30) == 0
    return res


def test_services_reattach_to_a_restarted_master(host: Host) -> None:
    """Tried: kill -9 of the master under an ad-hoc service (host
    namespace) and a registered one (`docknet run`, its own namespace,
    tenant t, a secret), with a stream open to the first; then a new
    master on the same run directory. The stream ends with a reset; both
    services are back with their addresses within seconds; fast channels
    (the listener was announced again) and the switch path both carry new
    connections; the registration (tenant, namespace) survived."""
    srv = host.service("svc", "server", "--port", "7300").expect("ready", timeout=60)
    reg = host.service("regsvc", "server", "--port", "7301", via_run="t").expect("ready", timeout=60)
    stream = host.service("streamer", "client", "--host", srv["address"], "--port", "7300", "stream")
    assert stream.expect("connected", timeout=60)["transport"] == "FastChannelTransport"
    stream.send("go")
    stream.expect("streaming")
    before = host.endpoints()

    host.kill_master()
    lost = stream.expect("lost", timeout=10)
    assert lost["error"] in ("ConnectionResetError", "BrokenPipeError"), lost

    host.restart_master()
    t0 = time.monotonic()
    back = wait_for(lambda: {"svc", "regsvc"} <= set(host.endpoints()) and host.endpoints(), timeout=15)
    assert back, (f"services did not re-attach: {host.endpoints()}\n"
                  + "\n".join(f"{p.name}: {p.stderr_tail()[-1500:]}" for p in host.services[:2]))
    took = time.monotonic() - t0
    assert back["svc"]["address"] == before["svc"]["address"] == srv["address"]
    assert back["regsvc"]["address"] == before["regsvc"]["address"] == reg["address"]
    assert took < 10, took
    for p in host.services[:2]:
        assert p.popen.poll() is None, p.stderr_tail()

    api = json.loads(_cli(host, "--json", "ps"))
    row = next(e for e in api if e["name"] == "regsvc")
    assert row["tenant"] == "t" and row["state"] == "attached", row

    res = connect(host, "after-fast", srv)
    assert res["outcome"] == "connected" and res["transport"] == "FastChannelTransport", res
    assert res["echoed"] == "hello\n"
    res = connect(host, "after-switch", srv, fast=False)
    assert res["outcome"] == "connected" and res["transport"] == "DockNetTCPTransport", res
    assert res["echoed"] == "hello\n"


def test_with_the_master_gone_docknet_connects_fail_fast(host: Host) -> None:
    """Tried: a service that was attached loses its master (kill -9, no
    new one yet) and then connects to a DockNet address: the connect
    fails at once with EHOSTUNREACH instead of waiting out SYN retries (or
    leaving by the kernel's routes)."""
    srv = host.service("svc2", "server", "--port", "7302").expect("ready", timeout=60)
    c = host.service("twice", "client", "--host", srv["address"], "--port", "7302", "twice", fast=False)
    assert c.expect("first", timeout=60)["echoed"] == "hello\n"
    host.kill_master()
    time.sleep(0.5)
    c.send("go")
    res = c.expect("result", timeout=30)
    assert res["errno"] == errno.EHOSTUNREACH and res["seconds"] < 2, res


def _cli(host: Host, *args: str) -> str:
    import subprocess

    res = subprocess.run([sys.executable, "-m", "aiodocknet.cli", "--api", os.path.join(host.run_dir, "api.sock"),
                          *args], capture_output=True, text=True, timeout=60, env=host.master.env)
    assert res.returncode == 0, res.stderr
    return res.stdout


def test_a_master_back_with_ipv6_gives_a_wildcard_server_ipv6() -> None:
    """Tried: a wildcard server under an IPv4-only master (subnet6 none);
    kill -9 of the master, and one with IPv6 (the default prefix) on the
    same run directory. The service re-attaches with an IPv6 address, and
    its server, listening since before, is reached on it through the switch
    and over a fast channel."""
    with tempfile.TemporaryDirectory(prefix="dn-restart6-") as run_dir:
        host = Host(run_dir, ["--subnet6", "none"])
        try:
            host.service("svc6", "server", "--port", "7310", "--wildcard").expect("ready", timeout=60)
            assert "address6" not in host.endpoints()["svc6"]
            host.kill_master()
            host.restart_master()
            addr6 = wait_for(lambda: (host.endpoints().get("svc6") or {}).get("address6"), timeout=15)
            assert addr6, host.endpoints()
            srv = {"address": addr6, "port": 7310}
            # The master lists the endpoint as soon as it attaches; its loop
            # adds the listener just after: the first connect may be early.
            for attempt in range(10):
                res = connect(host, f"v6-switch{attempt}", srv, fast=False)
                if res["outcome"] == "connected":
                    break
            assert res["outcome"] == "connected", res
            assert res["transport"] == "DockNetTCPTransport" and res["echoed"] == "hello\n", res
            res = connect(host, "v6-fast", srv)
            assert res["outcome"] == "connected" and res["transport"] == "FastChannelTransport", res
            assert res["echoed"] == "hello\n"
        finally:
            host.close()
