"""docknet-cni driven as a container runtime drives it: CNI_* environment
variables and a network configuration on stdin, network namespaces made
with `ip netns`, a real master, the real `bridge` plugin (Debian's
containernetworking-plugins) in front of it, and real aiohttp processes
in the namespaces attaching with no DockNet secret in their environment.
Results and errors are checked against SPEC.md's result types."""

from __future__ import annotations

import ipaddress
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from aiodocknet.cli.api_client import ApiClient, ApiError
from dn_harness import ROOT, Master, Proc, wait_for

PLUGIN = os.path.join(os.path.dirname(sys.executable), "docknet-cni")
CNI_PATH = "/usr/lib/cni"
SUBNET = ipaddress.IPv4Network("10.77.0.0/16")
SUBNET6 = ipaddress.IPv6Network("fd77:d0c::/64")

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, DPDK)")


# ---- the runtime's side ----

def cni(command: str, conf: dict[str, Any] | bytes | None, *, cid: str = "", netns: str = "", ifname: str = "",
        args: str = "", plugin: str = PLUGIN, extra_env: dict[str, str] | None = None
        ) -> tuple[int, dict[str, Any] | None, str]:
    """Runs a plugin as libcni does; (exit status, stdout as JSON or None,
    stderr)."""
    env = {"PATH": os.environ["PATH"], "CNI_COMMAND": command, "CNI_PATH": CNI_PATH}
    for key, value in (("CNI_CONTAINERID", cid), ("CNI_NETNS", netns), ("CNI_IFNAME", ifname),
                       ("CNI_ARGS", args)):
        if value:
            env[key] = value
    env.update(extra_env or {})
    data = conf if isinstance(conf, bytes) else json.dumps(conf or {}).encode()
    res = subprocess.run([plugin], input=data, env=env, capture_output=True, timeout=60, cwd="/")
    out = res.stdout.decode()
    assert "Traceback" not in out and "Traceback" not in res.stderr.decode(), (out, res.stderr.decode())
    return res.returncode, (json.loads(out) if out.strip() else None), res.stderr.decode()


def ok(command: str, conf: dict[str, Any], **kw: Any) -> dict[str, Any] | None:
    rc, out, err = cni(command, conf, **kw)
    assert rc == 0, (out, err)
    return out


def error(command: str, conf: dict[str, Any] | bytes | None, code: int, **kw: Any) -> dict[str, Any]:
    rc, out, err = cni(command, conf, **kw)
    assert rc != 0, out
    check_error(out, code)
    return out  # type: ignore[return-value]


# ---- SPEC.md, "Result Types" ----

RESULT_KEYS = {"cniVersion", "interfaces", "ips", "routes", "dns"}
INTERFACE_KEYS = {"name", "mac", "mtu", "sandbox", "socketPath", "pciID"}
IP_KEYS = {"address", "gateway", "interface"}
ROUTE_KEYS = {"dst", "gw", "mtu", "advmss", "priority", "table", "scope"}
DNS_KEYS = {"nameservers", "domain", "search", "options"}


def _uint(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def check_result(result: Any, version: str) -> None:
    """An ADD success result as SPEC.md defines it."""
    assert isinstance(result, dict), result
    assert set(result) <= RESULT_KEYS, set(result) - RESULT_KEYS
    assert result["cniVersion"] == version
    interfaces = result.get("interfaces", [])
    assert isinstance(interfaces, list)
    for itf in interfaces:
        assert isinstance(itf, dict) and set(itf) <= INTERFACE_KEYS, itf
        assert isinstance(itf["name"], str) and itf["name"]
        for key in ("mac", "sandbox", "socketPath", "pciID"):
            assert key not in itf or isinstance(itf[key], str), itf
        assert "mtu" not in itf or _uint(itf["mtu"]), itf
        assert "socketPath" not in itf or os.path.isabs(itf["socketPath"]), itf
    for ip in result.get("ips", []):
        assert isinstance(ip, dict) and set(ip) <= IP_KEYS, ip
        ipaddress.ip_interface(ip["address"])
        assert "/" in ip["address"], ip
        if "gateway" in ip:
            ipaddress.ip_address(ip["gateway"])
        if "interface" in ip:
            assert _uint(ip["interface"]) and ip["interface"] < len(interfaces), ip
    for route in result.get("routes", []):
        assert isinstance(route, dict) and set(route) <= ROUTE_KEYS, route
        ipaddress.ip_network(route["dst"])
        if "gw" in route:
            ipaddress.ip_address(route["gw"])
        for key in ROUTE_KEYS - {"dst", "gw"}:
            assert key not in route or _uint(route[key]), route
    if "dns" in result:
        dns = result["dns"]
        assert isinstance(dns, dict) and set(dns) <= DNS_KEYS
        for key in ("nameservers", "search", "options"):
            assert key not in dns or all(isinstance(x, str) for x in dns[key])


def check_error(out: Any, code: int) -> None:
    """SPEC.md's error object."""
    assert isinstance(out, dict), out
    assert set(out) == {"cniVersion", "code", "msg", "details"}, out
    assert isinstance(out["cniVersion"], str) and isinstance(out["msg"], str) and out["msg"]
    assert isinstance(out["details"], str)
    assert out["code"] == code, out


def docknet_part(result: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, Any]]:
    """DockNet's interface (the one with a socketPath), its index and its ip."""
    index = next(i for i, itf in enumerate(result["interfaces"]) if "socketPath" in itf)
    ip = next(ip for ip in result["ips"] if ip.get("interface") == index)
    return index, result["interfaces"][index], ip


# ---- fixtures ----

def api(master: Master) -> ApiClient:
    return ApiClient(os.path.join(master.run_dir, "api.sock"))


def netconf(master: Master | str, version: str = "1.0.0", **extra: Any) -> dict[str, Any]:
    run_dir = master if isinstance(master, str) else master.run_dir
    return {"cniVersion": version, "name": "dn-test", "type": "docknet-cni", "runDir": run_dir, **extra}


class Namespaces:
    def __init__(self) -> None:
        self.made: list[str] = []

    def __call__(self) -> str:
        name = f"dn-cni-{uuid.uuid4().hex[:8]}"
        subprocess.run(["ip", "netns", "add", name], check=True)
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        self.made.append(name)
        return f"/run/netns/{name}"

    def remove(self, path: str) -> None:
        name = os.path.basename(path)
        subprocess.run(["ip", "netns", "del", name], check=False)
        if name in self.made:
            self.made.remove(name)


@pytest.fixture
def netns() -> Iterator[Namespaces]:
    ns = Namespaces()
    try:
        yield ns
    finally:
        for name in list(ns.made):
            subprocess.run(["ip", "netns", "del", name], check=False)


def endpoint(master: Master, name: str) -> dict[str, Any] | None:
    try:
        return dict(api(master).call("GET", f"/v1/endpoints/{name}"))
    except ApiError as exc:
        assert exc.status == 404
        return None


# ---- VERSION, STATUS ----

def test_version_lists_what_it_supports() -> None:
    out = ok("VERSION", {"cniVersion": "1.0.0"})
    assert out == {"cniVersion": "1.0.0", "supportedVersions": ["1.0.0", "1.1.0"]}
    rc, out, _ = cni("VERSION", b"")
    assert rc == 0 and "1.1.0" in out["supportedVersions"]


def test_status_says_whether_the_master_is_up(master: Master) -> None:
    assert ok("STATUS", netconf(master, "1.1.0")) is None
    error("STATUS", netconf(tempfile.gettempdir() + "/dn-no-master", "1.1.0"), 50)
    # STATUS is 1.1.0's: a 1.0.0 configuration may not ask for it.
    error("STATUS", netconf(master, "1.0.0"), 1)


# ---- ADD, CHECK, DEL standalone ----

def test_add_check_del_standalone(master: Master, netns: Namespaces) -> None:
    ns = netns()
    conf = netconf(master, runtimeConfig={"bandwidth": {"ingressRate": 50_000_000, "ingressBurst": 100_000,
                                                        "egressRate": 100_000_000, "egressBurst": 200_000}})
    env = {"cid": "c0ffee01", "netns": ns, "ifname": "eth0", "args": "IgnoreUnknown=1;K8S_POD_NAME=shop"}
    result = ok("ADD", conf, **env)
    check_result(result, "1.0.0")
    assert len(result["interfaces"]) == 1
    index, itf, ip = docknet_part(result)
    address = ipaddress.ip_interface(ip["address"])
    # The switch's MAC for the address: 02:00 and the address's four bytes.
    mac = "02:00:" + ":".join(f"{b:02x}" for b in address.ip.packed)
    assert itf == {"name": "eth0", "mac": mac, "mtu": 9000, "sandbox": ns, "socketPath": master.path}
    assert address.network == SUBNET and ip["gateway"] == "10.77.0.1"
    assert {"dst": str(SUBNET), "gw": "10.77.0.1"} in result["routes"]
    # One address per family on DockNet's interface (the master's default
    # prefix), the IPv6 one the IPv4 one's twin, and a route per family.
    assert [ipaddress.ip_interface(i["address"]).version for i in result["ips"] if i["interface"] == index] == [4, 6]
    ip6 = next(i for i in result["ips"] if i["interface"] == index and ":" in i["address"])
    address6 = ipaddress.ip_interface(ip6["address"])
    assert address6.network == SUBNET6 and ip6["gateway"] == "fd77:d0c::1"
    assert int(address6.ip) & 0xFFFFFFFF == int(address.ip) & int(SUBNET.hostmask)
    assert {"dst": str(SUBNET6), "gw": "fd77:d0c::1"} in result["routes"]

    view = endpoint(master, "shop")
    assert view is not None
    assert view["netns"] == ns and view["ip"] == str(address.ip) and view["state"] == "registered"
    assert view["owner"] == {"runtime": "cni", "network": "dn-test", "container_id": "c0ffee01", "ifname": "eth0"}
    assert view["egress_bits"] == 100_000_000 and view["ingress_bits"] == 50_000_000
    assert view["egress_burst_bits"] == 200_000 and view["ingress_burst_bits"] == 100_000
    # docknet ps shows whose it is.
    ps = subprocess.run([sys.executable, "-m", "aiodocknet.cli", "--api", os.path.join(master.run_dir, "api.sock"),
                         "--json", "ps"], capture_output=True, text=True, check=True, cwd=ROOT)
    assert json.loads(ps.stdout)[0]["owner"]["container_id"] == "c0ffee01"
    table = subprocess.run([sys.executable, "-m", "aiodocknet.cli", "--api", os.path.join(master.run_dir, "api.sock"),
                            "ps"], capture_output=True, text=True, check=True, cwd=ROOT).stdout.splitlines()
    assert table[0].split()[-1] == "OWNER" and table[1].split()[-1] == "cni:c0ffee01", table

    assert ok("CHECK", {**conf, "prevResult": result}, **env) is None
    # CHECK checks both families: a prevResult without the IPv6 address,
    # or with another, fails and names it; one written another way passes.
    v4_only = {**result, "ips": [i for i in result["ips"] if i is not ip6]}
    out = error("CHECK", {**conf, "prevResult": v4_only}, 101, **env)
    assert f"its address {address6.ip} is not in prevResult" in out["details"], out
    other = {**result, "ips": [i if i is not ip6 else {**i, "address": "fd77:d0c::ffff/64"} for i in result["ips"]]}
    error("CHECK", {**conf, "prevResult": other}, 101, **env)
    exploded = {**result, "ips": [i if i is not ip6 else {**i, "address": f"{address6.ip.exploded}/64"}
                                  for i in result["ips"]]}
    assert ok("CHECK", {**conf, "prevResult": exploded}, **env) is None

    assert ok("DEL", {**conf, "prevResult": result}, **env) is None
    assert endpoint(master, "shop") is None
    # Repeated DEL, and DEL with no prevResult: still success.
    assert ok("DEL", {**conf, "prevResult": result}, **env) is None
    assert ok("DEL", conf, **env) is None
    # CHECK now reports the endpoint missing (a runtime must not ask, but
    # the answer must be an error object, not a pass).
    error("CHECK", {**conf, "prevResult": result}, 101, **env)


def test_ipv4_only_master_gives_one_family(netns: Namespaces) -> None:
    """A master with subnet6 none: the result is as before IPv6, one
    address and one route, and CHECK passes with them."""
    from dn_harness import running_master

    with running_master("dn-cni4-", ["--subnet6", "none"]) as master:
        ns = netns()
        conf = netconf(master)
        env = {"cid": "four01", "netns": ns, "ifname": "eth0"}
        result = ok("ADD", conf, **env)
        check_result(result, "1.0.0")
        assert [ipaddress.ip_interface(i["address"]).version for i in result["ips"]] == [4], result
        assert result["routes"] == [{"dst": str(SUBNET), "gw": "10.77.0.1"}], result
        assert ok("CHECK", {**conf, "prevResult": result}, **env) is None
        assert ok("DEL", {**conf, "prevResult": result}, **env) is None
        assert endpoint(master, "four01") is None


def test_address_is_the_endpoints_for_its_life(master: Master, netns: Namespaces) -> None:
    ns = netns()
    conf = netconf(master)
    result = ok("ADD", conf, cid="life1", netns=ns, ifname="eth0")
    ip = docknet_part(result)[2]["address"].split("/")[0]
    # An endpoint attaching meanwhile (a host process, ad hoc) is not given
    # the address the container's endpoint holds.
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
        from aiodocknet.native.stack import request_attach
        control, info, fds = request_attach("adhoc", {master.path!r})
        print(info.address)
        """)], capture_output=True, text=True, env=master.env, cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() != ip
    # ADD again for the same attachment (a runtime that crashed half way)
    # answers the same address.
    again = ok("ADD", conf, cid="life1", netns=ns, ifname="eth0")
    assert docknet_part(again)[2]["address"].split("/")[0] == ip
    # ADD again from a new namespace (no DEL between): the endpoint moves.
    moved = netns()
    ok("ADD", conf, cid="life1", netns=moved, ifname="eth0")
    assert endpoint(master, "life1")["netns"] == moved
    ok("DEL", conf, cid="life1", netns=moved, ifname="eth0")
    assert endpoint(master, "life1") is None
    # Released on DEL: the next container may have it.
    ns2 = netns()
    nxt = ok("ADD", conf, cid="life2", netns=ns2, ifname="eth0")
    assert endpoint(master, "life2")["ip"] == docknet_part(nxt)[2]["address"].split("/")[0]
    ok("DEL", conf, cid="life2", netns=ns2, ifname="eth0")


def test_name_is_the_pod_name_else_the_container_id(master: Master, netns: Namespaces) -> None:
    conf = netconf(master)
    ns1, ns2 = netns(), netns()
    long_id = uuid.uuid4().hex + uuid.uuid4().hex
    ok("ADD", conf, cid=long_id, netns=ns1, ifname="eth0")
    # A 64-hex id is longer than an endpoint name: its short form.
    assert endpoint(master, long_id[:12])["owner"]["container_id"] == long_id
    ok("ADD", conf, cid="plain-id", netns=ns2, ifname="eth0", args="K8S_POD_NAMESPACE=team-a")
    view = endpoint(master, "plain-id")
    assert view["tenant"] == "team-a"
    # The configuration's tenant wins over the pod's namespace.
    ns3 = netns()
    ok("ADD", netconf(master, tenant="fixed"), cid="t3", netns=ns3, ifname="eth0", args="K8S_POD_NAMESPACE=team-a")
    assert endpoint(master, "t3")["tenant"] == "fixed"
    # containerd and CRI-O name the namespace under /var/run/netns.
    ns4 = netns()
    ok("ADD", conf, cid="var1", netns="/var" + ns4, ifname="eth0")
    assert endpoint(master, "var1")["netns"] == ns4
    for cid, ns in ((long_id, ns1), ("plain-id", ns2), ("t3", ns3), ("var1", ns4)):
        ok("DEL", conf, cid=cid, netns=ns, ifname="eth0")
    assert api(master).call("GET", "/v1/endpoints") == []


def test_del_out_of_order_and_never_added(master: Master, netns: Namespaces) -> None:
    conf = netconf(master)
    ns = netns()
    # Never added: success, nothing changes.
    assert ok("DEL", conf, cid="ghost", netns=ns, ifname="eth0") is None
    assert ok("DEL", conf, cid="ghost", ifname="eth0") is None  # CNI_NETNS is optional for DEL
    ok("ADD", conf, cid="owner1", netns=ns, ifname="eth0", args="K8S_POD_NAME=db")
    # A DEL for another attachment (other container, other interface, other
    # network) with the same pod name does not take this one's endpoint.
    ok("DEL", conf, cid="owner2", netns=ns, ifname="eth0", args="K8S_POD_NAME=db")
    ok("DEL", conf, cid="owner1", netns=ns, ifname="eth1", args="K8S_POD_NAME=db")
    ok("DEL", {**conf, "name": "other-net"}, cid="owner1", netns=ns, ifname="eth0", args="K8S_POD_NAME=db")
    assert endpoint(master, "db") is not None
    # The runtime deletes the namespace before the DEL: still success.
    netns.remove(ns)
    ok("DEL", conf, cid="owner1", netns=ns, ifname="eth0", args="K8S_POD_NAME=db")
    assert endpoint(master, "db") is None
    ok("DEL", conf, cid="owner1", netns=ns, ifname="eth0", args="K8S_POD_NAME=db")


def test_del_after_master_restart(netns: Namespaces) -> None:
    with tempfile.TemporaryDirectory(prefix="dn-cni-") as run_dir:
        ns_kept, ns_gone = netns(), netns()
        conf = netconf(run_dir)
        first = Master(run_dir)
        try:
            ok("ADD", conf, cid="kept", netns=ns_kept, ifname="eth0")
            ok("ADD", conf, cid="gone", netns=ns_gone, ifname="eth0")
        finally:
            assert first.stop() == 0
        # No master: a DEL whose namespace is still there cannot be done yet
        # (a master started later would bring the endpoint back)...
        error("DEL", conf, 11, cid="kept", netns=ns_kept, ifname="eth0")
        # ...one whose namespace is gone can (a master drops it on start).
        netns.remove(ns_gone)
        ok("DEL", conf, cid="gone", netns=ns_gone, ifname="eth0")
        second = Master(run_dir)
        try:
            assert endpoint(second, "kept")["owner"]["container_id"] == "kept"
            assert endpoint(second, "gone") is None
            ok("DEL", conf, cid="kept", netns=ns_kept, ifname="eth0")
            assert endpoint(second, "kept") is None
            ok("DEL", conf, cid="kept", netns=ns_kept, ifname="eth0")
        finally:
            assert second.stop() == 0


# ---- GC ----

def test_gc_removes_only_this_networks_stale_endpoints(master: Master, netns: Namespaces) -> None:
    conf = netconf(master, "1.1.0")
    ns_live, ns_stale, ns_other, ns_manual = netns(), netns(), netns(), netns()
    ok("ADD", conf, cid="live", netns=ns_live, ifname="eth0")
    ok("ADD", conf, cid="stale", netns=ns_stale, ifname="eth0")
    ok("ADD", {**conf, "name": "other-net"}, cid="other", netns=ns_other, ifname="eth0")
    api(master).call("POST", "/v1/endpoints", {"name": "manual", "netns": ns_manual})  # docknet attach's
    valid = [{"containerID": "live", "ifname": "eth0"}, {"containerID": "stale", "ifname": "eth9"}]
    assert ok("GC", {**conf, "cni.dev/valid-attachments": valid}) is None
    assert endpoint(master, "live") is not None
    assert endpoint(master, "stale") is None
    assert endpoint(master, "other") is not None
    assert endpoint(master, "manual") is not None
    # An empty list: everything of this network goes.
    ok("GC", {**conf, "cni.dev/valid-attachments": []})
    assert endpoint(master, "live") is None and endpoint(master, "other") is not None
    error("GC", {**conf, "cni.dev/valid-attachments": [{"containerID": 5}]}, 6)
    error("GC", netconf(master, "1.0.0", **{"cni.dev/valid-attachments": []}), 1)


# ---- errors ----

BAD_CONFIGS = [
    (b"{not json", 6),
    (b"[1, 2]", 6),
    ({"cniVersion": "1.0.0", "name": "n", "type": "docknet-cni", "bogus": True}, 2),
    ({"cniVersion": "1.0.0", "name": "n", "type": "docknet-cni", "ipam": {"type": "host-local"}}, 2),
    ({"cniVersion": "1.0.0", "name": "n", "type": "docknet-cni", "capabilities": {"portMappings": True}}, 2),
    ({"cniVersion": "1.0.0", "name": "n", "type": "docknet-cni", "runtimeConfig": {"portMappings": []}}, 2),
    ({"cniVersion": "1.0.0", "name": 5, "type": "docknet-cni"}, 6),
    ({"cniVersion": "1.0.0", "name": "n", "type": "docknet-cni", "tenant": ["a"]}, 6),
    ({"cniVersion": "1.0.0", "name": "n", "type": "docknet-cni",
      "runtimeConfig": {"bandwidth": {"egressRate": "fast"}}}, 6),
    ({"cniVersion": "1.0.0", "name": "n", "type": "docknet-cni",
      "runtimeConfig": {"bandwidth": {"egressRate": 10**15}}}, 7),
    ({"cniVersion": "1.0.0", "name": "n", "type": "docknet-cni", "tenant": "no spaces"}, 7),
    ({"cniVersion": "1.0.0", "name": "n", "type": "docknet-cni", "runDir": "relative"}, 7),
    ({"cniVersion": "1.0.0", "type": "docknet-cni"}, 7),
    ({"cniVersion": "0.3.1", "name": "n", "type": "docknet-cni"}, 1),
    ({"cniVersion": True, "name": "n", "type": "docknet-cni"}, 6),
]


@pytest.mark.parametrize("conf,code", BAD_CONFIGS, ids=[str(i) for i in range(len(BAD_CONFIGS))])
def test_bad_config_is_an_error_object_and_changes_nothing(shared_master: Master, netns: Namespaces,
                                                           conf: Any, code: int) -> None:
    master = shared_master
    ns = netns()
    if isinstance(conf, dict) and isinstance(conf.get("name"), str) and "runDir" not in conf:
        conf = {**conf, "runDir": master.run_dir}
    out = error("ADD", conf, code, cid="bad1", netns=ns, ifname="eth0")
    assert out["cniVersion"]
    assert api(master).call("GET", "/v1/endpoints") == []


def test_bad_environment_is_an_error_object(master: Master, netns: Namespaces) -> None:
    conf = netconf(master)
    ns = netns()
    error("BOGUS", conf, 4, cid="e1", netns=ns, ifname="eth0")
    error("", conf, 4, cid="e1", netns=ns, ifname="eth0")
    error("ADD", conf, 4, netns=ns, ifname="eth0")  # no CNI_CONTAINERID
    error("ADD", conf, 4, cid="e1", ifname="eth0")  # no CNI_NETNS
    error("ADD", conf, 4, cid="-bad id", netns=ns, ifname="eth0")
    error("ADD", conf, 4, cid="e1", netns=ns, ifname="eth0/1")
    error("ADD", conf, 4, cid="e1", netns="/etc/passwd", ifname="eth0")
    error("ADD", conf, 3, cid="e1", netns="/run/netns/dn-cni-never-made", ifname="eth0")
    error("ADD", conf, 4, cid="e1", netns=ns, ifname="eth0", args="NOEQUALS")
    error("ADD", conf, 4, cid="e1", netns=ns, ifname="eth0", args="SOMETHING=else")
    error("ADD", conf, 4, cid="e1", netns=ns, ifname="eth0", args="K8S_POD_NAME=not a name")
    assert api(master).call("GET", "/v1/endpoints") == []


def test_unreachable_master_is_an_error_object(netns: Namespaces) -> None:
    ns = netns()
    conf = netconf(tempfile.gettempdir() + "/dn-cni-no-master")
    error("ADD", conf, 11, cid="u1", netns=ns, ifname="eth0")
    error("CHECK", conf, 11, cid="u1", netns=ns, ifname="eth0")
    error("GC", netconf(tempfile.gettempdir() + "/dn-cni-no-master", "1.1.0",
                        **{"cni.dev/valid-attachments": []}), 11)


def test_name_taken_and_one_endpoint_per_namespace(master: Master, netns: Namespaces) -> None:
    conf = netconf(master)
    ns1, ns2 = netns(), netns()
    ok("ADD", conf, cid="a1", netns=ns1, ifname="eth0", args="K8S_POD_NAME=same")
    error("ADD", conf, 100, cid="a2", netns=ns2, ifname="eth0", args="K8S_POD_NAME=same")
    error("ADD", conf, 100, cid="a3", netns=ns1, ifname="eth1", args="K8S_POD_NAME=another")
    assert [e["name"] for e in api(master).call("GET", "/v1/endpoints")] == ["same"]
    ok("DEL", conf, cid="a1", netns=ns1, ifname="eth0", args="K8S_POD_NAME=same")


# ---- chained after the kernel's bridge plugin ----

def kernel_plugin(kind: str) -> str:
    path = os.path.join(CNI_PATH, kind)
    if not os.access(path, os.X_OK):
        pytest.skip(f"no {kind} plugin (containernetworking-plugins; scripts/bootstrap.sh installs it)")
    return path


@pytest.fixture
def bridge() -> Iterator[str]:
    kernel_plugin("bridge")
    name = f"dncni{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "link", "add", "name", name, "type", "bridge"], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "link", "del", name], check=False)


def test_chained_after_ptp(master: Master, netns: Namespaces) -> None:
    ptp = kernel_plugin("ptp")
    ns = netns()
    with tempfile.TemporaryDirectory(prefix="dn-cni-ipam-") as ipam_dir:
        ptp_conf = {"cniVersion": "1.0.0", "name": "dn-test", "type": "ptp",
                    "ipam": {"type": "host-local", "dataDir": ipam_dir, "ranges": [[{"subnet": "10.199.78.0/24"}]]}}
        dn_conf = netconf(master)
        env = {"cid": "ptp1", "netns": ns, "ifname": "eth0"}
        first = ok("ADD", ptp_conf, plugin=ptp, **env)
        result = ok("ADD", {**dn_conf, "prevResult": first}, **env)
        check_result(result, "1.0.0")
        n = len(first["interfaces"])
        assert result["interfaces"][:n] == first["interfaces"] and result["ips"][:len(first["ips"])] == first["ips"]
        # ptp made a host-side veth too (no sandbox): DockNet's comes after it.
        assert any(not itf.get("sandbox") for itf in first["interfaces"])
        index, itf, _ = docknet_part(result)
        assert index == n and itf["sandbox"] == ns
        ok("CHECK", {**dn_conf, "prevResult": result}, **env)
        ok("DEL", {**dn_conf, "prevResult": result}, **env)
        ok("DEL", {**ptp_conf, "prevResult": result}, plugin=ptp, **env)
        assert api(master).call("GET", "/v1/endpoints") == []


def test_chained_after_bridge(master: Master, netns: Namespaces, bridge: str) -> None:
    ns = netns()
    with tempfile.TemporaryDirectory(prefix="dn-cni-ipam-") as ipam_dir:
        bridge_conf = {"cniVersion": "1.0.0", "name": "dn-test", "type": "bridge", "bridge": bridge,
                       "isGateway": True,
                       "ipam": {"type": "host-local", "dataDir": ipam_dir, "ranges": [[{"subnet": "10.199.77.0/24"}]],
                                "routes": [{"dst": "0.0.0.0/0"}]}}
        dn_conf = netconf(master, capabilities={"bandwidth": True},
                          runtimeConfig={"bandwidth": {"egressRate": 20_000_000, "egressBurst": 100_000}})
        env = {"cid": "chain1", "netns": ns, "ifname": "eth0", "args": "IgnoreUnknown=1;K8S_POD_NAME=chained"}
        first = ok("ADD", bridge_conf, plugin=os.path.join(CNI_PATH, "bridge"), **env)
        check_result(first, "1.0.0")
        result = ok("ADD", {**dn_conf, "prevResult": first}, **env)
        check_result(result, "1.0.0")
        # The bridge plugin's interfaces, ips and routes are kept as they were.
        n = len(first["interfaces"])
        assert result["interfaces"][:n] == first["interfaces"]
        assert result["ips"][:len(first["ips"])] == first["ips"]
        assert result["routes"][:len(first["routes"])] == first["routes"]
        index, itf, ip = docknet_part(result)
        assert index == n and len(result["interfaces"]) == n + 1
        assert itf["sandbox"] == ns and itf["socketPath"] == master.path
        assert itf["name"] != "eth0"  # the bridge's veth has that name in the container
        assert ipaddress.ip_interface(ip["address"]).network == SUBNET
        # The kernel interface is really there, with the bridge's address.
        kernel_ip = first["ips"][0]["address"]
        shown = subprocess.run(["ip", "-n", os.path.basename(ns), "-o", "addr", "show", "dev", "eth0"],
                               capture_output=True, text=True, check=True).stdout
        assert kernel_ip in shown
        assert endpoint(master, "chained")["egress_bits"] == 20_000_000

        # CHECK with the final result, as libcni runs it. Debian's bridge
        # (1.1.1) wants every address of the result on its own interface,
        # whatever interface an address names, so it fails on a chain that
        # adds one: the example conflist sets disableCheck for that reason.
        # DockNet's CHECK passes; the bridge's own attachment is intact.
        ok("CHECK", {**dn_conf, "prevResult": result}, **env)
        rc, out, _ = cni("CHECK", {**bridge_conf, "prevResult": result}, plugin=os.path.join(CNI_PATH, "bridge"),
                         **env)
        assert rc != 0 and ip["address"] in out["msg"], out
        ok("CHECK", {**bridge_conf, "prevResult": first}, plugin=os.path.join(CNI_PATH, "bridge"), **env)
        # DEL in reverse order.
        ok("DEL", {**dn_conf, "prevResult": result}, **env)
        assert endpoint(master, "chained") is None
        ok("DEL", {**bridge_conf, "prevResult": result}, plugin=os.path.join(CNI_PATH, "bridge"), **env)
        ok("DEL", {**dn_conf, "prevResult": result}, **env)


# ---- attach without secrets, end to end ----

SERVER = textwrap.dedent("""
    import asyncio, json, os
    from aiohttp import web
    import aiodocknet
    from aiodocknet.endpoint import ProcessEndpoint

    async def hello(request):
        return web.Response(text="hello from " + os.environ.get("WHO", "?"))

    async def main():
        app = web.Application()
        app.router.add_get("/", hello)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "0.0.0.0", 8080).start()
        ep = ProcessEndpoint.get()
        print(json.dumps({"event": "ready", "address": ep.address if ep else None}), flush=True)
        await asyncio.Event().wait()

    aiodocknet.run(main())
""")

CLIENT = textwrap.dedent("""
    import json, sys
    from aiohttp import ClientSession
    import aiodocknet
    from aiodocknet.aiohttp import DockNetConnector
    from aiodocknet.endpoint import ProcessEndpoint

    async def main():
        async with ClientSession(connector=DockNetConnector()) as s:
            async with s.get(f"http://{sys.argv[1]}:8080/") as r:
                body = await r.text()
        ep = ProcessEndpoint.get()
        print(json.dumps({"event": "result", "status": r.status, "body": body,
                          "address": ep.address if ep else None}), flush=True)

    aiodocknet.run(main())
""")

PROBE = textwrap.dedent("""
    import json, os
    from aiodocknet.native.stack import request_attach
    try:
        # No PROBE_NAME: a process told no name, as a container's is.
        _, info, _ = request_attach(os.environ.get("PROBE_NAME") or "guess", os.environ["DOCKNET_MASTER"],
                                    named="PROBE_NAME" in os.environ)
        print(json.dumps({"event": "probe", "attached": True, "endpoint": info.endpoint}))
    except OSError as exc:
        print(json.dumps({"event": "probe", "attached": False, "error": str(exc)}))
""")


def in_netns(master: Master, ns: str, script: str, *argv: str, **env: str) -> Proc:
    """python in the namespace with only the master's location: no
    DOCKNET_ENDPOINT, no DOCKNET_SECRET."""
    clean = {k: v for k, v in master.env.items() if not k.startswith("DOCKNET_")}
    clean.update(DOCKNET_MASTER=master.path, **env)
    p = Proc(["ip", "netns", "exec", os.path.basename(ns), sys.executable, "-c", script, *argv], clean,
             f"netns-{os.path.basename(ns)}")
    master.peers.append(p)
    return p


def test_container_process_attaches_by_its_namespace_alone(master: Master, netns: Namespaces) -> None:
    conf = netconf(master)
    ns_server, ns_client = netns(), netns()
    server_result = ok("ADD", conf, cid="srv1", netns=ns_server, ifname="eth0", args="K8S_POD_NAME=websrv")
    client_result = ok("ADD", conf, cid="cli1", netns=ns_client, ifname="eth0", args="K8S_POD_NAME=webcli")
    server = in_netns(master, ns_server, SERVER, WHO="websrv")
    ready = server.expect("ready", timeout=60)
    assert ready["address"] == docknet_part(server_result)[2]["address"].split("/")[0]
    view = endpoint(master, "websrv")
    assert view["state"] == "attached" and view["pid"] == server.pid
    # The master's IPv6 address for the attached endpoint is the one ADD gave.
    assert view["address6"] + "/64" in [i["address"] for i in server_result["ips"]]

    client = in_netns(master, ns_client, CLIENT, "websrv")
    answer = client.expect("result", timeout=60)
    assert answer["status"] == 200 and answer["body"] == "hello from websrv"
    assert answer["address"] == docknet_part(client_result)[2]["address"].split("/")[0]
    assert client.wait(30) == 0

    # DEL cuts the container's process off and frees the name.
    ok("DEL", conf, cid="srv1", netns=ns_server, ifname="eth0", args="K8S_POD_NAME=websrv")
    assert wait_for(lambda: endpoint(master, "websrv") is None, 10)
    ok("DEL", conf, cid="cli1", netns=ns_client, ifname="eth0", args="K8S_POD_NAME=webcli")


def test_namespace_identity_is_not_a_way_in(master: Master, netns: Namespaces) -> None:
    conf = netconf(master)
    ns_owned, ns_other, ns_manual = netns(), netns(), netns()
    ok("ADD", conf, cid="own1", netns=ns_owned, ifname="eth0", args="K8S_POD_NAME=owned")
    # Another namespace that asks for the name is refused: the master
    # checks the caller's namespace.
    probe = in_netns(master, ns_other, PROBE, PROBE_NAME="owned").expect("probe", timeout=60)
    assert not probe["attached"] and "network namespace" in probe["error"], probe
    # A namespace registered by docknet attach (no owner) still needs its secret.
    api(master).call("POST", "/v1/endpoints", {"name": "manual", "netns": ns_manual})
    probe = in_netns(master, ns_manual, PROBE, PROBE_NAME="manual").expect("probe", timeout=60)
    assert not probe["attached"] and "secret" in probe["error"], probe
    # The owned one attaches with none, named or not: a process told no
    # name is the endpoint registered for its namespace.
    probe = in_netns(master, ns_owned, PROBE, PROBE_NAME="owned").expect("probe", timeout=60)
    assert probe["attached"] and probe["endpoint"] == "owned", probe
    probe = in_netns(master, ns_owned, PROBE).expect("probe", timeout=60)
    assert probe["attached"] and probe["endpoint"] == "owned", probe
    # Unnamed from a namespace nobody registered: still refused.
    probe = in_netns(master, ns_other, PROBE).expect("probe", timeout=60)
    assert not probe["attached"] and "not registered" in probe["error"], probe
    ok("DEL", conf, cid="own1", netns=ns_owned, ifname="eth0", args="K8S_POD_NAME=owned")


# ---- the master's API: owner is checked like everything else ----

@pytest.mark.parametrize("owner", [
    "cni", {"runtime": "cni"}, {"runtime": "cni", "network": "n", "container_id": "c", "ifname": "eth0", "x": 1},
    {"runtime": "cni", "network": "n", "container_id": "-c", "ifname": "eth0"},
    {"runtime": "cni", "network": "n", "container_id": "c", "ifname": "a/b"},
    {"runtime": "cni", "network": "n", "container_id": "c", "ifname": "waytoolonginterface"},
    {"runtime": "c n i", "network": "n", "container_id": "c", "ifname": "eth0"},
    {"runtime": "cni", "network": "n", "container_id": 7, "ifname": "eth0"},
])
def test_register_refuses_a_bad_owner(shared_master: Master, netns: Namespaces, owner: Any) -> None:
    master = shared_master
    ns = netns()
    with pytest.raises(ApiError) as info:
        api(master).call("POST", "/v1/endpoints", {"name": "x", "netns": ns, "owner": owner})
    assert info.value.status == 400 and "owner" in info.value.message
    assert api(master).call("GET", "/v1/endpoints") == []


# ---- docknet cni install ----

def test_cni_install_writes_a_working_plugin_and_refuses_to_overwrite(master: Master, netns: Namespaces) -> None:
    with tempfile.TemporaryDirectory(prefix="dn-cni-install-") as root:
        bin_dir, conf_dir = os.path.join(root, "bin"), os.path.join(root, "net.d")
        argv = [sys.executable, "-m", "aiodocknet.cli", "cni", "install", "--bin-dir", bin_dir,
                "--conf-dir", conf_dir, "--run-dir", master.run_dir]
        first = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT)
        assert first.returncode == 0, first.stderr
        plugin = os.path.join(bin_dir, "docknet-cni")
        conflist = json.load(open(os.path.join(conf_dir, "90-docknet.conflist")))
        assert [p["type"] for p in conflist["plugins"]] == ["bridge", "docknet-cni"]
        assert conflist["disableCheck"] is True
        assert conflist["plugins"][1]["runDir"] == master.run_dir
        # Idempotent.
        again = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT)
        assert again.returncode == 0 and "unchanged" in again.stdout
        # The installed file is the plugin, on the node's Python with nothing
        # of aiodocknet installed (its own modules are in the file).
        with open(plugin, "rb") as f:
            assert f.readline() == b"#!/usr/bin/python3 -I\n"
        bare = subprocess.run(["/usr/bin/python3", "-I", "-c", "import aiodocknet"], capture_output=True)
        assert bare.returncode != 0, "the test needs a Python without aiodocknet"
        ns = netns()
        dn_conf = {**conflist["plugins"][1], "cniVersion": conflist["cniVersion"], "name": conflist["name"]}
        result = ok("ADD", dn_conf, cid="inst1", netns=ns, ifname="eth0", plugin=plugin)
        check_result(result, "1.0.0")
        ok("DEL", dn_conf, cid="inst1", netns=ns, ifname="eth0", plugin=plugin)
        # A file that differs is not overwritten without --force.
        with open(plugin, "ab") as f:
            f.write(b"# changed\n")
        refused = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT)
        assert refused.returncode != 0 and "--force" in refused.stderr
        assert open(plugin, "rb").read().endswith(b"# changed\n")
        forced = subprocess.run([*argv, "--force"], capture_output=True, text=True, cwd=ROOT)
        assert forced.returncode == 0 and "replaced" in forced.stdout
        assert not open(plugin, "rb").read().endswith(b"# changed\n")
        shutil.rmtree(bin_dir)


def test_the_zipapp_holds_every_module_the_plugin_imports() -> None:
    """The plugin file carries its own modules: every aiodocknet module a
    full ADD/DEL/CHECK/GC path imports is in it, and nothing third-party is
    needed."""
    import zipfile

    from aiodocknet.cni.install import plugin_zipapp

    code = ("import sys, aiodocknet.cni.main, aiodocknet.cni.commands; "
            "print(' '.join(sorted(m for m in sys.modules if m.startswith('aiodocknet')))); "
            "print(' '.join(sorted({m.split('.')[0] for m in sys.modules} - set(sys.stdlib_module_names))))")
    res = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, cwd="/", timeout=60)
    modules, third_party = res.stdout.splitlines()
    assert set(third_party.split()) <= {"aiodocknet", "__main__", "_distutils_hack"} | {
        m for m in third_party.split() if m.startswith("__editable__")}, third_party
    data = plugin_zipapp()
    names = set(zipfile.ZipFile(io.BytesIO(data[data.index(b"\n") + 1:])).namelist())
    for m in modules.split():
        path = m.replace(".", "/")
        assert f"{path}.py" in names or f"{path}/__init__.py" in names, (m, sorted(names))


def test_the_plugin_and_the_cli_load_no_native_code() -> None:
    """A runtime runs the plugin for every container and CNI call: it must
    not load uvloop, DPDK or the stack (nor need them to work)."""
    code = ("import sys, aiodocknet.cni.main, aiodocknet.cli.main; "
            "print(sorted(m for m in sys.modules if m.startswith(('uvloop', 'aiodocknet.native', "
            "'aiodocknet.loop', 'aiodocknet.transports'))))")
    res = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, cwd="/", timeout=60)
    assert res.returncode == 0 and res.stdout.strip() == "[]", res
