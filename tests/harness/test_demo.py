"""`docknet demo` runs unattended, prints its table and leaves nothing:
the sample mesh on every path in rounds (a short run), and the bare
data plane."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from bench.mesh_demo import MESH_PATHS, rotations
from dn_harness import ROOT

TITLES = [p.title for p in MESH_PATHS]


def leftovers() -> str:
    procs = subprocess.run(["pgrep", "-af", "docknet-demo-|services.run|services.loadgen"], capture_output=True,
                           text=True).stdout
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    stale = [line for line in netns.splitlines() if line.startswith(("dnd", "dn-frontend", "dn-geo", "dn-loadgen"))]
    return procs.strip() + "\n".join(stale)


def test_rotations_put_every_path_in_every_place() -> None:
    order = rotations(list("ABCD"), 5)
    assert ["".join(r) for r in order] == ["ABCD", "BCDA", "CDAB", "DABC", "ABCD"]
    for place in range(4):
        assert {r[place] for r in order[:4]} == set("ABCD")


def turns(out: str) -> list[list[str]]:
    """The paths each round drove, in order (the log form of the progress:
    one "<title> done" line per turn)."""
    rounds: list[list[str]] = []
    for line in out.splitlines():
        if re.fullmatch(r"round \d+/\d+", line):
            rounds.append([])
        elif line.endswith(" done") and rounds:
            rounds[-1].append(line[:-len(" done")].strip())
    return rounds


def test_mesh_demo_in_rounds_on_every_path() -> None:
    """The mesh on the kernel bridge (asyncio, uvloop) and on DockNet (via
    the master, with fast channels), two rounds in rotated order: every
    request answered and its body checked (no errors), the table of medians
    with the spread of the ratios, the kernel's share of a request's CPU
    under it, nothing left behind."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    # The shortest turn that still gives every path enough requests for a
    # kernel share above zero: the turns, not the meshes' start-up, are
    # what the test can shorten.
    res = subprocess.run([sys.executable, "-m", "aiodocknet.cli", "demo", "--seconds", "1", "--users", "4",
                          "--rounds", "2"], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert res.returncode == 0, (res.stdout[-3000:], res.stderr[-2000:])
    out = res.stdout
    assert turns(out) == [TITLES, TITLES[1:] + TITLES[:1]], out
    assert "2 rounds of 1 s per path" in out, out
    for title in TITLES:
        row = next((line for line in out.splitlines() if line.startswith(title + " ")), None)
        assert row is not None, out
        rps, p50, p99, cpu, errors, ratio, spread, cpu_ratio = row[len(title):].split()
        assert int(errors) == 0, row
        assert float(rps.replace(",", "")) > 0 and float(cpu) > 0, row
        low, high = (float(x) for x in spread.strip("[]").split("-"))
        assert low <= high, row
    base = next(line for line in out.splitlines() if line.startswith("kernel-bridge+uvloop "))
    assert base.split()[-3:] == ["1.00x", "[1.00-1.00]", "1.00x"], base
    share = re.search(r"On kernel-bridge\+uvloop the kernel is (\d+)% \[(\d+)%-(\d+)%\] of the mesh's CPU per "
                      r"request .* the most any network path could gain on this mesh on this machine is about "
                      r"(\d+)% of its CPU per request\.", out)
    assert share is not None, out
    assert 0 < int(share[1]) < 100 and int(share[2]) <= int(share[1]) <= int(share[3]) and share[4] == share[1]
    assert leftovers() == ""


def test_data_plane_demo_runs_and_cleans_up() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    res = subprocess.run([sys.executable, "-m", "aiodocknet.cli", "demo", "--data-plane", "--seconds", "0.5"],
                         capture_output=True, text=True, timeout=180, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-2000:]
    out = res.stdout
    assert "64 B request/response, 1 connection" in out and "rt/s" in out and "Gbit/s" in out
    leftovers = subprocess.run(["pgrep", "-f", "docknet-demo-"], capture_output=True, text=True)
    assert leftovers.stdout.strip() == ""
