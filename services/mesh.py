"""The shape of the mesh: which services exist, where they listen, who calls whom."""

from __future__ import annotations

# Dependencies first, so a launcher going down this list never starts a
# service before the ones it calls.
SERVICES: tuple[str, ...] = (
    "geo",
    "rate",
    "profile",
    "recommendation",
    "user",
    "reservation",
    "search",
    "frontend",
)

PORT = 8080

DEPENDS: dict[str, tuple[str, ...]] = {
    "geo": (),
    "rate": (),
    "profile": (),
    "recommendation": (),
    "user": (),
    "reservation": (),
    "search": ("geo", "rate"),
    "frontend": ("search", "reservation", "profile", "recommendation", "user"),
}
