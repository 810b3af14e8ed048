"""A few seconds of each fuzz harness (fuzz/), fixed seed, over its
committed corpus: the seeds and every earlier crash's input, which run
first. A crash or sanitizer report fails the test; `make fuzz` runs them
long."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "fuzz"))

import run as fuzz_run  # noqa: E402  (fuzz/run.py)

SECONDS = 2

pytestmark = pytest.mark.skipif(shutil.which("clang") is None,
                                reason="clang not installed (scripts/bootstrap.sh installs it)")


@pytest.mark.timeout(240)
@pytest.mark.parametrize("harness", fuzz_run.HARNESSES)
def test_fuzz_smoke(harness: str) -> None:
    if harness == "control":
        if not fuzz_run.ensure_atheris():
            pytest.skip("atheris cannot be installed from the package index")
    else:
        fuzz_run.build([harness])
    res = fuzz_run.run(harness, SECONDS, seed=1, smoke=True)
    print(res.line())
    assert res.ok, f"fuzz_{harness} crashed:\n{res.log_tail}"
    assert res.runs > 0
