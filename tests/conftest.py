"""Fixtures shared by the tests: a real master per test."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator

import pytest

from dn_harness import Master


@pytest.fixture
def master() -> Iterator[Master]:
    if os.geteuid() != 0:
        pytest.skip("needs root (DPDK memif sockets, hugepages)")
    with tempfile.TemporaryDirectory(prefix="dn-test-") as run_dir:
        m = Master(run_dir)
        try:
            yield m
        finally:
            rc = m.stop()
        assert rc == 0, f"master exited with {rc}: {m.proc.stderr_tail()}"
