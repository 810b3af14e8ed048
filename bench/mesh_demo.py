"""``docknet demo``: the hotel-reservation mesh (``services/``) driven by the
same load on four paths, side by side:

- kernel-bridge+asyncio and kernel-bridge+uvloop: every service in its own
  network namespace on a Linux bridge, as containers are by default;
- DockNet via the master: every service its own endpoint (``docknet run``,
  its own namespace), connections through lwIP and the master's switch;
- DockNet + fast channels: the same, connections on shared memory.

Nothing needs configuring: the master runs in a temporary directory with
the default subnet. Everything started is stopped at the end, also on
Ctrl-C. The load generator checks every response body against the dataset.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from aiodocknet.control import request

__all__ = ["run_mesh_demo", "MESH_PATHS", "MeshPath", "ProcessGroup", "docknet_master"]

ROOT = Path(__file__).resolve().parent.parent
SERVICES_DIR = ROOT / "services"
TICK = os.sysconf("SC_CLK_TCK")
PORT = 8080


class MeshPath:
    def __init__(self, title: str, kind: str, loop: str, fast: bool = False) -> None:
        self.title, self.kind, self.loop, self.fast = title, kind, loop, fast


MESH_PATHS = [
    MeshPath("kernel-bridge+asyncio", "kernel", "asyncio"),
    MeshPath("kernel-bridge+uvloop", "kernel", "uvloop"),
    MeshPath("DockNet via the master", "docknet", "docknet"),
    MeshPath("DockNet + fast channels", "docknet", "docknet", fast=True),
]


def _services() -> list[str]:
    sys.path.insert(0, str(ROOT))
    from services.mesh import SERVICES  # the checkout's mesh

    return list(SERVICES)


def proc_cpu_split(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process so far; system time is the
    kernel's share: on the kernel path, sockets, wake-ups and epoll."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0, 0.0
    return int(fields[11]) / TICK, int(fields[12]) / TICK


def proc_cpu(pid: int) -> float:
    return sum(proc_cpu_split(pid))


class ProcessGroup:
    """Children started for one path; all stopped together."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[str]] = []

    def start(self, argv: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
        # stderr to a file: a chatty child must never block on a full pipe.
        err = tempfile.TemporaryFile("w+")
        p = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=err, text=True,
                             start_new_session=True)
        p.dn_stderr = err  # type: ignore[attr-defined]
        self.procs.append(p)
        return p

    def stop(self) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in reversed(self.procs):
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
            if p.stdout is not None:
                p.stdout.close()
            p.dn_stderr.close()  # type: ignore[attr-defined]
        self.procs.clear()


def stderr_tail(p: subprocess.Popen[str]) -> str:
    err = p.dn_stderr  # type: ignore[attr-defined]
    err.seek(0)
    return str(err.read())[-1500:]


def json_events(p: subprocess.Popen[str], idle_timeout: float) -> Iterator[dict[str, Any]]:
    """The JSON lines p prints, as they come. Raw reads split here: a
    buffered readline() after select() could leave a line where select()
    cannot see it."""
    assert p.stdout is not None
    fd, pending = p.stdout.fileno(), b""
    while True:
        if not select.select([fd], [], [], idle_timeout)[0]:
            raise RuntimeError(f"{' '.join(map(str, p.args))[-80:]} printed nothing for {idle_timeout:.0f} s")
        chunk = os.read(fd, 65536)
        if not chunk:
            raise RuntimeError(f"{' '.join(map(str, p.args))[-80:]} exited ({p.wait()}): {stderr_tail(p)}")
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            if line.startswith(b"{"):
                yield json.loads(line)


def read_event(p: subprocess.Popen[str], event: str, timeout: float) -> dict[str, Any]:
    """The next JSON line with this event from p's stdout."""
    deadline = time.monotonic() + timeout
    for msg in json_events(p, timeout):
        if msg.get("event") == event:
            return msg
        if time.monotonic() > deadline:
            break
    raise RuntimeError(f"no {event!r} from {p.args[-1]!r} within {timeout:.0f} s")


@contextmanager
def docknet_master(run_dir: str) -> Iterator[dict[str, str]]:
    group = ProcessGroup()
    sock = os.path.join(run_dir, "master.sock")
    env = dict(os.environ, DOCKNET_MASTER=sock, DOCKNET_LOG_LEVEL="warning")
    master = group.start([sys.executable, "-m", "aiodocknet.cli", "--log-level", "warning", "master",
                          "--run-dir", run_dir], env)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if request(sock, {"op": "ping"}).get("ok"):
                    break
            except OSError:
                pass
            if master.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the DockNet master did not start")
            time.sleep(0.05)
        yield env
    finally:
        group.stop()


@contextmanager
def mesh_on(path: MeshPath, master_env: dict[str, str] | None) -> Iterator[tuple[list[str], list[int]]]:
    """The mesh running on path: (the load generator's argv prefix, the
    pids whose CPU the path costs: the services', and the master's on
    DockNet paths)."""
    py = sys.executable
    group = ProcessGroup()
    names = _services()
    try:
        if path.kind == "kernel":
            from bench.topology import NetnsTopology

            with NetnsTopology(len(names) + 1, mode="bridge", prefix=f"dnd{os.getpid()}-") as topo:
                ups = [f"{n}=http://{topo.addr(i)}:{PORT}" for i, n in enumerate(names)]
                upstream_args = [a for u in ups for a in ("--upstream", u)]
                pids = []
                for i, name in enumerate(names):
                    p = group.start(topo.exec_argv(i, [py, "-m", "services.run", name, "--loop", path.loop,
                                                       "--host", topo.addr(i), "--port", str(PORT),
                                                       *upstream_args]), dict(os.environ))
                    pids.append(int(read_event(p, "ready", 60).get("pid", p.pid)))
                loadgen = topo.exec_argv(len(names), [py, "-m", "services.loadgen", "--loop", path.loop,
                                                      "--url", f"http://{topo.addr(names.index('frontend'))}:{PORT}"])
                yield loadgen, pids
                group.stop()
        else:
            assert master_env is not None
            env = dict(master_env, DOCKNET_FAST_CHANNELS="1" if path.fast else "0")
            api = os.path.join(os.path.dirname(env["DOCKNET_MASTER"]), "api.sock")
            pids = []
            for name in names:
                p = group.start([py, "-m", "aiodocknet.cli", "--log-level", "warning", "--api", api, "run",
                                 "--name", name, "--", py, "-m", "services.run", name, "--loop", "docknet",
                                 "--port", str(PORT)], env)
                pids.append(int(read_event(p, "ready", 60).get("pid", p.pid)))
            # The master's switch is part of this path's cost: counted too.
            pids.append(int(request(env["DOCKNET_MASTER"], {"op": "status"})["pid"]))
            loadgen = [py, "-m", "aiodocknet.cli", "--log-level", "warning", "--api", api, "run", "--name",
                       "loadgen", "--", py, "-m", "services.loadgen", "--loop", "docknet",
                       "--url", f"http://frontend:{PORT}"]
            yield loadgen, pids
    finally:
        group.stop()


def drive(loadgen: list[str], env: dict[str, str], pids: list[int], seconds: float, concurrency: int,
          title: str) -> dict[str, Any]:
    """Runs the load generator with a progress bar; its result plus the CPU
    every process of the mesh used."""
    group = ProcessGroup()
    split0 = [proc_cpu_split(p) for p in pids]
    # A bar redrawn in place is for a terminal; a log gets one line.
    bar_shown = sys.stdout.isatty()
    try:
        p = group.start([*loadgen, "--seconds", str(seconds), "--concurrency", str(concurrency)], env)
        for msg in json_events(p, seconds + 120):
            if msg.get("event") == "progress" and bar_shown:
                done = float(msg["done"])
                bar = "#" * int(done * 30)
                print(f"\r  {title:26} [{bar:30}] {done:4.0%}  ", end="", flush=True)
            elif msg.get("event") == "result":
                if bar_shown:
                    print(flush=True)
                else:
                    print(f"  {title:26} done", flush=True)
                break
        p.wait(30)
    finally:
        group.stop()
    split1 = [proc_cpu_split(p) for p in pids]
    msg["mesh_user_s"] = sum(u for u, _ in split1) - sum(u for u, _ in split0)
    msg["mesh_sys_s"] = sum(k for _, k in split1) - sum(k for _, k in split0)
    msg["mesh_cpu_s"] = msg["mesh_user_s"] + msg["mesh_sys_s"]
    return msg


def table(rows: list[tuple[str, dict[str, Any]]], concurrency: int, seconds: float) -> str:
    base = {t: r for t, r in rows}.get("kernel-bridge+uvloop")
    out = [f"hotel-reservation mesh (services/): 8 services, {concurrency} concurrent users, {seconds:.0f} s each; "
           "every response body checked",
           f"{'path':26} {'req/s':>9} {'p50':>9} {'p99':>9} {'CPU s/1k req':>13} {'errors':>7} {'vs uvloop':>10}"]
    for title, r in rows:
        cpu = (r["mesh_cpu_s"] + r.get("client_cpu_s", 0.0)) / max(r["requests"], 1) * 1000
        ratio = f"{r['req_per_s'] / base['req_per_s']:.2f}x" if base else "-"
        out.append(f"{title:26} {r['req_per_s']:>9,.0f} {r['p50_ms']:>7.2f}ms {r['p99_ms']:>7.2f}ms "
                   f"{cpu:>13.3f} {r['errors']:>7} {ratio:>10}")
    return "\n".join(out)


def run_mesh_demo(seconds: float = 15.0, concurrency: int = 16, paths: list[MeshPath] | None = None) -> int:
    if os.geteuid() != 0:
        print("docknet demo: needs root (DPDK hugepages and network namespaces)", file=sys.stderr)
        return 1
    if not (SERVICES_DIR / "run.py").exists():
        print(f"docknet demo: the sample mesh is not here ({SERVICES_DIR}); run it from the repository",
              file=sys.stderr)
        return 1
    rows: list[tuple[str, dict[str, Any]]] = []
    paths = paths or MESH_PATHS
    try:
        with tempfile.TemporaryDirectory(prefix="docknet-demo-") as run_dir:
            print(f"starting a DockNet master in {run_dir}", flush=True)
            with docknet_master(run_dir) as master_env:
                for path in paths:
                    print(f"  {path.title}: starting the mesh ...", flush=True)
                    with mesh_on(path, master_env) as (loadgen, pids):
                        env = dict(master_env, DOCKNET_FAST_CHANNELS="1" if path.fast else "0")
                        rows.append((path.title, drive(loadgen, env, pids, seconds, concurrency, path.title)))
    except KeyboardInterrupt:
        print("\ninterrupted; everything started has been stopped", flush=True)
        return 130
    print()
    print(table(rows, concurrency, seconds))
    errors = sum(r["errors"] for _, r in rows)
    for title, r in rows:
        for sample in r.get("error_samples", []):
            print(f"  error on {title}: {sample}")
    return 1 if errors else 0
