"""`docknet demo` runs unattended, prints its table and leaves nothing:
the sample mesh on all four paths (a short run), and the bare data plane."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from dn_harness import ROOT


def leftovers() -> str:
    procs = subprocess.run(["pgrep", "-af", "docknet-demo-|services.run|services.loadgen"], capture_output=True,
                           text=True).stdout
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    stale = [line for line in netns.splitlines() if line.startswith(("dnd", "dn-frontend", "dn-geo", "dn-loadgen"))]
    return procs.strip() + "\n".join(stale)


def test_mesh_demo_on_every_path() -> None:
    """The mesh on the kernel bridge (asyncio, uvloop) and on DockNet (via
    the master, with fast channels): every request answered and its body
    checked (no errors), the four-way table printed, nothing left behind."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    res = subprocess.run([sys.executable, "-m", "aiodocknet.cli", "demo", "--seconds", "2", "--users", "4"],
                         capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert res.returncode == 0, (res.stdout[-2000:], res.stderr[-2000:])
    rows = {line.split("  ")[0]: line for line in res.stdout.splitlines()}
    for title in ("kernel-bridge+asyncio", "kernel-bridge+uvloop", "DockNet via the master",
                  "DockNet + fast channels"):
        row = next((line for name, line in rows.items() if name.startswith(title)), None)
        assert row is not None, res.stdout
        assert int(row.split()[-2]) == 0, row  # errors column
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
