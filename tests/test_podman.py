"""Real podman containers on a CNI network (issue 15's container runtime).

Containers on conflists in the test's own CNI config directory (Debian's
bridge plugin with host-local IPAM, on a bridge and subnet the test owns),
running the checkout's venv python: plain aiohttp over the bridge; what
podman tells a chained plugin; DockNet services by today's hand recipe
(``docknet attach`` + ``--network ns:``); and DockNet as a CNI network
(bridge then ``docknet-cni``) once the plugin is installed. Everything
podman and the plugins made is gone afterwards, also when a test fails
(tests/podman_runtime.py says which runtime flags this machine needs).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from dn_harness import Master, wait_for
from podman_runtime import PodmanRuntime, podman_missing_reason, recorded_calls

PORT = 8080

SERVER = f"""
import socket
from aiohttp import web

async def hello(request):
    return web.json_response({{"server": socket.gethostname(), "peer": request.remote}})

async def ready(app):
    print("ready", flush=True)

app = web.Application()
app.router.add_get("/", hello)
app.on_startup.append(ready)
web.run_app(app, host="0.0.0.0", port={PORT}, print=None)
"""

CLIENT = """
import asyncio, json, socket, sys
from urllib.parse import urlsplit
import aiohttp

def source_address(host):
    # A connected UDP socket sends nothing; the kernel only picks the route.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((host, 9))
        return s.getsockname()[0]

async def main(url):
    local = source_address(urlsplit(url).hostname)
    async with aiohttp.ClientSession() as session:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=10)) as resp:
            print(json.dumps({"status": resp.status, "local": local, "body": await resp.json()}), flush=True)

asyncio.run(main(sys.argv[1]))
"""


DOCKNET_CLIENT = """
import asyncio, json, sys
import aiodocknet
from aiohttp import ClientSession
from aiodocknet.aiohttp import DockNetConnector

async def main(url):
    async with ClientSession(connector=DockNetConnector()) as session:
        async with session.get(url) as resp:
            print(json.dumps({"status": resp.status, "body": await resp.json()}), flush=True)

aiodocknet.run(main(sys.argv[1]))
"""
PEER = Path(__file__).resolve().parent / "aiohttp_peer.py"
# The venv's console script, which a runtime runs as the CNI plugin.
DOCKNET_CNI = Path(sys.executable).parent / "docknet-cni"


@pytest.fixture
def podman() -> Iterator[PodmanRuntime]:
    reason = podman_missing_reason()
    if reason:
        pytest.skip(reason)
    runtime = PodmanRuntime()
    try:
        yield runtime
    finally:
        runtime.close()
    assert runtime.leftovers() == {}


def test_two_containers_talk_over_a_cni_bridge(podman: PodmanRuntime) -> None:
    """The client's request reaches the server over the bridge: the server
    answers with its container's hostname and sees the client's address on
    the test's subnet."""
    net = f"dn-pod-{podman.tag}"
    bridge = f"dnp{podman.tag}"
    octet = int(podman.tag[:2], 16)
    podman.add_network(net, [podman.bridge_plugin(bridge, f"10.231.{octet}.0/24")])

    server, client = f"srv-{podman.tag}", f"cli-{podman.tag}"
    podman.run(server, [sys.executable, "-c", SERVER], net)
    podman.wait_for_output(server, "ready")
    server_ip = podman.address(server, net)
    assert server_ip.startswith(f"10.231.{octet}.")

    out = podman.run(client, [sys.executable, "-c", CLIENT, f"http://{server_ip}:{PORT}/"], net,
                     detach=False).stdout
    answer = json.loads(out)
    assert answer["status"] == 200, out
    assert answer["body"]["server"] == podman.inspect(server)["Config"]["Hostname"]
    # The client's own address, as its socket saw it, is what the server saw.
    assert answer["local"].startswith(f"10.231.{octet}.") and answer["local"] != server_ip
    assert answer["body"]["peer"] == answer["local"]

    podman.remove(client)
    podman.remove(server)
    assert bridge in podman.leftovers().get("bridges", [])  # the bridge plugin never deletes it
    assert "netns" not in podman.leftovers()  # podman deleted both on teardown


def cni_args(call: dict) -> dict[str, str]:
    text = call["env"].get("CNI_ARGS", "")
    return dict(pair.split("=", 1) for pair in text.split(";") if pair)


def test_what_podman_tells_a_chained_plugin(podman: PodmanRuntime) -> None:
    """What a plugin chained after bridge gets from podman 4.3, which the
    DockNet plugin builds on: the container's name as K8S_POD_NAME in
    CNI_ARGS, its full id, the network namespace podman made, the bridge's
    result as prevResult, the conflist's own fields unchanged; no bandwidth
    in runtimeConfig even when the capability is declared (podman has no
    way to set it); DEL with the same id and namespace when the container
    stops, nothing more on rm, and no CHECK, STATUS or GC."""
    net = f"dn-rec-{podman.tag}"
    octet = int(podman.tag[:2], 16)
    log = podman.add_recorder_plugin("dn-recorder")
    podman.add_network(net, [
        podman.bridge_plugin(f"dnr{podman.tag}", f"10.231.{octet}.0/24"),
        {"type": "dn-recorder", "tenant": "blue", "capabilities": {"bandwidth": True, "portMappings": True}},
    ])
    name = f"rec-{podman.tag}"
    container_id = podman.run(name, ["/bin/sleep", "60"], net).stdout.strip()
    netns = podman.inspect(name)["NetworkSettings"]["SandboxKey"]

    adds = [c for c in recorded_calls(log) if c["env"]["CNI_COMMAND"] == "ADD"]
    assert len(adds) == 1
    add = adds[0]
    assert cni_args(add)["K8S_POD_NAME"] == name
    assert add["env"]["CNI_CONTAINERID"] == container_id
    assert add["env"]["CNI_NETNS"] == netns and netns.startswith("/run/netns/")
    assert add["env"]["CNI_IFNAME"] == "eth0"
    config = add["config"]
    assert config["tenant"] == "blue" and config["name"] == net and config["cniVersion"] == "1.0.0"
    assert "bandwidth" not in config.get("runtimeConfig", {})
    sandboxed = [i for i in config["prevResult"]["interfaces"] if i.get("sandbox") == netns]
    assert [i["name"] for i in sandboxed] == ["eth0"]
    assert config["prevResult"]["ips"][0]["address"].startswith(f"10.231.{octet}.")

    podman.podman("stop", "--time", "0", name)
    # The teardown may run in the `podman container cleanup` that conmon
    # starts when the container exits, so after `podman stop` returns.
    dels = wait_for(lambda: [c for c in recorded_calls(log) if c["env"]["CNI_COMMAND"] == "DEL"], 10)
    assert len(dels) == 1
    assert dels[0]["env"]["CNI_CONTAINERID"] == container_id and dels[0]["env"]["CNI_NETNS"] == netns
    before_rm = len(recorded_calls(log))
    podman.remove(name)
    assert all(c["env"]["CNI_COMMAND"] == "VERSION" for c in recorded_calls(log)[before_rm:])
    assert {c["env"]["CNI_COMMAND"] for c in recorded_calls(log)} == {"VERSION", "ADD", "DEL"}


def test_leftovers_sees_what_close_removes() -> None:
    """The cleanup check can fail: a bridge the runtime owns is reported
    until close removes it."""
    reason = podman_missing_reason()
    if reason:
        pytest.skip(reason)
    runtime = PodmanRuntime()
    bridge = f"dnp{secrets.token_hex(3)}"
    try:
        runtime.add_network(f"dn-pod-{runtime.tag}", [runtime.bridge_plugin(bridge, "10.231.254.0/24")])
        subprocess.run(["ip", "link", "add", bridge, "type", "bridge"], check=True)
        assert runtime.leftovers()["bridges"] == [bridge]
    finally:
        runtime.close()
    assert runtime.leftovers() == {}


@pytest.fixture
def netns_names(podman: PodmanRuntime) -> Iterator[list[str]]:
    """Network namespaces the test makes with ``ip netns``; deleted after."""
    names: list[str] = []
    try:
        yield names
    finally:
        for name in names:
            subprocess.run(["ip", "netns", "del", name], capture_output=True)


def attach(master: Master, name: str, netns: str) -> dict[str, str]:
    """`docknet attach`: the environment a process in netns needs."""
    out = subprocess.run(
        [sys.executable, "-m", "aiodocknet.cli", "--json", "--api", os.path.join(master.run_dir, "api.sock"),
         "attach", "--name", name, "--netns", netns],
        env=master.env, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stdout + out.stderr
    return dict(json.loads(out.stdout)["env"])


def test_docknet_services_in_containers_by_hand(master: Master, podman: PodmanRuntime,
                                                netns_names: list[str]) -> None:
    """Today's hand recipe, before the CNI plugin: a namespace registered
    with `docknet attach`, the container started in it (``--network ns:``)
    with the environment attach printed and the master's run directory
    mounted. An aiohttp server and a DockNet client in two containers talk
    over a fast channel; DPDK runs in the containers with podman's default
    capabilities and seccomp profile (and --no-huge: no hugetlbfs there)."""
    envs = {}
    for role in ("srv", "cli"):
        ns = f"dn-pod-{role}-{podman.tag}"
        subprocess.run(["ip", "netns", "add", ns], check=True)
        netns_names.append(ns)
        # A namespace from `ip netns add` has its loopback down; the peer
        # serves a kernel socket on 127.0.0.1 besides DockNet.
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        envs[role] = attach(master, f"pod-{role}", f"/run/netns/{ns}")
    run_dir = [f"{master.run_dir}:{master.run_dir}"]

    server = f"srv-{podman.tag}"
    podman.run(server, [sys.executable, str(PEER), "server", "--style", "run_app"],
               f"ns:/run/netns/{netns_names[0]}", mounts=run_dir, env=envs["srv"])
    out = podman.wait_for_output(server, '"ready"', timeout=60)
    ready = json.loads(next(line for line in out.splitlines() if '"ready"' in line))
    assert ready["loop"] == "DockNetLoop"

    url = f"http://{ready['address']}:{ready['port']}/info"
    out = podman.run(f"cli-{podman.tag}", [sys.executable, "-c", DOCKNET_CLIENT, url],
                     f"ns:/run/netns/{netns_names[1]}", mounts=run_dir, env=envs["cli"], detach=False).stdout
    answer = json.loads(out.strip().splitlines()[-1])
    assert answer["status"] == 200, out
    assert answer["body"]["transport"] == "FastChannelTransport"
    assert answer["body"]["sockname"] == [ready["address"], ready["port"]]
    client_address = answer["body"]["peer"][0]
    assert client_address != ready["address"] and client_address.startswith("10.")

    def attached() -> set[str]:
        return {e["name"] for e in master.status()["endpoints"]}

    assert "pod-srv" in attached()
    podman.remove(server)
    assert wait_for(lambda: "pod-srv" not in attached(), 10), attached()


@pytest.mark.skipif(not os.access(DOCKNET_CNI, os.X_OK),
                    reason=f"{DOCKNET_CNI} is not installed (issue 15's CNI plugin)")
def test_docknet_network_from_a_conflist(master: Master, podman: PodmanRuntime) -> None:
    """Issue 15's runtime test: podman starts a server and a client on a
    DockNet network (``bridge`` then ``docknet-cni``, from a conflist in the
    test's CNI directory) with the master's run directory mounted at the
    default path and no environment or secrets passed; the client calls
    the server by name over a fast channel, and ``podman rm`` removes the
    server's endpoint."""
    from aiodocknet.cli.api_client import ApiClient, ApiError

    plugin = podman.install_plugin(str(DOCKNET_CNI))
    net = f"dn-net-{podman.tag}"
    octet = int(podman.tag[:2], 16)
    podman.add_network(net, [
        podman.bridge_plugin(f"dnd{podman.tag}", f"10.231.{octet}.0/24"),
        {"type": plugin, "runDir": master.run_dir, "capabilities": {"bandwidth": True}},
    ])
    run_dir = [f"{master.run_dir}:/run/docknet"]
    api = ApiClient(os.path.join(master.run_dir, "api.sock"))

    server = f"srv-{podman.tag}"
    podman.run(server, [sys.executable, str(PEER), "server", "--style", "run_app"], net, mounts=run_dir)
    out = podman.wait_for_output(server, '"ready"', timeout=60)
    ready = json.loads(next(line for line in out.splitlines() if '"ready"' in line))
    assert ready["loop"] == "DockNetLoop"
    # Podman took the result's IPv6 address (the DockNet one's twin) too.
    settings = podman.inspect(server)["NetworkSettings"]["Networks"][net]
    assert settings["IPAddress"] == ready["address"] and settings["Gateway"] == "10.77.0.1", settings
    twin = api.call("GET", f"/v1/endpoints/{server}")
    assert settings["GlobalIPv6Address"] == twin["address6"] and settings["GlobalIPv6PrefixLen"] == 64, settings
    assert settings["IPv6Gateway"] == "fd77:d0c::1", settings

    out = podman.run(f"cli-{podman.tag}", [sys.executable, "-c", DOCKNET_CLIENT, f"http://{server}:{ready['port']}/info"],
                     net, mounts=run_dir, detach=False).stdout
    answer = json.loads(out.strip().splitlines()[-1])
    assert answer["status"] == 200, out
    assert answer["body"]["transport"] == "FastChannelTransport"
    assert answer["body"]["sockname"] == [ready["address"], ready["port"]]

    assert api.call("GET", f"/v1/endpoints/{server}")["name"] == server
    podman.remove(server)

    def registered() -> bool:
        try:
            api.call("GET", f"/v1/endpoints/{server}")
        except ApiError as exc:
            assert exc.status == 404, exc
            return False
        return True

    assert wait_for(lambda: not registered(), 10)
