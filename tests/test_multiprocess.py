"""Several processes per endpoint: pre-fork aiohttp workers on one address.

Real master, real namespace (``ip netns``) registered through the API,
real aiohttp workers (``web.run_app(..., reuse_port=True)``, each its own
process attaching with the endpoint's secret), and a load process on an
endpoint of its own (``tests/mp_peer.py``). Over fast channels (the
broker offers each connection to the next worker listening) and through
the switch (every process with ``DOCKNET_FAST_CHANNELS=0``: the switch
spreads the SYNs over the workers' links).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aiodocknet.cli.api_client import ApiClient
from aiodocknet.cli.netns import create_netns, delete_netns
from dn_harness import Master, Proc, control_request, running_master, wait_for

MP_PEER = Path(__file__).resolve().parent / "mp_peer.py"

WORKERS = 4
REQUESTS = 4_000


def api(master: Master) -> ApiClient:
    return ApiClient(os.path.join(master.run_dir, "api.sock"))


@pytest.fixture(params=["fast", "switch"])
def path_master(request: pytest.FixtureRequest) -> Iterator[Master]:
    if os.geteuid() != 0:
        pytest.skip("needs root (DPDK, hugepages, ip netns)")
    with running_master() as m:
        if request.param == "switch":
            m.env["DOCKNET_FAST_CHANNELS"] = "0"
        yield m


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"dn-mp-{uuid.uuid4().hex[:8]}"
    path = create_netns(name)
    try:
        yield path
    finally:
        delete_netns(name)


def in_netns(master: Master, ns: str, argv: list[str], name: str, **env: str) -> Proc:
    p = Proc(["ip", "netns", "exec", os.path.basename(ns), *argv], dict(master.env, **env), name)
    master.peers.append(p)
    return p


def start_load(master: Master) -> tuple[Proc, str]:
    load = Proc([sys.executable, str(MP_PEER), "load"], dict(master.env, DOCKNET_ENDPOINT="load",
                                                            DOCKNET_REQUIRE="1"), "load")
    master.peers.append(load)
    return load, load.expect("ready", timeout=60)["address"]


def start_workers(master: Master, ns: str, secret: str, echo_ip: str, n: int) -> list[Proc]:
    workers = [in_netns(master, ns, [sys.executable, str(MP_PEER), "server", "--echo-ip", echo_ip], f"worker{i}",
                        DOCKNET_ENDPOINT="web", DOCKNET_SECRET=secret, DOCKNET_REQUIRE="1")
               for i in range(n)]
    for w in workers:
        probe = w.expect("probe", timeout=60)
        # Each worker's own outgoing connection and datagram came back to it.
        assert probe["ok"], probe
        assert probe["pid"] == w.pid and probe["udp"] == f"from {w.pid}", probe
        w.expect("ready", timeout=30)
    return workers


def members(master: Master, name: str) -> list[dict[str, Any]]:
    eps = {e["name"]: e for e in master.status()["endpoints"]}
    return list(eps[name]["members"]) if name in eps else []


def listening_everywhere(master: Master, n: int) -> bool:
    ms = members(master, "web")
    return len(ms) == n and all(8080 in m["listening"] for m in ms)


def test_workers_share_an_endpoint_and_the_load(path_master: Master, netns: str) -> None:
    """Four workers on one endpoint: one address, four links; 4,000
    requests (400 connections) all answered, each worker at least 10% of
    them. Then one worker is killed mid-load: only requests on its
    own connections fail, each is answered when tried again, the others
    go on serving, and the endpoint keeps its address with three members."""
    master = path_master
    reg = api(master).call("POST", "/v1/endpoints", {"name": "web", "netns": netns})
    load, load_ip = start_load(master)
    workers = start_workers(master, netns, reg["secret"], load_ip, WORKERS)
    pids = {w.pid for w in workers}
    assert wait_for(lambda: listening_everywhere(master, WORKERS)), members(master, "web")
    ms = members(master, "web")
    assert {m["pid"] for m in ms} == pids
    assert len({m["link"] for m in ms}) == WORKERS
    address = {e["name"]: e for e in master.status()["endpoints"]}["web"]["address"]

    load.send(f"go {REQUESTS} 0 http://web:8080/pid")
    res = load.expect("result", timeout=240)
    print(f"{REQUESTS} requests in {res['seconds']:.1f} s, by worker {res['by_pid']}")
    assert res["failures"] == [], res["failures"][:10]
    by_pid = Counter(res["answered"])
    assert set(by_pid) == pids, by_pid
    assert all(count >= REQUESTS // 10 for count in by_pid.values()), by_pid

    victim = workers[0]
    survivors = pids - {victim.pid}
    load.send("go 3000 600 http://web:8080/pid")
    load.expect("progress", timeout=120)
    victim.kill(signal.SIGKILL)
    victim.wait(10)
    res = load.expect("result", timeout=240)
    failures = res["failures"]
    print(f"killed {victim.pid}: {len(failures)} failed attempts ({Counter(f['error'] for f in failures)}), "
          f"by worker {res['by_pid']}")
    # Only connections the victim held fail (or one just made to it,
    # answered by nobody yet); never one a survivor answered.
    assert all(f["conn_pid"] in (victim.pid, None) for f in failures), failures
    assert len({f["request"] for f in failures}) <= 2 * 32, failures
    # Every request was answered in the end, and after the first failure
    # none by the victim.
    assert None not in res["answered"]
    assert set(res["answered"]) <= pids
    assert victim.pid in res["answered"][:300], Counter(res["answered"][:300])
    tail = res["answered"][-1000:]
    assert set(tail) == survivors, Counter(tail)
    assert wait_for(lambda: len(members(master, "web")) == WORKERS - 1)
    assert {m["pid"] for m in members(master, "web")} == survivors
    assert {e["name"]: e for e in master.status()["endpoints"]}["web"]["address"] == address


def test_hostile_second_attach_changes_nothing(master: Master, netns: str) -> None:
    """With two workers attached: an attach from the namespace with a
    wrong secret, and one from another namespace (the host's) with the
    right one, are refused; the members, their links and the address are
    as before, and the workers go on answering."""
    reg = api(master).call("POST", "/v1/endpoints", {"name": "web", "netns": netns})
    load, load_ip = start_load(master)
    workers = start_workers(master, netns, reg["secret"], load_ip, 2)
    assert wait_for(lambda: listening_everywhere(master, 2))
    before = members(master, "web")
    # The API and `docknet ps` show the endpoint once, with its processes.
    view = api(master).call("GET", "/v1/endpoints/web")
    assert sorted(m["pid"] for m in view["members"]) == sorted(w.pid for w in workers)
    assert all(m["listening"] == [8080] and m["ports"] for m in view["members"])
    ps = subprocess.run([sys.executable, "-m", "aiodocknet.cli", "--api", os.path.join(master.run_dir, "api.sock"),
                         "ps"], capture_output=True, text=True, timeout=30, check=True).stdout.splitlines()
    assert sum(line.startswith("web ") for line in ps) == 1, ps
    procs = [line for line in ps if line.strip().startswith("process")]
    assert len(procs) == 2 and all(str(w.pid) in "".join(procs) for w in workers), ps
    status_before = {e["name"]: e["address"] for e in master.status()["endpoints"]}

    code = ("import json, sys; from aiodocknet.control import request; "
            f"print(json.dumps(request({master.path!r}, json.loads(sys.argv[1]))))")

    def attach_from(ns: str | None, secret: str) -> dict[str, Any]:
        msg = json.dumps({"op": "attach", "endpoint": "web", "secret": secret})
        argv = [sys.executable, "-c", code, msg]
        if ns is not None:
            argv = ["ip", "netns", "exec", os.path.basename(ns), *argv]
        res = subprocess.run(argv, capture_output=True, text=True, timeout=30, cwd=Path(__file__).parent.parent)
        assert res.returncode == 0, res.stderr
        return dict(json.loads(res.stdout))

    for ns, secret in ((netns, "0" * 32), (None, reg["secret"])):
        reply = attach_from(ns, secret)
        assert reply["ok"] is False and reply["code"] == "EACCES", reply
    assert members(master, "web") == before
    assert {e["name"]: e["address"] for e in master.status()["endpoints"]} == status_before

    load.send("go 200 0 http://web:8080/pid")
    res = load.expect("result", timeout=120)
    assert res["failures"] == [] and set(res["answered"]) == {w.pid for w in workers}


def test_ad_hoc_host_endpoint_stays_one_process(master: Master) -> None:
    """A name nobody registered (a host process's) has no namespace of its
    own: a second process is refused as before."""
    master.peer("idle", "solo").expect("ready")
    reply = control_request(master.path, {"op": "attach", "endpoint": "solo"})
    assert reply["ok"] is False and reply["code"] == "EADDRINUSE", reply
    assert "'solo' is already attached" in reply["error"]
    assert len(members(master, "solo")) == 1


def test_workers_rejoin_a_restarted_master() -> None:
    """The master is killed (-9) under two workers of one endpoint and
    started again on the same run directory: each worker re-attaches on its
    own, the first takes the endpoint's address back and the second joins
    it, and the load is spread over both again."""
    if os.geteuid() != 0:
        pytest.skip("needs root (DPDK, hugepages, ip netns)")
    with tempfile.TemporaryDirectory(prefix="dn-mp-restart-") as run_dir:
        name = f"dn-mp-{uuid.uuid4().hex[:8]}"
        ns = create_netns(name)
        master = Master(run_dir)
        procs: list[Proc] = []
        try:
            reg = api(master).call("POST", "/v1/endpoints", {"name": "web", "netns": ns})
            load, load_ip = start_load(master)
            workers = start_workers(master, ns, reg["secret"], load_ip, 2)
            procs = [load, *workers]
            assert wait_for(lambda: listening_everywhere(master, 2))
            address = {e["name"]: e for e in master.status()["endpoints"]}["web"]["address"]

            master.proc.kill(signal.SIGKILL)
            master.proc.wait(10)
            master.proc.stop()
            master = Master(run_dir)
            assert wait_for(lambda: listening_everywhere(master, 2)
                            and "load" in {e["name"] for e in master.status()["endpoints"]}, timeout=20), \
                master.status()["endpoints"]
            eps = {e["name"]: e for e in master.status()["endpoints"]}
            assert eps["web"]["address"] == address
            assert {m["pid"] for m in eps["web"]["members"]} == {w.pid for w in workers}

            load.send("go 400 0 http://web:8080/pid")
            res = load.expect("result", timeout=120)
            assert res["failures"] == [], res["failures"][:10]
            assert set(res["answered"]) == {w.pid for w in workers}, Counter(res["answered"])
        finally:
            for p in procs:
                p.stop()
            master.peers.clear()
            if master.proc.popen.poll() is None:
                master.stop()
            delete_netns(name)


def test_fast_channel_limits_are_shared_among_the_processes(master: Master, netns: str) -> None:
    """Fast channels bypass the switch, so each process enforces its share
    of the endpoint's limits: with a worker attached and the endpoint
    limited to 10 Mbit/s egress, a second process of the namespace is told
    half (and N processes together cannot send N times the limit)."""
    reg = api(master).call("POST", "/v1/endpoints", {"name": "web", "netns": netns, "egress": "10mbit",
                                                     "egress_burst": "2mbit"})
    load, load_ip = start_load(master)
    start_workers(master, netns, reg["secret"], load_ip, 1)
    code = ("import json, os, sys, socket; from aiodocknet.control import send, recv_message; "
            f"s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET); s.connect({master.path!r}); "
            "send(s, json.loads(sys.argv[1]), 'to_master'); reply, fds = recv_message(s); "
            "[os.close(fd) for fd in fds]; notice, _ = recv_message(s); "
            "print(json.dumps({'reply': reply, 'notice': notice}))")
    msg = json.dumps({"op": "attach", "endpoint": "web", "secret": reg["secret"]})
    res = subprocess.run(["ip", "netns", "exec", os.path.basename(netns), sys.executable, "-c", code, msg],
                         capture_output=True, text=True, timeout=30, cwd=Path(__file__).parent.parent)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["reply"]["ok"], out
    assert out["notice"]["event"] == "limits", out
    assert out["notice"]["egress_bits"] == 5_000_000 and out["notice"]["egress_burst_bits"] == 1_000_000, out
    assert out["notice"]["ingress_bits"] == 0, out
