"""The ping-pong sweeps of ``make bench``: throughput versus connections
(64-byte messages) and versus message size (one connection) on the four
Python paths of bench/python_rows.py, and the latency distributions behind
the plots.

The points are measured by ``python_rows.measure_all`` with the headline
rows, interleaved the same way (every path back to back for one point, then
the next point, within each repeat); the headline points (64 B with 1 and 32
connections) are not measured twice. This module chooses the points and
turns the rows into tables; bench/plots.py draws them.
"""

from __future__ import annotations

import statistics
from typing import Any

from python_rows import PATHS, PingPong, pingpong_workload, spread

SWEEP_CONNS = [1, 8, 32, 128]                 # at 64 bytes
SWEEP_SIZES = [64, 512, 4096, 16384, 65536]   # at one connection
BASELINES = ["uvloop-bridge", "asyncio-bridge"]

# Where each plot goes in the report directory (plots.py writes them).
LATENCY_PNG = "latency_cdf.png"
CONNS_PNG = "throughput_vs_conns.png"
SIZE_PNG = "throughput_vs_size.png"


def sweep_points(seconds: float, conns: list[int] | None = None,
                 sizes: list[int] | None = None) -> list[PingPong]:
    """Connections at 64 B, then sizes at one connection, without repeats."""
    points = [PingPong(64, c, seconds) for c in conns or SWEEP_CONNS]
    points += [PingPong(s, 1, seconds) for s in sizes or SWEEP_SIZES]
    return _unique(points)


def with_sweep(headline: list[PingPong], sweep: list[PingPong]) -> list[PingPong]:
    """The headline points, then the sweep's points they do not already cover
    (a headline point keeps its own duration)."""
    return _unique(headline + sweep)


def _unique(points: list[PingPong]) -> list[PingPong]:
    seen: set[tuple[int, int]] = set()
    out = []
    for p in points:
        if (p.size, p.conns) not in seen:
            seen.add((p.size, p.conns))
            out.append(p)
    return out


def runs(rows: list[dict[str, Any]], size: int, conns: int, path: str) -> list[dict[str, Any]]:
    """The repeats of one ping-pong point on one path."""
    name = pingpong_workload(size, conns)
    return [r for r in rows if r["workload"] == name and r["path"] == path]


def mb_per_s(r: dict[str, Any]) -> float:
    """Payload each way in MB/s (10^6 bytes): one message out, one back per round trip."""
    return float(r["rt_per_s"]) * int(r["size"]) / 1e6


def pct_median(rs: list[dict[str, Any]]) -> list[float] | None:
    """Percentiles 1..99 of one point, each the median over the repeats
    (the repeats' distributions are not pooled: only their percentiles
    are kept)."""
    lists = [r["pct_us"] for r in rs if r.get("pct_us")]
    if not lists:
        return None
    return [statistics.median(col) for col in zip(*lists)]


def size_label(size: int) -> str:
    return f"{size // 1024} KiB" if size >= 1024 and size % 1024 == 0 else f"{size} B"


def _ratio_cells(value: float, medians: dict[str, float]) -> list[str]:
    return [f"{value / medians[b]:.2f}x" if medians.get(b) else "—" for b in BASELINES]


def _table(rows: list[dict[str, Any]], points: list[tuple[int, int]], first: str,
           with_mb: bool) -> list[str]:
    head = f"| {first} | path | round trips/s |" + (" MB/s each way |" if with_mb else "")
    head += " p50 / p99 | vs uvloop-bridge | vs asyncio-bridge |"
    out = [head, "|" + "---|" * (head.count("|") - 1)]
    for size, conns in points:
        medians = {p: spread([r["rt_per_s"] for r in runs(rows, size, conns, p)])[0]
                   for p in PATHS if runs(rows, size, conns, p)}
        for path in PATHS:
            rs = runs(rows, size, conns, path)
            if not rs:
                continue
            med, lo, hi = spread([r["rt_per_s"] for r in rs])
            key = size_label(size) if with_mb else str(conns)
            cells = [key, path, f"{med:,.0f} [{lo:,.0f}–{hi:,.0f}]"]
            if with_mb:
                mb, mb_lo, mb_hi = spread([mb_per_s(r) for r in rs])
                cells.append(f"{mb:,.1f} [{mb_lo:,.1f}–{mb_hi:,.1f}]")
            p50 = statistics.median(r["p50_us"] for r in rs)
            p99 = statistics.median(r["p99_us"] for r in rs)
            cells += [f"{p50:.1f} / {p99:.1f} µs", *_ratio_cells(med, medians)]
            out.append("| " + " | ".join(cells) + " |")
    return out


def is_sweep(rows: list[dict[str, Any]], points: list[tuple[int, int]]) -> bool:
    """At least two of the points were measured: one point is no sweep (it
    is already a row of the Python tables)."""
    return sum(1 for s, c in points if any(runs(rows, s, c, p) for p in PATHS)) >= 2


def _image(images: dict[str, str], name: str, alt: str) -> list[str]:
    return [f"![{alt}]({images[name]})", ""] if name in images else []


def report(rows: list[dict[str, Any]], images: dict[str, str] | None = None) -> str:
    """The sweep section of REPORT.md; ``images`` maps a plot's file name to
    its link relative to the report (only the plots that were drawn)."""
    images = images or {}
    conns_points = [(64, c) for c in SWEEP_CONNS]
    size_points = [(s, 1) for s in SWEEP_SIZES]
    if not (is_sweep(rows, conns_points) or is_sweep(rows, size_points)):
        return ""
    repeats = 1 + max((r["repeat"] for r in rows if r["workload"].startswith("pingpong")), default=0)
    out = ["## Python ping-pong sweeps: connections and message size (bench/py_pingpong.py)", "",
           "The Python paths above, one point at a time (the paths back to back, then the next point), "
           f"{repeats} repeat{'s' if repeats > 1 else ''}: medians [min–max]; p50 / p99 are the medians over "
           "the repeats. The 64-byte points at 1 and 32 connections are the measurements of the tables above. "
           "A round trip is one message out and its echo back; MB/s is 10^6 bytes of payload each way.", ""]
    out += _image(images, LATENCY_PNG, "Round-trip latency distributions, 64-byte ping-pong")
    if is_sweep(rows, conns_points):
        out += ["### Throughput versus connections (64-byte messages)", ""]
        out += _image(images, CONNS_PNG, "Round trips/s versus connections")
        out += _table(rows, conns_points, "connections", with_mb=False) + [""]
    if is_sweep(rows, size_points):
        out += ["### Throughput versus message size (1 connection)", ""]
        out += _image(images, SIZE_PNG, "Throughput versus message size")
        out += _table(rows, size_points, "message size", with_mb=True) + [""]
    return "\n".join(out) + "\n"
