"""Where the mesh's slowest service spends its CPU: a py-spy profile of the
frontend (the service with the most CPU per request) under 16 users, on
uvloop over the bridge and on DockNet with fast channels, grouped by whose
code ran. It is taken after the measured mesh runs, with the same load
generator, because a profiler slows what it watches."""

from __future__ import annotations

import collections
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.mesh_demo import MESH_PATHS, docknet_master, drive, mesh_on

PATHS = ["kernel-bridge+uvloop", "DockNet + fast channels"]
SERVICE = "frontend"
RATE = 200  # samples/s
SECONDS = 4  # whole seconds: py-spy takes no fraction
USERS = 16

# By the file of the innermost Python frame. py-spy charges native code to
# the Python frame that called it: a transport's write(), uvloop's or ours,
# counts where aiohttp called it.
GROUPS = [
    ("the service's own code (services/)", ("/services/",)),
    ("aiohttp, yarl, multidict", ("/aiohttp/", "/yarl/", "/multidict/")),
    ("json", ("/json/",)),
    ("aiodocknet: loop, poller, transports", ("/aiodocknet/",)),
]
# The loop's own native code (uvloop and libuv, or our poller's waits once
# it returned to the loop) shows as the frame that entered it.
LOOP_NATIVE = ("Runner.run", "run_until_complete", "run_forever")
LOOP_GROUP = "the event loop's native code (uvloop, libuv, epoll)"
OTHER = "asyncio and the rest of Python"


def _py_spy() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"  # the virtualenv's, when not on PATH
    return str(beside) if beside.exists() else shutil.which("py-spy")


def _service_pid(pids: list[int], name: str) -> int:
    for pid in pids:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
        if b"services.run" in argv and name.encode() in argv:
            return pid
    raise RuntimeError(f"no {name} among the mesh's processes")


def group_of(frame: str) -> str:
    """frame: py-spy's "function (path:line)"."""
    func, _, where = frame.partition(" (")
    if func in LOOP_NATIVE:
        return LOOP_GROUP
    path = "/" + where
    for name, marks in GROUPS:
        if any(m in path for m in marks):
            return name
    return OTHER


def summarise(raw: str, seconds: float) -> dict[str, Any]:
    counts: collections.Counter[str] = collections.Counter()
    total = 0
    with open(raw) as f:
        for line in f:
            stack, _, n = line.rstrip("\n").rpartition(" ")
            if not stack or not n.isdigit():
                continue
            counts[group_of(stack.split(";")[-1])] += int(n)
            total += int(n)
    return {"samples": total, "busy": total / (seconds * RATE),
            "groups": {k: v / total for k, v in counts.items()} if total else {}}


def measure() -> dict[str, Any]:
    """{path title: summary}, or {"error": why} when py-spy cannot run."""
    spy = _py_spy()
    if spy is None:
        return {"error": "py-spy is not installed (pip install '.[bench]')"}
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="docknet-bench-prof-") as run_dir, docknet_master(run_dir) as env:
        for path in MESH_PATHS:
            if path.title not in PATHS:
                continue
            with mesh_on(path, env) as (loadgen, pids):
                pid = _service_pid(pids, SERVICE)
                raw = str(Path(run_dir) / "profile.txt")
                prof = subprocess.Popen([spy, "record", "--nonblocking", "-p", str(pid), "-d", str(SECONDS),
                                         "-r", str(RATE), "-f", "raw", "-o", raw],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                run_env = path.env(env)
                # Load from before the profile starts to after it ends.
                drive(loadgen, run_env, pids, SECONDS + 2.0, USERS, f"{path.title} (profiled)")
                _, err = prof.communicate(timeout=60)
                if prof.returncode != 0:
                    return {"error": f"py-spy failed: {err.strip()[-300:]}"}
                out[path.title] = summarise(raw, SECONDS)
    return out


def report(prof: dict[str, Any]) -> str:
    if not prof:
        return ""
    head = [f"### Where the {SERVICE}'s CPU goes ({USERS} users, py-spy)", ""]
    if "error" in prof:
        return "\n".join(head + [f"Not profiled: {prof['error']}.", "", ""])
    paths = [p for p in PATHS if p in prof]
    names = [g for g, _ in GROUPS] + [LOOP_GROUP, OTHER]
    out = head + [f"The {SERVICE} uses the most CPU per request of the mesh's services. Here are its "
                  f"samples while it was on CPU ({RATE}/s over {SECONDS:g} s, after the measured runs), "
                  "grouped by the file of the innermost Python frame. Native code counts where Python "
                  "called it, so a transport's write(), uvloop's or DockNet's, is in the group of the "
                  "aiohttp code that called it.", "",
                  "| where | " + " | ".join(paths) + " |", "|---|" + "---|" * len(paths)]
    for g in names:
        out.append(f"| {g} | " + " | ".join(f"{prof[p]['groups'].get(g, 0.0):.0%}" for p in paths) + " |")
    out.append("| busy (share of one core) | " + " | ".join(f"{prof[p]['busy']:.0%}" for p in paths) + " |")
    return "\n".join(out) + "\n\n"
