"""Input as an attacker sends it, to a real master: the management API's
bodies, the control socket's attach, the CLI's flags and the TOML file.

Every bad value must get a 4xx (or a one-line error) saying what was
wrong, and must change nothing: each API case compares the endpoints,
policy and status before and after. Issue 13, defects 4, 10, 11 and 12.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import pytest

from aiodocknet.cli.api_client import ApiClient
from aiodocknet.control import recv_message, send_message
from dn_harness import PEER, ROOT, Master, Proc, policy_drops, running_master

# The harness's masters run on the default subnet.
GATEWAY = "10.77.0.1"
HOST_NETNS = f"/proc/{os.getpid()}/ns/net"


@pytest.fixture(scope="module")
def shared() -> Iterator[Master]:
    """One master for the cases that must leave it as they found it: each
    checks that it did, so they cannot disturb one another."""
    if os.geteuid() != 0:
        pytest.skip("needs root (DPDK, hugepages)")
    with running_master("dn-hostile-") as m:
        yield m


def api(master: Master) -> ApiClient:
    return ApiClient(os.path.join(master.run_dir, "api.sock"))


def send_raw(master: Master, method: str, route: str, body: bytes | None) -> tuple[int, Any]:
    """A request with exactly these bytes as its body (the client would
    refuse to encode some of them)."""
    conn = http.client.HTTPConnection("docknet", timeout=10)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(os.path.join(master.run_dir, "api.sock"))
    conn.sock = sock
    try:
        conn.request(method, route, body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        data = resp.read()
        assert resp.headers.get_content_type() == "application/json", (resp.status, data[:200])
        return resp.status, json.loads(data)
    finally:
        conn.close()


def state(master: Master) -> dict[str, Any]:
    """What a refused request must not change."""
    a = api(master)
    endpoints = [{k: v for k, v in e.items() if k != "counters"} for e in a.call("GET", "/v1/endpoints")]
    st = a.call("GET", "/v1/status")
    return {"endpoints": endpoints, "policy": a.call("GET", "/v1/policy"),
            "status": {k: st[k] for k in ("endpoints_attached", "endpoints_registered", "tenants")},
            "addresses_in_use": master.status()["addresses_in_use"]}


def refused(master: Master, method: str, route: str, body: Any, status: int, text: str) -> None:
    before = state(master)
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    got, answer = send_raw(master, method, route, raw)
    assert got == status, (got, answer)
    assert isinstance(answer, dict) and text in answer.get("error", ""), answer
    assert state(master) == before


def endpoint(name: str = "ok", **fields: Any) -> dict[str, Any]:
    return {"name": name, "netns": HOST_NETNS, **fields}


REGISTRATIONS: list[tuple[str, Any, str]] = [
    ("a fractional rate", endpoint(egress=1.5), "egress: must be a whole number or a rate"),
    ("a rate past uint64", endpoint(egress=2**70), "above the largest limit"),
    ("a packet rate that overflows a float", endpoint(egress_pps="99999999999999999999gpps"),
     "above the largest limit"),
    ("a rate as a boolean", endpoint(ingress=True), "ingress: must be a whole number"),
    ("a negative rate", endpoint(egress=-1), "cannot be negative"),
    ("a rate as an object", endpoint(egress={"a": 1}), "egress: must be a whole number"),
    ("a JSON array for a body", [1], "must be a JSON object"),
    ("a number too long for Python to read", b'{"name": "x", "netns": "/x", "egress": ' + b"9" * 5000 + b"}",
     "not valid JSON"),
    ("JSON nested past the recursion limit", b"[" * 100000 + b"]" * 100000, "not valid JSON"),
    ("a body that is not UTF-8", b'{"name": "\xff\xfe", "netns": "/x"}', "not valid JSON"),
    ("a misspelt field", endpoint(egres="1mbit"), "unknown field 'egres'"),
    ("a slash in the name", endpoint("a/b"), "is not a name"),
    ("a name of dots", endpoint(".."), "is not a name"),
    ("a NUL in the name", endpoint("a\0b"), "is not a name"),
    ("a newline in the name", endpoint("x\ny"), "is not a name"),
    ("a trailing newline in the name", endpoint("x\n"), "is not a name"),
    ("a name of 100,000 characters", endpoint("a" * 100_000), "is not a name"),
    ("a name as a number", endpoint(5), "endpoint name: must be a non-empty string"),
    ("a tenant that writes its own metric", endpoint(tenant='t"} 1\nfake_metric{a="'), "tenant name"),
    ("an address that is not one", endpoint(ip="999.1.1.1"), "not an IPv4 address"),
    ("an address outside the master's range", endpoint(ip="8.8.8.8"), "outside this master's range"),
    ("the gateway's address", endpoint(ip=GATEWAY), "gateway"),
    ("the range's broadcast address", endpoint(ip="10.77.255.255"), "broadcast"),
    ("an address as a number", endpoint(ip=167772170), "ip: must be a string"),
    ("a NUL in the namespace", endpoint(netns="/run/netns/a\0b"), "not a network namespace path"),
    ("an ordinary file as the namespace", endpoint(netns="/etc/passwd"), "not a network namespace path"),
    ("a way out of /run/netns", endpoint(netns="/run/netns/../../etc/passwd"), "not a network namespace path"),
    ("another kind of namespace", endpoint(netns=f"/proc/{os.getpid()}/ns/mnt"), "not a network namespace path"),
    ("a process that does not exist", endpoint(netns="/proc/999999999/ns/net"), "No such file"),
]


@pytest.mark.parametrize("body,text", [(b, t) for _, b, t in REGISTRATIONS],
                         ids=[what for what, _, _ in REGISTRATIONS])
def test_bad_registrations_are_refused_and_change_nothing(shared: Master, body: Any, text: str) -> None:
    """POST /v1/endpoints with each bad field (named in the test's id) as an
    attacker would send it: 400 with the reason, nothing registered."""
    refused(shared, "POST", "/v1/endpoints", body, 400, text)


def test_a_file_under_run_netns_that_is_no_namespace_is_refused(shared: Master) -> None:
    """A plain file placed at /run/netns/NAME has the right path but is no
    namespace: the master checks the file itself, not only its name."""
    os.makedirs("/run/netns", exist_ok=True)
    path = f"/run/netns/dn-hostile-{os.getpid()}"
    with open(path, "w"):
        pass
    try:
        refused(shared, "POST", "/v1/endpoints", endpoint(netns=path), 400, "is not a network namespace")
    finally:
        os.unlink(path)


def test_bad_limits_are_refused_and_change_nothing(shared: Master) -> None:
    """PUT .../limit with a packet rate of 2**64 (which once answered 500
    and was kept anyway), a boolean, a fraction, a misspelt key: each 400,
    and the endpoint's limits are what they were."""
    a = api(shared)
    a.call("POST", "/v1/endpoints", endpoint("limited", egress="5mbit"))
    try:
        for body, text in (({"egress_pps": 2**64}, "above the largest limit"),
                           ({"egress": True}, "must be a whole number"),
                           ({"ingress": 0.5}, "must be a whole number"),
                           ({"egress": "fast"}, "not a rate"),
                           ({"egress": "1mbit", "egress_bps": 5}, "unknown field"),
                           ([{"egress": 1}], "must be a JSON object")):
            refused(shared, "PUT", "/v1/endpoints/limited/limit", body, 400, text)
        assert a.call("GET", "/v1/endpoints/limited")["egress_bits"] == 5_000_000
        # The largest value taken is one the switch holds: a set limit reads back.
        now = a.call("PUT", "/v1/endpoints/limited/limit", {"egress": 10**12, "egress_pps": "1gpps"})
        assert now["egress_bits"] == 10**12 and now["egress_pkts"] == 10**9
    finally:
        a.call("DELETE", "/v1/endpoints/limited")


def test_bad_policy_is_refused_and_change_nothing(shared: Master) -> None:
    """POST and DELETE /v1/policy with a boolean port, a port out of range,
    bad tenant names and tenants nobody has: 4xx each, no rule, no tenant."""
    for method in ("POST", "DELETE"):
        for body, status, text in (({"from": "default", "to": "default", "port": True}, 400, "'port'"),
                                   ({"from": "default", "to": "default", "port": 65536}, 400, "'port'"),
                                   ({"from": "a/b", "to": "default"}, 400, "is not a name"),
                                   ({"from": "default", "to": "x\ny"}, 400, "is not a name"),
                                   ({"from": "default", "to": 7}, 400, "tenant name"),
                                   ({"from": "ghost", "to": "default"}, 404, "no tenant 'ghost'"),
                                   ({"from": "default", "to": "ghost", "port": 80}, 404, "no tenant 'ghost'"),
                                   ({"from": "default", "to": "default", "ports": 80}, 400, "unknown field")):
            refused(shared, method, "/v1/policy", body, status, text)


def test_made_up_tenants_take_no_tenant_ids(shared: Master) -> None:
    """300 POST /v1/policy with made-up tenants once took a tenant id each
    for good, until every new tenant got 409 too many tenants. Now each is
    a 404, and after them (and after 300 registrations, each in a tenant
    of its own, each dropped again) a new tenant is still welcome."""
    a = api(shared)
    before = state(shared)
    for i in range(300):
        got, answer = send_raw(shared, "POST", "/v1/policy",
                               json.dumps({"from": f"made-up-{i}", "to": "default"}).encode())
        assert got == 404 and "no tenant" in answer["error"], answer
    for i in range(300):
        a.call("POST", "/v1/endpoints", endpoint(f"churn-{i}", tenant=f"churn-{i}"))
        a.call("DELETE", f"/v1/endpoints/churn-{i}")
    assert state(shared) == before
    a.call("POST", "/v1/endpoints", endpoint("newcomer", tenant="fresh"))
    try:
        assert "fresh" in a.call("GET", "/v1/status")["tenants"]
    finally:
        a.call("DELETE", "/v1/endpoints/newcomer")
    assert a.call("GET", "/v1/status")["tenants"] == ["default"]


def test_a_tenants_policy_goes_with_its_last_endpoint(shared: Master) -> None:
    """A rule between two tenants is listed while both have endpoints and is
    gone (from the list and the switch) when the last endpoint of one of
    them is unregistered."""
    a = api(shared)
    a.call("POST", "/v1/endpoints", endpoint("left", tenant="left"))
    a.call("POST", "/v1/endpoints", endpoint("right", tenant="right"))
    try:
        a.call("POST", "/v1/policy", {"from": "left", "to": "right", "port": 443})
        assert a.call("GET", "/v1/policy") == [{"from": "left", "to": "right", "port": 443}]
        a.call("DELETE", "/v1/endpoints/left")
        assert a.call("GET", "/v1/policy") == []
        assert a.call("GET", "/v1/status")["tenants"] == ["default", "right"]
    finally:
        a.call("DELETE", "/v1/endpoints/right")


def test_metrics_cannot_be_forged_through_names(shared: Master) -> None:
    """A tenant named t"} 1\\nfake_metric{a=" once printed a metric of its
    own on /metrics. The name is refused now, and /metrics, parsed by
    Prometheus' own parser, holds DockNet's families only, with an
    attached endpoint's samples labelled with its name and tenant."""
    refused(shared, "POST", "/v1/endpoints", endpoint("inj", tenant='t"} 1\nfake_metric{a="'), 400, "tenant name")
    from prometheus_client.parser import text_string_to_metric_families

    web = shared.peer("idle", "metrics-web")
    try:
        web.expect("ready")
        text = api(shared).call("GET", "/metrics")
        families = list(text_string_to_metric_families(text))
        assert families and all(f.name.startswith("docknet_") for f in families), [f.name for f in families]
        frames = next(f for f in families if f.name == "docknet_endpoint_frames")
        assert [s.labels for s in frames.samples] == [{"endpoint": "metrics-web", "tenant": "default", "direction": d}
                                                      for d in ("transmit", "receive")]
        assert "docknet_switch_loops_total " in text and "docknet_fast_channels_open " in text
    finally:
        web.stop()
        shared.peers.remove(web)


def attach_request(master: Master, msg: dict[str, Any], timeout: float = 5) -> dict[str, Any]:
    """One attach on a fresh control connection; the master must answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as s:
        s.settimeout(timeout)
        s.connect(master.path)
        send_message(s, msg)
        reply, fds = recv_message(s)
    for fd in fds:
        os.close(fd)
    assert reply is not None
    return reply


def master_fds(master: Master, expect: int | None = None) -> int:
    """The master's open descriptors; with expect, waits briefly for that
    count (it closes a departed asker's connection when it next runs)."""
    deadline = time.monotonic() + 2
    while True:
        n = len(os.listdir(f"/proc/{master.pid}/fd"))
        if expect is None or n == expect or time.monotonic() > deadline:
            return n
        time.sleep(0.02)


def test_attach_answers_bad_names_and_secrets(shared: Master) -> None:
    """The control socket's attach with names the API refuses (a trailing
    newline slipped through its old pattern) and with a secret of
    non-ASCII text (the comparison raised, and the attacher got no reply):
    each answered with a refusal, nothing held."""
    a = api(shared)
    reg = a.call("POST", "/v1/endpoints", endpoint("guarded"))
    try:
        before, fds = state(shared), master_fds(shared)
        for name in ("x\n", "a/b", "", None, "é"):
            reply = attach_request(shared, {"op": "attach", "endpoint": name})
            assert not reply["ok"] and reply["code"] == "EINVAL" and "endpoint" in reply["error"], reply
        reply = attach_request(shared, {"op": "attach", "endpoint": "guarded", "secret": "é" * 32})
        assert not reply["ok"] and reply["code"] == "EACCES" and "secret" in reply["error"], reply
        assert reply["error"] and reg["secret"] not in reply["error"]
        # Not more than before: the count before may still hold the last
        # API connection of state(), which the master closes when it next runs.
        assert state(shared) == before and master_fds(shared, fds) <= fds
    finally:
        a.call("DELETE", "/v1/endpoints/guarded")


def test_a_failed_attach_is_answered_and_gives_back_what_it_took(tmp_path) -> None:
    """A master with one endpoint slot: a second attach fails in the switch
    after the master has made the link's memfd, its eventfd and taken an
    address. Six such attaches each get their refusal at once, and the
    master holds no more descriptors or addresses than before them."""
    if os.geteuid() != 0:
        pytest.skip("needs root (DPDK, hugepages)")
    cfg = tmp_path / "master.toml"
    cfg.write_text("max_endpoints = 1\n")
    m = Master(str(tmp_path / "run"), ["--config", str(cfg)])
    try:
        m.peer("idle", "only").expect("ready")
        before = master_fds(m), m.status()["addresses_in_use"]
        for _ in range(6):
            reply = attach_request(m, {"op": "attach", "endpoint": "second"})
            assert not reply["ok"] and "endpoint slots are in use" in reply["error"], reply
        assert (master_fds(m, before[0]), m.status()["addresses_in_use"]) == before
    finally:
        assert m.stop() == 0


def test_request_attach_gives_up_on_a_master_that_never_answers() -> None:
    """The client's attach once waited for ever for a master that took the
    request and said nothing: against a socket that accepts and stays
    silent it now fails with TimeoutError within its timeout."""
    from aiodocknet.native.stack import request_attach

    with tempfile.TemporaryDirectory(prefix="dn-silent-") as d:
        path = os.path.join(d, "master.sock")
        with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as silent:
            silent.bind(path)
            silent.listen(1)
            start = time.monotonic()
            with pytest.raises(TimeoutError, match="did not answer the attach"):
                request_attach("patient", path, timeout=0.5)
            assert time.monotonic() - start < 3


def run_endpoint(master: Master, name: str, tenant: str, *args: str) -> Proc:
    argv = [sys.executable, "-m", "aiodocknet.cli", "--api", os.path.join(master.run_dir, "api.sock"),
            "run", "--name", name, "--tenant", tenant, "--", sys.executable, str(PEER), *args]
    p = Proc(argv, master.env, name)
    master.peers.append(p)
    return p


def test_a_freed_tenant_id_carries_no_rights(master: Master) -> None:
    """Tenant "ta" may reach tenant "tb"; then ta's only endpoint is
    unregistered and a new tenant "tc" is given ta's old id. The switch
    must have forgotten ta's rule: tc's connection to tb is dropped by
    policy, as any stranger's is."""
    a = api(master)
    srv = run_endpoint(master, "tb-srv", "tb", "echo-server", "--name", "tb-srv")
    addr = srv.expect("ready", timeout=60)["address"]
    a.call("POST", "/v1/endpoints", endpoint("ta-holder", tenant="ta"))
    a.call("POST", "/v1/policy", {"from": "ta", "to": "tb"})
    a.call("DELETE", "/v1/endpoints/ta-holder")
    assert a.call("GET", "/v1/policy") == []
    cli = run_endpoint(master, "tc-cli", "tc", "connect", "--name", "tc-cli", "--target", addr, "--timeout", "30")
    # Its SYN and the retransmission dropped by policy: a connection the
    # first had made would not have sent the second.
    policy_drops(master, "tc-cli", 2)
    assert not cli.said("connected")


def cli_run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "aiodocknet.cli", "--api", "/nonexistent/api.sock", *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)


@pytest.mark.parametrize("argv,text", [
    (["master", "--subnet", "foo", "--check-config"], "docknet master: --subnet: Expected 4 octets"),
    (["master", "--mtu", "50", "--check-config"], "docknet master: --mtu: must be a whole number from 576 to 9000"),
    (["master", "--spin-us", "-1", "--check-config"], "--spin-us: must be a whole number"),
    (["master", "--range", "10.99.0.0/24", "--check-config"], "--range: 10.99.0.0/24 is not inside the subnet"),
    (["master", "--run-dir", "/tmp/a\x01b", "--subnet", "10.1.0.0/30", "--range", "10.1.0.0/31", "--check-config"],
     "--range: 10.1.0.0/31 is too small"),
    (["attach", "--name", "a/b", "--netns", "/run/netns/x"], "docknet attach: --name: 'a/b' is not a name"),
    (["attach", "--name", "ok", "--netns", "/etc/passwd"], "--netns: '/etc/passwd' is not a network namespace"),
    (["run", "--name", "ok", "--tenant", 't"} 1', "--", "true"], "docknet run: --tenant:"),
    (["run", "--name", "ok", "--rate", "99999999999999999999gbit", "--", "true"], "--rate: "),
    (["policy", "allow", "a", "b", "--port", "70000"], "docknet policy: --port: must be 0 (any) to 65535"),
], ids=["subnet", "mtu", "spin", "range", "tiny-range", "name", "netns", "tenant", "rate", "port"])
def test_bad_flags_end_in_one_line(argv: list[str], text: str) -> None:
    """docknet with each bad flag: exit status 2 and one line saying what was
    wrong, no traceback, before anything is created or asked."""
    res = cli_run(*argv)
    assert res.returncode == 2, (res.returncode, res.stderr)
    assert res.stderr.strip().count("\n") == 0 and text in res.stderr, res.stderr


@pytest.mark.parametrize("toml,text", [
    ('mtu = 50\n', ":1: mtu: must be a whole number from 576 to 9000"),
    ('mtu = true\n', ":1: mtu: must be a whole number"),
    ('[defaults]\negress = 1.5\n', ":2: defaults.egress: must be a whole number or a rate"),
    ('[defaults]\negress_pps = 18446744073709551616\n', "above the largest limit"),
    ('[[policy]]\nfrom = "t\\"} 1"\nto = "db"\n', ':2: policy rule 1: from: \'t"} 1\' is not a name'),
    ('[[policy]]\nfrom = "web"\nto = "db"\nport = true\n', ":4: policy rule 1: port: must be 0 (any) to 65535"),
    ('[[policy]]\nfrom = "web"\nto = "db"\nports = 80\n', "policy rule 1: unknown key"),
    ('run_dir = "/tmp/a\\u0000b"\n', ":1: run_dir: contains a NUL"),
], ids=["mtu", "mtu-bool", "egress-float", "pps-huge", "tenant", "port-bool", "policy-key", "run-dir-nul"])
def test_bad_config_files_end_in_one_line(tmp_path, toml: str, text: str) -> None:
    """A TOML file with each bad value: a ConfigError of one line with the
    file's line and the same sentence the API and the flags give (the CLI
    prints it as it is: tests/test_config.py)."""
    from aiodocknet.master.config import ConfigError, load_config

    cfg = tmp_path / "master.toml"
    cfg.write_text(toml)
    with pytest.raises(ConfigError) as info:
        load_config(str(cfg))
    assert "\n" not in str(info.value) and text in str(info.value), str(info.value)
