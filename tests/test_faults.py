"""Fault injection in the switch (native/dn_fault.h) and lwIP's TCP under
it: DockNet endpoint to DockNet endpoint through a real master, each a real
slave process (tests/peer.py, SlaveStack: no fast channels), the faults set
on the links towards the endpoints through the management API; and a
kernel TCP peer through the uplink (--uplink-faults), in namespaces the
test makes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from aiodocknet.cli.api_client import ApiClient, ApiError
from bench.topology import NetnsTopology
from dn_harness import PEER, ROOT, Master, Proc, control_request

ONE_PERCENT = 10_000  # parts per million


@pytest.fixture
def master(switch_master: Master) -> Master:
    return switch_master


def quick_peer(master: Master, role: str, name: str, *args: str) -> Proc:
    """A peer whose first retransmission timeout is the kernel's 1 s
    (DOCKNET_TCP_RTO_MS) instead of lwIP's 3 s: what a lost segment costs
    before round trips are measured, and about what the timeouts measured
    on an idle switch settle at (their variance starts there). Two of
    lwIP's 500 ms ticks: a retransmission never goes out at once."""
    p = Proc([sys.executable, str(PEER), role, "--name", name, *args], dict(master.env, DOCKNET_TCP_RTO_MS="1000"),
             name)
    master.peers.append(p)
    return p


def api(master: Master) -> ApiClient:
    return ApiClient(os.path.join(master.run_dir, "api.sock"))


def set_faults(master: Master, name: str, **faults: int) -> dict[str, Any]:
    return api(master).call("PUT", f"/v1/endpoints/{name}/faults", faults)  # type: ignore[no-any-return]


def counters(master: Master, name: str) -> dict[str, int]:
    return api(master).call("GET", f"/v1/endpoints/{name}")["counters"]  # type: ignore[no-any-return]


def injected(master: Master, name: str) -> dict[str, int]:
    return {k: v for k, v in counters(master, name).items() if k.startswith("fault_")}


def test_fault_api_validates_and_bad_requests_change_nothing(master: Master) -> None:
    srv = master.peer("echo-server", "srv")
    addr = srv.expect("ready")["address"]
    a = api(master)
    assert injected(master, "srv") == {"fault_dropped": 0, "fault_duplicated": 0, "fault_reordered": 0,
                                       "fault_corrupted": 0}
    assert {"put", "delete"} <= set(a.call("GET", "/v1/openapi.json")["paths"]["/v1/endpoints/{name}/faults"])

    # Every frame towards srv is dropped from here on.
    now = set_faults(master, "srv", drop_ppm=1_000_000, seed=7)
    assert now == {"name": "srv", "faults": {"drop_ppm": 1_000_000, "dup_ppm": 0, "reorder_ppm": 0,
                                             "corrupt_ppm": 0, "drop_next": 0, "seed": 7}}

    def refused(name: str, body: Any, status: int, text: str) -> None:
        with pytest.raises(ApiError) as info:
            a.call("PUT", f"/v1/endpoints/{name}/faults", body)
        assert info.value.status == status and text in info.value.message, info.value

    # Each of these would turn the drop off if it were applied in part.
    refused("nobody", {"drop_ppm": 0}, 404, "no endpoint 'nobody'")
    refused("srv", {"drop_ppm": 0, "dup_ppm": 1_000_001}, 400, "dup_ppm must be a whole number from 0 to 1,000,000")
    refused("srv", {"drop_ppm": -1}, 400, "drop_ppm")
    refused("srv", {"drop_ppm": 0, "reorder_ppm": True}, 400, "reorder_ppm")
    refused("srv", {"drop_ppm": 0, "corrupt_ppm": 0.5}, 400, "corrupt_ppm")
    refused("srv", {"drop_ppm": "0"}, 400, "drop_ppm")
    refused("srv", {"drop_ppm": 0, "seed": 1 << 64}, 400, "seed")
    refused("srv", {"drop_ppm": 0, "drop_next": 1 << 32}, 400, "drop_next")
    refused("srv", {"drop_ppm": 0, "loss": 5}, 400, "unknown field 'loss'")
    refused("srv", [0], 400, "JSON object")
    with pytest.raises(ApiError) as info:
        a.call("DELETE", "/v1/endpoints/nobody/faults")
    assert info.value.status == 404

    ping = master.peer("ping", "cli", "--target", addr, "--count", "3", "--timeout", "0.3")
    assert ping.expect("done", timeout=30)["replies"] == 0
    assert injected(master, "srv")["fault_dropped"] >= 3  # the echo requests (ARP replies go to cli)

    assert a.call("DELETE", "/v1/endpoints/srv/faults") == {"name": "srv", "faults": None}
    before = injected(master, "srv")
    ping = master.peer("ping", "cli2", "--target", addr, "--count", "3")
    assert ping.expect("done", timeout=30)["replies"] == 3
    assert injected(master, "srv") == before


def test_32mib_intact_at_one_percent_loss_reorder_duplication(master: Master) -> None:
    """32 MiB one way through the switch (3,700 jumbo frames, each fault
    some 37 times on each link) with 1% of the frames on both links
    dropped, 1% duplicated and 1% held back behind the next: the sink's
    SHA-256 matches the sender's. (One way, so that the receiver's ACKs
    are pure ACKs and count as duplicate ACKs for fast retransmit; a lost
    segment on an echo stream waits for the retransmission timer.)"""
    size = 32 << 20
    srv = master.peer("echo-server", "srv", "--sink")
    addr = srv.expect("ready")["address"]
    cli = master.peer("stream", "cli", "--target", addr, "--bytes", str(size), "--timeout", "150",
                      "--linger")
    cli.expect("connected")
    for name, seed in (("srv", 11), ("cli", 12)):
        set_faults(master, name, drop_ppm=ONE_PERCENT, dup_ppm=ONE_PERCENT, reorder_ppm=ONE_PERCENT, seed=seed)
    done = cli.expect("done", timeout=180)
    assert done["error"] == "" and done["eof"], done
    assert done["answer"] == {"bytes": size, "sha256": done["sent_sha256"]}
    eof = srv.expect("eof")
    assert eof["bytes"] == size and eof["sha256"] == done["sent_sha256"]
    # The faults did happen, in the proportions asked for (the data frames
    # to srv number about size / MSS).
    frames = size // 8960
    seen = injected(master, "srv")
    for key in ("fault_dropped", "fault_duplicated", "fault_reordered"):
        assert frames // 200 < seen[key] < frames // 50, seen
    assert seen["fault_corrupted"] == 0
    acks = injected(master, "cli")
    assert acks["fault_dropped"] > 0 and acks["fault_reordered"] > 0 and acks["fault_duplicated"] > 0
    cli.send("exit")
    assert cli.wait(30) == 0


def test_corrupted_frames_are_discarded_by_checksums(master: Master) -> None:
    """With checksums on the links (DOCKNET_LINK_CHECKSUMS=1 in both
    processes), 1% of the frames corrupted on top of 1% loss, reordering
    and duplication: every damaged segment is discarded and sent again,
    and the stream arrives intact."""
    master.env["DOCKNET_LINK_CHECKSUMS"] = "1"
    size = 16 << 20
    srv = master.peer("echo-server", "srv", "--sink")
    addr = srv.expect("ready")["address"]
    cli = master.peer("stream", "cli", "--target", addr, "--bytes", str(size), "--timeout", "100",
                      "--linger")
    cli.expect("connected")
    for name, seed in (("srv", 21), ("cli", 22)):
        set_faults(master, name, drop_ppm=ONE_PERCENT, dup_ppm=ONE_PERCENT, reorder_ppm=ONE_PERCENT,
                   corrupt_ppm=ONE_PERCENT, seed=seed)
    done = cli.expect("done", timeout=120)
    assert done["error"] == "" and done["eof"], done
    assert done["answer"] == {"bytes": size, "sha256": done["sent_sha256"]}
    assert injected(master, "srv")["fault_corrupted"] > 0
    assert injected(master, "cli")["fault_corrupted"] > 0
    cli.send("exit")
    assert cli.wait(30) == 0


def test_lost_fins_are_retransmitted(master: Master) -> None:
    """An idle connection closes while the switch drops the client's FIN
    (the next frame towards the server) and the next two frames towards
    the client (the server's ACK of the FIN and its own FIN, or the FIN's
    first copies): both ends retransmit and both see the other's FIN."""
    srv = quick_peer(master, "echo-server", "srv")
    addr = srv.expect("ready")["address"]
    cli = quick_peer(master, "close-on-cue", "cli", "--target", addr, "--bytes", "65536", "--timeout", "60")
    assert cli.expect("idle")["intact"]
    set_faults(master, "srv", drop_next=1)
    set_faults(master, "cli", drop_next=2)
    cli.send("close")
    eof = srv.expect("eof", timeout=60)
    assert eof["bytes"] == 65536
    done = cli.expect("done", timeout=60)
    assert done["eof"] and done["error"] == "", done
    assert injected(master, "srv")["fault_dropped"] == 1
    assert injected(master, "cli")["fault_dropped"] == 2
    # A retransmission timer, not the first FIN, brought them through.
    assert done["seconds"] > 0.2, done
    cli.send("exit")
    assert cli.wait(30) == 0


def test_lost_syn_then_reset_from_closed_port(master: Master) -> None:
    """The first SYN to a port nobody listens on is lost; its
    retransmission gets the stack's reset, which the client reports as the
    kernel does: ECONNREFUSED."""
    srv = master.peer("echo-server", "srv")
    addr = srv.expect("ready")["address"]
    set_faults(master, "srv", drop_next=1)
    cli = quick_peer(master, "connect", "cli", "--target", addr, "--port", "7999", "--timeout", "30")
    assert cli.expect("error", timeout=40)["errno"] == "ECONNREFUSED"
    assert injected(master, "srv")["fault_dropped"] == 1


def test_half_close_both_ways_under_faults(master: Master) -> None:
    """With 1% loss, reordering and duplication on both links: the client
    half-closes first and still receives the server's answer; then the
    server half-closes first and still receives what the client sends after
    the server's FIN."""
    srv = master.peer("echo-server", "srv", "--sink")
    addr = srv.expect("ready")["address"]
    shut = master.peer("echo-server", "srv2", "--shut-first")
    addr2 = shut.expect("ready")["address"]
    for name, seed in (("srv", 31), ("srv2", 32)):
        set_faults(master, name, drop_ppm=ONE_PERCENT, dup_ppm=ONE_PERCENT, reorder_ppm=ONE_PERCENT, seed=seed)

    cli = master.peer("half-close-client", "cli", "--target", addr, "--bytes", str(4 << 20), "--timeout", "60")
    done = cli.expect("done", timeout=90)
    assert done["error"] == "" and done["eof"], done
    assert done["answer"] == {"bytes": 4 << 20, "sha256": done["sent_sha256"]}

    cli2 = master.peer("after-server-fin", "cli2", "--target", addr2, "--bytes", str(4 << 20), "--timeout", "60")
    fin = cli2.expect("server_fin", timeout=60)
    assert fin == {"event": "server_fin", "greeting": "hello", "error": ""}
    sent = cli2.expect("sent", timeout=60)
    assert sent["error"] == ""
    eof = shut.expect("eof", timeout=60)
    assert eof["bytes"] == 4 << 20 and eof["sha256"] == sent["sent_sha256"]
    cli2.send("exit")
    assert cli2.wait(30) == 0


def test_unanswered_keepalives_time_out_with_etimedout(master: Master) -> None:
    """Everything towards the server is lost after the connection is up:
    the client's keepalive probes go unanswered and the connection ends
    with ETIMEDOUT, as the kernel reports it, once the idle time and the
    probes have passed (lwIP looks every 500 ms)."""
    srv = master.peer("echo-server", "srv")
    addr = srv.expect("ready")["address"]
    cli = master.peer("keepalive", "cli", "--target", addr, "--timeout", "30")
    cli.expect("connected")
    set_faults(master, "srv", drop_ppm=1_000_000, seed=1)
    res = cli.expect("error", timeout=40)
    assert res["errno"] == "ETIMEDOUT", res
    assert 2.0 <= res["seconds"] < 10, res
    assert injected(master, "srv")["fault_dropped"] >= 3  # the probes


UPLINK_RANGE = "10.77.1.0/24"
KERNEL_ADDR = "10.77.200.1"
KERNEL_PEER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kernel_peer.py")
UPLINK_FAULTS = (f"drop_ppm={ONE_PERCENT},dup_ppm={ONE_PERCENT},reorder_ppm={ONE_PERCENT},"
                 f"corrupt_ppm={ONE_PERCENT},seed=5,direction=both")


class UplinkHost:
    """A master in namespace 0 of a veth pair, its uplink (net_af_packet)
    on that namespace's veth, with 1% faults each way; a kernel host in
    namespace 1 at KERNEL_ADDR, on the same segment."""

    def __init__(self, topo: NetnsTopology) -> None:
        self.topo = topo
        self.dir = tempfile.TemporaryDirectory(prefix="dn-uplink-faults-")
        self.env = dict(os.environ, DOCKNET_MASTER=os.path.join(self.dir.name, "master.sock"), PYTHONUNBUFFERED="1",
                        DOCKNET_FAST_CHANNELS="0", DOCKNET_LINK_CHECKSUMS="1")
        self.procs: list[Proc] = []
        self.master = self.run(0, [sys.executable, "-m", "aiodocknet.cli", "master", "--run-dir", self.dir.name,
                                   "--range", UPLINK_RANGE, "--uplink", "net_af_packet0,iface=veth0",
                                   "--uplink-faults", UPLINK_FAULTS], "master")
        deadline = time.monotonic() + 30
        while True:
            try:
                if control_request(self.env["DOCKNET_MASTER"], {"op": "ping"}).get("ok"):
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"master did not start: {self.master.stderr_tail()}"
            time.sleep(0.05)

    def run(self, ns: int, argv: list[str], name: str) -> Proc:
        p = Proc(self.topo.exec_argv(ns, argv), self.env, name)
        self.procs.append(p)
        return p

    def uplink(self) -> dict[str, int]:
        return ApiClient(os.path.join(self.dir.name, "api.sock")).call("GET", "/v1/status")["uplink"]  # type: ignore[no-any-return]

    def close(self) -> None:
        for p in reversed(self.procs):
            p.stop()
        assert self.master.popen.returncode == 0, self.master.stderr_text[-2000:]
        self.dir.cleanup()


@pytest.fixture
def uplink_host() -> Iterator[UplinkHost]:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, DPDK)")
    with NetnsTopology(2, mode="veth", mtu=9000) as topo:
        subprocess.run(["ip", "-n", topo.namespaces[1], "addr", "add", f"{KERNEL_ADDR}/16", "dev", "veth0"],
                       check=True)
        for ns in topo.namespaces:
            # Whole frames with whole checksums on the wire: no segmentation
            # or checksum offload for the packet socket to see half-done.
            subprocess.run(topo.exec_argv(topo.namespaces.index(ns), [
                "ethtool", "-K", "veth0", "tx", "off", "tso", "off", "gso", "off", "gro", "off"]),
                check=True, capture_output=True)
        host = UplinkHost(topo)
        try:
            yield host
        finally:
            host.close()


def test_kernel_peer_through_faulty_uplink_both_ways(uplink_host: UplinkHost) -> None:
    """A kernel TCP peer and a DockNet endpoint through the uplink with 1%
    loss, reordering and duplication each way and 1% corruption of what
    arrives (the endpoint checks checksums): 16 MiB from DockNet to a
    kernel sink, then 16 MiB from a kernel client to a DockNet sink (some
    11,000 segments of the uplink's MTU each way), both intact by
    SHA-256."""
    size = 16 << 20
    h = uplink_host
    ksink = h.run(1, [sys.executable, KERNEL_PEER, "sink-server", "--bind", KERNEL_ADDR], "kernel-sink")
    ksink.expect("ready")
    cli = h.run(0, [sys.executable, str(PEER), "stream", "--name", "dn-cli", "--target", KERNEL_ADDR,
                    "--bytes", str(size), "--timeout", "120"], "dn-cli")
    cli.expect("connected", timeout=30)
    done = cli.expect("done", timeout=150)
    assert done["error"] == "" and done["eof"], done
    assert done["answer"] == {"bytes": size, "sha256": done["sent_sha256"]}
    assert ksink.expect("eof")["peer"][0].startswith("10.77.1.")

    dsink = h.run(0, [sys.executable, str(PEER), "echo-server", "--name", "dn-sink", "--sink"], "dn-sink")
    addr = dsink.expect("ready", timeout=30)["address"]
    kcli = h.run(1, [sys.executable, KERNEL_PEER, "stream-client", "--target", addr, "--bytes", str(size),
                     "--timeout", "120"], "kernel-cli")
    kdone = kcli.expect("done", timeout=150)
    assert kdone["answer"] == {"bytes": size, "sha256": kdone["sent_sha256"]}
    assert dsink.expect("eof")["sha256"] == kdone["sent_sha256"]

    up = h.uplink()
    for key in ("tx_fault_dropped", "tx_fault_duplicated", "tx_fault_reordered", "rx_fault_dropped",
                "rx_fault_duplicated", "rx_fault_reordered", "rx_fault_corrupted"):
        assert up[key] > 0, up


def test_uplink_faults_configuration_is_checked() -> None:
    """[uplink_faults] in the TOML and --uplink-faults: checked like every
    other setting, and refused without an uplink."""

    def master_check(*args: str, toml: str | None = None) -> subprocess.CompletedProcess[str]:
        with tempfile.TemporaryDirectory(prefix="dn-faults-config-") as d:
            argv = [sys.executable, "-m", "aiodocknet.cli", "master", "--check-config", *args]
            if toml is not None:
                path = os.path.join(d, "master.toml")
                with open(path, "w") as f:
                    f.write(toml)
                argv += ["--config", path]
            return subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=30)

    uplink = 'uplink = "net_af_packet0,iface=veth0"\n'
    good: list[tuple[tuple[str, ...], str | None]] = [
        ((), uplink + "[uplink_faults]\ndrop_ppm = 10000\nreorder_ppm = 5000\nseed = 3\n"
         'direction = "ingress"\n'),
        (("--uplink", "net_af_packet0,iface=veth0", "--uplink-faults", "dup_ppm=20000,seed=0x10"), None),
    ]
    bad: list[tuple[tuple[str, ...], str | None, str]] = [
        ((), uplink + "[uplink_faults]\ndrop_ppm = 2000000\n", "uplink_faults: drop_ppm must be a whole number"),
        ((), uplink + '[uplink_faults]\ndirection = "sideways"\n', "uplink_faults.direction: must be one of"),
        ((), uplink + "[uplink_faults]\nloss = 1\n", "unknown field 'loss'"),
        ((), "[uplink_faults]\ndrop_ppm = 1\n", "uplink faults need an uplink"),
        (("--uplink", "net_af_packet0,iface=veth0", "--uplink-faults", "drop_ppm=lots"), None,
         "--uplink-faults: drop_ppm must be a whole number"),
        (("--uplink", "net_af_packet0,iface=veth0", "--uplink-faults", "drop_ppm"), None, "is not key=value"),
    ]
    # Each check its own process, all at once: they share nothing, and a
    # process's start-up is most of each one's time.
    with ThreadPoolExecutor(len(good) + len(bad)) as pool:
        runs = list(pool.map(lambda case: master_check(*case[0], toml=case[1]), [*good, *bad]))
    ok, flag = runs[:len(good)]
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["uplink_faults"] == {"direction": "ingress", "drop_ppm": 10000, "dup_ppm": 0,
                                                      "reorder_ppm": 5000, "corrupt_ppm": 0, "drop_next": 0,
                                                      "seed": 3}
    assert flag.returncode == 0, flag.stderr
    assert json.loads(flag.stdout)["uplink_faults"]["dup_ppm"] == 20000
    assert json.loads(flag.stdout)["uplink_faults"]["seed"] == 16
    for (args, toml, expected), res in zip(bad, runs[len(good):]):
        assert res.returncode == 2 and expected in res.stderr, (args, toml, res.stderr)
