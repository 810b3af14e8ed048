"""The af_xdp uplink (issue 17): masters in network namespaces on one Linux
bridge, each with ``--uplink iface:veth0``, real processes as in
test_uplink.py. Over af_xdp bytes cross between hosts, an idle master
sleeps (the switch waits on the port's AF_XDP sockets), and the interface
is as it was once the master stops; DockNet's XDP program leaves the
host's own traffic on the same interface to the kernel; a jumbo MTU falls
back to af_packet and says why; a master killed with -9 leaves its XDP
program behind and the next one removes it, but never a running master's
or a program not DockNet's; hostile uplink settings are refused before
anything is touched."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

import pytest

from aiodocknet import validate
from aiodocknet.master.uplink import parse
from bench.topology import NetnsTopology
from dn_harness import PEER, ROOT
from test_idle import cpu_seconds
from test_uplink import CLIENT_ADDR, KERNEL6, RANGES, Hosts, _blast


def link(topo: NetnsTopology, host: int) -> dict:
    """What the port may change on the namespace's veth0: its flags
    (PROMISC), MTU and XDP program (ip -d -j: the "xdp" key)."""
    out = subprocess.run(["ip", "-n", topo.namespaces[host], "-d", "-j", "link", "show", "veth0"],
                         capture_output=True, text=True, check=True).stdout
    info = json.loads(out)[0]
    return {"promisc": "PROMISC" in info["flags"], "mtu": info["mtu"], "xdp": "xdp" in info}


def topology(mtu: int | None) -> NetnsTopology:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces)")
    topo = NetnsTopology(3, mode="bridge", mtu=mtu)
    topo.setup()
    for i in (0, 1):  # the masters' interfaces are DockNet's own
        topo.clear_addresses(i)
    subprocess.run(["ip", "-n", topo.namespaces[2], "addr", "add", CLIENT_ADDR, "dev", "veth0"], check=True)
    return topo


@pytest.fixture
def topo() -> Iterator[NetnsTopology]:
    t = topology(None)  # veth's own MTU, 1500
    try:
        yield t
    finally:
        t.cleanup()


@pytest.fixture
def jumbo() -> Iterator[NetnsTopology]:
    t = topology(9000)
    try:
        yield t
    finally:
        t.cleanup()


def test_af_xdp_carries_traffic_sleeps_and_restores_the_interface(topo: NetnsTopology) -> None:
    before = [link(topo, i) for i in (0, 1)]
    assert not any(b["promisc"] or b["xdp"] for b in before), before
    hosts = Hosts(topo, uplink="iface:veth0")
    try:
        for i in (0, 1):
            up = hosts.status(i)["uplink"]
            assert (up["pmd"], up["pmd_fallback"]) == ("af_xdp", None), up
            assert up["wake_fds"] >= 1, up  # the switch sleeps on the port's AF_XDP sockets
            assert link(topo, i)["xdp"] and link(topo, i)["promisc"]
        srv = hosts.run(0, [sys.executable, str(PEER), "echo-server", "--name", "x-srv"], "x-srv")
        addr = srv.expect("ready", timeout=60)["address"]
        cli = hosts.run(1, [sys.executable, str(PEER), "echo-client", "--name", "x-cli", "--target", addr,
                            "--bytes", str(8 << 20), "--half-close", "--timeout", "30"], "x-cli")
        done = cli.expect("done", timeout=60)
        assert done["ok"] and done["recv_sha256"] == done["sent_sha256"], done
        assert srv.expect("eof")["sha256"] == done["sent_sha256"]
        # A kernel host on the segment too (ARP answered through af_xdp).
        ping = subprocess.run(topo.exec_argv(2, ["ping", "-c", "2", "-i", "0.2", "-W", "2", addr]),
                              capture_output=True, text=True, timeout=20)
        assert ping.returncode == 0, ping.stdout + ping.stderr
        up = [hosts.status(i)["uplink"] for i in (0, 1)]
        assert all(u["rx_frames"] > 1000 and u["tx_frames"] > 1000 for u in up), up
        # Idle, the server still attached: both masters under 2% of a CPU
        # together over 3 s (from /proc, as test_idle.py measures).
        time.sleep(1.0)
        pids = [m.pid for m in hosts.masters]
        used = [cpu_seconds(p) for p in pids]
        t0 = time.monotonic()
        time.sleep(3)
        used = [cpu_seconds(p) - u for p, u in zip(pids, used)]
        share = sum(used) / (time.monotonic() - t0)
        print(f"idle masters on af_xdp: {share:.2%} of a CPU ({used})")
        assert share < 0.02, f"idle masters on af_xdp used {share:.1%} of a CPU (seconds: {used})"
    finally:
        hosts.close()
    # Stopped: no promiscuous mode, no XDP program, the same MTU.
    assert [link(topo, i) for i in (0, 1)] == before


def test_jumbo_mtu_falls_back_to_af_packet(jumbo: NetnsTopology) -> None:
    """AF_XDP buffers are a page at most: a 9000-byte MTU cannot be had on
    af_xdp, so iface: takes af_packet and keeps the jumbo links."""
    hosts = Hosts(jumbo, uplink="iface:veth0", ranges=RANGES[:1])
    try:
        st = hosts.status(0)
        up = st["uplink"]
        assert up["pmd"] == "af_packet", up
        assert up["pmd_fallback"].startswith("af_xdp: ") and "MTU 9000" in up["pmd_fallback"], up
        assert st["mtu"] == 9000
        assert not link(jumbo, 0)["xdp"]
    finally:
        hosts.close()
    log = hosts.masters[0].stderr_text
    assert "uplink falls back" in log and "reason=" in log and "to=af_packet" in log, log[-2000:]
    assert link(jumbo, 0) == {"promisc": False, "mtu": 9000, "xdp": False}
    # Narrow links (--mtu 1500) would fit af_xdp's buffers, but the
    # interface's own 9000-byte frames would not: af_xdp: alone is refused,
    # saying so, and the interface is left as it was.
    with tempfile.TemporaryDirectory(prefix="dn-host-") as d:
        res = subprocess.run(jumbo.exec_argv(0, [sys.executable, "-m", "aiodocknet.cli", "master", "--run-dir", d,
                                                 "--mtu", "1500", "--uplink", "af_xdp:veth0"]),
                             capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert res.returncode == 1 and "the interface's MTU 9000 is above the 3054" in res.stderr, res.stderr[-2000:]
    assert link(jumbo, 0) == {"promisc": False, "mtu": 9000, "xdp": False}


def test_master_after_kill_9_starts_on_the_same_interface(topo: NetnsTopology) -> None:
    """A master killed with -9 cannot detach its XDP program nor put the
    promiscuous flag back; the next one on that interface (the same run
    directory: a restart) starts on af_xdp all the same, answers ARP, and
    when it stops leaves the interface as it was before the first."""
    assert not link(topo, 0)["promisc"]
    first = Hosts(topo, uplink="af_xdp:veth0", ranges=RANGES[:1])
    try:
        first.masters[0].kill(signal.SIGKILL)
        first.masters[0].wait(10)
    finally:
        first.close()
    left = link(topo, 0)
    assert left["xdp"] and left["promisc"], f"the killed master left nothing to undo: {left}"
    second = Hosts(topo, uplink="af_xdp:veth0", ranges=RANGES[:1], dirs=first.dirs)
    try:
        up = second.status(0)["uplink"]
        assert (up["pmd"], up["stale_xdp_removed"], up["xdp_filter"]) == ("af_xdp", 1, 1), up
        gateway = RANGES[0].replace(".0/24", ".1")
        # The gateway answers ARP (no ICMP): the new port receives and sends.
        subprocess.run(topo.exec_argv(2, ["ping", "-c", "1", "-W", "1", gateway]), capture_output=True, timeout=10)
        up = second.status(0)["uplink"]
        assert up["arp_replies_sent"] >= 1 and up["rx_frames"] >= 1, up
    finally:
        second.close()
    assert link(topo, 0) == {"promisc": False, "mtu": 1500, "xdp": False}
    assert not os.path.exists(os.path.join(first.dirs[0], "uplink.json"))


HOSTILE = {
    # devargs injection through the name: another argument, a value
    "iface:veth0,xdp_prog=/tmp/x.o": "contains ','",
    "iface:veth0=1": "contains '='",
    "af_xdp:a,b": "contains ','",
    # what the kernel refuses in a name
    "af_packet:../etc": "is not an interface name",
    "iface:eth 1": "is not an interface name",
    "iface:eth\t1": "is not an interface name",
    "iface:a/b": "is not an interface name",
    "iface:a:b": "is not an interface name",
    "iface:..": "is not an interface name",
    "iface:": "must be an interface name",
    "iface:abcdefghijklmnop": "longer than an interface name may be",
    # raw device arguments: whitespace, control characters, NUL, length
    "net_af_packet0,iface=veth0 ": "whitespace or control characters",
    "net_af_packet0,iface=veth0\n": "whitespace or control characters",
    "net_af_packet0\0": "contains a NUL character",
    "net_af_packet0," + "x" * 300: "longer than 255 characters",
    "": "must be iface:NAME",
}


def test_hostile_uplinks_are_refused_and_change_nothing(tmp_path) -> None:
    """Each setting above is refused with its reason (in-process, then a
    few through a real `docknet master`, flag and file alike: exit status
    2, the reason, no run directory made). A name the namespace lacks is
    refused before the master makes anything too."""
    for value, why in HOSTILE.items():
        with pytest.raises(validate.ValidationError) as exc:
            parse(value)
        assert why in str(exc.value), (value, str(exc.value))
    for value in ("iface:eth0", "af_xdp:veth0", "af_packet:eth0.100", "net_af_packet0,iface=eth1", "0000:01:00.0"):
        assert str(parse(value)) == value
    run_dir = tmp_path / "run"
    toml = tmp_path / "m.toml"
    toml.write_text('uplink = "iface:veth0,xdp_prog=/tmp/x.o"\n')
    env = dict(os.environ, DOCKNET_LOG_LEVEL="warning")
    for argv, why in (
        (["--uplink", "iface:veth0,xdp_prog=/tmp/x.o"], "--uplink: iface: interface: 'veth0,xdp_prog=/tmp/x.o' "
                                                        "contains ','"),
        (["--uplink", "af_xdp:a b"], "is not an interface name"),
        (["--config", str(toml)], "m.toml:1: uplink: iface: interface:"),
        (["--uplink", "iface:dn-nosuch0"], "no interface 'dn-nosuch0' in this network namespace"),
    ):
        res = subprocess.run([sys.executable, "-m", "aiodocknet.cli", "master", "--run-dir", str(run_dir), *argv],
                             capture_output=True, text=True, cwd=ROOT, env=env, timeout=30)
        assert res.returncode in (1, 2) and why in res.stderr, (argv, res.returncode, res.stderr)
        assert not run_dir.exists(), argv


def test_config_and_check_config_take_the_forms() -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
        f.write('uplink = "iface:eth1"\n')
    try:
        res = subprocess.run([sys.executable, "-m", "aiodocknet.cli", "master", "--config", f.name,
                              "--check-config"], capture_output=True, text=True, cwd=ROOT, timeout=30)
    finally:
        os.unlink(f.name)
    assert res.returncode == 0 and '"uplink": "iface:eth1"' in res.stdout, res.stderr


def _ping(topo: NetnsTopology, host: int, addr: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(topo.exec_argv(host, ["ping", "-c", "3", "-i", "0.2", "-W", "2", addr]),
                          capture_output=True, text=True, timeout=30)


def _runts(topo: NetnsTopology, host: int) -> None:
    """Frames cut short where the XDP program reads: a bare Ethernet header
    of each type it looks at, IPv4 and ARP a byte short of the address,
    IPv6 multicast without its ICMPv6 and a solicitation cut inside its
    target, each to the broadcast address, 100 times."""
    code = ("import socket\n"
            "s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)\n"
            "s.bind(('veth0', 0))\n"
            "eth = lambda t: b'\\xff' * 6 + b'\\x02' * 6 + t\n"
            "ip6 = b'\\x60' + bytes(5) + b'\\x3a\\xff' + bytes(16) + b'\\xff\\x02' + bytes(14)\n"
            "frames = [eth(t) for t in (b'\\x08\\x00', b'\\x08\\x06', b'\\x86\\xdd')]\n"
            "frames += [eth(b'\\x08\\x00') + bytes(19), eth(b'\\x08\\x06') + bytes(27),\n"
            "           eth(b'\\x86\\xdd') + ip6, eth(b'\\x86\\xdd') + ip6 + b'\\x87' + bytes(7) + b'\\xfd\\x77']\n"
            "for _ in range(100):\n"
            "    for f in frames:\n"
            "        s.send(f)\n")
    subprocess.run(topo.exec_argv(host, [sys.executable, "-c", code]), check=True, timeout=30)


def test_af_xdp_shares_an_interface_with_the_hosts_addresses() -> None:
    """DockNet's XDP program hands the port only DockNet's frames, so af_xdp
    may take an interface that carries the host's own addresses. Tried,
    with both masters running on af_xdp over the namespaces' veth (kernel
    IPv4 and IPv6 addresses on it): 20000 of the kernel's UDP datagrams to
    its own IPv4 and IPv6 addresses (none may reach the master), kernel
    pings both ways over IPv4 and IPv6 (the kernel's neighbour discovery
    is multicast, and must not go to DockNet), frames cut short where the
    program reads (_runts; the master must still be up), an address the host adds
    while the masters run (a check made only at start would miss it), and
    DockNet's own TCP between the hosts over IPv4 and IPv6 through the
    same interface."""
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces)")
    with NetnsTopology(2, mode="veth") as topo:  # veth0 keeps its kernel addresses
        for i in (0, 1):
            subprocess.run(["ip", "-n", topo.namespaces[i], "addr", "add", f"{KERNEL6[i]}/64", "dev", "veth0",
                            "nodad"], check=True)
        hosts = Hosts(topo, uplink="iface:veth0")
        try:
            for i in (0, 1):
                up = hosts.status(i)["uplink"]
                assert (up["pmd"], up["pmd_fallback"], up["xdp_filter"]) == ("af_xdp", None, 1), up
            shown = subprocess.run([sys.executable, "-m", "aiodocknet.cli", "master", "status"], env=hosts.env(0),
                                   capture_output=True, text=True, timeout=30)
            assert "XDP program takes only DockNet's frames" in shown.stdout, shown.stdout + shown.stderr
            for host, dst in ((1, topo.addr(0)), (0, topo.addr(1)), (1, KERNEL6[0]), (0, KERNEL6[1])):
                ping = _ping(topo, host, dst)
                assert ping.returncode == 0 and " 0% packet loss" in ping.stdout, (dst, ping.stdout)
            before = hosts.status(0)["uplink"]["rx_frames"]
            for dst in (topo.addr(0), KERNEL6[0]):
                _blast(topo, 1, dst, 10000)
            got = hosts.status(0)["uplink"]["rx_frames"] - before
            assert got < 50, f"the master was handed {got} of the kernel's 20000 frames"
            _runts(topo, 1)
            assert hosts.masters[0].popen.poll() is None, hosts.masters[0].stderr_tail()
            for i in (0, 1):
                subprocess.run(["ip", "-n", topo.namespaces[i], "addr", "add", f"192.168.213.{i + 1}/24", "dev",
                                "veth0"], check=True)
            ping = _ping(topo, 1, "192.168.213.1")
            assert ping.returncode == 0 and " 0% packet loss" in ping.stdout, ping.stdout
            srv = hosts.run(0, [sys.executable, str(PEER), "echo-server", "--name", "s-srv", "--ipv6"], "s-srv")
            ready = srv.expect("ready", timeout=60)
            for n, target in enumerate((ready["address"], ready["address6"])):
                cli = hosts.run(1, [sys.executable, str(PEER), "echo-client", "--name", f"s-cli{n}", "--target",
                                    target, "--bytes", str(4 << 20), "--half-close", "--timeout", "30"], f"s-cli{n}")
                done = cli.expect("done", timeout=60)
                assert done["ok"] and done["recv_sha256"] == done["sent_sha256"], (target, done)
                assert srv.expect("eof")["sha256"] == done["sent_sha256"]
        finally:
            hosts.close()
        assert not link(topo, 0)["xdp"]


def _start_master(topo: NetnsTopology, run_dir: str, uplink: str) -> subprocess.CompletedProcess[str]:
    """A master that is expected to refuse to start."""
    return subprocess.run(topo.exec_argv(0, [sys.executable, "-m", "aiodocknet.cli", "master", "--run-dir",
                                             run_dir, "--uplink", uplink]),
                          capture_output=True, text=True, cwd=ROOT, timeout=60,
                          env=dict(os.environ, DOCKNET_LOG_LEVEL="warning"))


def _prog_id(topo: NetnsTopology, host: int) -> int | None:
    out = subprocess.run(["ip", "-n", topo.namespaces[host], "-d", "-j", "link", "show", "veth0"],
                         capture_output=True, text=True, check=True).stdout
    xdp = json.loads(out)[0].get("xdp")
    return None if xdp is None else xdp["prog"]["id"]


def test_af_xdp_leaves_other_programs_alone(topo: NetnsTopology, tmp_path) -> None:
    """The next master on an interface removes a DockNet program only when
    the master that put it there is gone (the kill -9 test). Tried: a
    second master on the interface of a running one (refused, naming it;
    the first keeps its program and answers ARP), and a master on an
    interface with an XDP program that is not DockNet's (refused with how
    to remove it; the program stays)."""
    first = Hosts(topo, uplink="af_xdp:veth0", ranges=RANGES[:1])
    try:
        prog = _prog_id(topo, 0)
        assert prog is not None
        res = _start_master(topo, str(tmp_path / "second"), "af_xdp:veth0")
        assert res.returncode != 0, res.stderr
        assert f"another DockNet master (pid {first.masters[0].pid})" in res.stderr, res.stderr
        assert _prog_id(topo, 0) == prog
        res = _start_master(topo, str(tmp_path / "third"), "iface:veth0")
        assert res.returncode != 0 and "another DockNet master" in res.stderr, res.stderr
        gateway = RANGES[0].replace(".0/24", ".1")
        before = first.status(0)["uplink"]["arp_replies_sent"]
        subprocess.run(topo.exec_argv(2, ["ping", "-c", "1", "-W", "1", gateway]), capture_output=True, timeout=10)
        assert first.status(0)["uplink"]["arp_replies_sent"] > before
    finally:
        first.close()
    assert _prog_id(topo, 0) is None
    src = tmp_path / "pass.c"
    src.write_text('#include <linux/bpf.h>\n__attribute__((section("xdp"), used)) int other(struct xdp_md *c) '
                   '{ return XDP_PASS; }\nchar _l[] __attribute__((section("license"), used)) = "GPL";\n')
    obj = tmp_path / "pass.o"
    subprocess.run(["clang", "-O2", "-target", "bpf", f"-I/usr/include/{_multiarch()}", "-c", str(src), "-o",
                    str(obj)], check=True)
    subprocess.run(["ip", "-n", topo.namespaces[0], "link", "set", "dev", "veth0", "xdp", "obj", str(obj), "sec",
                    "xdp"], check=True)
    theirs = _prog_id(topo, 0)
    assert theirs is not None
    res = _start_master(topo, str(tmp_path / "fourth"), "af_xdp:veth0")
    assert res.returncode != 0 and "not DockNet's" in res.stderr and "xdp off" in res.stderr, res.stderr
    assert _prog_id(topo, 0) == theirs
    subprocess.run(["ip", "-n", topo.namespaces[0], "link", "set", "dev", "veth0", "xdp", "off"], check=True)


def _multiarch() -> str:
    return subprocess.run(["gcc", "-dumpmachine"], capture_output=True, text=True, check=True).stdout.strip()


def test_without_the_xdp_program_af_xdp_keeps_off_the_hosts_addresses(monkeypatch) -> None:
    """Should the XDP program be missing (not built), net_af_xdp would load
    its own, which takes every frame: then iface: falls back to af_packet
    on an interface with the host's addresses and says why, and af_xdp: is
    refused (the ports below are never opened: make records the choice)."""
    from aiodocknet.master import uplink as up_mod

    assert up_mod.xdp_filter() is not None, "scripts/bootstrap.sh builds the XDP program"
    opened: list[str] = []

    def make(devargs: str, mtu: int) -> str:
        opened.append(devargs)
        return devargs

    lo = "lo"  # any interface of this namespace: nothing is opened
    _, attempt, fallback, _ = up_mod.open_uplink(parse(f"iface:{lo}"), 1500, make, ["10.0.0.1/24"])
    assert attempt.pmd == "af_xdp" and attempt.filtered and fallback is None
    assert opened[-1].endswith(f"xdp_prog={up_mod.XDP_FILTER}"), opened
    monkeypatch.setattr(up_mod, "xdp_filter", lambda: None)
    _, attempt, fallback, _ = up_mod.open_uplink(parse(f"iface:{lo}"), 1500, make, ["10.0.0.1/24"])
    assert attempt.pmd == "af_packet" and "host's own addresses (10.0.0.1/24)" in (fallback or ""), fallback
    with pytest.raises(OSError) as exc:
        up_mod.open_uplink(parse(f"af_xdp:{lo}"), 1500, make, ["10.0.0.1/24"])
    assert "is not built" in str(exc.value) and f"af_packet:{lo}" in str(exc.value)
