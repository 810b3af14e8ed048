"""Fixtures shared by the tests: a real master per test (or per module,
for tests of input that changes nothing)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from dn_harness import Master, running_master


@pytest.fixture
def master() -> Iterator[Master]:
    if os.geteuid() != 0:
        pytest.skip("needs root (DPDK, hugepages)")
    with running_master() as m:
        yield m


@pytest.fixture(scope="module")
def shared_master() -> Iterator[Master]:
    """One master for a module's tests of input that must change nothing:
    each test checks that it did not, and leaves no peer running, so the
    next one starts from the same state (and a leak shows in the next)."""
    if os.geteuid() != 0:
        pytest.skip("needs root (DPDK, hugepages)")
    with running_master() as m:
        yield m


@pytest.fixture
def switch_master() -> Iterator[Master]:
    """A master whose slaves take the network path (no fast channels)."""
    if os.geteuid() != 0:
        pytest.skip("needs root (DPDK, hugepages)")
    with running_master() as m:
        m.env["DOCKNET_FAST_CHANNELS"] = "0"
        yield m
