"""``make bench``: the DockNet data plane against the kernel, in one run.

Systems, measured interleaved (A B C A B C ...) so that the noise of this
shared machine falls on all of them alike:

- ``docknet``: slave -> master switch -> slave over shared-memory link rings + lwIP, with
  the native loops of ``bench/native/dn_bench.c`` (no Python between frames); the
  master and both slaves share the machine's cores with everything else.
- ``veth``: kernel TCP between two network namespaces joined by a veth pair.
- ``bridge``: kernel TCP between two namespaces on a Linux bridge.
- ``ovs``: kernel TCP between two namespaces on an Open vSwitch bridge with
  the userspace datapath (Debian's OVS-DPDK; veth pairs as AF_XDP ports, a
  PMD thread), started for each measurement (bench/ovs_baseline.py).

Workloads: 64-byte request/response (1 and 32 connections) and 64 KiB
streaming. Also measured: the memory of a slave and of the master (RSS,
DPDK heap, hugepages in use), the Python paths (bench/python_rows.py) with
their ping-pong sweeps over connections and message sizes
(bench/sweep_rows.py), the same over TLS (bench/tls_rows.py), the switch's forwarding rate, two hosts and the
mesh, with a profile of its busiest service (bench/mesh_profile.py). Writes
bench/report/REPORT.md, results.json and the PNG plots of bench/plots.py.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from cross_host import CrossHostSession  # noqa: E402
from procs import stop_all  # noqa: E402
from kernel_paths import run_kernel  # noqa: E402
import mesh_profile  # noqa: E402
import mesh_rows  # noqa: E402
import plots  # noqa: E402
import python_rows  # noqa: E402
import sweep_rows  # noqa: E402
import tls_rows  # noqa: E402
from python_rows import PingPong  # noqa: E402

from aiodocknet.control import request  # noqa: E402

REPORT = BENCH / "report"
HUGEPAGES = Path("/sys/kernel/mm/hugepages/hugepages-2048kB")

XHOST_WORKLOADS = [
    ("xhost_rr64", "rr", 64, 1),
    ("xhost_stream64k", "stream", 65536, 1),
]
# docknet-uplink: af_packet at MTU 9000 (veth and kernel alike); docknet-xdp:
# af_xdp at 1500 (it carries 3054 at most), and af_packet at 1500 beside it.
XHOST_SYSTEMS = ["docknet-uplink", "docknet-xdp", "docknet-packet1500", "veth-kernel"]
# Python 64 B ping-pong across the hosts: connections, and the paths.
XHOST_PY_CONNS = [1, 32]
XHOST_PY_SYSTEMS = ["docknet-uplink", "docknet-xdp", "uvloop-veth"]

WORKLOADS = [
    ("rr64", "rr", 64, 1),
    ("rr64x32", "rr", 64, 32),
    ("stream64k", "stream", 65536, 1),
]
SYSTEMS = ["docknet", "veth", "bridge", "ovs"]
# The mesh gets more repeats than the rest: a mesh row is 8 processes on
# two cores for 6 s, and the host's speed drifts over that.
MESH_REPEATS = 5


def hugepages_used_mb() -> int:
    try:
        total = int((HUGEPAGES / "nr_hugepages").read_text())
        free = int((HUGEPAGES / "free_hugepages").read_text())
    except OSError:
        return 0
    return (total - free) * 2


def proc_memory_mb(pid: int) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile", "RssShmem"):
            out[key] = round(int(value.split()[0]) / 1024, 1)
    return out


class DockNetSession:
    """A master and a native echo/sink server, kept for the whole run."""

    def __init__(self, spin_us: int) -> None:
        self.dir = tempfile.TemporaryDirectory(prefix="docknet-bench-")
        self.sock = os.path.join(self.dir.name, "master.sock")
        self.env = dict(os.environ, DOCKNET_MASTER=self.sock, DOCKNET_LOG_LEVEL="warning",
                        DOCKNET_SPIN_US=str(spin_us))
        self.procs: list[subprocess.Popen[str]] = []
        self.clients = 0
        self.huge_before = hugepages_used_mb()
        self.master = self._spawn([sys.executable, "-m", "aiodocknet.cli", "--log-level", "warning",
                                   "master", "--run-dir", self.dir.name])
        deadline = time.monotonic() + 30
        while True:
            try:
                if request(self.sock, {"op": "ping"}).get("ok"):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or self.master.poll() is not None:
                raise RuntimeError("master did not start")
            time.sleep(0.05)
        self.huge_master = hugepages_used_mb() - self.huge_before
        self.server, ready = self.start_server("bench-server", 7100)
        self.address = ready["address"]
        self.server_ready = ready

    def _spawn(self, argv: list[str], extra_env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        p = subprocess.Popen(argv, env=dict(self.env, **(extra_env or {})), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        self.procs.append(p)
        return p

    def start_server(self, name: str, port: int) -> tuple[subprocess.Popen[str], dict[str, Any]]:
        p = self._spawn([sys.executable, "-m", "bench.native_loops", "serve", "--name", name,
                         "--port", str(port)])
        assert p.stdout is not None
        line = p.stdout.readline()
        if not line:
            raise RuntimeError(f"bench server failed: {p.stderr.read() if p.stderr else ''}")
        return p, json.loads(line)

    def run(self, mode: str, size: int, conns: int, seconds: float) -> dict[str, Any]:
        self.clients += 1
        argv = [sys.executable, "-m", "bench.native_loops", mode, "--name", f"bench-client{self.clients}",
                "--target", self.address, "--port", "7100", "--size", str(size), "--conns", str(conns),
                "--seconds", str(seconds)]
        res = subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=seconds + 60)
        if res.returncode != 0:
            raise RuntimeError(f"docknet {mode} failed: {res.stderr.strip()[-2000:]}")
        out: dict[str, Any] = json.loads(res.stdout.strip().splitlines()[-1])
        out["path"] = "docknet"
        return out

    def memory(self, extra_endpoints: int) -> dict[str, Any]:
        """Master RSS with the server alone, then with more idle endpoints."""
        base = proc_memory_mb(self.master.pid)
        huge_one = hugepages_used_mb()
        extra = [self.start_server(f"bench-idle{i}", 7200 + i)[0] for i in range(extra_endpoints)]
        time.sleep(0.5)
        more = proc_memory_mb(self.master.pid)
        huge_more = hugepages_used_mb()
        status = request(self.sock, {"op": "status"})
        for p in extra:
            p.terminate()
            p.wait(10)
        per_ep = (more["VmRSS"] - base["VmRSS"]) / extra_endpoints
        return {
            "master_rss_1_endpoint_mb": base["VmRSS"],
            f"master_rss_{1 + extra_endpoints}_endpoints_mb": more["VmRSS"],
            "master_rss_per_endpoint_mb": round(per_ep, 2),
            "master_rss_detail_mb": more,
            "master_hugepages_mb": self.huge_master,
            "slave_hugepages_mb": round((huge_more - huge_one) / extra_endpoints, 1),
            "slave_dpdk_heap_reserved_mb": self.server_ready["dpdk_heap_reserved_mb"],
            "slave_dpdk_heap_in_use_mb": self.server_ready["dpdk_heap_in_use_mb"],
            "slave_rss_max_mb": self.server_ready["rss_max_mb"],
            "endpoints_attached": len(status["endpoints"]),
            "no_huge": self.huge_master == 0,
        }

    def blast(self, counts: list[int], seconds: float) -> list[dict[str, Any]]:
        """The switch's forwarding rate with k endpoints sending 64-byte
        frames to each other (software classification)."""
        out = []
        for k in counts:
            argv = [sys.executable, "-m", "bench.native_loops", "blast", "--name", f"blast{k}",
                    "--endpoints", str(k), "--size", "64", "--seconds", str(seconds)]
            res = subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=seconds + 120)
            if res.returncode != 0:
                raise RuntimeError(f"blast with {k} endpoints failed: {res.stderr.strip()[-1500:]}")
            r = json.loads(res.stdout.strip().splitlines()[-1])
            print(f"switch     {k:3} endpoints: {r['frames_per_s']:,.0f} frames/s", flush=True)
            out.append(r)
        return out

    def close(self) -> None:
        stop_all(self.procs)
        self.dir.cleanup()


def measure(session: DockNetSession, system: str, mode: str, size: int, conns: int, seconds: float) -> dict[str, Any]:
    if system == "docknet":
        return session.run(mode, size, conns, seconds)
    return run_kernel(system, mode, size, seconds, conns=conns)


def _value(r: dict[str, Any], mode: str) -> float:
    return float(r["rt_per_s"] if mode == "rr" else r["gbit_per_s"])


def summarise(results: list[dict[str, Any]]) -> dict[str, Any]:
    table: dict[str, Any] = {}
    for name, mode, size, conns in WORKLOADS:
        row: dict[str, Any] = {}
        for system in SYSTEMS:
            rs = [r for r in results if r["workload"] == name and r["path"] == system]
            if not rs:
                continue
            vals = [_value(r, mode) for r in rs]
            entry = {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "n": len(vals)}
            if mode == "rr":
                entry["p50_us"] = statistics.median(float(r["p50_us"]) for r in rs)
                entry["p99_us"] = statistics.median(float(r["p99_us"]) for r in rs)
            row[system] = entry
        table[name] = row
    return table


def blast_report(blast: list[dict[str, Any]]) -> str:
    if not blast:
        return ""
    lines = ["## Switch forwarding rate", "",
             "k endpoints in one process (links with no TCP/IP) each send 64-byte UDP frames to the next "
             "as fast as they can; frames/s that came out of the switch (software classification by "
             "destination address, policy and limiter checks included).", "",
             "| endpoints | frames/s |", "|---|---|"]
    for r in blast:
        lines.append(f"| {r['endpoints']} | {r['frames_per_s']:,.0f} |")
    return "\n".join(lines) + "\n\n"


def measure_xhost(repeats: int, seconds: float) -> list[dict[str, Any]]:
    """The cross-host rows, interleaved (A B C D A B C D): the three uplink
    set-ups stay up side by side (idle masters and servers sleep), so a
    round moves from one to the next without setting anything up."""
    xhost: list[dict[str, Any]] = []
    sessions: list[CrossHostSession] = []
    try:
        sessions.append(CrossHostSession())
        sessions.append(CrossHostSession("iface:veth0", 1500, "docknet-xdp", pmd="af_xdp"))
        sessions.append(CrossHostSession("af_packet:veth0", 1500, "docknet-packet1500", pmd="af_packet"))
        runs = {"docknet-uplink": sessions[0].run_docknet, "docknet-xdp": sessions[1].run_docknet,
                "docknet-packet1500": sessions[2].run_docknet, "veth-kernel": sessions[0].run_kernel}
        for name, mode, size, conns in XHOST_WORKLOADS:
            for rep in range(repeats):
                for system in XHOST_SYSTEMS:
                    r = runs[system](mode, size, conns, seconds)
                    r["workload"] = name
                    r["repeat"] = rep
                    xhost.append(r)
                    print(f"{name:16} {system:15} #{rep + 1}: {_value(r, mode):,.1f}", flush=True)
        py_runs = {"docknet-uplink": sessions[0].run_python, "docknet-xdp": sessions[1].run_python,
                   "uvloop-veth": sessions[0].run_python_kernel}
        for conns in XHOST_PY_CONNS:
            for rep in range(repeats):
                for system in XHOST_PY_SYSTEMS:
                    r = py_runs[system](conns, seconds)
                    r["workload"] = f"xhost_py_pingpong x{conns}"
                    r["repeat"] = rep
                    xhost.append(r)
                    print(f"{r['workload']:16} {system:15} #{rep + 1}: {r['rt_per_s']:,.1f}", flush=True)
    finally:
        for xs in sessions:
            xs.close()
    return xhost


def xhost_report(xhost: list[dict[str, Any]]) -> str:
    if not xhost:
        return ""
    lines = ["## Across hosts", "",
             "Two masters in two network namespaces joined by a veth pair, each with its uplink on its end; "
             "the native server on one host, the client on the other. af_packet (9000): net_af_packet, veth "
             "MTU 9000; af_xdp (1500): `--uplink iface:veth0` on a second veth pair at MTU 1500 (af_xdp "
             "carries 3054 at most), which keeps the kernel's addresses (DockNet's XDP program passes the "
             "host's frames on); af_packet (1500): `--uplink af_packet:veth0` on a third. Kernel: the "
             "same programs' kernel TCP over the MTU 9000 pair, with that pair's masters up: their packet "
             "sockets take only DockNet's frames, so they neither copy nor wake for the kernel's. "
             "Interleaved, medians [min–max]; ratio: af_packet (9000) to the kernel.",
             "", "| workload | DockNet, af_packet (9000) | DockNet, af_xdp (1500) | DockNet, af_packet (1500) "
             "| kernel TCP over the veth (9000) | ratio |", "|---|---|---|---|---|---|"]
    for name, mode, _, _ in XHOST_WORKLOADS:
        cells = []
        meds: list[float | None] = []
        for system in XHOST_SYSTEMS:
            vals = [_value(r, mode) for r in xhost if r["workload"] == name and r["path"] == system]
            if not vals:
                cells.append("—")
                meds.append(None)
                continue
            med = statistics.median(vals)
            meds.append(med)
            fmt = "{:,.0f} rt/s" if mode == "rr" else "{:.2f} Gbit/s"
            cell = f"{fmt.format(med)} [{fmt.format(min(vals))}–{fmt.format(max(vals))}]"
            if mode == "rr":
                p50 = statistics.median(float(r["p50_us"]) for r in xhost
                                        if r["workload"] == name and r["path"] == system)
                cell += f"<br>p50 {p50:.1f} µs"
            cells.append(cell)
        ours, kernel = meds[0], meds[-1]
        ratio = f"{ours / kernel:.2f}x" if ours is not None and kernel else "—"
        title = "64 B request/response, 1 conn" if mode == "rr" else "64 KiB streaming"
        lines.append(f"| {title} | {' | '.join(cells)} | {ratio} |")
    return "\n".join(lines + xhost_python_report(xhost)) + "\n"


def xhost_python_report(xhost: list[dict[str, Any]]) -> list[str]:
    rows = [r for r in xhost if r["workload"].startswith("xhost_py_pingpong")]
    if not rows:
        return []
    lines = ["", "Python across the same hosts: 64 B asyncio Protocol ping-pong (bench/py_pingpong.py), DockNetLoop "
             "on both hosts over each uplink against uvloop on both over the veth (target: >= 1.0x uvloop). "
             "Interleaved, medians [min–max].", "",
             "| connections | DockNet, af_packet (9000) | DockNet, af_xdp (1500) | uvloop over the veth | ratio, "
             "af_packet / af_xdp to uvloop |", "|---|---|---|---|---|"]
    for conns in XHOST_PY_CONNS:
        meds: dict[str, float] = {}
        cells = []
        for system in XHOST_PY_SYSTEMS:
            sel = [r for r in rows if r["workload"] == f"xhost_py_pingpong x{conns}" and r["path"] == system]
            if not sel:
                cells.append("—")
                continue
            vals = [float(r["rt_per_s"]) for r in sel]
            meds[system] = statistics.median(vals)
            p50 = statistics.median(float(r["p50_us"]) for r in sel)
            cells.append(f"{meds[system]:,.0f} rt/s [{min(vals):,.0f}–{max(vals):,.0f}]<br>p50 {p50:.1f} µs")
        base = meds.get("uvloop-veth")
        ratio = " / ".join(f"{meds[s] / base:.2f}x" if base and s in meds else "—" for s in XHOST_PY_SYSTEMS[:2])
        lines.append(f"| {conns} | {' | '.join(cells)} | {ratio} |")
    return lines


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} vCPU ({model}), Linux {platform.release()}, Python {platform.python_version()}"


def command(args: argparse.Namespace) -> str:
    """The command line that made this report (the options that were given)."""
    argv = f"python -m bench.run --repeats {args.repeats} --seconds {args.seconds}"
    if args.mesh_repeats != MESH_REPEATS:
        argv += f" --mesh-repeats {args.mesh_repeats}"
    if args.no_sweep:
        argv += " --no-sweep"
    elif args.sweep_seconds is not None:
        argv += f" --sweep-seconds {args.sweep_seconds}"
    for only in args.only or []:
        argv += f" --only {only}"
    return argv


def report(table: dict[str, Any], memory: dict[str, Any], args: argparse.Namespace) -> str:
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = ["# aiodocknet data-plane benchmark", "",
             f"{now}; {machine()}. Command: `make bench` (`{command(args)}`).", ""]
    return "\n".join(lines) + "\n" + native_report(table, args) + memory_report(memory)


def native_report(table: dict[str, Any], args: argparse.Namespace) -> str:
    if not any(table.values()):
        return ""
    lines = [
        "Systems interleaved (docknet, veth, bridge, ovs, docknet, ...); medians of "
        f"{args.repeats} runs, min–max in brackets. DockNet runs the native (C) loops over the "
        "slave stack: client slave -> master switch -> server slave, three processes sharing the "
        "machine's 2 cores.",
        "",
        "| workload | DockNet | kernel veth | kernel bridge | Open vSwitch | DockNet / veth "
        "| DockNet / bridge | DockNet / OVS |",
        "|---|---|---|---|---|---|---|---|",
    ]
    titles = {"rr64": "64 B request/response, 1 conn (round trips/s)",
              "rr64x32": "64 B request/response, 32 conns (round trips/s)",
              "stream64k": "64 KiB streaming, 1 conn (Gbit/s)"}
    for name, mode, _, _ in WORKLOADS:
        row = table.get(name, {})
        if not row:
            continue

        def cell(system: str) -> str:
            e = row.get(system)
            if e is None:
                return "—"
            fmt = "{:,.0f}" if mode == "rr" else "{:.2f}"
            s = f"{fmt.format(e['median'])} [{fmt.format(e['min'])}–{fmt.format(e['max'])}]"
            if mode == "rr":
                s += f"<br>p50 {e['p50_us']:.1f} µs, p99 {e['p99_us']:.1f} µs"
            return s

        def ratio(base: str) -> str:
            if "docknet" not in row or base not in row:
                return "—"
            return f"{row['docknet']['median'] / row[base]['median']:.2f}x"

        lines.append(f"| {titles[name]} | {cell('docknet')} | {cell('veth')} | {cell('bridge')} | "
                     f"{cell('ovs')} | {ratio('veth')} | {ratio('bridge')} | {ratio('ovs')} |")
    lines += [
        "",
        "Open vSwitch: Debian's openvswitch-switch-dpdk (OVS 3.1, userspace datapath: this kernel has "
        "no OVS module); each namespace's veth pair is an AF_XDP port polled by a PMD thread, which "
        "holds one of the cores; TX checksum offload off in the namespaces, so no TSO. Started for "
        "each measurement, outside the timed interval (start/stop times in results.json).",
        "",
        "Targets (issue 2): 64 B round trips/s >= 3x the bridge; streaming >= kernel TCP over veth.",
        "",
    ]
    return "\n".join(lines) + "\n"


def memory_report(memory: dict[str, Any]) -> str:
    if not memory:
        return ""
    lines = ["## Memory", "", "| what | measured |", "|---|---|"]
    for k, v in memory.items():
        lines.append(f"| {k} | {v} |")
    lines += [
        "",
        "Budgets (issue 2): slave DPDK memory <= 64 MiB; master <= 256 MiB + 4 MiB per endpoint.",
        "",
    ]
    return "\n".join(lines) + "\n"


def pingpong_points(args: argparse.Namespace) -> list[PingPong]:
    """The headline ping-pong rows at --seconds, then the sweeps' other
    points at --sweep-seconds (none with --no-sweep)."""
    headline = python_rows.headline_points(args.seconds)
    if args.no_sweep:
        return headline
    sweep_seconds = args.seconds if args.sweep_seconds is None else args.sweep_seconds
    return sweep_rows.with_sweep(headline, sweep_rows.sweep_points(sweep_seconds))


def python_report(py_rows: list[dict[str, Any]], report_dir: Path) -> str:
    """The Python tables and the sweeps with their plots (drawn into report_dir)."""
    drawn = plots.draw_all(py_rows, report_dir)
    # Links relative to REPORT.md, which sits beside the PNGs.
    images = {name: name for name in drawn}
    return python_rows.report(py_rows) + sweep_rows.report(py_rows, images)


def quick(args: argparse.Namespace) -> int:
    """One repeat of: native 64 B ping-pong (DockNet, bridge), Python
    ping-pong (fast channel, uvloop over the bridge; 64 B and, as a taste of
    the size sweep, 64 KiB), the mesh (fast channels, uvloop over the
    bridge)."""
    session = DockNetSession(args.spin_us)
    points = [PingPong(64, 1, 1.5), PingPong(65536, 1, 1.5)]
    try:
        for system in ("docknet", "bridge"):
            r = measure(session, system, "rr", 64, 1, 1.5)
            print(f"rr64       {system:8}: {_value(r, 'rr'):,.0f} rt/s", flush=True)
        py_rows = python_rows.measure_all(session, 1, 1.5, paths=["docknet-fast", "uvloop-bridge"],
                                          pingpong=points, others=False)
    finally:
        session.close()
    mesh = mesh_rows.measure_all(1, 4.0, paths=["kernel-bridge+uvloop", "DockNet + fast channels"], users=[16])
    print()
    print(python_rows.report(py_rows) + sweep_rows.report(py_rows) + mesh_rows.report(mesh))
    print("the full set, with repeats, every baseline, the sweeps, the plots and the report: make bench")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench.run")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--sweep-seconds", type=float,
                    help="seconds per point of the ping-pong sweeps (default: --seconds)")
    ap.add_argument("--no-sweep", action="store_true",
                    help="no ping-pong sweeps: only the headline points (64 B, 1 and 32 connections)")
    ap.add_argument("--mesh-repeats", type=int, default=MESH_REPEATS,
                    help=f"repeats of the mesh rows (default {MESH_REPEATS}: the noisiest rows, "
                         "each service's CPU per request moving by 30%% between runs a minute apart)")
    ap.add_argument("--spin-us", type=int, default=int(os.environ.get("DOCKNET_SPIN_US", "100")))
    ap.add_argument("--only", choices=[w[0] for w in WORKLOADS] + ["python", "tls"], action="append",
                    help="only these native workloads, or 'python': the Python rows with the sweeps, "
                         "or 'tls': the TLS rows")
    ap.add_argument("--report-dir", type=Path, default=REPORT,
                    help="where REPORT.md, results.json and the plots go (default: bench/report)")
    ap.add_argument("--quick", action="store_true",
                    help="a reduced set for a first look (under two minutes); prints, writes no report")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("bench: needs root (network namespaces for the kernel baselines)", file=sys.stderr)
        return 1
    if args.quick:
        return quick(args)
    why = plots.missing()
    if why:  # say so now, not after the whole run
        print(f"bench: {why}", file=sys.stderr)
        return 1
    everything = not args.only
    python = everything or "python" in args.only
    session = DockNetSession(args.spin_us)
    results: list[dict[str, Any]] = []
    memory: dict[str, Any] = {}
    py_rows: list[dict[str, Any]] = []
    tls: list[dict[str, Any]] = []
    blast: list[dict[str, Any]] = []
    try:
        for name, mode, size, conns in WORKLOADS:
            if args.only and name not in args.only:
                continue
            for rep in range(args.repeats):
                for system in SYSTEMS:
                    r = measure(session, system, mode, size, conns, args.seconds)
                    r["workload"] = name
                    r["repeat"] = rep
                    results.append(r)
                    v = _value(r, mode)
                    unit = "rt/s" if mode == "rr" else "Gbit/s"
                    print(f"{name:10} {system:8} #{rep + 1}: {v:,.1f} {unit}", flush=True)
        if python:
            py_rows = python_rows.measure_all(session, args.repeats, args.seconds, pingpong=pingpong_points(args))
        if everything or "tls" in args.only:
            tls = tls_rows.measure_all(session, args.repeats, args.seconds)
        if everything or results:
            memory = session.memory(extra_endpoints=10)
        if everything:
            blast = session.blast([1, 8, 64], args.seconds)
    finally:
        session.close()
    xhost = measure_xhost(args.repeats, args.seconds) if everything else []
    mesh = mesh_rows.measure_all(args.mesh_repeats, args.seconds * 2) if everything else []
    profile = mesh_profile.measure() if everything else {}
    table = summarise(results)
    args.report_dir.mkdir(parents=True, exist_ok=True)
    text = (report(table, memory, args) + python_report(py_rows, args.report_dir) + tls_rows.report(tls)
            + mesh_rows.report(mesh)
            + mesh_profile.report(profile)
            + blast_report(blast) + xhost_report(xhost))
    (args.report_dir / "REPORT.md").write_text(text)
    (args.report_dir / "results.json").write_text(json.dumps(
        {"table": table, "memory": memory, "raw": results, "cross_host": xhost, "switch": blast,
         "python": py_rows, "tls": tls, "mesh": mesh, "mesh_profile": profile}, indent=1))
    print()
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
