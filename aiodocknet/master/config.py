"""The master's TOML configuration file, and what is wrong with one.

Every key is also a ``docknet master`` flag; flags given on the command
line win. Example::

    subnet = "10.77.0.0/16"
    range = "10.77.1.0/24"          # this host's share, when hosts share it
    mtu = 9000
    run_dir = "/run/docknet"
    uplink = "net_af_packet0,iface=eth1"

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
import re
import tomllib
from dataclasses import dataclass, field
from typing import Any

from ..rates import parse_bits, parse_pkts
from .faults import UPLINK_DIRECTIONS, Faults
from .master import MasterConfig

__all__ = ["ConfigError", "FileConfig", "load_config"]

TOP_KEYS = {"subnet", "range", "mtu", "run_dir", "uplink", "spin_us", "max_endpoints", "defaults", "policy",
            "fast_channels", "fast_channel_ring", "uplink_faults"}
DEFAULT_KEYS = {"egress": parse_bits, "ingress": parse_bits, "egress_pps": parse_pkts, "ingress_pps": parse_pkts}


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

    def text_value(key: str) -> str | None:
        value = data.get(key)
        if value is not None and not isinstance(value, str):
            raise fail(key, "must be a string")
        return value

    subnet = text_value("subnet")
    if subnet is not None:
        try:
            ipaddress.IPv4Network(subnet)
        except ValueError as exc:
            raise fail("subnet", str(exc)) from None
        cfg.subnet = subnet
    rng = text_value("range")
    if rng is not None:
        try:
            if not ipaddress.IPv4Network(rng).subnet_of(ipaddress.IPv4Network(cfg.subnet)):
                raise fail("range", f"{rng} is not inside the subnet {cfg.subnet}")
        except ValueError as exc:
            raise fail("range", str(exc)) from None
        cfg.range = rng
    for key in ("run_dir", "uplink"):
        value = text_value(key)
        if value is not None:
            setattr(cfg, key, value)
    for key, low, high in (("mtu", 576, 9000), ("spin_us", 0, 100000), ("max_endpoints", 1, 65534)):
        if key in data:
            value = data[key]
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise fail(key, f"must be a whole number from {low} to {high}")
            setattr(cfg, key, value)

    if "fast_channels" in data:
        if not isinstance(data["fast_channels"], bool):
            raise fail("fast_channels", "must be true or false")
        cfg.fast_channels = data["fast_channels"]
    if "fast_channel_ring" in data:
        try:
            cfg.fast_channel_ring = parse_ring_size(data["fast_channel_ring"])
        except ValueError as exc:
            raise fail("fast_channel_ring", str(exc)) from None

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
            out.defaults[key] = DEFAULT_KEYS[key](value)
        except (ValueError, TypeError) as exc:
            raise fail(f"defaults.{key}", str(exc)) from None
    policies = data.get("policy", [])
    if not isinstance(policies, list):
        raise fail("policy", "must be an array of tables ([[policy]])")
    for i, rule in enumerate(policies):
        if not isinstance(rule, dict) or not isinstance(rule.get("from"), str) or not isinstance(rule.get("to"), str):
            raise fail("from", f"policy rule {i + 1} needs 'from' and 'to' tenant names", i)
        port = rule.get("port", 0)
        if not isinstance(port, int) or not 0 <= port <= 65535:
            raise fail("port", f"policy rule {i + 1}: port must be 0 (any) to 65535", i)
        out.policies.append((rule["from"], rule["to"], port))
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
    return {"subnet": m.subnet, "range": m.range, "mtu": m.mtu, "run_dir": m.run_dir, "uplink": m.uplink,
            "fast_channels": m.fast_channels, "fast_channel_ring": m.fast_channel_ring,
            "uplink_faults": None if m.uplink_faults is None else
            {"direction": m.uplink_faults[0], **m.uplink_faults[1].public()},
            "defaults": fc.defaults, "policies": fc.policies}
