"""The TLS rows of ``make bench`` (``--only tls`` runs just these).

The paths are python_rows.py's: ``docknet-fast`` (a fast channel),
``docknet-switch`` (lwIP and the master's switch) and ``uvloop-bridge``
(uvloop between two namespaces on a Linux bridge, the reference), measured
interleaved within each repeat. Workloads, all with TLS on both ends
(server certificate verified by the client; handshakes before the
measured time):

- 64-byte asyncio Protocol ping-pong at 1 and 16 connections
  (bench/tls_pingpong.py), with the CPU each round trip costs;
- aiohttp GET over HTTPS at 16 requests in flight (bench/aiohttp_load.py
  with ``--tls-*``), with the CPU each request costs.

CPU is both processes' user + system time over the round trips or
requests counted (the server's includes the client's warm-up, on every path
alike).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
from bench.topology import NetnsTopology  # noqa: E402
from procs import stop_all  # noqa: E402
from python_rows import _last_json, path_env, proc_cpu, spread  # noqa: E402

PATHS = ["docknet-fast", "docknet-switch", "uvloop-bridge"]
PINGPONG_CONNS = [1, 16]
AIOHTTP_CONNS = 16
PINGPONG_PORT = 7343
WEB_PORT = 8443
NAME = "bench.test"  # the certificate's name; the ping-pong client checks it


class TLSFiles:
    """A throw-away self-signed certificate (CN and subjectAltName NAME)."""

    def __init__(self) -> None:
        self.dir = tempfile.TemporaryDirectory(prefix="docknet-bench-tls-")
        self.cert = os.path.join(self.dir.name, "cert.pem")
        self.key = os.path.join(self.dir.name, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                        "-subj", f"/CN={NAME}", "-addext", f"subjectAltName=DNS:{NAME}",
                        "-keyout", self.key, "-out", self.cert], check=True, capture_output=True)

    def serve_argv(self) -> list[str]:
        return ["--cert", self.cert, "--key", self.key]

    def close(self) -> None:
        self.dir.cleanup()


def _pingpong_serve(loop: str, files: TLSFiles, host: str | None = None) -> list[str]:
    argv = [sys.executable, str(BENCH / "tls_pingpong.py"), "serve", "--loop", loop, "--port", str(PINGPONG_PORT),
            *files.serve_argv()]
    return argv + (["--host", host] if host else [])


def _web_serve(loop: str, files: TLSFiles, host: str | None = None) -> list[str]:
    argv = [sys.executable, str(BENCH / "aiohttp_load.py"), "serve", "--loop", loop, "--port", str(WEB_PORT),
            "--tls-cert", files.cert, "--tls-key", files.key]
    return argv + (["--host", host] if host else [])


def _client_argv(loop: str, kind: str, host: str, files: TLSFiles, conns: int, seconds: float) -> list[str]:
    if kind == "pingpong":
        return [sys.executable, str(BENCH / "tls_pingpong.py"), "client", "--loop", loop, "--host", host,
                "--port", str(PINGPONG_PORT), "--ca", files.cert, "--conns", str(conns), "--size", "64",
                "--seconds", str(seconds)]
    return [sys.executable, str(BENCH / "aiohttp_load.py"), "client", "--loop", loop,
            "--url", f"https://{host}:{WEB_PORT}", "--tls-ca", files.cert, "--conns", str(conns),
            "--seconds", str(seconds)]


def _ready(p: subprocess.Popen[str], what: str) -> None:
    assert p.stdout is not None
    line = p.stdout.readline()
    if not line:
        raise RuntimeError(f"{what} did not start: {p.stderr.read() if p.stderr else ''}")
    json.loads(line)


class DockNetTLSServers:
    """The TLS ping-pong and HTTPS servers on the bench master, kept for the run."""

    def __init__(self, session: Any, files: TLSFiles) -> None:
        self.session = session
        self.files = files
        self.pingpong = session._spawn(_pingpong_serve("docknet", files), {"DOCKNET_ENDPOINT": "tls-server"})
        self.web = session._spawn(_web_serve("docknet", files), {"DOCKNET_ENDPOINT": "tls-web"})
        _ready(self.pingpong, "TLS ping-pong server")
        _ready(self.web, "HTTPS server")

    def close(self) -> None:
        for p in (self.pingpong, self.web):
            p.terminate()
            p.wait(30)

    def run(self, path: str, kind: str, conns: int, seconds: float) -> dict[str, Any]:
        self.session.clients += 1
        env = dict(self.session.env, DOCKNET_ENDPOINT=f"tls-client{self.session.clients}", **path_env(path))
        server = self.pingpong if kind == "pingpong" else self.web
        host = "tls-server" if kind == "pingpong" else "tls-web"
        cpu0 = proc_cpu(server.pid)
        res = subprocess.run(_client_argv("docknet", kind, host, self.files, conns, seconds),
                             env=env, capture_output=True, text=True, timeout=seconds + 60)
        out = _last_json(res, f"TLS {kind}")
        out["server_cpu_s"] = round(proc_cpu(server.pid) - cpu0, 3)
        return out


def kernel_run(loop: str, kind: str, conns: int, seconds: float, files: TLSFiles) -> dict[str, Any]:
    """One measurement between two fresh namespaces on a Linux bridge."""
    with NetnsTopology(2, mode="bridge") as topo:
        serve = _pingpong_serve if kind == "pingpong" else _web_serve
        server = subprocess.Popen(topo.exec_argv(0, serve(loop, files, topo.addr(0))),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            _ready(server, f"TLS {kind} server ({loop})")
            cpu0 = proc_cpu(server.pid)
            res = subprocess.run(topo.exec_argv(1, _client_argv(loop, kind, topo.addr(0), files, conns, seconds)),
                                 capture_output=True, text=True, timeout=seconds + 60)
            server_cpu = proc_cpu(server.pid) - cpu0
        finally:
            stop_all([server])
    out = _last_json(res, f"TLS {kind} ({loop})")
    out["server_cpu_s"] = round(server_cpu, 3)
    return out


def workload(kind: str, conns: int) -> str:
    return f"tls pingpong x{conns}" if kind == "pingpong" else "tls aiohttp"


def measure_all(session: Any, repeats: int, seconds: float, paths: list[str] | None = None) -> list[dict[str, Any]]:
    """Every TLS row on every path, interleaved per workload and repeat."""
    files = TLSFiles()
    rows: list[dict[str, Any]] = []
    points = [("pingpong", c) for c in PINGPONG_CONNS] + [("aiohttp", AIOHTTP_CONNS)]
    try:
        servers = DockNetTLSServers(session, files)
        try:
            for rep in range(repeats):
                for kind, conns in points:
                    for path in paths or PATHS:
                        t0 = time.monotonic()
                        if path.startswith("docknet"):
                            r = servers.run(path, kind, conns, seconds)
                        else:
                            r = kernel_run(path.split("-")[0], kind, conns, seconds, files)
                        r.update(workload=workload(kind, conns), path=path, repeat=rep)
                        rows.append(r)
                        value = r.get("rt_per_s") or r.get("req_per_s")
                        print(f"{r['workload']:20} {path:15} #{rep + 1}: {value:,.0f}/s "
                              f"({time.monotonic() - t0:.1f} s)", flush=True)
        finally:
            servers.close()
    finally:
        files.close()
    return rows


def _cpu_us(r: dict[str, Any]) -> float | None:
    """Both processes' CPU per round trip or request, in µs (None: not measured)."""
    n = r.get("round_trips") or r.get("requests")
    if not n or "client_cpu_s" not in r:
        return None
    return float((r["client_cpu_s"] + r["server_cpu_s"]) / n * 1e6)


def report(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    used = {r["tls_transport"] for r in rows if r["path"].startswith("docknet") and "tls_transport" in r}
    compiled = all(u.startswith("uvloop.") for u in used) if used else None
    out = ["## TLS: ping-pong and aiohttp over HTTPS", "",
           "Both ends Python, TLS on both (the client verifies the server's certificate; handshakes "
           "before the measured time): DockNetLoop on a fast channel and through the switch, against "
           "uvloop over a Linux bridge. DockNet's TLS is "
           + ("uvloop's compiled SSLProtocol" if compiled else "asyncio's SSLProtocol" if compiled is not None
              else "the loop's")
           + ". CPU is both processes' time per round trip or request. Interleaved, medians [min–max].", ""]
    for name, unit, title in [(workload("pingpong", c), "rt_per_s", f"64-byte TLS ping-pong, {c} connection"
                               + ("s" if c > 1 else "") + " (bench/tls_pingpong.py)") for c in PINGPONG_CONNS] + [
            (workload("aiohttp", AIOHTTP_CONNS), "req_per_s",
             f"aiohttp over HTTPS, {AIOHTTP_CONNS} requests in flight (bench/aiohttp_load.py)")]:
        sel = {p: [r for r in rows if r["workload"] == name and r["path"] == p] for p in PATHS}
        meds = {p: spread([r[unit] for r in rs]) for p, rs in sel.items() if rs}
        if not meds:
            continue
        what = "round trips/s" if unit == "rt_per_s" else "requests/s"
        out += [f"### {title}", "", f"| path | {what} | p50 | CPU µs each | vs uvloop-bridge |", "|---|---|---|---|---|"]
        for p, (med, lo, hi) in meds.items():
            p50 = statistics.median(r["p50_us"] for r in sel[p])
            cpus = [c for c in (_cpu_us(r) for r in sel[p]) if c is not None]
            cpu = f"{statistics.median(cpus):.1f}" if cpus else "—"
            ratio = f"{med / meds['uvloop-bridge'][0]:.2f}x" if "uvloop-bridge" in meds else "—"
            out.append(f"| {p} | {med:,.0f} [{lo:,.0f}–{hi:,.0f}] | {p50:.1f} µs | {cpu} | {ratio} |")
        out.append("")
    return "\n".join(out) + "\n"
