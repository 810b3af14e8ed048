"""IPv6 on the control plane (issue 18): the address rule, the subnet6
setting, and what real masters say about each endpoint's IPv6 address to
real control clients (attach, resolve, status, endpoint_gone, fast-channel
requests dialled by an IPv6 address), hostile values included.

Two masters for the whole module: one with the default prefix, one with
subnet6 none (whose answers must be exactly those of a master before
IPv6: no field of the new ones anywhere).
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from aiodocknet import control
from aiodocknet.cli.api_client import ApiClient
from aiodocknet.control import recv_message, send_message
from aiodocknet.master.addresses import AddressPool, address4_of, address6_of
from aiodocknet.master.config import MasterConfig, check_setting
from aiodocknet.validate import ValidationError
from dn_harness import Master, running_master, wait_for

V4 = ipaddress.IPv4Network("10.77.0.0/16")
V6 = ipaddress.IPv6Network("fd77:d0c::/64")
V6_FIELDS = {"address6", "prefix6", "gateway6"}


# ---- the rule, without a master ----

def test_address6_is_the_ipv4_host_part_in_the_prefix() -> None:
    assert address6_of("10.77.0.5", V4, V6) == "fd77:d0c::5"
    assert address6_of("10.77.0.1", V4, V6) == "fd77:d0c::1"
    assert address6_of("10.77.3.1", V4, V6) == "fd77:d0c::301"
    assert address6_of("10.77.255.254", V4, V6) == "fd77:d0c::fffe"
    p96 = ipaddress.IPv6Network("fd00:1:2:3:4:5::/96")
    small = ipaddress.IPv4Network("192.168.7.0/24")
    assert address6_of("192.168.7.9", small, p96) == "fd00:1:2:3:4:5:0:9"
    # And back: every twin to its address, nothing else to anything.
    for ip4 in ("10.77.0.5", "10.77.3.1", "10.77.255.254"):
        assert address4_of(address6_of(ip4, V4, V6), V4, V6) == ip4
    assert address4_of("fd77:d0c::1:0:5", V4, V6) is None      # bits between prefix and low 32
    assert address4_of("fd77:d0c::1:5", V4, V6) is None        # low 32 outside the /16 host part
    assert address4_of("fd77:d0d::5", V4, V6) is None          # another prefix
    assert address4_of("fe80::5%eth0", V4, V6) is None         # scoped
    assert address4_of("fd00:1:2:3:4:5:0:109", small, p96) is None
    # The pool says the same, gateway included; without a prefix, nothing.
    pool = AddressPool(V4, ipaddress.IPv4Network("10.77.4.0/24"), V6)
    assert pool.gateway == "10.77.4.1" and pool.gateway6 == "fd77:d0c::401"
    assert pool.address6(pool.allocate()) == "fd77:d0c::402"
    plain = AddressPool(V4)
    assert plain.gateway6 is None and plain.address6("10.77.0.2") is None and plain.address4("fd77:d0c::2") is None


@pytest.mark.parametrize("value,why", [
    ("fd77:d0c::/63", "prefix length /63 is not from /64 to /96"),
    ("fd77:d0c::/97", "prefix length /97 is not from /64 to /96"),
    ("fd77:d0c::1:0:0/64", "has bits set after the prefix length"),
    ("fd77:d0c::5/96", "the low 32 bits must be zero"),
    ("10.77.0.0/16", "is not an IPv6 prefix"),
    ("fd77:d0c::", "needs a prefix length"),
    ("fe80::%eth0/64", "scope (zone id)"),
    ("f" * 5000, "is not an IPv6 prefix"),
    (64, "must be a string"),
    (True, "must be a string"),
])
def test_subnet6_setting_refuses_with_the_key(value: Any, why: str) -> None:
    cfg = MasterConfig()
    with pytest.raises(ValidationError) as exc:
        check_setting(cfg, "subnet6", value)
    assert str(exc.value).startswith("subnet6: ") and why in str(exc.value), str(exc.value)
    assert cfg.subnet6 == "fd77:d0c::/64"  # unchanged


def test_subnet6_setting_takes_a_prefix_or_none() -> None:
    cfg = MasterConfig()
    check_setting(cfg, "subnet6", "fd00:abcd::/96")
    assert cfg.subnet6 == "fd00:abcd::/96"
    check_setting(cfg, "subnet6", "none")
    assert cfg.subnet6 is None


def test_ipv6_fields_take_literals_only() -> None:
    """The table's IPv6 fields as a slave's decode_reply sees an attach
    reply: each hostile value refused with a sentence naming the field."""
    attach = control.kinds("to_master")["attach"]
    good = {"ok": True, "endpoint": "a", "address": "10.77.0.2", "prefix": 16, "gateway": "10.77.0.1",
            "mac": "02:00:0a:4d:00:02", "mtu": 9000, "address6": "fd77:d0c::2", "prefix6": 64,
            "gateway6": "fd77:d0c::1"}
    assert control.decode_reply(attach, good, control.ATTACH_FDS)
    hostile = {
        "address6": [("10.77.0.2", "not IPv4"), ("fe80::2%eth0", "without a scope"),
                     ("fd77:d0c::2/64", "must be an IPv6 address"), ("x" * 100_000, "longer than 45"),
                     ("db.example", "must be an IPv6 address"), ("", "must be an IPv6 address")],
        "gateway6": [("::ffff:10.77.0.1%1", "without a scope"), ("10.77.0.1", "not IPv4")],
        "prefix6": [(63, "between 64 and 96"), (97, "between 64 and 96"), ("64", "must be an integer")],
    }
    for name, cases in hostile.items():
        for value, why in cases:
            with pytest.raises(control.InvalidMessage) as exc:
                control.decode_reply(attach, {**good, name: value}, control.ATTACH_FDS)
            assert f"'{name}'" in str(exc.value) and why in str(exc.value), (name, value, str(exc.value))
    # fc_connect takes a destination of either family, and nothing else.
    for ok in ("10.77.0.9", "fd77:d0c::9", "::ffff:10.77.0.9"):
        control.decode({"op": "fc_connect", "req": 1, "address": ok, "port": 80}, "to_master")
    for bad in ("fd77:d0c::9%lo", "host.example", "fd77:d0c::9/128", "1" * 46):
        with pytest.raises(control.InvalidMessage, match="'address'"):
            control.decode({"op": "fc_connect", "req": 1, "address": bad, "port": 80}, "to_master")


# ---- real masters ----

@pytest.fixture(scope="module")
def dual() -> Iterator[Master]:
    if os.geteuid() != 0:
        pytest.skip("needs root (DPDK, hugepages)")
    with running_master("dn-v6-") as m:
        yield m


@pytest.fixture(scope="module")
def v4only() -> Iterator[Master]:
    if os.geteuid() != 0:
        pytest.skip("needs root (DPDK, hugepages)")
    with running_master("dn-v4-", ["--subnet6", "none"]) as m:
        yield m


class Raw:
    """A raw control connection; keeps what the master pushes, counts and
    closes the descriptors that come."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.sock.settimeout(5)
        self.sock.connect(path)
        self.pushed: list[dict[str, Any]] = []

    def recv(self, want: str | None = None) -> tuple[dict[str, Any] | None, int]:
        """The next message that is not a pushed notice (or, with want,
        the next op/event of that name)."""
        while True:
            msg, fds = recv_message(self.sock)
            for fd in fds:
                os.close(fd)
            if msg is None:
                return None, 0
            name = msg.get("op") or msg.get("event")
            if want is not None and name == want or want is None and name not in ("limits", "endpoint_gone"):
                return msg, len(fds)
            self.pushed.append(msg)

    def ask(self, msg: dict[str, Any], want: str | None = None) -> dict[str, Any]:
        send_message(self.sock, msg)
        reply, _ = self.recv(want)
        assert reply is not None, f"connection closed after {msg}"
        return reply

    def close(self) -> None:
        self.sock.close()


def attach(master: Master, name: str) -> tuple[Raw, dict[str, Any]]:
    c = Raw(master.path)
    reply = c.ask({"op": "attach", "endpoint": name})
    assert reply["ok"], reply
    return c, reply


def books(master: Master) -> dict[str, Any]:
    st = master.status()
    return {"endpoints": sorted((e["name"], e["address"], e.get("address6")) for e in st["endpoints"]),
            "addresses_in_use": st["addresses_in_use"],
            "fast_channels": {k: st["fast_channels"][k] for k in ("made", "open")}}


def test_attach_resolve_status_carry_the_ipv6_twin(dual: Master) -> None:
    c, reply = attach(dual, "six-a")
    try:
        assert reply["address6"] == address6_of(reply["address"], V4, V6)
        assert reply["prefix6"] == 64 and reply["gateway6"] == "fd77:d0c::1"
        assert reply["prefix"] == 16 and reply["gateway"] == "10.77.0.1"  # IPv4 as before
        res = c.ask({"op": "resolve", "name": "six-a"})
        assert res == {"ok": True, "address": reply["address"], "address6": reply["address6"]}, res
        st = dual.status()
        assert st["subnet6"] == "fd77:d0c::/64" and st["gateway6"] == "fd77:d0c::1"
        row = next(e for e in st["endpoints"] if e["name"] == "six-a")
        assert row["address6"] == reply["address6"]
        api = ApiClient(os.path.join(dual.run_dir, "api.sock"))
        assert api.call("GET", "/v1/status")["subnet6"] == "fd77:d0c::/64"
        assert api.call("GET", "/v1/endpoints/six-a")["address6"] == reply["address6"]
        assert any(e.get("address6") == reply["address6"] for e in api.call("GET", "/v1/endpoints"))
    finally:
        c.close()


def test_subnet6_none_answers_as_before(v4only: Master) -> None:
    c, reply = attach(v4only, "four-a")
    try:
        assert not V6_FIELDS & set(reply), reply
        assert set(reply) == {"ok", "endpoint", "address", "prefix", "gateway", "mac", "mtu", "link", "ports"} \
            - ({"ports"} - set(reply)), reply
        assert c.ask({"op": "resolve", "name": "four-a"}) == {"ok": True, "address": reply["address"]}
        st = v4only.status()
        assert "subnet6" not in st and "gateway6" not in st
        assert all("address6" not in e for e in st["endpoints"])
        api = ApiClient(os.path.join(v4only.run_dir, "api.sock"))
        assert api.call("GET", "/v1/status").get("subnet6") is None
        assert api.call("GET", "/v1/endpoints/four-a").get("address6") is None
        # A fast channel asked for by an IPv6 address: no such address here.
        res = c.ask({"op": "fc_connect", "req": 5, "address": "fd77:d0c::2", "port": 80}, "fc_result")
        assert res["ok"] is False and "no IPv6 prefix" in res["reason"], res
    finally:
        c.close()


def test_endpoint_gone_names_both_addresses(dual: Master) -> None:
    watcher, _ = attach(dual, "six-watch")
    gone, reply = attach(dual, "six-gone")
    try:
        gone.close()
        notice, _ = watcher.recv("endpoint_gone")
        assert notice == {"event": "endpoint_gone", "name": "six-gone", "address": reply["address"],
                          "address6": reply["address6"]}, notice
        control.decode(notice, "to_slave")
    finally:
        watcher.close()


def test_fast_channel_dialled_by_ipv6_address(dual: Master) -> None:
    """A client that dials the server's IPv6 address gets a channel whose
    ends are IPv6 (the offer names the client by its IPv6 address, as the
    server's peername will), the same endpoint as by IPv4."""
    server, s_reply = attach(dual, "six-srv")
    client, c_reply = attach(dual, "six-cli")
    try:
        send_message(server.sock, {"event": "listen", "port": 7070, "on": True})
        assert server.ask({"op": "ping"})["pong"]
        for dialled, peer in ((s_reply["address6"], c_reply["address6"]), (s_reply["address"], c_reply["address"])):
            send_message(client.sock, {"op": "fc_connect", "req": 11, "address": dialled, "port": 7070})
            offer, nfds = server.recv("fc_offer")
            assert offer is not None and nfds == control.CHANNEL_FDS
            assert offer["peer"][0] == peer, (dialled, offer)
            result, nfds = client.recv("fc_result")
            assert result is not None and result["ok"] is True and nfds == control.CHANNEL_FDS, result
            assert result["local_port"] == offer["peer"][1]
            send_message(client.sock, {"event": "fc_closed", "id": result["id"]})
            send_message(server.sock, {"event": "fc_closed", "id": offer["id"]})
        assert wait_for(lambda: dual.status()["fast_channels"]["open"] == 0)
        # Hostile destinations: a clear reason or EINVAL, nothing made or taken.
        before = books(dual)
        cases = {
            "outside the prefix": ("fd00::5", "not an endpoint address of this master's prefix"),
            "bits between prefix and host part": ("fd77:d0c::1:0:2", "not an endpoint address"),
            "host part outside the subnet": ("fd77:d0c::1:2", "not an endpoint address"),
            "v4-mapped IPv4": ("::ffff:" + s_reply["address"], "not an endpoint address"),
            "scoped": (s_reply["address6"] + "%lo", "without a scope"),
            "a name": ("six-srv.example", "must be an IPv4 or IPv6 address"),
            "huge": ("f" * 10_000, "longer than 45"),
            "a prefix": ("fd77:d0c::/64", "must be an IPv4 or IPv6 address"),
        }
        for label, (address, why) in cases.items():  # noqa: B007
            msg = {"op": "fc_connect", "req": 12, "address": address, "port": 7070}
            res = client.ask(msg, "fc_result")
            assert res["ok"] is False and why in (res.get("reason", "") + res.get("error", "")), (label, res)
        assert books(dual) == before
        assert client.ask({"op": "ping"})["pong"] and server.ask({"op": "ping"})["pong"]
    finally:
        client.close()
        server.close()


def docknet(master: Master, *argv: str) -> list[str]:
    import subprocess
    import sys

    from dn_harness import ROOT

    res = subprocess.run([sys.executable, "-m", "aiodocknet.cli", "--api", os.path.join(master.run_dir, "api.sock"),
                          *argv], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert res.returncode == 0, res
    return res.stdout.splitlines()


def test_cli_shows_both_addresses(dual: Master, v4only: Master) -> None:
    c, reply = attach(dual, "six-ps")
    c4, reply4 = attach(v4only, "four-ps")
    try:
        ps = docknet(dual, "ps")
        assert ps[0].split()[:4] == ["NAME", "TENANT", "ADDRESS", "ADDRESS6"], ps
        row = next(line.split() for line in ps if line.startswith("six-ps "))
        assert row[2:4] == [reply["address"], reply["address6"]], ps
        row4 = next(line.split() for line in docknet(v4only, "ps") if line.startswith("four-ps "))
        assert row4[2:4] == [reply4["address"], "-"], row4
        assert "subnet6 fd77:d0c::/64  gateway6 fd77:d0c::1" in docknet(dual, "master", "status")
        assert "subnet6 none (IPv4 only)" in docknet(v4only, "master", "status")
    finally:
        c.close()
        c4.close()


def test_ss_brackets_ipv6_addresses() -> None:
    from aiodocknet.cli.main import _hostport

    assert _hostport("fd77:d0c::5:8080") == "[fd77:d0c::5]:8080"
    assert _hostport("[fd77:d0c::5]:8080") == "[fd77:d0c::5]:8080"
    assert _hostport("10.77.0.5:8080") == "10.77.0.5:8080"
    assert _hostport("*:*") == "*:*"


def test_registering_by_the_ipv6_twin(dual: Master, v4only: Master) -> None:
    """A registration may ask for its address by its IPv6 twin: the master
    keeps the IPv4 address and answers both; an IPv6 address that is no
    twin, or any on an IPv4-only master, is refused and nothing is kept."""
    from aiodocknet.cli.api_client import ApiError

    netns = f"/proc/{os.getpid()}/ns/net"
    api = ApiClient(os.path.join(dual.run_dir, "api.sock"))
    reg = api.call("POST", "/v1/endpoints", {"name": "six-reg", "netns": netns, "ip": "fd77:d0c::77"})
    try:
        assert reg["ip"] == "10.77.0.119", reg
        c = Raw(dual.path)
        assert c.ask({"op": "resolve", "name": "six-reg"}) == {"ok": True, "address": "10.77.0.119",
                                                               "address6": "fd77:d0c::77"}
        c.close()
        before = api.call("GET", "/v1/endpoints")
        for ip, why in (("fd00::78", "is no endpoint address of this master's prefix fd77:d0c::/64"),
                        ("fd77:d0c::1:0:78", "is no endpoint address"),
                        ("fd77:d0c::78%eth0", "is not an IPv4 or IPv6 address"),
                        ("fd77:d0c::1", "is the network, broadcast or gateway address"),
                        ("fd77:d0c::77", "already registered")):
            with pytest.raises(ApiError) as exc:
                api.call("POST", "/v1/endpoints", {"name": "six-reg2", "netns": netns, "ip": ip})
            assert exc.value.status in (400, 409) and why in exc.value.message, (ip, exc.value.message)
        assert api.call("GET", "/v1/endpoints") == before
    finally:
        api.call("DELETE", "/v1/endpoints/six-reg")
    api4 = ApiClient(os.path.join(v4only.run_dir, "api.sock"))
    with pytest.raises(ApiError) as exc:
        api4.call("POST", "/v1/endpoints", {"name": "four-reg", "netns": netns, "ip": "fd77:d0c::77"})
    assert exc.value.status == 400 and "is not an IPv4 address" in exc.value.message, exc.value.message
