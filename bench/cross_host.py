"""Cross-host benchmark: two masters in two network namespaces joined by a
veth pair, each with its uplink on its end, against kernel TCP over the
same veth pair. Set-ups (CrossHostSession's uplink and mtu): af_packet
with a jumbo MTU (9000), af_xdp (``iface:veth0``) at 1500 (it carries 3054
at most), and af_packet at 1500 beside it.

Beside the native loops, the Python ping-pong (bench/py_pingpong.py):
DockNetLoop on both hosts against uvloop on both over the same veth.

``python -m bench.cross_host --repeats 1 --seconds 2`` runs just these rows
(bench/run.py runs them with the rest)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from kernel_paths import run_kernel_in  # noqa: E402
from procs import stop_all  # noqa: E402
from bench.topology import NetnsTopology  # noqa: E402

from aiodocknet.cli.api_client import ApiClient  # noqa: E402
from aiodocknet.control import request  # noqa: E402

RANGES = ("10.77.1.0/24", "10.77.2.0/24")


class CrossHostSession:
    """path names the rows (the result's "path"); pmd, if given, is what
    the masters must report (an iface: uplink that fell back would measure
    something else)."""

    def __init__(self, uplink: str = "net_af_packet0,iface=veth0", mtu: int = 9000, path: str = "docknet-uplink",
                 pmd: str | None = None) -> None:
        self.path = path
        self.topo = NetnsTopology(2, mode="veth", mtu=mtu)
        self.topo.setup()
        self.dirs = [tempfile.TemporaryDirectory(prefix="dn-xhost-") for _ in RANGES]
        self.procs: list[subprocess.Popen[str]] = []
        self.clients = 0
        self.py_address: str | None = None
        try:
            for i, rng in enumerate(RANGES):
                self._spawn(i, [sys.executable, "-m", "aiodocknet.cli", "--log-level", "warning", "master",
                                "--run-dir", self.dirs[i].name, "--range", rng,
                                "--uplink", uplink])
            for d in self.dirs:
                self._wait_master(os.path.join(d.name, "master.sock"))
                up = ApiClient(os.path.join(d.name, "api.sock")).call("GET", "/v1/status")["uplink"]
                if pmd is not None and up["pmd"] != pmd:
                    raise RuntimeError(f"cross-host uplink {uplink} is on {up['pmd']}, not {pmd}: "
                                       f"{up['pmd_fallback']}")
            server = self._spawn(0, [sys.executable, "-m", "bench.native_loops", "serve",
                                     "--name", "xhost-server"])
            assert server.stdout is not None
            line = server.stdout.readline()
            if not line:
                raise RuntimeError("cross-host bench server did not start")
            self.address = json.loads(line)["address"]
        except BaseException:
            self.close()
            raise

    def _env(self, host: int) -> dict[str, str]:
        return dict(os.environ, DOCKNET_MASTER=os.path.join(self.dirs[host].name, "master.sock"),
                    DOCKNET_LOG_LEVEL="warning")

    def _spawn(self, host: int, argv: list[str], extra_env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        p = subprocess.Popen(self.topo.exec_argv(host, argv), env=dict(self._env(host), **(extra_env or {})),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.procs.append(p)
        return p

    @staticmethod
    def _wait_master(path: str) -> None:
        deadline = time.monotonic() + 30
        while True:
            try:
                if request(path, {"op": "ping"}).get("ok"):
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("cross-host master did not start")
            time.sleep(0.05)

    def run_docknet(self, mode: str, size: int, conns: int, seconds: float) -> dict[str, Any]:
        self.clients += 1
        argv = self.topo.exec_argv(1, [sys.executable, "-m", "bench.native_loops", mode, "--name",
                                       f"xhost-client{self.clients}", "--target", self.address,
                                       "--size", str(size), "--conns", str(conns), "--seconds", str(seconds)])
        res = subprocess.run(argv, env=self._env(1), capture_output=True, text=True, timeout=seconds + 60)
        if res.returncode != 0:
            raise RuntimeError(f"cross-host docknet {mode} failed: {res.stderr.strip()[-1500:]}")
        out: dict[str, Any] = json.loads(res.stdout.strip().splitlines()[-1])
        out["path"] = self.path
        return out

    def run_python(self, conns: int, seconds: float) -> dict[str, Any]:
        """64 B ping-pong between DockNetLoop processes on the two hosts
        (the server started on first use and kept, as the native one)."""
        if self.py_address is None:
            server = self._spawn(0, [sys.executable, str(BENCH / "py_pingpong.py"), "serve", "--loop", "docknet"],
                                 {"DOCKNET_ENDPOINT": "xhost-py-server"})
            assert server.stdout is not None
            line = server.stdout.readline()
            if not line:
                raise RuntimeError("cross-host Python server did not start")
            self.py_address = json.loads(line)["host"][0]
        self.clients += 1
        argv = self.topo.exec_argv(1, [sys.executable, str(BENCH / "py_pingpong.py"), "client", "--loop", "docknet",
                                       "--host", self.py_address, "--conns", str(conns), "--seconds", str(seconds)])
        env = dict(self._env(1), DOCKNET_ENDPOINT=f"xhost-py-client{self.clients}")
        return self._result(subprocess.run(argv, env=env, capture_output=True, text=True, timeout=seconds + 60),
                            "Python ping-pong")

    def run_python_kernel(self, conns: int, seconds: float) -> dict[str, Any]:
        """The same programs on uvloop over the veth pair, no DockNet."""
        server = subprocess.Popen(self.topo.exec_argv(0, [sys.executable, str(BENCH / "py_pingpong.py"), "serve",
                                                          "--loop", "uvloop", "--host", self.topo.addr(0)]),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert server.stdout is not None
            if not server.stdout.readline():
                raise RuntimeError("cross-host uvloop server did not start")
            argv = self.topo.exec_argv(1, [sys.executable, str(BENCH / "py_pingpong.py"), "client", "--loop",
                                           "uvloop", "--host", self.topo.addr(0), "--conns", str(conns),
                                           "--seconds", str(seconds)])
            res = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
        finally:
            stop_all([server])
        out = self._result(res, "uvloop ping-pong")
        out["path"] = "uvloop-veth"
        return out

    def _result(self, res: subprocess.CompletedProcess[str], what: str) -> dict[str, Any]:
        if res.returncode != 0:
            raise RuntimeError(f"cross-host {what} failed: {res.stderr.strip()[-1500:]}")
        out: dict[str, Any] = json.loads(res.stdout.strip().splitlines()[-1])
        out["path"] = self.path
        return out

    def run_kernel(self, mode: str, size: int, conns: int, seconds: float) -> dict[str, Any]:
        out = run_kernel_in(self.topo, mode, size, seconds, conns)
        out["path"] = "veth-kernel"
        return out

    def close(self) -> None:
        stop_all(self.procs)
        self.topo.cleanup()
        for d in self.dirs:
            d.cleanup()


def main(argv: list[str] | None = None) -> int:
    import argparse

    import run

    ap = argparse.ArgumentParser(prog="bench.cross_host")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("bench.cross_host: needs root (network namespaces)", file=sys.stderr)
        return 1
    print(run.xhost_report(run.measure_xhost(args.repeats, args.seconds)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
