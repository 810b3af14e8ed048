"""Fault injection settings for the switch's links (native/dn_fault.h).

For tests: a link (towards an endpoint) or the uplink (each direction)
drops, duplicates, reorders or corrupts frames with given probabilities in
parts per million, decided by a PRNG seeded with ``seed``, so a failing run
can be replayed. ``drop_next`` drops the next that many frames outright.
Off unless configured. The same checks serve the management API (``PUT
/v1/endpoints/NAME/faults``), the TOML ``[uplink_faults]`` table and the
``--uplink-faults`` flag.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["FIELD_MAX", "Faults", "PPM_MAX", "check_field", "parse_spec", "UPLINK_DIRECTIONS"]

PPM_MAX = 1_000_000
U32_MAX = (1 << 32) - 1
U64_MAX = (1 << 64) - 1
PPM_FIELDS = ("drop_ppm", "dup_ppm", "reorder_ppm", "corrupt_ppm")
# Where uplink faults apply: frames leaving for the wire, arriving from it.
UPLINK_DIRECTIONS = ("egress", "ingress", "both")
# Each setting's largest value: what its field in native/dn_fault.h holds.
FIELD_MAX = {**{k: PPM_MAX for k in PPM_FIELDS}, "drop_next": U32_MAX, "seed": U64_MAX}


def check_field(key: str, value: Any) -> int:
    """One setting (a key of FIELD_MAX); ValueError says what is wrong.
    The management API's request model checks each field with this too."""
    high = FIELD_MAX[key]
    # bool is an int to Python, not a probability to anyone.
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= high:
        unit = " parts per million" if key in PPM_FIELDS else ""
        raise ValueError(f"{key} must be a whole number from 0 to {high:,}{unit}")
    return value


@dataclass(frozen=True)
class Faults:
    drop_ppm: int = 0
    dup_ppm: int = 0
    reorder_ppm: int = 0
    corrupt_ppm: int = 0
    drop_next: int = 0
    seed: int = 0

    @classmethod
    def parse(cls, body: Mapping[str, Any], *, extra: tuple[str, ...] = ()) -> Faults:
        """Checks every field before anything is applied; ValueError says
        which one is wrong and why. A missing seed is drawn at random (the
        answer reports it, so the run can be replayed)."""
        known = (*PPM_FIELDS, "drop_next", "seed", *extra)
        unknown = sorted(set(body) - set(known))
        if unknown:
            raise ValueError(f"unknown field {unknown[0]!r} (known: {', '.join(known)})")
        values = {key: check_field(key, body[key]) for key in FIELD_MAX if key in body}
        if "seed" not in values:
            values["seed"] = int.from_bytes(os.urandom(8), "little")
        return cls(**values)

    @property
    def off(self) -> bool:
        return not any((self.drop_ppm, self.dup_ppm, self.reorder_ppm, self.corrupt_ppm, self.drop_next))

    def public(self) -> dict[str, int]:
        return asdict(self)


def parse_spec(spec: str) -> tuple[str, Faults]:
    """``--uplink-faults``: ``drop_ppm=10000,reorder_ppm=10000,seed=7[,direction=ingress]``
    (direction: egress, ingress or both, the default)."""
    body: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"{item!r} is not key=value")
        body[key.strip()] = value.strip()
    direction = body.pop("direction", "both")
    if direction not in UPLINK_DIRECTIONS:
        raise ValueError(f"direction must be one of {', '.join(UPLINK_DIRECTIONS)}")
    numbers: dict[str, Any] = {}
    for key, value in body.items():
        try:
            numbers[key] = int(value, 0)
        except ValueError:
            numbers[key] = value  # parse() names the field and the range
    return direction, Faults.parse(numbers)
