"""Open vSwitch baseline: two network namespaces on an OVS bridge with the
userspace (netdev) datapath, attached the way containers are.

    with OvsTopology() as topo:
        subprocess.run(topo.exec_argv(1, ["ping", "-c1", topo.addr(0)]), check=True)

This kernel has no Open vSwitch module, so Debian's ``openvswitch-switch-dpdk``
(OVS 3.1 over DPDK 22.11) runs the userspace datapath (bridge
``datapath_type=netdev``). Everything is started by hand, never through
systemd: our own database and run directory (a temporary directory),
``ovsdb-server``, and ``ovs-vswitchd-dpdk`` with ``dpdk-init=true``,
``dpdk-socket-mem=256`` (128 hugepages of 2 MiB while it runs) and
``dpdk-extra="--file-prefix=<unique> --no-pci"``. scripts/bootstrap.sh
reserves 2 GiB of hugepages and the bench's master and two slaves hold
256 MiB, so this fits; if the shared machine has less than 256 MiB free, the
EAL runs with ``--no-huge --legacy-mem -m 64`` instead (OVS adds
``--in-memory`` unless ``--legacy-mem`` is given, and DPDK refuses
``--in-memory`` with ``--no-huge``). AF_XDP ports keep packets in OVS's own
umem, not in DPDK memory, so that choice does not change what is measured.

ovs-vswitchd runs inside a switch namespace of its own, like the Linux bridge
of ``bench.topology``: the switch-side ends of the links live there, so
nothing appears in the host's namespace and deleting the namespaces removes
every link even after a crash. Endpoint namespace ``i`` has ``veth0`` with
``addr(i)`` (10.202.0.0/24, host i + 1).

Attachments (``attach=``), measured interleaved on a 2-core VM (C, 64 B
request/response with 1 and 32 connections, 64 KiB stream):

- ``afxdp`` (default): a veth pair per container, its switch end an OVS
  ``afxdp`` port (native XDP on the veth) polled by a PMD thread: OVS's
  documented way to put containers on the userspace datapath, and the
  fastest here (~21k rt/s, ~37k with 32 conns, ~1.6 Gbit/s).
- ``afpacket``: the same veth pair, its switch end a DPDK port (``type=dpdk``,
  a ``net_af_packet`` vdev), also PMD-polled: the same round trips,
  ~1 Gbit/s. Its mempool needs the hugepages (fails with ``-m 64``).
- ``system``: the same veth pair, its switch end an ordinary port that the
  main thread serves through a packet socket (~5-7k rt/s).
- ``internal``: an OVS internal port (a tap) moved into the namespace
  (~6-7k rt/s, ~0.8 Gbit/s).

With veth pairs, TX checksum offload is turned off inside the namespace
(``ethtool -K veth0 tx off``): OVS userspace forwards frames whose checksum
was left to the (absent) hardware, and TCP never connects otherwise. That
also turns off TSO, so streams move MTU-sized frames.

A PMD thread spins a whole core even when idle, so an ``OvsTopology`` lives
only for the measurement it was made for (start ~0.5-0.9 s, stop ~0.2 s).
Teardown, also after an error: ``del-br``, ``ovs-appctl exit --cleanup``,
``ovsdb-server`` exit, namespaces, run directory and DPDK's runtime directory.

The Debian package is installed on first use (``apt-get install
openvswitch-switch-dpdk``, ~15 s) rather than by scripts/bootstrap.sh, so
``make test`` never pays for it.
"""

from __future__ import annotations

import atexit
import ctypes
import itertools
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Sequence

from aiodocknet.native.eal import hugepages_free_mb

__all__ = ["OvsTopology", "ensure_installed", "remove_stale", "ATTACHMENTS"]

PACKAGE = "openvswitch-switch-dpdk"
VSWITCHD = "/usr/lib/openvswitch-switch-dpdk/ovs-vswitchd-dpdk"
SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"
ATTACHMENTS = ("afxdp", "afpacket", "system", "internal")
SUBNET = "10.202.0"
IFNAME = "veth0"
BRIDGE = "br0"
SOCKET_MEM_MB = 256
NO_HUGE_MEM_MB = 64
DPDK_RUNTIME = Path("/var/run/dpdk")
START_TIMEOUT = 30.0
RUN_DIR_PREFIX = "docknet-ovs-"
_STALE_RE = re.compile(r"^(?:dno|dnovs|%s)(\d+)[-_]" % RUN_DIR_PREFIX)
_counter = itertools.count()


def _run(argv: Sequence[str], *, env: dict[str, str] | None = None, check: bool = True,
         timeout: float = 30) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(argv), capture_output=True, text=True, env=env, timeout=timeout)
    if check and proc.returncode != 0:
        raise RuntimeError("%s failed (exit %d): %s"
                           % (" ".join(argv), proc.returncode, proc.stderr.strip()))
    return proc


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the bench dies, even by SIGKILL,
    so a PMD thread is never left spinning (prctl PR_SET_PDEATHSIG)."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)


def ensure_installed() -> None:
    """Install Debian's OVS-DPDK build if it is missing (needs root and apt)."""
    if os.access(VSWITCHD, os.X_OK) and shutil.which("ovsdb-server") and shutil.which("ovs-vsctl"):
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    print("ovs: installing %s (first use)" % PACKAGE, flush=True)
    install = ["apt-get", "install", "-y", "-q", PACKAGE]
    if _run(install, env=env, check=False, timeout=600).returncode != 0:
        _run(["apt-get", "update", "-q"], env=env, timeout=300)
        _run(install, env=env, timeout=600)
    if not os.access(VSWITCHD, os.X_OK):
        raise RuntimeError("%s installed but %s is missing" % (PACKAGE, VSWITCHD))


def remove_stale() -> list[str]:
    """Remove what a killed bench left (namespaces ``dno<pid>-*``, run
    directories, DPDK runtime directories) when that pid is gone. OVS itself
    dies with the bench (PR_SET_PDEATHSIG)."""
    def dead(name: str) -> bool:
        m = _STALE_RE.match(name)
        return m is not None and not os.path.exists("/proc/%s" % m.group(1))

    removed = []
    out = _run(["ip", "netns", "list"], check=False).stdout
    for ns in (line.split()[0] for line in out.splitlines() if line.strip()):
        if dead(ns):
            _run(["ip", "netns", "delete", ns], check=False)
            removed.append(ns)
    for base in (Path(tempfile.gettempdir()), DPDK_RUNTIME):
        try:
            names = os.listdir(base)
        except OSError:
            continue
        for name in names:
            if dead(name):
                shutil.rmtree(base / name, ignore_errors=True)
                removed.append(str(base / name))
    return removed


class OvsTopology:
    """N namespaces on one OVS netdev bridge; ``addr(i)`` and
    ``exec_argv(i, argv)`` as in ``bench.topology.NetnsTopology``."""

    def __init__(self, n: int = 2, attach: str = "afxdp") -> None:
        if attach not in ATTACHMENTS:
            raise ValueError("attach must be one of %s, not %r" % (ATTACHMENTS, attach))
        if not 1 <= n <= 200:
            raise ValueError("need 1 to 200 namespaces, got %d" % n)
        tag = "%d-%d" % (os.getpid(), next(_counter))
        self.attach = attach
        self.prefix = "dno%s-" % tag
        self.namespaces = ["%sn%d" % (self.prefix, i) for i in range(n)]
        self.switch = self.prefix + "sw"
        self.file_prefix = "dnovs%s" % tag.replace("-", "_")
        self._addrs = ["%s.%d" % (SUBNET, i + 1) for i in range(n)]
        self.run_dir: str | None = None
        self.env: dict[str, str] = {}
        self.no_huge = False
        self.start_s = 0.0      # OVS up, ports attached, namespaces reachable
        self.stop_s = 0.0
        self._created: list[str] = []   # namespaces that exist and must be deleted
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._bridge = False
        self._atexit = False

    # -- public API -----------------------------------------------------------

    def addr(self, i: int) -> str:
        return self._addrs[i]

    def exec_argv(self, i: int, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.namespaces[i], *argv]

    def setup(self) -> None:
        """Start OVS and attach the namespaces; on any failure undo it all."""
        ensure_installed()
        remove_stale()
        t0 = time.monotonic()
        atexit.register(self.cleanup)
        self._atexit = True
        try:
            for ns in [self.switch, *self.namespaces]:
                _run(["ip", "netns", "add", ns])
                self._created.append(ns)
                _run(["ip", "-n", ns, "link", "set", "lo", "up"])
            self._start_ovs()
            self._vsctl("add-br", BRIDGE, "--", "set", "bridge", BRIDGE, "datapath_type=netdev")
            self._bridge = True
            for i, ns in enumerate(self.namespaces):
                self._attach(i, ns)
            self._wait_reachable()
        except BaseException as e:
            log = self._log_problems()
            self.cleanup()
            if isinstance(e, Exception) and log:
                raise RuntimeError("%s\novs-vswitchd log:\n%s" % (e, log)) from e
            raise
        self.start_s = time.monotonic() - t0

    def cleanup(self) -> None:
        """Idempotent, safe after a partial setup: del-br, ovs-vswitchd
        ``exit --cleanup``, ovsdb-server ``exit`` (killed if they do not go),
        then namespaces, run directory and DPDK's runtime directory."""
        t0 = time.monotonic()
        vswitchd = self._procs.get("vswitchd")
        if self._bridge and vswitchd is not None and vswitchd.poll() is None:
            self._vsctl("--if-exists", "del-br", BRIDGE, check=False, timeout=10)
        self._bridge = False
        for name, ctl, args in (("vswitchd", "ovs-vswitchd.ctl", ["exit", "--cleanup"]),
                                ("ovsdb", "ovsdb-server.ctl", ["exit"])):
            p = self._procs.pop(name, None)
            if p is None:
                continue
            if p.poll() is None:
                _run(["ovs-appctl", "-t", os.path.join(self.run_dir or "", ctl), "--timeout=10", *args],
                     env=self.env, check=False, timeout=15)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        while self._created:
            _run(["ip", "netns", "delete", self._created.pop()], check=False)
        if self.run_dir is not None:
            shutil.rmtree(self.run_dir, ignore_errors=True)
            self.run_dir = None
            # Left behind by the EAL even with --in-memory (and files with --no-huge).
            shutil.rmtree(DPDK_RUNTIME / self.file_prefix, ignore_errors=True)
        if self._atexit:
            atexit.unregister(self.cleanup)
            self._atexit = False
        self.stop_s = time.monotonic() - t0

    def __enter__(self) -> OvsTopology:
        self.setup()
        return self

    def __exit__(self, exc_type: type[BaseException] | None,
                 exc: BaseException | None, tb: TracebackType | None) -> None:
        self.cleanup()

    # -- internals ------------------------------------------------------------

    def _vsctl(self, *args: str, check: bool = True, timeout: float = 20,
               no_wait: bool = False) -> subprocess.CompletedProcess[str]:
        """ovs-vsctl on our database; without no_wait it returns once
        ovs-vswitchd has applied the change."""
        assert self.run_dir is not None
        argv = ["ovs-vsctl", "--db=unix:%s/db.sock" % self.run_dir, "--timeout=%d" % timeout]
        if no_wait:
            argv.append("--no-wait")
        return _run([*argv, *args], env=self.env, check=check, timeout=timeout + 5)

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        assert self.run_dir is not None
        with open(os.path.join(self.run_dir, name + ".stderr"), "wb") as err:
            p = subprocess.Popen(argv, env=self.env, stdin=subprocess.DEVNULL,
                                 stdout=subprocess.DEVNULL, stderr=err, cwd=self.run_dir,
                                 preexec_fn=_die_with_parent)
        self._procs[name] = p
        return p

    def _start_ovs(self) -> None:
        run = self.run_dir = tempfile.mkdtemp(prefix="%s%d-" % (RUN_DIR_PREFIX, os.getpid()))
        # Every default path of the OVS tools points into our run directory.
        self.env = dict(os.environ, OVS_RUNDIR=run, OVS_DBDIR=run, OVS_LOGDIR=run,
                        OVS_SYSCONFDIR=run)
        _run(["ovsdb-tool", "create", "%s/conf.db" % run, SCHEMA], env=self.env)
        ovsdb = self._spawn("ovsdb", [
            "ovsdb-server", "%s/conf.db" % run, "--remote=punix:%s/db.sock" % run,
            "--unixctl=%s/ovsdb-server.ctl" % run, "--log-file=%s/ovsdb-server.log" % run,
            "--no-chdir", "-vconsole:off"])
        deadline = time.monotonic() + START_TIMEOUT
        while self._vsctl("init", no_wait=True, check=False, timeout=1).returncode != 0:
            if ovsdb.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("ovsdb-server did not start: %s" % self._stderr("ovsdb"))
            time.sleep(0.02)
        extra = "--file-prefix=%s --no-pci" % self.file_prefix
        memory = ["other_config:dpdk-socket-mem=%d" % SOCKET_MEM_MB]
        self.no_huge = hugepages_free_mb() < SOCKET_MEM_MB
        if self.no_huge:
            extra += " --no-huge --legacy-mem -m %d" % NO_HUGE_MEM_MB
            memory = []
        self._vsctl("set", "Open_vSwitch", ".", "other_config:dpdk-init=true", *memory,
                    "other_config:dpdk-extra=%s" % extra, no_wait=True)
        # ip netns exec execs the program: the Popen pid is ovs-vswitchd itself.
        vswitchd = self._spawn("vswitchd", [
            "ip", "netns", "exec", self.switch, VSWITCHD, "unix:%s/db.sock" % run,
            "--unixctl=%s/ovs-vswitchd.ctl" % run, "--log-file=%s/ovs-vswitchd.log" % run,
            "--no-chdir", "-vconsole:off"])
        while True:
            r = self._vsctl("get", "Open_vSwitch", ".", "dpdk_initialized", no_wait=True,
                            check=False, timeout=1)
            if r.stdout.strip() == "true":
                break
            if vswitchd.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("ovs-vswitchd did not initialise DPDK (exit %s): %s"
                                   % (vswitchd.poll(), self._stderr("vswitchd")))
            time.sleep(0.05)

    def _attach(self, i: int, ns: str) -> None:
        port = "p%d" % i
        if self.attach == "internal":
            # The tap is born in the switch namespace (ovs-vswitchd's) and moved.
            self._vsctl("add-port", BRIDGE, port, "--", "set", "interface", port, "type=internal")
            _run(["ip", "-n", self.switch, "link", "set", port, "netns", ns])
            _run(["ip", "-n", ns, "link", "set", port, "name", IFNAME])
        else:
            _run(["ip", "-n", self.switch, "link", "add", port, "type", "veth",
                  "peer", "name", IFNAME, "netns", ns])
            _run(["ip", "-n", self.switch, "link", "set", port, "up"])
            _run(["ip", "netns", "exec", ns, "ethtool", "-K", IFNAME, "tx", "off"])
            if self.attach == "system":
                self._vsctl("add-port", BRIDGE, port)
            elif self.attach == "afxdp":
                self._vsctl("add-port", BRIDGE, port, "--", "set", "interface", port, "type=afxdp")
            else:
                devargs = "net_af_packet%s_%d,iface=%s" % (self.file_prefix, i, port)
                self._vsctl("add-port", BRIDGE, port, "--", "set", "interface", port, "type=dpdk",
                            "options:dpdk-devargs=%s" % devargs)
        err = self._vsctl("get", "interface", port, "error", check=False).stdout.strip()
        if err and err != "[]":
            raise RuntimeError("OVS port %s (%s): %s" % (port, self.attach, err))
        _run(["ip", "-n", ns, "addr", "add", "%s/24" % self._addrs[i], "dev", IFNAME])
        _run(["ip", "-n", ns, "link", "set", IFNAME, "up"])

    def _wait_reachable(self) -> None:
        """Ping every namespace from the first until it answers, so ports and
        ARP are ready before anything is measured."""
        deadline = time.monotonic() + 10
        for i in range(1, len(self.namespaces)):
            while _run(self.exec_argv(0, ["ping", "-c1", "-W1", "-q", self.addr(i)]),
                       check=False).returncode != 0:
                if time.monotonic() > deadline:
                    raise RuntimeError("namespace %d not reachable over OVS (%s ports)"
                                       % (i, self.attach))

    def _stderr(self, name: str) -> str:
        try:
            return Path(self.run_dir or "", name + ".stderr").read_text().strip()[-2000:]
        except OSError:
            return ""

    def _log_problems(self) -> str:
        try:
            lines = Path(self.run_dir or "", "ovs-vswitchd.log").read_text().splitlines()
        except OSError:
            return ""
        keep = [line for line in lines if "|WARN|" in line or "|ERR|" in line or "EAL ARGS" in line]
        return "\n".join(keep[-30:])
