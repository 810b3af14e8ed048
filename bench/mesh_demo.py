"""``docknet demo``: the hotel-reservation mesh (``services/``) driven by the
same load on five paths, side by side:

- kernel-bridge+asyncio and kernel-bridge+uvloop: every service in its own
  network namespace on a Linux bridge, as containers are by default;
- DockNet via the master: every service its own endpoint (``docknet run``,
  its own namespace), connections through lwIP and the master's switch;
- DockNet + peer links: the same, lwIP's frames on peer links between the
  services' stacks instead of through the switch;
- DockNet + fast channels: the same, connections on shared memory.

The paths are measured in rounds, each round driving every path once in
a rotated order (A B C D E, B C D E A, ...), with every mesh kept up between
its turns when the hugepages allow: the table shows medians over the rounds
and the spread of each ratio, and under it the kernel's share of a
request's CPU on the kernel path, the most a network path could save.

Nothing needs configuring: the masters run in a temporary directory with
the default subnet. Everything started is stopped at the end, also on
Ctrl-C. The load generator checks every response body against the dataset.
"""

from __future__ import annotations

import itertools
import json
import os
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from aiodocknet.control import request

__all__ = ["run_mesh_demo", "MESH_PATHS", "MeshPath", "ProcessGroup", "docknet_master", "rotations"]

ROOT = Path(__file__).resolve().parent.parent
SERVICES_DIR = ROOT / "services"
TICK = os.sysconf("SC_CLK_TCK")
PORT = 8080
_mesh_ids = itertools.count()


class MeshPath:
    def __init__(self, title: str, kind: str, loop: str, fast: bool = False, peer: bool = False) -> None:
        self.title, self.kind, self.loop, self.fast, self.peer = title, kind, loop, fast, peer

    def env(self, base: dict[str, str]) -> dict[str, str]:
        """base with what a DockNet process of this path takes."""
        return dict(base, DOCKNET_FAST_CHANNELS="1" if self.fast else "0",
                    DOCKNET_PEER_LINKS="1" if self.peer else "0")


MESH_PATHS = [
    MeshPath("kernel-bridge+asyncio", "kernel", "asyncio"),
    MeshPath("kernel-bridge+uvloop", "kernel", "uvloop"),
    MeshPath("DockNet via the master", "docknet", "docknet"),
    MeshPath("DockNet + peer links", "docknet", "docknet", peer=True),
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


def start_ready(group: ProcessGroup, argvs: list[list[str]], env: dict[str, str], timeout: float = 60) -> list[int]:
    """Starts every process at once and waits until each has printed its
    "ready" (its handlers in, its port bound): the services of a mesh
    reach their upstreams only when a request comes, so none waits for
    another to start. The pids each reports, in argvs' order."""
    procs = [group.start(argv, env) for argv in argvs]
    return [int(read_event(p, "ready", timeout).get("pid", p.pid)) for p in procs]


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

            # A prefix per mesh: the demo keeps both kernel meshes up at once.
            prefix = f"dnd{os.getpid()}-{next(_mesh_ids)}-"
            with NetnsTopology(len(names) + 1, mode="bridge", prefix=prefix) as topo:
                ups = [f"{n}=http://{topo.addr(i)}:{PORT}" for i, n in enumerate(names)]
                upstream_args = [a for u in ups for a in ("--upstream", u)]
                pids = start_ready(group, [topo.exec_argv(i, [py, "-m", "services.run", name, "--loop", path.loop,
                                                              "--host", topo.addr(i), "--port", str(PORT),
                                                              *upstream_args]) for i, name in enumerate(names)],
                                   dict(os.environ))
                loadgen = topo.exec_argv(len(names), [py, "-m", "services.loadgen", "--loop", path.loop,
                                                      "--url", f"http://{topo.addr(names.index('frontend'))}:{PORT}"])
                yield loadgen, pids
                group.stop()
        else:
            assert master_env is not None
            env = path.env(master_env)
            api = os.path.join(os.path.dirname(env["DOCKNET_MASTER"]), "api.sock")
            pids = start_ready(group, [[py, "-m", "aiodocknet.cli", "--log-level", "warning", "--api", api, "run",
                                        "--name", name, "--", py, "-m", "services.run", name, "--loop", "docknet",
                                        "--port", str(PORT)] for name in names], env)
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



# The default run: rounds of every path in turn, each driven this long. Five
# rounds give a median that one disturbed round cannot move; the budget
# keeps the whole demo, start-up included, within five minutes, and ends it
# early (never below MIN_ROUNDS) on a machine too slow for five.
ROUNDS = 5
MIN_ROUNDS = 3
SECONDS = 6.0
BUDGET_S = 285.0
BASELINE = "kernel-bridge+uvloop"
MAX_ERROR_SAMPLES = 5


def rotations(items: list[Any], rounds: int) -> list[list[Any]]:
    """Round r drives the paths starting from the r-th (A B C D, B C D A,
    ...): each path takes each place in turn, so a machine drifting during
    the demo (another job, a warming cache) does not favour the path that
    happens to come first."""
    n = len(items)
    return [items[r % n:] + items[:r % n] for r in range(rounds)]


def hugepages_needed(docknet_paths: int, resident: bool) -> int:
    """MiB of hugepages the DockNet paths take: a master per path when
    their meshes stay up together (endpoint names are unique per master),
    one master otherwise, a slave per service, and the load generator's."""
    from aiodocknet.master.config import MasterConfig
    from aiodocknet.native.stack import SLAVE_MEM_MB

    if docknet_paths == 0:
        return 0
    meshes = docknet_paths if resident else 1
    return meshes * (MasterConfig.mem_mb + len(_services()) * SLAVE_MEM_MB) + SLAVE_MEM_MB


class Lane:
    """One path's mesh over the rounds: started once and kept up
    (resident), or started for each turn and stopped after it, when the
    machine cannot hold every mesh at once."""

    def __init__(self, path: MeshPath, master_env: dict[str, str] | None, resident: bool) -> None:
        self.path, self.master_env, self.resident = path, master_env, resident
        self.stack = ExitStack()
        self.mesh: tuple[list[str], list[int]] | None = None

    def start(self) -> None:
        print(f"  {self.path.title}: starting the mesh ...", flush=True)
        self.mesh = self.stack.enter_context(mesh_on(self.path, self.master_env))

    def stop(self) -> None:
        self.stack.close()
        self.mesh = None

    def turn(self, seconds: float, concurrency: int) -> dict[str, Any]:
        if self.mesh is None:
            self.start()
        assert self.mesh is not None
        loadgen, pids = self.mesh
        env = self.path.env(dict(self.master_env or os.environ))
        try:
            return drive(loadgen, env, pids, seconds, concurrency, self.path.title)
        finally:
            if not self.resident:
                self.stop()


def cpu_ms(r: dict[str, Any]) -> float:
    """CPU per request: the services (and master), and the load generator."""
    return (r["mesh_cpu_s"] + r.get("client_cpu_s", 0.0)) / max(r["requests"], 1) * 1e3


def table(results: dict[str, list[dict[str, Any]]], concurrency: int, seconds: float) -> str:
    """Medians over the rounds; beside each ratio to uvloop over the bridge,
    its lowest and highest over the rounds (each round's pair measured
    minutes apart at most): the noise of this machine."""
    base = results.get(BASELINE)
    rounds = max(len(rs) for rs in results.values())
    out = [f"hotel-reservation mesh (services/): 8 services, {concurrency} concurrent users, {rounds} rounds of "
           f"{seconds:g} s per path in rotated order; medians over the rounds; every response body checked",
           f"{'path':26} {'req/s':>9} {'p50':>9} {'p99':>9} {'CPU s/1k req':>13} {'errors':>7} "
           f"{'vs uvloop':>10} {'[min-max]':>13} {'CPU vs uvloop':>14}"]
    for title, rs in results.items():
        rps = statistics.median(r["req_per_s"] for r in rs)
        cpu = statistics.median(cpu_ms(r) for r in rs)
        ratio = spread = cpu_ratio = "-"
        if base:
            ratio = f"{rps / statistics.median(b['req_per_s'] for b in base):.2f}x"
            per_round = [r["req_per_s"] / b["req_per_s"] for r, b in zip(rs, base) if b["req_per_s"] > 0]
            spread = f"[{min(per_round):.2f}-{max(per_round):.2f}]" if per_round else "-"
            cpu_ratio = f"{cpu / statistics.median(cpu_ms(b) for b in base):.2f}x"
        out.append(f"{title:26} {rps:>9,.0f} {statistics.median(r['p50_ms'] for r in rs):>7.2f}ms "
                   f"{statistics.median(r['p99_ms'] for r in rs):>7.2f}ms {cpu:>13.3f} "
                   f"{sum(r['errors'] for r in rs):>7} {ratio:>10} {spread:>13} {cpu_ratio:>14}")
    return "\n".join(out)


def kernel_share(results: dict[str, list[dict[str, Any]]], paths: list[MeshPath]) -> str | None:
    """Where a request's CPU goes on the kernel path: the services' system
    time is the network path's (sockets, wake-ups, epoll); the rest is the
    application's and its loop's, which no network path changes."""
    kernel = [p.title for p in paths if p.kind == "kernel" and results.get(p.title)]
    if not kernel:
        return None
    title = BASELINE if BASELINE in kernel else kernel[0]
    rs = [r for r in results[title] if r["mesh_cpu_s"] > 0]
    if not rs:
        return None
    shares = [r["mesh_sys_s"] / r["mesh_cpu_s"] for r in rs]
    share = statistics.median(shares)
    sys_ms = statistics.median(r["mesh_sys_s"] / max(r["requests"], 1) * 1e3 for r in rs)
    all_ms = statistics.median(r["mesh_cpu_s"] / max(r["requests"], 1) * 1e3 for r in rs)
    return (f"On {title} the kernel is {share:.0%} [{min(shares):.0%}-{max(shares):.0%}] of the mesh's CPU per "
            f"request ({sys_ms:.3f} of {all_ms:.3f} ms: system time of the {len(_services())} services, "
            f"/proc/PID/stat), so the most any network path could gain on this mesh on this machine is about "
            f"{share:.0%} of its CPU per request.")


def run_mesh_demo(seconds: float | None = None, concurrency: int = 16, paths: list[MeshPath] | None = None,
                  rounds: int | None = None) -> int:
    """The paths in rounds (rotated order), then the table of medians.
    rounds None: up to ROUNDS, as many as the time budget allows."""
    started = time.monotonic()
    if os.geteuid() != 0:
        print("docknet demo: needs root (DPDK hugepages and network namespaces)", file=sys.stderr)
        return 1
    if not (SERVICES_DIR / "run.py").exists():
        print(f"docknet demo: the sample mesh is not here ({SERVICES_DIR}); run it from the repository",
              file=sys.stderr)
        return 1
    from aiodocknet.native.eal import hugepages_free_mb

    seconds = seconds or SECONDS
    paths = paths or MESH_PATHS
    docknet = [p for p in paths if p.kind == "docknet"]
    # Every mesh up at once if the hugepages hold them: a turn then costs
    # only its load. Otherwise the DockNet meshes take turns on one master
    # (a slave without hugepages would run slower and skew its path).
    resident = hugepages_needed(len(docknet), True) <= hugepages_free_mb()
    results: dict[str, list[dict[str, Any]]] = {p.title: [] for p in paths}
    try:
        with tempfile.TemporaryDirectory(prefix="docknet-demo-") as run_dir, ExitStack() as stack:
            masters: dict[str, dict[str, str]] = {}
            for i, path in enumerate(docknet):
                if resident or not masters:
                    master_dir = os.path.join(run_dir, str(i))
                    os.mkdir(master_dir)
                    print(f"starting a DockNet master in {master_dir}", flush=True)
                    env = stack.enter_context(docknet_master(master_dir))
                masters[path.title] = env
            lanes = [Lane(p, masters.get(p.title), resident or p.kind == "kernel") for p in paths]
            for lane in lanes:
                stack.callback(lane.stop)
            if not resident:
                print(f"  ({hugepages_free_mb()} MiB of hugepages free, {hugepages_needed(len(docknet), True)} "
                      "needed for every mesh at once: the DockNet meshes start for each turn)", flush=True)
            for lane in lanes:
                if lane.resident:
                    lane.start()
            planned = rounds or ROUNDS
            last_round = 0.0
            for r, order in enumerate(rotations(lanes, planned)):
                if rounds is None and r >= MIN_ROUNDS and time.monotonic() - started + last_round > BUDGET_S:
                    print(f"  (time budget: {r} rounds)", flush=True)
                    break
                print(f"round {r + 1}/{planned}", flush=True)
                t0 = time.monotonic()
                for lane in order:
                    results[lane.path.title].append(lane.turn(seconds, concurrency))
                last_round = time.monotonic() - t0
    except KeyboardInterrupt:
        print("\ninterrupted; everything started has been stopped", flush=True)
        return 130
    print()
    print(table(results, concurrency, seconds))
    line = kernel_share(results, paths)
    if line:
        print(line)
    errors = 0
    for title, rs in results.items():
        samples = [s for r in rs for s in r.get("error_samples", [])]
        errors += sum(r["errors"] for r in rs)
        for sample in samples[:MAX_ERROR_SAMPLES]:
            print(f"  error on {title}: {sample}")
    return 1 if errors else 0
