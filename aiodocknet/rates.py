"""Rates as people write them: ``100mbit``, ``1.5Gbit/s``, ``20kpps``."""

from __future__ import annotations

import re
from decimal import Decimal

__all__ = ["parse_bits", "parse_pkts", "format_bits", "format_pkts"]

_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}
_BITS = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(bit|bps|b)?(?:/s)?\s*$", re.I)
_PKTS = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]?)(pps|p/s|packets/s)\s*$", re.I)


def _parse(text: str | int, pattern: re.Pattern[str], what: str, examples: str) -> re.Match[str] | int:
    if not isinstance(text, (str, int)):
        raise TypeError(f"a {what} is a whole number or text such as {examples.split(',')[0]}")
    if isinstance(text, int):
        if text < 0:
            raise ValueError("a rate cannot be negative")
        return text
    if text.strip().lower() in ("0", "none", "unlimited", "off"):
        return 0
    m = pattern.match(text)
    if m is None:
        raise ValueError(f"not a {what}: {text!r} (examples: {examples})")
    return m


def parse_bits(text: str | int) -> int:
    """Bits per second; 0 (or "0", "unlimited") means no limit."""
    m = _parse(text, _BITS, "rate", "100mbit, 1.5gbit, 800kbit")
    if isinstance(m, int):
        return m
    # Decimal, not float: a string of many digits must come out as the
    # large number it is (for the caller's range check), not as infinity.
    value = Decimal(m.group(1)) * _UNITS[m.group(2).lower()]
    if m.group(3) == "B":  # bytes
        value *= 8
    return int(value)


def parse_pkts(text: str | int) -> int:
    """Packets per second (``20kpps``); 0 means no limit."""
    m = _parse(text, _PKTS, "packet rate", "20kpps, 500pps")
    if isinstance(m, int):
        return m
    return int(Decimal(m.group(1)) * _UNITS[m.group(2).lower()])


def _scaled(value: int, units: tuple[tuple[str, int], ...], base: str) -> str:
    if value == 0:
        return "unlimited"
    for unit, scale in units:
        if value >= scale:
            # Fixed point, never an exponent: the text must parse back.
            return f"{value / scale:.3f}".rstrip("0").rstrip(".") + unit
    return f"{value}{base}"


def format_bits(bits: int) -> str:
    """``1.5gbit``; what parse_bits reads back (to three decimals)."""
    return _scaled(bits, (("tbit", 10**12), ("gbit", 10**9), ("mbit", 10**6), ("kbit", 10**3)), "bit")


def format_pkts(pkts: int) -> str:
    """``20kpps``; what parse_pkts reads back (to three decimals)."""
    return _scaled(pkts, (("gpps", 10**9), ("mpps", 10**6), ("kpps", 10**3)), "pps")
