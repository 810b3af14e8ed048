"""The master's TOML configuration file, and what is wrong with one.

Every key is also a ``docknet master`` flag; flags given on the command
line win. Example::

    subnet = "10.77.0.0/16"
    subnet6 = "fd77:d0c::/64"       # endpoints' IPv6 prefix; "none": IPv4 only
    range = "10.77.1.0/24"          # this host's share, when hosts share it
    mtu = 9000
    run_dir = "/run/docknet"
    uplink = "iface:eth1"           # af_xdp, else af_packet; or af_xdp:eth1,
                                    # af_packet:eth1, DPDK device arguments

    [defaults]                      # limits for endpoints that set none
    egress = "1gbit"
    ingress = "1gbit"

    [[policy]]                      # tenant "shop" may reach "db" on 5432
    from = "shop"
    to = "db"
    port = 5432

    [uplink_faults]                 # tests only: parts per million
    drop_ppm = 10000
    reorder_ppm = 10000
    seed = 7
    direction = "both"              # or "egress", "ingress"
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from dataclasses import dataclass, field
from typing import Any

from .. import validate
from ..control import DEFAULT_RUN_DIR, DEFAULT_SUBNET6
from .faults import UPLINK_DIRECTIONS, Faults
from .registry import DEFAULT_TENANT, MAX_TENANTS
from .uplink import parse as parse_uplink

__all__ = ["ConfigError", "FileConfig", "MasterConfig", "check_setting", "load_config"]

TOP_KEYS = {"subnet", "subnet6", "range", "mtu", "run_dir", "uplink", "spin_us", "max_endpoints", "defaults", "policy",
            "fast_channels", "fast_channel_ring", "peer_links", "uplink_faults"}
DEFAULT_KEYS = validate.LIMIT_KEYS
# Whole-number settings and their bounds (the switch's uint16 MTU, its
# endpoint slots).
WHOLE_KEYS = {"mtu": (576, 9000), "spin_us": (0, 100000), "max_endpoints": (1, 65534)}


@dataclass
class MasterConfig:
    run_dir: str = DEFAULT_RUN_DIR
    subnet: str = "10.77.0.0/16"
    # The endpoints' IPv6 prefix (each one's address: its IPv4 host part
    # in the low 32 bits); None: IPv4 only.
    subnet6: str | None = str(DEFAULT_SUBNET6)
    # Links to endpoints are internal: jumbo frames cut the per-segment cost.
    mtu: int = 9000
    max_endpoints: int = 1024
    # Busy-poll this long after the last frame before sleeping: long enough
    # to catch the answer to a request, short enough to cost ~0% when idle.
    spin_us: int = 200
    # One jumbo frame each (~9.6 KiB): ~78 MiB.
    n_mbufs: int = 8191
    mem_mb: int = 128
    # This host's share of the subnet, when masters on several hosts share
    # one; None: all of it.
    range: str | None = None
    # The port to other hosts (master/uplink.py): "iface:eth1" (af_xdp,
    # else af_packet), "af_xdp:eth1", "af_packet:eth1" or DPDK device
    # arguments such as "net_af_packet0,iface=eth1"; None: a host on its own.
    uplink: str | None = None
    # Shared-memory channels for connections between this host's
    # endpoints (the slaves' loops ask for them), and each ring's size.
    fast_channels: bool = True
    fast_channel_ring: int = 1 << 20
    # Frame links between two endpoints' stacks where the switch would
    # only forward (native/stack/dn_link.h), asked for by the slaves.
    peer_links: bool = True
    # Fault injection on the uplink, for tests: (direction, faults), the
    # direction "egress", "ingress" or "both"; None: off.
    uplink_faults: tuple[str, Faults] | None = None

    @property
    def control_path(self) -> str:
        return os.path.join(self.run_dir, "master.sock")

    @property
    def api_path(self) -> str:
        return os.path.join(self.run_dir, "api.sock")


class ConfigError(ValueError):
    pass


@dataclass
class FileConfig:
    master: MasterConfig
    defaults: dict[str, int] = field(default_factory=dict)
    policies: list[tuple[str, str, int]] = field(default_factory=list)


def _line_of(text: str, key: str, nth: int = 0) -> int:
    hits = [i + 1 for i, line in enumerate(text.splitlines()) if re.match(rf"\s*{re.escape(key)}\s*=", line)]
    return hits[min(nth, len(hits) - 1)] if hits else 0


def check_setting(cfg: MasterConfig, key: str, value: Any, what: str | None = None) -> None:
    """Checks one master setting, from the file or a flag alike, and keeps
    it in cfg; ValidationError ("WHAT: why") otherwise. range is checked
    against cfg's subnet, so the subnet goes first."""
    what = what or key
    if key == "subnet":
        validate.ipv4_network(value, what)
    elif key == "subnet6":
        prefix6 = validate.ipv6_prefix(value, what)
        value = str(prefix6) if prefix6 is not None else None
    elif key == "range":
        rng = validate.ipv4_network(value, what)
        if not rng.subnet_of(ipaddress.IPv4Network(cfg.subnet)):
            raise validate.ValidationError(f"{what}: {rng} is not inside the subnet {cfg.subnet}")
        if rng.num_addresses < 4:
            raise validate.ValidationError(f"{what}: {rng} is too small for endpoints")
    elif key in WHOLE_KEYS:
        validate.whole(value, *WHOLE_KEYS[key], what)
    elif key == "run_dir":
        validate.text(value, what)
    elif key == "uplink":
        value = str(parse_uplink(value, what))
    elif key in ("fast_channels", "peer_links"):
        if not isinstance(value, bool):
            raise validate.ValidationError(f"{what}: must be true or false")
    elif key == "fast_channel_ring":
        try:
            value = parse_ring_size(value)
        except ValueError as exc:
            raise validate.ValidationError(f"{what}: {exc}") from None
    else:
        raise validate.ValidationError(f"{what}: unknown setting")
    setattr(cfg, key, value)


def load_config(path: str, base: MasterConfig | None = None) -> FileConfig:
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror}") from None
    text = raw.decode(errors="replace")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None

    def fail(key: str, why: str, nth: int = 0) -> ConfigError:
        line = _line_of(text, key.split(".")[-1], nth)
        where = f"{path}:{line}" if line else path
        return ConfigError(f"{where}: {key}: {why}")

    for key in data:
        if key not in TOP_KEYS:
            raise fail(key, f"unknown key (known: {', '.join(sorted(TOP_KEYS))})")
    cfg = base or MasterConfig()

    def failed(key: str, exc: ValueError, nth: int = 0) -> ConfigError:
        line = _line_of(text, key.split(".")[-1], nth)
        return ConfigError(f"{path}:{line}: {exc}" if line else f"{path}: {exc}")

    # subnet before range: a range is checked against the subnet.
    for key in ("subnet", "subnet6", "range", "run_dir", "uplink", *WHOLE_KEYS, "fast_channels", "fast_channel_ring",
                "peer_links"):
        if key in data:
            try:
                check_setting(cfg, key, data[key])
            except validate.ValidationError as exc:
                raise failed(key, exc) from None

    if "uplink_faults" in data:
        table = data["uplink_faults"]
        if not isinstance(table, dict):
            raise fail("uplink_faults", "must be a table")
        direction = table.get("direction", "both")
        if direction not in UPLINK_DIRECTIONS:
            raise fail("uplink_faults.direction", f"must be one of {', '.join(UPLINK_DIRECTIONS)}")
        try:
            cfg.uplink_faults = (direction, Faults.parse(table, extra=("direction",)))
        except ValueError as exc:
            raise fail("uplink_faults", str(exc)) from None

    out = FileConfig(cfg)
    defaults = data.get("defaults", {})
    if not isinstance(defaults, dict):
        raise fail("defaults", "must be a table")
    for key, value in defaults.items():
        if key not in DEFAULT_KEYS:
            raise fail(f"defaults.{key}", f"unknown limit (known: {', '.join(DEFAULT_KEYS)})")
        try:
            out.defaults[key] = validate.limit(key, value, f"defaults.{key}")
        except validate.ValidationError as exc:
            raise failed(f"defaults.{key}", exc) from None
    policies = data.get("policy", [])
    if not isinstance(policies, list):
        raise fail("policy", "must be an array of tables ([[policy]])")
    tenants = {DEFAULT_TENANT}
    for i, rule in enumerate(policies):
        if not isinstance(rule, dict) or "from" not in rule or "to" not in rule:
            raise fail("from", f"policy rule {i + 1} needs 'from' and 'to' tenant names", i)
        unknown = sorted(set(rule) - {"from", "to", "port"})
        if unknown:
            raise fail(unknown[0], f"policy rule {i + 1}: unknown key (known: from, to, port)", i)
        checked: dict[str, Any] = {}
        for key, check in (("from", validate.tenant_name), ("to", validate.tenant_name), ("port", validate.port)):
            try:
                checked[key] = check(rule.get(key, 0), f"policy rule {i + 1}: {key}")
            except validate.ValidationError as exc:
                raise failed(key, exc, i) from None
        source, dest, port = checked["from"], checked["to"], checked["port"]
        tenants |= {source, dest}
        out.policies.append((source, dest, port))
    if len(tenants) > MAX_TENANTS:
        raise fail("policy", f"names {len(tenants)} tenants; the switch holds at most {MAX_TENANTS}")
    return out


def parse_ring_size(value: Any) -> int:
    """A fast channel's ring size: bytes, or text like "1MiB" / "256k"; a
    power of two from 4 KiB to 64 MiB."""
    if isinstance(value, bool):
        raise ValueError("must be a size such as 1MiB")
    if isinstance(value, int):
        size = value
    elif isinstance(value, str):
        m = re.match(r"^\s*(\d+)\s*([kmg]?)(i?b)?\s*$", value, re.I)
        if m is None:
            raise ValueError(f"not a size: {value!r} (examples: 1MiB, 256KiB, 65536)")
        size = int(m.group(1)) * {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[m.group(2).lower()]
    else:
        raise ValueError("must be a size such as 1MiB")
    if not 4096 <= size <= 64 << 20 or size & (size - 1):
        raise ValueError(f"{size} bytes is not a power of two from 4 KiB to 64 MiB")
    return size


def describe(fc: FileConfig) -> dict[str, Any]:
    m = fc.master
    return {"subnet": m.subnet, "subnet6": m.subnet6, "range": m.range, "mtu": m.mtu, "run_dir": m.run_dir,
            "uplink": m.uplink,
            "fast_channels": m.fast_channels, "fast_channel_ring": m.fast_channel_ring, "peer_links": m.peer_links,
            "uplink_faults": None if m.uplink_faults is None else
            {"direction": m.uplink_faults[0], **m.uplink_faults[1].public()},
            "defaults": fc.defaults, "policies": fc.policies}
