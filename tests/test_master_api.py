"""The management API and the `docknet` CLI over it, bad requests included."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from aiodocknet.cli.api_client import ApiClient, ApiError
from dn_harness import ROOT, Master


def api(master: Master) -> ApiClient:
    return ApiClient(os.path.join(master.run_dir, "api.sock"))


def cli(master: Master, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    res = subprocess.run([sys.executable, "-m", "aiodocknet.cli", "--api",
                          os.path.join(master.run_dir, "api.sock"), *args],
                         capture_output=True, text=True, timeout=60, cwd=ROOT, env=master.env)
    if check:
        assert res.returncode == 0, res.stderr
    return res


def test_routes_and_bad_requests(master: Master) -> None:
    a = api(master)
    st = a.call("GET", "/v1/status")
    assert st["subnet"] == "10.77.0.0/16" and st["endpoints_attached"] == 0
    srv = master.peer("idle", "web")
    addr = srv.expect("ready")["address"]
    eps = a.call("GET", "/v1/endpoints")
    assert [(e["name"], e["address"], e["state"]) for e in eps] == [("web", addr, "attached")]
    one = a.call("GET", "/v1/endpoints/web")
    assert one["counters"]["link_up"] == 1
    stats = a.call("GET", "/v1/stats")
    assert set(stats["endpoints"]) == {"web"} and stats["endpoints"]["web"]["fast_tx_bytes"] == 0
    assert stats["fast_channels"]["open"] == 0 and st["fast_channels"]["enabled"]
    assert a.call("GET", "/v1/channels") == []  # filled in tests/test_fast_channels.py
    metrics = a.call("GET", "/metrics")
    assert 'docknet_endpoint_frames_total{direction="transmit",endpoint="web",tenant="default"}' in metrics
    assert "docknet_fast_channels_open 0" in metrics
    assert {"/v1/policy", "/v1/channels"} <= set(a.call("GET", "/v1/openapi.json")["paths"])

    def refused(method: str, route: str, body: object, status: int, text: str) -> None:
        with pytest.raises(ApiError) as info:
            a.call(method, route, body)
        assert info.value.status == status and text in info.value.message, info.value

    refused("GET", "/v1/endpoints/nobody", None, 404, "no endpoint 'nobody'")
    refused("DELETE", "/v1/endpoints/nobody", None, 404, "is registered")
    refused("PUT", "/v1/endpoints/nobody/limit", {"egress": "5mbit"}, 404, "no endpoint")
    refused("PUT", "/v1/endpoints/web/limit", {"egress": "very fast"}, 400, "not a rate")
    refused("PUT", "/v1/endpoints/web/limit", {}, 400, "give at least one")
    refused("POST", "/v1/endpoints", {"netns": "/run/netns/x"}, 400, "'name'")
    refused("POST", "/v1/endpoints", {"name": "x", "netns": "/nonexistent/ns"}, 400, "network namespace")
    refused("POST", "/v1/policy", {"from": "a"}, 400, "'to' is required")
    refused("POST", "/v1/policy", {"from": "a", "to": "b", "port": 70000}, 400, "'port'")
    # Malformed JSON, sent raw.
    import http.client
    import socket as so

    conn = http.client.HTTPConnection("x")
    conn.sock = so.socket(so.AF_UNIX, so.SOCK_STREAM)
    conn.sock.connect(os.path.join(master.run_dir, "api.sock"))
    conn.request("POST", "/v1/policy", body="{not json", headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    assert resp.status == 400 and "not valid JSON" in json.loads(resp.read())["error"]
    conn.close()
    # Limits on a live ad-hoc endpoint apply and show.
    now = a.call("PUT", "/v1/endpoints/web/limit", {"egress": "20mbit", "ingress_pps": "10kpps"})
    assert now["egress_bits"] == 20_000_000 and now["ingress_pkts"] == 10_000


def test_cli_commands(master: Master) -> None:
    master.peer("idle", "web").expect("ready")
    out = cli(master, "master", "status").stdout
    assert "subnet 10.77.0.0/16" in out and "fast channels: on, 0 open" in out, out
    assert json.loads(cli(master, "--json", "master", "status").stdout)["endpoints_attached"] == 1
    ps = cli(master, "ps").stdout
    assert "web" in ps and "attached" in ps
    assert json.loads(cli(master, "--json", "ps").stdout)[0]["name"] == "web"
    assert "web" in cli(master, "stats").stdout
    # Tenants exist with their endpoints: one registered in each.
    for tenant in ("shop", "db", "cache"):
        cli(master, "attach", "--name", f"{tenant}-1", "--netns", f"/proc/{os.getpid()}/ns/net", "--tenant", tenant)
    cli(master, "policy", "allow", "shop", "db", "--port", "5432")
    cli(master, "policy", "allow", "shop", "cache")
    ls = cli(master, "policy", "ls").stdout
    assert "allow shop -> db port 5432" in ls and "allow shop -> cache any port" in ls
    cli(master, "policy", "deny", "shop", "cache")
    assert "cache" not in cli(master, "policy", "ls").stdout
    assert "egress 30mbit" in cli(master, "limit", "web", "--egress", "30mbit").stdout
    bad = cli(master, "limit", "web", "--egress", "lots", check=False)
    assert bad.returncode == 2 and "not a rate" in bad.stderr  # refused before the master is asked
    bad = cli(master, "limit", "ghost", "--egress", "1mbit", check=False)
    assert bad.returncode == 1 and "no endpoint 'ghost'" in bad.stderr
    bad = cli(master, "policy", "allow", "onlyone", check=False)
    assert bad.returncode == 2
    nomaster = subprocess.run([sys.executable, "-m", "aiodocknet.cli", "--api", "/nonexistent/api.sock", "ps"],
                              capture_output=True, text=True, cwd=ROOT)
    assert nomaster.returncode == 1 and "/nonexistent/api.sock" in nomaster.stderr


def test_attach_and_detach_commands(master: Master) -> None:
    from aiodocknet.cli.netns import create_netns, delete_netns

    ns = f"dntest-{os.getpid()}"
    path = create_netns(ns)
    try:
        out = cli(master, "attach", "--name", "ext", "--netns", path, "--tenant", "t1").stdout
        env = dict(line.split("=", 1) for line in out.split())
        assert env["DOCKNET_ENDPOINT"] == "ext" and len(env["DOCKNET_SECRET"]) == 32
        eps = {e["name"]: e for e in api(master).call("GET", "/v1/endpoints")}
        assert eps["ext"]["state"] == "registered" and eps["ext"]["tenant"] == "t1"
        cli(master, "detach", "--name", "ext")
        assert api(master).call("GET", "/v1/endpoints") == []
        again = cli(master, "detach", "--name", "ext", check=False)
        assert again.returncode == 1 and "no endpoint 'ext' is registered" in again.stderr
    finally:
        delete_netns(ns)


def test_ss_lists_an_endpoints_connections(master: Master) -> None:
    """`docknet ss` asks the endpoint's DockNetLoop for its connections;
    an endpoint whose process runs no loop is reported as not answering."""
    from dn_harness import Proc

    env = dict(master.env, DOCKNET_ENDPOINT="svc")
    svc = Proc([sys.executable, os.path.join(ROOT, "tests", "aio_peer.py"), "--kind", "docknet", "--base", "9700"],
               env, "svc")
    master.peers.append(svc)
    ready = svc.expect("ready", timeout=60)
    addr, addr6 = ready["host"], ready["host6"]
    cli_peer = master.peer("connect", "cli", "--target", addr, "--port", "9700", "--timeout", "60")
    cli_peer.expect("connected")
    # One over IPv6 too (the peer's IPv6 services are at 9800 + n).
    cli6 = master.peer("connect", "cli6", "--target", addr6, "--port", "9800", "--timeout", "60")
    cli6.expect("connected")
    out = cli(master, "ss", "svc").stdout
    assert "LISTEN" in out and f"{addr}:9700" in out and f"[{addr6}]:9800" in out
    estab = sorted(line for line in out.splitlines() if line.startswith("ESTAB"))
    assert len(estab) == 2 and any(f"{addr}:9700" in line for line in estab), out
    assert any(f"[{addr6}]:9800" in line for line in estab), out
    data = json.loads(cli(master, "--json", "ss", "svc").stdout)
    assert data["total"] >= 14 and any(c["kind"] == "udp" for c in data["connections"])
    assert {c["family"] for c in data["connections"] if c["kind"] == "tcp"} == {4, 6}, data
    bad = cli(master, "ss", "cli", check=False)
    assert bad.returncode == 1 and "did not answer" in bad.stderr
    bad = cli(master, "ss", "ghost", check=False)
    assert bad.returncode == 1 and "no endpoint 'ghost' is attached" in bad.stderr


def test_ss_leaves_out_rows_that_are_not_connections(master: Master) -> None:
    """Tried: an endpoint's process answers `ss` with a good row and rows
    that carry terminal escapes in the state and an address, a negative
    queue, a key the model does not have, a string for a row and an
    overlong address. Only the good row is listed (the API and `docknet
    ss` alike); the others are counted, and nothing an escape sequence
    could do reaches the terminal."""
    import threading

    from aiodocknet.control import recv_message, send_message
    from aiodocknet.native.stack import request_attach

    control, info, fds = request_attach("liar", master.path)
    for fd in fds:
        os.close(fd)
    good = {"id": "lwip1", "kind": "tcp", "state": "ESTAB", "local": f"{info.address}:80",
            "peer": "10.77.0.9:40000", "recv_q": 0, "send_q": 0, "path": "switch", "family": 4}
    bad = [dict(good, state="ESTAB\x1b[2J"), dict(good, local="\x1b]0;owned\x07:80"), dict(good, recv_q=-1),
           dict(good, extra=1), "a row", dict(good, peer="[" + "1" * 60 + "]:80")]

    def answer(times: int) -> None:
        control.settimeout(30)
        while times:
            msg, got = recv_message(control)
            for fd in got:
                os.close(fd)
            if msg is None:
                return
            if msg.get("op") == "connections":
                send_message(control, {"event": "connections", "req": msg["req"], "total": 1 + len(bad),
                                       "conns": [good, *bad]})
                times -= 1

    t = threading.Thread(target=answer, args=(2,), daemon=True)
    t.start()
    try:
        data = json.loads(cli(master, "--json", "ss", "liar").stdout)
        assert data["connections"] == [good] and data["malformed"] == len(bad), data
        out = cli(master, "ss", "liar").stdout
        assert "\x1b" not in out and "\x07" not in out, out
        assert f"{info.address}:80" in out and f"({len(bad)} rows the endpoint sent were not connections" in out
        t.join(30)
        assert api(master).call("GET", "/v1/status")["endpoints_attached"] >= 1  # the master went on
    finally:
        control.close()
