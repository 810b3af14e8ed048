"""The Python rows of ``make bench``: what an asyncio service sees.

Paths, interleaved within each repeat:
- ``docknet-fast``: both ends DockNetLoop, the connection on a fast channel
  (shared memory, brokered by the master);
- ``docknet-switch``: the same with DOCKNET_FAST_CHANNELS=0 and
  DOCKNET_PEER_LINKS=0 (lwIP, link rings, the master's switch);
- ``docknet-peer``: lwIP as on ``docknet-switch``, the frames on a peer link
  between the two stacks (DOCKNET_PEER_LINKS=1, the default);
- ``uvloop-bridge`` / ``asyncio-bridge``: uvloop or the default loop in two
  network namespaces on a Linux bridge (the kernel path).

Workloads: 64-byte asyncio Protocol ping-pong with 1 and 32 connections
(bench/py_pingpong.py), aiohttp GET requests/s at equal concurrency with
the CPU each request costs (bench/aiohttp_load.py), and the native (C)
ping-pong over a fast channel, the floor the Python rows run on
(bench/fc_native.py), and the aiohttp server as 1 and as 2 processes
(``reuse_port``) on one endpoint against uvloop with the same workers on
the bridge. Further ping-pong points (the sweeps of
bench/sweep_rows.py) are measured here too, interleaved the same way.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
from bench.topology import NetnsTopology  # noqa: E402
from procs import stop_all  # noqa: E402

PATHS = ["docknet-fast", "docknet-switch", "docknet-peer", "uvloop-bridge", "asyncio-bridge"]
# The headline ping-pong also over the endpoints' IPv6 addresses, beside IPv4.
V6_PATHS = ["docknet-fast-v6", "docknet-switch-v6"]
PINGPONG_CONNS = [1, 32]
AIOHTTP_CONNS = 16
# aiohttp server processes sharing one endpoint (or, on the bridge, one
# namespace's port with SO_REUSEPORT).
WORKERS = [1, 2]
WORKER_PATHS = ["docknet-fast", "docknet-switch", "uvloop-bridge"]
TICK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class PingPong:
    """One ping-pong point: message size, connections, seconds measured."""

    size: int
    conns: int
    seconds: float

    @property
    def workload(self) -> str:
        return pingpong_workload(self.size, self.conns)


def pingpong_workload(size: int, conns: int) -> str:
    # The 64-byte rows keep their old names, so older results.json still read.
    return f"pingpong x{conns}" if size == 64 else f"pingpong {size}B x{conns}"


def headline_points(seconds: float, conns: list[int] | None = None) -> list[PingPong]:
    """The 64-byte rows of the Python table (1 and 32 connections)."""
    return [PingPong(64, c, seconds) for c in conns or PINGPONG_CONNS]


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def _last_json(res: subprocess.CompletedProcess[str], what: str) -> dict[str, Any]:
    if res.returncode != 0:
        raise RuntimeError(f"{what} failed: {res.stderr.strip()[-1500:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


class DockNetPythonServers:
    """The two Python servers on the bench master, kept for the whole run."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.pingpong = session._spawn([sys.executable, str(BENCH / "py_pingpong.py"), "serve", "--loop", "docknet"],
                                       {"DOCKNET_ENDPOINT": "py-server"})
        self.web = session._spawn([sys.executable, str(BENCH / "aiohttp_load.py"), "serve", "--loop", "docknet"],
                                  {"DOCKNET_ENDPOINT": "web-server"})
        for p in (self.pingpong, self.web):
            assert p.stdout is not None
            json.loads(p.stdout.readline())

    def close(self) -> None:
        """Detach both servers (the switch row after this needs the ports)."""
        for p in (self.pingpong, self.web):
            p.terminate()
            p.wait(30)

    def _client_env(self, path: str) -> dict[str, str]:
        self.session.clients += 1
        return dict(self.session.env, DOCKNET_ENDPOINT=f"py-client{self.session.clients}", **path_env(path))

    def pingpong_run(self, path: str, point: PingPong) -> dict[str, Any]:
        res = subprocess.run([sys.executable, str(BENCH / "py_pingpong.py"), "client", "--loop", "docknet",
                              "--host", "py-server", "--seconds", str(point.seconds), "--conns", str(point.conns),
                              "--size", str(point.size), "--family", "6" if path.endswith("-v6") else "0"],
                             env=self._client_env(path), capture_output=True, text=True,
                             timeout=point.seconds + 60)
        return _last_json(res, "python ping-pong")

    def aiohttp_run(self, path: str, seconds: float) -> dict[str, Any]:
        cpu0 = proc_cpu(self.web.pid)
        res = subprocess.run([sys.executable, str(BENCH / "aiohttp_load.py"), "client", "--loop", "docknet",
                              "--url", "http://web-server:8080", "--seconds", str(seconds),
                              "--conns", str(AIOHTTP_CONNS)],
                             env=self._client_env(path), capture_output=True, text=True, timeout=seconds + 60)
        out = _last_json(res, "aiohttp load")
        out["server_cpu_s"] = round(proc_cpu(self.web.pid) - cpu0, 3)  # includes the 0.5 s warm-up
        return out


def path_env(path: str) -> dict[str, str]:
    """A DockNet client's environment for path: which of fast channels and
    peer links it takes (only the client asks for either)."""
    return {"DOCKNET_FAST_CHANNELS": "1" if path.startswith("docknet-fast") else "0",
            "DOCKNET_PEER_LINKS": "1" if path.startswith("docknet-peer") else "0"}


def _ready(p: subprocess.Popen[str], what: str) -> None:
    assert p.stdout is not None
    line = p.stdout.readline()
    if not line:
        raise RuntimeError(f"{what} failed: {p.stderr.read()[-1500:] if p.stderr else ''}")
    json.loads(line)


def docknet_workers_run(session: Any, path: str, workers: int, seconds: float) -> dict[str, Any]:
    """aiohttp with the server as `workers` processes of one endpoint (a
    namespace registered with the bench master), the client on an endpoint
    of its own."""
    from aiodocknet.cli.api_client import ApiClient
    from aiodocknet.cli.netns import create_netns, delete_netns

    session.clients += 1
    ns_name, name = f"dnb-w{os.getpid()}-{session.clients}", f"web-workers{session.clients}"
    api = ApiClient(os.path.join(session.dir.name, "api.sock"))
    ns = create_netns(ns_name)
    fast = "1" if path == "docknet-fast" else "0"
    servers: list[subprocess.Popen[str]] = []
    try:
        secret = api.call("POST", "/v1/endpoints", {"name": name, "netns": ns})["secret"]
        for _ in range(workers):
            servers.append(session._spawn(
                ["ip", "netns", "exec", ns_name, sys.executable, str(BENCH / "aiohttp_load.py"), "serve",
                 "--loop", "docknet", "--reuse-port"],
                {"DOCKNET_ENDPOINT": name, "DOCKNET_SECRET": secret, "DOCKNET_REQUIRE": "1",
                 "DOCKNET_FAST_CHANNELS": fast}))
        for p in servers:
            _ready(p, "aiohttp worker")
        cpu0 = [proc_cpu(p.pid) for p in servers]
        res = subprocess.run([sys.executable, str(BENCH / "aiohttp_load.py"), "client", "--loop", "docknet",
                              "--url", f"http://{name}:8080", "--seconds", str(seconds),
                              "--conns", str(AIOHTTP_CONNS)],
                             env=dict(session.env, DOCKNET_ENDPOINT=f"py-client{session.clients}",
                                      **path_env(path)),
                             capture_output=True, text=True, timeout=seconds + 60)
        server_cpu = sum(proc_cpu(p.pid) - c for p, c in zip(servers, cpu0))
    finally:
        stop_all(servers)
        try:
            api.call("DELETE", f"/v1/endpoints/{name}")
        finally:
            delete_netns(ns_name)
    out = _last_json(res, "aiohttp load (workers)")
    out["server_cpu_s"] = round(server_cpu, 3)
    return out


def kernel_workers_run(workers: int, seconds: float) -> dict[str, Any]:
    """The same on uvloop: `workers` servers on one port (SO_REUSEPORT) in
    one namespace, the client in another, a Linux bridge between."""
    with NetnsTopology(2, mode="bridge") as topo:
        servers = [subprocess.Popen(topo.exec_argv(0, [sys.executable, str(BENCH / "aiohttp_load.py"), "serve",
                                                       "--loop", "uvloop", "--host", topo.addr(0), "--reuse-port"]),
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                   for _ in range(workers)]
        try:
            for p in servers:
                _ready(p, "aiohttp worker (uvloop)")
            cpu0 = [proc_cpu(p.pid) for p in servers]
            res = subprocess.run(topo.exec_argv(1, [sys.executable, str(BENCH / "aiohttp_load.py"), "client",
                                                    "--loop", "uvloop", "--seconds", str(seconds),
                                                    "--url", f"http://{topo.addr(0)}:8080",
                                                    "--conns", str(AIOHTTP_CONNS)]),
                                 capture_output=True, text=True, timeout=seconds + 60)
            server_cpu = sum(proc_cpu(p.pid) - c for p, c in zip(servers, cpu0))
        finally:
            stop_all(servers)
    out = _last_json(res, "aiohttp load (uvloop workers)")
    out["server_cpu_s"] = round(server_cpu, 3)
    return out


def workers_on(session: Any, path: str, workers: int, seconds: float) -> dict[str, Any]:
    if path.startswith("docknet"):
        return docknet_workers_run(session, path, workers, seconds)
    return kernel_workers_run(workers, seconds)


def kernel_run(loop: str, kind: str, seconds: float, conns: int, size: int = 64) -> dict[str, Any]:
    """One measurement between two fresh namespaces on a Linux bridge."""
    script = "py_pingpong.py" if kind == "pingpong" else "aiohttp_load.py"
    with NetnsTopology(2, mode="bridge") as topo:
        server = subprocess.Popen(topo.exec_argv(0, [sys.executable, str(BENCH / script), "serve",
                                                     "--loop", loop, "--host", topo.addr(0)]),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert server.stdout is not None
            json.loads(server.stdout.readline())
            cpu0 = proc_cpu(server.pid)
            if kind == "pingpong":
                argv = ["--host", topo.addr(0), "--conns", str(conns), "--size", str(size)]
            else:
                argv = ["--url", f"http://{topo.addr(0)}:8080", "--conns", str(conns)]
            res = subprocess.run(topo.exec_argv(1, [sys.executable, str(BENCH / script), "client", "--loop", loop,
                                                    "--seconds", str(seconds), *argv]),
                                 capture_output=True, text=True, timeout=seconds + 60)
            server_cpu = proc_cpu(server.pid) - cpu0
        finally:
            stop_all([server])
    out = _last_json(res, f"{script} ({loop})")
    if kind == "aiohttp":
        out["server_cpu_s"] = round(server_cpu, 3)
    return out


def fc_native(seconds: float) -> dict[str, Any]:
    res = subprocess.run([sys.executable, str(BENCH / "fc_native.py"), "--seconds", str(seconds)],
                         capture_output=True, text=True, timeout=seconds + 60)
    return _last_json(res, "native fast-channel ping-pong")


def measure_all(session: Any, repeats: int, seconds: float, paths: list[str] | None = None,
                pingpong: list[PingPong] | None = None, others: bool = True) -> list[dict[str, Any]]:
    """Every ping-pong point (default: the headline rows) on every path,
    interleaved per point and repeat; with ``others``, aiohttp (one server
    process, then server workers), and the native floor after them in
    each repeat."""
    servers = DockNetPythonServers(session)
    rows: list[dict[str, Any]] = []
    since = time.monotonic()

    def add(r: dict[str, Any], workload: str, path: str, rep: int) -> None:
        nonlocal since
        r.update(workload=workload, path=path, repeat=rep)
        rows.append(r)
        value = r.get("rt_per_s") or r.get("req_per_s")
        # Wall time per measurement (start-up included): what a point costs a bench run.
        wall, since = time.monotonic() - since, time.monotonic()
        print(f"{workload:20} {path:15} #{rep + 1}: {value:,.0f}/s ({wall:.1f} s)", flush=True)

    try:
        _measure(servers, add, repeats, seconds, paths or PATHS, pingpong or headline_points(seconds), others)
    finally:
        servers.close()
    return rows


def pingpong_on(servers: DockNetPythonServers, path: str, point: PingPong) -> dict[str, Any]:
    if path.startswith("docknet"):
        return servers.pingpong_run(path, point)
    return kernel_run(path.split("-")[0], "pingpong", point.seconds, point.conns, point.size)


def _measure(servers: DockNetPythonServers, add: Any, repeats: int, seconds: float, paths: list[str],
             points: list[PingPong], others: bool) -> None:
    v6 = [p for p in V6_PATHS if p.removesuffix("-v6") in paths]
    for rep in range(repeats):
        for point in points:
            for path in paths + (v6 if point.size == 64 else []):
                add(pingpong_on(servers, path, point), point.workload, path, rep)
        if not others:
            continue
        for path in paths:
            if path.startswith("docknet"):
                r = servers.aiohttp_run(path, seconds)
            else:
                r = kernel_run(path.split("-")[0], "aiohttp", seconds, AIOHTTP_CONNS)
            add(r, "aiohttp", path, rep)
        for workers in WORKERS:
            for path in WORKER_PATHS:
                if path in paths:
                    r = workers_on(servers.session, path, workers, seconds)
                    r["workers"] = workers
                    add(r, f"aiohttp workers x{workers}", path, rep)
        add(fc_native(seconds), "native fc", "docknet-fast", rep)


def spread(values: list[float]) -> tuple[float, float, float]:
    """Median, min, max."""
    return statistics.median(values), min(values), max(values)


def _med(rows: list[dict[str, Any]], key: str) -> tuple[float, float, float]:
    return spread([r[key] for r in rows])


def report(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    out = ["## Python paths: asyncio Protocol ping-pong and aiohttp", "",
           "Both ends are Python processes: DockNetLoop on a fast channel (`docknet-fast`), through "
           "lwIP and the switch (`docknet-switch`, DOCKNET_FAST_CHANNELS=0 DOCKNET_PEER_LINKS=0), or "
           "through lwIP on a peer link between the two stacks (`docknet-peer`, DOCKNET_FAST_CHANNELS=0), "
           "against uvloop and default asyncio between two namespaces on a Linux bridge. Interleaved, "
           "medians [min–max].", ""]
    for conns in PINGPONG_CONNS:
        name = f"pingpong x{conns}"
        sel = {p: [r for r in rows if r["workload"] == name and r["path"] == p] for p in PATHS + V6_PATHS}
        meds = {p: _med(rs, "rt_per_s") for p, rs in sel.items() if rs}
        if not meds:
            continue
        out += [f"### 64-byte ping-pong, {conns} connection{'s' if conns > 1 else ''} (bench/py_pingpong.py)", "",
                "| path | round trips/s | p50 | vs uvloop-bridge | vs asyncio-bridge |", "|---|---|---|---|---|"]
        for p, (med, lo, hi) in meds.items():
            p50 = statistics.median(r["p50_us"] for r in sel[p])
            ratios = [f"{med / meds[b][0]:.2f}x" if b in meds else "—" for b in ("uvloop-bridge", "asyncio-bridge")]
            out.append(f"| {p} | {med:,.0f} [{lo:,.0f}–{hi:,.0f}] | {p50:.1f} µs | {ratios[0]} | {ratios[1]} |")
        v6 = [f"{p.removesuffix('-v6')} {meds[p][0] / meds[p.removesuffix('-v6')][0]:.2f}x"
              for p in V6_PATHS if p in meds and p.removesuffix("-v6") in meds]
        if v6:
            out += ["", "IPv6 (the `-v6` rows: the same endpoints dialled by their IPv6 addresses) against IPv4: "
                    + ", ".join(v6) + "."]
        out.append("")
    sel = {p: [r for r in rows if r["workload"] == "aiohttp" and r["path"] == p] for p in PATHS}
    meds = {p: _med(rs, "req_per_s") for p, rs in sel.items() if rs}
    if not meds:
        return "\n".join(out) + "\n\n"
    out += [f"### aiohttp, {AIOHTTP_CONNS} requests in flight (bench/aiohttp_load.py)", "",
            "CPU per request is both processes' CPU time over the requests served (server time includes "
            "the client's 0.5 s warm-up, so it is slightly high on every path alike).", "",
            "| path | requests/s | p50 | CPU µs/request (client + server) | vs uvloop-bridge |",
            "|---|---|---|---|---|"]
    cpu_per_req = {}
    for p, (med, lo, hi) in meds.items():
        p50 = statistics.median(r["p50_us"] for r in sel[p])
        cpu = statistics.median((r["client_cpu_s"] + r["server_cpu_s"]) / r["requests"] * 1e6 for r in sel[p])
        cpu_per_req[p] = cpu
        ratio = f"{med / meds['uvloop-bridge'][0]:.2f}x" if "uvloop-bridge" in meds else "—"
        out.append(f"| {p} | {med:,.0f} [{lo:,.0f}–{hi:,.0f}] | {p50:.0f} µs | {cpu:.0f} | {ratio} |")
    if "docknet-fast" in cpu_per_req and "uvloop-bridge" in cpu_per_req:
        saved = cpu_per_req["uvloop-bridge"] - cpu_per_req["docknet-fast"]
        out += ["", f"The kernel path's share of a request's CPU, estimated as what the fast channel saves: "
                    f"{saved:.0f} µs of {cpu_per_req['uvloop-bridge']:.0f} µs "
                    f"({saved / cpu_per_req['uvloop-bridge']:.0%}); the rest is aiohttp and the handler."]
    out += workers_report(rows)
    native = [r for r in rows if r["workload"] == "native fc"]
    if native:
        med, lo, hi = _med(native, "rt_per_s")
        out += ["", "### The floor: native (C) 64-byte ping-pong over a fast channel (bench/fc_native.py)", "",
                f"{med:,.0f} round trips/s [{lo:,.0f}–{hi:,.0f}], p50 "
                f"{statistics.median(r['p50_us'] for r in native):.2f} µs (both ends spinning)."]
    return "\n".join(out) + "\n\n"


def workers_report(rows: list[dict[str, Any]]) -> list[str]:
    """The aiohttp server as 1 and 2 processes: on one DockNet endpoint
    (the master spreads connections over them), on the bridge with
    SO_REUSEPORT."""
    sel = {(w, p): [r for r in rows if r["workload"] == f"aiohttp workers x{w}" and r["path"] == p]
           for w in WORKERS for p in WORKER_PATHS}
    meds = {k: _med(rs, "req_per_s") for k, rs in sel.items() if rs}
    if not meds:
        return []
    out = ["", f"### aiohttp server workers, {AIOHTTP_CONNS} requests in flight (bench/aiohttp_load.py --reuse-port)",
           "", "The server as 1 and as 2 processes: on DockNet the processes of one endpoint (one address, "
           "a link each; connections spread over them), on the bridge uvloop workers sharing the port with "
           "SO_REUSEPORT. One client process. CPU is the client's and every worker's.", "",
           "| path | workers | requests/s | p50 | CPU µs/request | vs uvloop-bridge, same workers |",
           "|---|---|---|---|---|---|"]
    for (w, p), (med, lo, hi) in meds.items():
        rs = sel[(w, p)]
        p50 = statistics.median(r["p50_us"] for r in rs)
        cpu = statistics.median((r["client_cpu_s"] + r["server_cpu_s"]) / r["requests"] * 1e6 for r in rs)
        base = meds.get((w, "uvloop-bridge"))
        ratio = f"{med / base[0]:.2f}x" if base else "—"
        out.append(f"| {p} | {w} | {med:,.0f} [{lo:,.0f}–{hi:,.0f}] | {p50:.0f} µs | {cpu:.0f} | {ratio} |")
    return out
