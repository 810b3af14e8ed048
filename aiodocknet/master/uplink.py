"""The master's uplink: what ``--uplink`` (or the configuration's
``uplink``) says, and which DPDK port it becomes.

Forms:

- ``iface:NAME``: the kernel interface NAME, through net_af_xdp; if that
  port cannot be had there (a jumbo MTU, several receive queues, a kernel
  without AF_XDP), through net_af_packet, and the reason is logged and
  reported (``uplink.pmd_fallback`` in the status).
- ``af_xdp:NAME`` and ``af_packet:NAME``: that port on NAME and no other.
- anything else: DPDK device arguments as they are
  (``net_af_packet0,iface=eth1``, ``net_tap0,iface=dn0``, a PCI address).

net_af_xdp of the first two forms loads DockNet's XDP program
(native/switch/dn_xdp.h), which hands DockNet only its own frames, so the
host's addresses on NAME keep their traffic. Without that program (not
built) af_xdp would take all of it: then an interface with the host's
addresses falls back to af_packet (``iface:``) or is refused
(``af_xdp:``).

The interface name is checked before anything is opened
(:func:`aiodocknet.validate.uplink_interface`): it is spliced into device
arguments, so it must not carry any of its own. Nothing here imports the
native code: checking a configuration needs none of it.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import socket
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

from .. import validate
from ..log import get_logger

__all__ = ["Attempt", "Uplink", "check_present", "host_addresses", "if_ioctl", "open_uplink", "parse", "pmd_of"]

log = get_logger("aiodocknet.master.uplink")

FORMS = ("iface", "af_xdp", "af_packet")
# DPDK driver names and what the status calls them.
_PMD_OF_DRIVER = {"net_af_xdp": "af_xdp", "net_af_packet": "af_packet"}
_DRIVER_OF_PMD = {pmd: driver for driver, pmd in _PMD_OF_DRIVER.items()}
MAX_DEVARGS = 255
_BLANK = re.compile(r"[\s\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Uplink:
    """form: "iface", "af_xdp", "af_packet" (value: the interface) or
    "devargs" (value: DPDK device arguments)."""

    form: str
    value: str

    def __str__(self) -> str:
        return self.value if self.form == "devargs" else f"{self.form}:{self.value}"


@dataclass(frozen=True)
class Attempt:
    """One port to try: pmd as the status reports it, DPDK device
    arguments, and the kernel interface (None: a raw device)."""

    pmd: str
    devargs: str
    iface: str | None
    # af_xdp with DockNet's XDP program: the host's frames pass by.
    filtered: bool = False


def parse(value: Any, what: str = "uplink") -> Uplink:
    """An uplink setting; ValidationError ("WHAT: why") for anything the
    master would not open."""
    validate.text(value, what)
    form, sep, rest = value.partition(":")
    if sep and form in FORMS:
        return Uplink(form, validate.uplink_interface(rest, f"{what}: {form}: interface"))
    if not value:
        raise validate.ValidationError(f"{what}: must be iface:NAME, af_xdp:NAME, af_packet:NAME or DPDK device "
                                       "arguments such as 'net_af_packet0,iface=eth1'")
    if len(value) > MAX_DEVARGS:
        raise validate.ValidationError(f"{what}: DPDK device arguments longer than {MAX_DEVARGS} characters")
    if _BLANK.search(value):
        raise validate.ValidationError(f"{what}: {value[:40]!r} has whitespace or control characters; DPDK device "
                                       "arguments have none")
    return Uplink("devargs", value)


def pmd_of(devargs: str) -> str:
    """What the status calls the port of these device arguments:
    "af_xdp", "af_packet", or the driver's name (net_tap0 -> net_tap)."""
    driver = devargs.split(",", 1)[0].rstrip("0123456789")
    return _PMD_OF_DRIVER.get(driver, driver)


def attempts(up: Uplink) -> list[Attempt]:
    """The ports to try, in order."""
    if up.form == "devargs":
        args = dict(a.partition("=")[::2] for a in up.value.split(",")[1:])
        return [Attempt(pmd_of(up.value), up.value, args.get("iface"))]
    pmds = ["af_xdp", "af_packet"] if up.form == "iface" else [up.form]
    out = []
    for pmd in pmds:
        devargs = f"{_DRIVER_OF_PMD[pmd]}0,iface={up.value}"
        prog = xdp_filter() if pmd == "af_xdp" else None
        out.append(Attempt(pmd, f"{devargs},xdp_prog={prog}" if prog else devargs, up.value, prog is not None))
    return out


# Built by scripts/bootstrap.sh beside the native extension.
XDP_FILTER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "native", "dn_xdp_filter.o")


def xdp_filter() -> str | None:
    """The XDP program's object file, if built and if its path can be a
    device argument (no ',' or '=' in it)."""
    if not os.path.isfile(XDP_FILTER) or re.search(r"[,=\s]", XDP_FILTER):
        return None
    return XDP_FILTER


_SIOCGIFMTU = 0x8921


def if_ioctl(iface: str, request: int, field: str, value: int = 0) -> int | None:
    """One interface ioctl of this network namespace on a struct ifreq
    (the name, then one field of struct format field: "i" ifr_mtu, "H"
    ifr_flags): the field as the kernel hands it back, or None if there is
    no such interface or the kernel refused."""
    req = struct.pack(f"16s{field}", iface.encode(), value).ljust(40, b"\0")
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            return int(struct.unpack_from(f"16s{field}", fcntl.ioctl(s, request, req))[1])
    except OSError:
        return None


def wire_mtu(iface: str) -> int | None:
    """The interface's MTU (SIOCGIFMTU), or None if there is no such
    interface."""
    return if_ioctl(iface, _SIOCGIFMTU, "i")


def rx_queues(iface: str) -> int:
    """Its receive queues in use, from /sys (1 if /sys does not show it)."""
    try:
        return sum(1 for n in os.listdir(os.path.join("/sys/class/net", iface, "queues")) if n.startswith("rx-"))
    except OSError:
        return 1


def clamp_mtu(iface: str | None, mtu: int) -> int:
    """Endpoints' frames cross the uplink unchanged (no fragmentation), so
    the links may not be wider than it."""
    wire = wire_mtu(iface) if iface else None
    if wire is not None and wire < mtu:
        log.warning("link MTU lowered to the uplink's", uplink=iface, mtu=wire, wanted=mtu)
        return wire
    return mtu


# Bytes each of net_af_packet's rings holds at most when its frames are
# large: with its own 512 frames of 16 KiB for a jumbo MTU (8 MiB a ring,
# four rings per master) streams across hosts ran slower than with 256
# (why was not measured: a smaller working set is the likely reason).
AF_PACKET_RING_BYTES = 4 << 20
AF_PACKET_FRAMES = 512  # net_af_packet's own count, kept for small frames


def size_af_packet(devargs: str, mtu: int) -> str:
    """net_af_packet's ring frames are 2 KiB unless told otherwise; a jumbo
    frame would not fit. One block per frame; the kernel wants blocks of
    a power of two pages. With large frames, fewer of them."""
    if not devargs.startswith("net_af_packet") or "framesz=" in devargs:
        return devargs
    size = 4096
    while size < mtu + 256:
        size *= 2
    out = f"{devargs},framesz={size},blocksz={size}"
    if "framecnt=" not in devargs:
        out += f",framecnt={max(64, min(AF_PACKET_FRAMES, AF_PACKET_RING_BYTES // size))}"
    return out


async def host_addresses(up: Uplink) -> list[str]:
    """The kernel's own addresses on up's interface (of this network
    namespace; none for a raw device without iface=), IPv6 link-local ones
    left out: every interface has one, and it carries only neighbour
    discovery."""
    iface = attempts(up)[0].iface
    if iface is None:
        return []
    # Imported here: checking a configuration needs no netlink.
    from pyroute2 import AsyncIPRoute

    out = []
    async with AsyncIPRoute() as ipr:
        async for msg in await ipr.get_addr(index=socket.if_nametoindex(iface)):
            addr = msg.get("IFA_ADDRESS")
            if addr and not (msg["family"] == socket.AF_INET6 and addr.lower().startswith("fe80:")):
                out.append(f"{addr}/{msg['prefixlen']}")
    return out


def _skip_af_xdp(iface: str) -> str | None:
    """Why af_xdp would be wrong on iface even if it opened: it reads one
    receive queue, and a NIC spreads frames over all of its queues."""
    n = rx_queues(iface)
    if n > 1:
        return f"{iface} has {n} receive queues; the af_xdp uplink reads queue 0 only"
    return None


def _steals_from_host(iface: str, addrs: Sequence[str]) -> str | None:
    """Why af_xdp without DockNet's XDP program must not open on iface at
    all: net_af_xdp's own program hands every frame arriving on the port's
    queue to DockNet, so the host's own addresses there (addrs) would be cut
    off (af_packet's filtered sockets take only DockNet's frames and leave
    the kernel its own)."""
    if addrs:
        shown = ", ".join(addrs[:3]) + (f" and {len(addrs) - 3} more" if len(addrs) > 3 else "")
        return (f"{iface} carries the host's own addresses ({shown}); af_xdp would take their traffic from "
                f"the kernel")
    return None


def check_present(up: Uplink) -> None:
    """OSError(ENODEV) if up names a kernel interface this network
    namespace does not have (asked of the kernel: a /sys mounted in
    another namespace would show that one's)."""
    if up.form == "devargs":
        return
    try:
        socket.if_nametoindex(up.value)
    except OSError:
        raise OSError(errno.ENODEV, f"uplink {up}: no interface {up.value!r} in this network namespace") from None


T = TypeVar("T")


def open_uplink(up: Uplink, mtu: int, make: Callable[[str, int], T],
                host_addrs: Sequence[str] = ()) -> tuple[T, Attempt, str | None, int]:
    """Opens the first port of up that works: make(devargs, link_mtu)
    builds the switch with it (raising OSError when the port cannot be
    had). host_addrs: the host's addresses on up's interface
    (host_addresses()). Returns what make returned, the attempt it took,
    why an earlier one was passed over (None: the first worked) and the
    link MTU."""
    check_present(up)
    tries = attempts(up)
    fallback: str | None = None
    for i, attempt in enumerate(tries):
        last = i == len(tries) - 1
        link_mtu = clamp_mtu(attempt.iface, mtu)
        if attempt.pmd == "af_xdp" and attempt.iface is not None:
            steal = None if attempt.filtered else _steals_from_host(attempt.iface, host_addrs)
            if steal is not None and up.form == "devargs":
                # Raw device arguments are taken as they are (an xdp_prog=
                # of the operator's may well pass the host's frames on).
                log.warning("af_xdp uplink on an interface with the host's addresses", iface=attempt.iface,
                            reason=steal)
            elif steal is not None and last:
                raise OSError(errno.EADDRINUSE, f"uplink {up}: {steal} (DockNet's XDP program, which would "
                                                f"leave it its own, is not built: scripts/bootstrap.sh): use "
                                                f"af_packet:{attempt.iface}, or give DockNet an interface "
                                                "without addresses of the host's")
            elif steal is not None:
                fallback = f"af_xdp: {steal}"
                log.warning("uplink falls back", iface=attempt.iface, tried=attempt.pmd, to=tries[i + 1].pmd,
                            reason=steal)
                continue
            skip = _skip_af_xdp(attempt.iface)
            if skip is not None and not last:
                fallback = f"af_xdp: {skip}"
                log.warning("uplink falls back", iface=attempt.iface, tried=attempt.pmd, to=tries[i + 1].pmd,
                            reason=skip)
                continue
            if skip is not None:
                log.warning("af_xdp uplink asked for: frames on other queues are missed", iface=attempt.iface,
                            reason=skip)
        devargs = size_af_packet(attempt.devargs, link_mtu)
        try:
            return make(devargs, link_mtu), attempt, fallback, link_mtu
        except OSError as exc:
            # Another master's port on the interface: af_packet there too
            # would put two masters on one segment.
            if last or exc.errno == errno.EBUSY:
                raise
            why = exc.strerror or str(exc)
            fallback = f"{attempt.pmd}: {why}"
            log.warning("uplink falls back", iface=attempt.iface, tried=attempt.pmd, to=tries[i + 1].pmd,
                        reason=why)
    raise AssertionError("no uplink to try")  # attempts() is never empty
