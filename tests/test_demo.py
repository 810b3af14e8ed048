"""`docknet demo` runs unattended, prints its table and leaves nothing."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from dn_harness import ROOT


def test_demo_runs_and_cleans_up() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    res = subprocess.run([sys.executable, "-m", "aiodocknet.cli", "demo", "--seconds", "0.5"],
                         capture_output=True, text=True, timeout=180, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-2000:]
    out = res.stdout
    assert "64 B request/response, 1 connection" in out and "rt/s" in out and "Gbit/s" in out
    leftovers = subprocess.run(["pgrep", "-f", "docknet-demo-"], capture_output=True, text=True)
    assert leftovers.stdout.strip() == ""
