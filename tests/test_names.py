"""A registered service that restarts keeps its name and its address: while
its process is away, callers that resolve the name get the address (and a
refused connection, as from a kernel host whose service is down), not "no
such name" cached for seconds and then the real DNS; once it is back, the
next connection by name reaches it."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

from aiodocknet.cli.api_client import ApiClient
from aiodocknet.control import request
from aiodocknet.endpoint import RESOLVE_TTL
from dn_harness import Master, Proc, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (DPDK, hugepages)")

FC_PEER = Path(__file__).resolve().parent / "fc_peer.py"

# One connection by name per line on stdin; says how it went.
CALLER = """
import asyncio, json, socket, sys
import aiodocknet

async def main():
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while (await reader.readline()).strip():
        try:
            r, w = await asyncio.wait_for(asyncio.open_connection("svc", 7300), 10)
            w.write(b"echo\\nhi\\n")
            outcome = {"outcome": "connected", "echo": (await r.readline()).decode(),
                       "peer": w.get_extra_info("peername")[0]}
            w.close()
        except socket.gaierror as exc:
            outcome = {"outcome": "no such name", "error": str(exc)}
        except OSError as exc:
            outcome = {"outcome": type(exc).__name__, "error": str(exc)}
        print(json.dumps({"event": "tried", **outcome}), flush=True)

aiodocknet.run(main())
"""


def server(master: Master, secret: str) -> Proc:
    p = Proc([sys.executable, str(FC_PEER), "server", "--port", "7300"],
             dict(master.env, DOCKNET_ENDPOINT="svc", DOCKNET_SECRET=secret), "svc")
    master.peers.append(p)
    return p


def twin(address: str) -> str:
    import ipaddress

    from aiodocknet.control import DEFAULT_SUBNET, DEFAULT_SUBNET6
    from aiodocknet.master.addresses import address6_of

    return address6_of(address, ipaddress.IPv4Network(DEFAULT_SUBNET), DEFAULT_SUBNET6)


def test_a_restarting_service_keeps_its_name_and_address(master: Master) -> None:
    api = ApiClient(os.path.join(master.run_dir, "api.sock"))
    reg = api.call("POST", "/v1/endpoints", {"name": "svc", "netns": f"/proc/{os.getpid()}/ns/net"})
    first = server(master, reg["secret"])
    address = first.expect("ready", timeout=60)["address"]
    caller = Proc([sys.executable, "-c", CALLER], dict(master.env, DOCKNET_ENDPOINT="caller"), "caller")
    master.peers.append(caller)

    caller.send("go")
    ok = caller.expect("tried", timeout=60)
    assert ok["outcome"] == "connected" and ok["peer"] == address, ok

    first.kill(signal.SIGKILL)
    assert wait_for(lambda: api.call("GET", "/v1/endpoints/svc")["state"] == "registered", 10)
    # The master answers the name with the address the service comes back to.
    # (and its IPv6 twin, the default prefix's).
    assert request(master.path, {"op": "resolve", "name": "svc"}) == {
        "ok": True, "address": address, "address6": twin(address)}
    # What the caller had cached from before is stale by now: it asks again.
    time.sleep(RESOLVE_TTL + 0.2)
    caller.send("go")
    away = caller.expect("tried", timeout=60)
    assert away["outcome"] == "ConnectionRefusedError", away
    # The name is still DockNet's while the service is away: it stands
    # for the address the service comes back to.
    assert api.call("GET", "/v1/endpoints/svc").get("address") in (None, address)

    again = server(master, reg["secret"])
    assert again.expect("ready", timeout=60)["address"] == address
    caller.send("go")
    back = caller.expect("tried", timeout=60)
    assert back["outcome"] == "connected" and back["peer"] == address, back


DNS_CALLER = """
import asyncio, json, sys
import aiodocknet

async def main():
    r, w = await asyncio.wait_for(asyncio.open_connection(sys.argv[1], 7301), 20)
    w.write(b"echo\\nhi\\n")
    echo = (await r.readline()).decode()
    print(json.dumps({"event": "result", "echo": echo, "peer": w.get_extra_info("peername")[0],
                      "transport": type(w.transport).__name__}), flush=True)
    w.close()

aiodocknet.run(main(), require=True)
"""


def test_a_dns_name_with_a_docknet_address_goes_over_docknet(master: Master) -> None:
    """Kubernetes' case: the cluster's DNS, not this master, knows a headless
    Service's name, and its address is a DockNet endpoint's. Here the
    caller's namespace has the name in its own hosts file (ip netns exec
    mounts /etc/netns/NAME/hosts on /etc/hosts), the master has never heard
    of it, and the connection is a fast channel to that endpoint."""
    import subprocess
    import uuid

    srv = Proc([sys.executable, str(FC_PEER), "server", "--port", "7301"],
               dict(master.env, DOCKNET_ENDPOINT="web-0"), "web-0")
    master.peers.append(srv)
    address = srv.expect("ready", timeout=60)["address"]
    ns = f"dn-dns-{uuid.uuid4().hex[:8]}"
    name = "web.mesh.svc.cluster.local"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    etc = Path("/etc/netns") / ns
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        etc.mkdir(parents=True)
        (etc / "hosts").write_text(f"127.0.0.1 localhost\n{address} {name}\n")
        api = ApiClient(os.path.join(master.run_dir, "api.sock"))
        reg = api.call("POST", "/v1/endpoints", {"name": "dns-caller", "netns": f"/run/netns/{ns}"})
        env = dict(master.env, DOCKNET_ENDPOINT="dns-caller", DOCKNET_SECRET=reg["secret"])
        caller = Proc(["ip", "netns", "exec", ns, sys.executable, "-c", DNS_CALLER, name], env, "dns-caller")
        master.peers.append(caller)
        res = caller.expect("result", timeout=60)
        assert res["echo"] == "hi\n" and res["peer"] == address, res
        assert res["transport"] == "FastChannelTransport", res
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
        for f in etc.glob("*"):
            f.unlink()
        if etc.exists():
            etc.rmdir()
