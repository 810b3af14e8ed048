"""One validator for everything that comes from outside the master.

The management API's bodies, the TOML configuration, the ``docknet`` flags
and the control socket's attach all check their values here, so a name, a
rate or an address means the same thing whichever way it arrives and is
refused with the same sentence. Every check raises :class:`ValidationError`
(a ``ValueError``) saying ``FIELD: what was wrong``; nothing is stored by a
caller before all of its values have passed.

Ranges follow what the native side can hold (``native/dn_switch.h``,
``native/dn_limit.h``, ``native/dn_policy.h``): a value that passes here
never overflows a C type on its way into the switch.
"""

from __future__ import annotations

import fcntl
import ipaddress
import os
import re
import stat
from typing import Any

from .rates import parse_bits, parse_pkts

__all__ = [
    "LIMIT_KEYS",
    "container_id",
    "interface_name",
    "MAX_BITS_PER_S",
    "MAX_NAME",
    "MAX_PKTS_PER_S",
    "NAME_PATTERN",
    "CONTAINER_ID_PATTERN",
    "IFNAME_PATTERN",
    "NETNS_PATTERN",
    "ValidationError",
    "endpoint_name",
    "host_address",
    "ipv4_network",
    "ipv6_prefix",
    "limit",
    "netns_path",
    "owner",
    "port",
    "tenant_name",
    "text",
    "uplink_interface",
    "whole",
]


class ValidationError(ValueError):
    """A value from outside that the master will not take."""


# Endpoint and tenant names end up in log lines, Prometheus labels, memfd
# names, netns names (`docknet run` makes dn-NAME-ID) and URL paths: one
# pattern with nothing that is special in any of them.
MAX_NAME = 63
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")

# The switch keeps rates as uint64 per second, but its token bucket refills
# by multiplying the byte rate by the microseconds since its last tick in
# 64 bits. These caps sit far above anything the switch can forward and keep
# that product exact even when the thread has not ticked for minutes.
MAX_BITS_PER_S = 10**12
MAX_PKTS_PER_S = 10**9

# API and TOML keys of the limits, and the attribute each is kept as. A
# burst is how many bits may pass at once above the rate (the CNI bandwidth
# capability's ingressBurst/egressBurst); 0 picks 10 ms of the rate, and
# the switch takes at least two jumbo frames (native/switch/dn_limit.c).
LIMIT_KEYS = {"egress": "egress_bits", "ingress": "ingress_bits",
              "egress_pps": "egress_pkts", "ingress_pps": "ingress_pkts",
              "egress_burst": "egress_burst_bits", "ingress_burst": "ingress_burst_bits"}


# ioctl(NS_GET_NSTYPE) on a namespace file answers its CLONE_NEW* flag.
_NS_GET_NSTYPE = 0xB703
_CLONE_NEWNET = 0x40000000
_NETNS_RUN = re.compile(r"/run/netns/[A-Za-z0-9_][A-Za-z0-9_.-]*")
_NETNS_PROC = re.compile(r"/proc/[1-9][0-9]*/ns/net")


def _shown(value: Any) -> str:
    """A value as an error message quotes it: never long, never raw bytes
    of control characters (messages go to logs and terminals)."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValidationError(f"{what}: must be a non-empty string")
    if len(value) > MAX_NAME or _NAME.fullmatch(value) is None:
        raise ValidationError(
            f"{what}: {_shown(value)} is not a name: 1-{MAX_NAME} letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return value


def endpoint_name(value: Any, what: str = "endpoint name") -> str:
    return _name(value, what)


def tenant_name(value: Any, what: str = "tenant name") -> str:
    return _name(value, what)


def whole(value: Any, low: int, high: int, what: str) -> int:
    """An integer from low to high; JSON's and TOML's booleans are not
    numbers here, although Python counts them as ints."""
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ValidationError(f"{what}: must be a whole number from {low} to {high}")
    return value


def port(value: Any, what: str = "port") -> int:
    """A TCP/UDP port for policy: 0 means any port."""
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 65535:
        raise ValidationError(f"{what}: must be 0 (any) to 65535")
    return value


def limit(key: str, value: Any, what: str | None = None) -> int:
    """One of the LIMIT_KEYS: a whole number or text such as "100mbit" or
    "20kpps"; 0 or "unlimited" for no limit (for a burst: the default)."""
    what = what or key
    if key not in LIMIT_KEYS:
        raise ValidationError(f"{what}: unknown limit (known: {', '.join(LIMIT_KEYS)})")
    pkts = key.endswith("_pps")
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        example = "20kpps" if pkts else "100mbit"
        raise ValidationError(f"{what}: must be a whole number or a rate such as {example!r}")
    if isinstance(value, str) and len(value) > 64:
        raise ValidationError(f"{what}: not a rate: {_shown(value)}")
    try:
        rate = parse_pkts(value) if pkts else parse_bits(value)
    except ValueError as exc:
        raise ValidationError(f"{what}: {exc}") from None
    high = MAX_PKTS_PER_S if pkts else MAX_BITS_PER_S
    if rate > high:
        unit = "packets/s" if pkts else "bits/s"
        raise ValidationError(f"{what}: {_shown(value)} is above the largest limit the switch takes "
                              f"({high:,} {unit})")
    return rate


def ipv4_network(value: Any, what: str) -> ipaddress.IPv4Network:
    if not isinstance(value, str):
        raise ValidationError(f"{what}: must be a string such as '10.77.0.0/16'")
    try:
        return ipaddress.IPv4Network(value)
    except ValueError as exc:
        raise ValidationError(f"{what}: {exc}") from None


def ipv6_prefix(value: Any, what: str) -> ipaddress.IPv6Network | None:
    """The master's IPv6 prefix, or None for "none" (IPv4 only). An
    endpoint's IPv6 address is its IPv4 host part in the prefix's low 32
    bits, so those bits must be free: a prefix of 64 to 96 bits."""
    if not isinstance(value, str):
        raise ValidationError(f"{what}: must be a string such as 'fd77:d0c::/64', or 'none'")
    if value.strip().lower() == "none":
        return None
    if len(value) > 64:
        raise ValidationError(f"{what}: {_shown(value)} is not an IPv6 prefix")
    if "%" in value:
        raise ValidationError(f"{what}: {_shown(value)} has a scope (zone id); a prefix has none")
    try:
        net = ipaddress.IPv6Network(value, strict=False)
    except ValueError:
        raise ValidationError(f"{what}: {_shown(value)} is not an IPv6 prefix such as 'fd77:d0c::/64'") from None
    if "/" not in value:
        raise ValidationError(f"{what}: {_shown(value)} needs a prefix length, e.g. 'fd77:d0c::/64'")
    if not 64 <= net.prefixlen <= 96:
        raise ValidationError(f"{what}: prefix length /{net.prefixlen} is not from /64 to /96 (the low 32 bits "
                              "carry each endpoint's IPv4 host part)")
    # With /96 at most, the low 32 bits lie after the prefix: zero here.
    if ipaddress.IPv6Interface(value).ip != net.network_address:
        raise ValidationError(f"{what}: {_shown(value)} has bits set after the prefix length "
                              f"(the prefix is {net}; the low 32 bits must be zero)")
    return net


def host_address(value: Any, rng: ipaddress.IPv4Network, gateway: str, what: str = "ip",
                 twins: tuple[ipaddress.IPv4Network, ipaddress.IPv6Network] | None = None) -> str:
    """An address an endpoint may ask for: inside this master's range and
    neither its network, broadcast nor gateway address. twins: the master's
    subnet and IPv6 prefix, when it has one: an IPv6 address there asks for
    its IPv4 twin (the one kept)."""
    if not isinstance(value, str):
        raise ValidationError(f"{what}: must be a string such as '10.77.0.9'")
    if ":" in value and twins is not None:
        from .master.addresses import address4_of

        try:
            if "%" in value or len(value) > 45:
                raise ValueError
            twin = address4_of(ipaddress.IPv6Address(value), *twins)
        except ValueError:
            raise ValidationError(f"{what}: {_shown(value)} is not an IPv4 or IPv6 address") from None
        if twin is None:
            raise ValidationError(f"{what}: {_shown(value)} is no endpoint address of this master's prefix "
                                  f"{twins[1]}")
        value = twin
    try:
        ip = ipaddress.IPv4Address(value)
    except ValueError:
        raise ValidationError(f"{what}: {_shown(value)} is not an IPv4 address") from None
    if ip not in rng:
        raise ValidationError(f"{what}: {ip} is outside this master's range {rng}")
    if ip in (rng.network_address, rng.broadcast_address) or str(ip) == gateway:
        raise ValidationError(f"{what}: {ip} is the network, broadcast or gateway address of {rng}")
    return str(ip)


def netns_path(value: Any, what: str = "netns") -> str:
    """A network namespace as a path: a bind mount under /run/netns (what
    `ip netns add` makes) or a process's /proc/PID/ns/net, and really a
    network namespace, so a registration cannot name an arbitrary file."""
    if not isinstance(value, str) or not value:
        raise ValidationError(f"{what}: must be a namespace path, e.g. /run/netns/NAME or /proc/PID/ns/net")
    if _NETNS_RUN.fullmatch(value) is None and _NETNS_PROC.fullmatch(value) is None:
        raise ValidationError(
            f"{what}: {_shown(value)} is not a network namespace path (/run/netns/NAME or /proc/PID/ns/net)"
        )
    try:
        st = os.stat(value)
        if not stat.S_ISREG(st.st_mode):  # namespace files are; a FIFO would block the open
            raise ValidationError(f"{what}: {_shown(value)} is not a network namespace")
        fd = os.open(value, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as exc:
        raise ValidationError(f"{what}: network namespace {_shown(value)}: {exc.strerror}") from None
    try:
        kind = fcntl.ioctl(fd, _NS_GET_NSTYPE)
    except OSError:
        kind = -1
    finally:
        os.close(fd)
    if kind != _CLONE_NEWNET:
        raise ValidationError(f"{what}: {_shown(value)} is not a network namespace")
    return value


# Who registered an endpoint for a container (the CNI plugin): the
# runtime's container id (CNI's rule: alphanumerics, '_', '.', '-') and the
# interface name the runtime asked for (the kernel's rule for a name).
OWNER_KEYS = ("runtime", "network", "container_id", "ifname")
MAX_CONTAINER_ID = 128
_CONTAINER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_IFNAME = re.compile(r"(?:(?![/:])[!-~]){1,15}")


def container_id(value: Any, what: str = "container id") -> str:
    if not isinstance(value, str) or len(value) > MAX_CONTAINER_ID or _CONTAINER_ID.fullmatch(value) is None:
        raise ValidationError(f"{what}: {_shown(value)} is not a container id: 1-{MAX_CONTAINER_ID} "
                              "letters, digits, '_', '.' or '-', starting with a letter or digit")
    return value


def interface_name(value: Any, what: str = "interface name") -> str:
    if not isinstance(value, str) or _IFNAME.fullmatch(value) is None or value in (".", ".."):
        raise ValidationError(f"{what}: {_shown(value)} is not an interface name "
                              "(1-15 printable ASCII characters, no '/', ':' or space)")
    return value


# The uplink's interface goes into DPDK device arguments
# ("net_af_xdp0,iface=NAME"), where ',' starts another argument and '='
# gives one a value: a name with either could set arguments nobody asked
# for (xdp_prog=, a file to load into the kernel). The kernel's own rule
# (interface_name) allows both, so they are refused here on top of it.
_DEVARGS_SPECIAL = {",": "would start another DPDK device argument", "=": "would give a DPDK device argument a value"}


def uplink_interface(value: Any, what: str = "uplink interface") -> str:
    """A kernel interface the uplink may open: a Linux interface name
    (1-15 printable ASCII characters, no '/', ':' or whitespace; not '.'
    or '..') without ',' or '='."""
    if not isinstance(value, str) or not value:
        raise ValidationError(f"{what}: must be an interface name such as 'eth1'")
    for ch, why in _DEVARGS_SPECIAL.items():
        if ch in value:
            raise ValidationError(f"{what}: {_shown(value)} contains {ch!r}, which {why}")
    if len(value) > 15:
        raise ValidationError(f"{what}: {_shown(value)} is longer than an interface name may be "
                              "(15 characters, Linux's IFNAMSIZ)")
    return interface_name(value, what)


def owner(value: Any, what: str = "owner") -> dict[str, str]:
    """An endpoint's owner: {runtime, network, container_id, ifname}, all
    required; runtime and network are names."""
    if not isinstance(value, dict):
        raise ValidationError(f"{what}: must be an object with {', '.join(OWNER_KEYS)}")
    unknown = sorted(str(k) for k in set(value) - set(OWNER_KEYS))
    if unknown:
        raise ValidationError(f"{what}: unknown field {_shown(unknown[0])} (known: {', '.join(OWNER_KEYS)})")
    missing = [k for k in OWNER_KEYS if k not in value]
    if missing:
        raise ValidationError(f"{what}: {missing[0]!r} is required")
    return {"runtime": _name(value["runtime"], f"{what}.runtime"),
            "network": _name(value["network"], f"{what}.network"),
            "container_id": container_id(value["container_id"], f"{what}.container_id"),
            "ifname": interface_name(value["ifname"], f"{what}.ifname")}


# The same rules as JSON Schema patterns (ECMA-262 syntax, anchored as the
# checks above match whole values), for the management API's OpenAPI
# document: built from the expressions the checks use, so they say the same.
NAME_PATTERN = f"^{_NAME.pattern}$"
CONTAINER_ID_PATTERN = f"^{_CONTAINER_ID.pattern}$"
IFNAME_PATTERN = f"^{_IFNAME.pattern}$"
NETNS_PATTERN = f"^(?:{_NETNS_RUN.pattern}|{_NETNS_PROC.pattern})$"


def text(value: Any, what: str) -> str:
    """A free-form setting (a directory, DPDK device arguments): a string
    with no NUL, which no path or C string can hold."""
    if not isinstance(value, str):
        raise ValidationError(f"{what}: must be a string")
    if "\0" in value:
        raise ValidationError(f"{what}: contains a NUL character")
    return value
