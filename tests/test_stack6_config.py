"""The stack's IPv6 configuration (dn_stack_config.ip6, prefix6_len) as
dn_stack_open() checks it: a master's bad prefix length or an address no
endpoint can have is refused with EINVAL and a reason, before the stack
touches its link (so no link, EAL or master is needed to see it)."""

from __future__ import annotations

import errno
import json
import subprocess
import sys

import pytest

# lwIP allows one stack per process, and earlier tests in this process may
# hold it (dn_stack_open then says EBUSY before it looks at the
# configuration): each configuration is tried in a fresh process.
PROBE = """
import ipaddress, json, sys
from aiodocknet.native._lib import ffi, lib
ip6, length = sys.argv[1], int(sys.argv[2])
cfg = ffi.new("struct dn_stack_config *")
cfg.ip = int(ipaddress.IPv4Address("10.77.0.5"))
cfg.netmask = 0xFFFF0000
cfg.gateway = int(ipaddress.IPv4Address("10.77.0.1"))
cfg.ip6 = ipaddress.IPv6Address(ip6).packed
cfg.prefix6_len = length
cfg.mtu = 1500
cfg.max_conns = 4
cfg.link_fd = cfg.wake_fd = cfg.master_wake_fd = -1
out = ffi.new("struct dn_stack **")
rc = lib.dn_stack_open(cfg, out)
print(json.dumps([rc, ffi.string(lib.dn_last_error()).decode()]))
"""


def open_with(ip6: str, prefix6_len: int) -> tuple[int, str]:
    res = subprocess.run([sys.executable, "-c", PROBE, ip6, str(prefix6_len)], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stderr[-2000:]
    rc, why = json.loads(res.stdout)
    assert rc < 0, "a stack opened on no link"
    return -rc, why


@pytest.mark.parametrize("length", [1, 48, 63, 97, 128, 255])
def test_a_prefix_length_outside_64_to_96_is_refused(length: int) -> None:
    code, why = open_with("fd77:d0c::5", length)
    assert code == errno.EINVAL
    assert f"prefix length {length}" in why


@pytest.mark.parametrize("addr", ["::", "ff02::1", "::1", "fe80::5"])
def test_an_address_no_endpoint_has_is_refused(addr: str) -> None:
    code, why = open_with(addr, 64)
    assert code == errno.EINVAL
    assert "IPv6 address" in why


@pytest.mark.parametrize("addr,length", [("fd77:d0c::5", 64), ("fd77:d0c::5", 96), ("ff02::1", 0)])
def test_a_good_address_or_none_gets_past_the_check(addr: str, length: int) -> None:
    # The link (fd -1) is what fails then, not the IPv6 configuration.
    code, why = open_with(addr, length)
    assert code != errno.EBUSY, why
    assert "IPv6" not in why and "prefix" not in why, why
