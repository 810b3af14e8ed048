"""PNG plots of the Python ping-pong rows for bench/report/ (matplotlib,
Agg backend: no display needed).

- latency_cdf.png: round-trip latency distributions of the 64-byte
  ping-pong, one panel per connection count, one curve per path;
- throughput_vs_conns.png: round trips/s versus connections (64 B);
- throughput_vs_size.png: MB/s each way and round trips/s versus message
  size (one connection).

Drawn by ``bench.run`` after a full run; to redraw from a saved run:

    python -m bench.plots [bench/report/results.json] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from python_rows import PATHS, spread  # noqa: E402
from sweep_rows import (CONNS_PNG, LATENCY_PNG, SIZE_PNG, SWEEP_CONNS, SWEEP_SIZES, is_sweep,  # noqa: E402
                        mb_per_s, pct_median, runs, size_label)

# One look per path in every plot: DockNet in blues, the kernel in warm colours.
STYLE = {
    "docknet-fast": {"color": "tab:blue", "marker": "o"},
    "docknet-switch": {"color": "tab:cyan", "marker": "s"},
    "docknet-peer": {"color": "tab:purple", "marker": "D"},
    "uvloop-bridge": {"color": "tab:orange", "marker": "^"},
    "asyncio-bridge": {"color": "tab:red", "marker": "v"},
}


def missing() -> str | None:
    """Why plots cannot be drawn here, or None."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        return f"matplotlib is not installed ({exc}); make bootstrap installs it"
    return None


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def draw_all(rows: list[dict[str, Any]], out_dir: Path) -> list[str]:
    """Every plot the rows have data for; returns the file names written.
    A plot without data is removed, so no earlier run's PNG sits beside a
    report that does not link it."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, draw in ((LATENCY_PNG, latency_cdf), (CONNS_PNG, throughput_vs_conns),
                       (SIZE_PNG, throughput_vs_size)):
        fig = draw(rows)
        if fig is None:
            (out_dir / name).unlink(missing_ok=True)
            continue
        fig.savefig(out_dir / name, dpi=110)
        _pyplot().close(fig)
        written.append(name)
    return written


def latency_cdf(rows: list[dict[str, Any]]) -> Any:
    conns = [c for c in SWEEP_CONNS if any(pct_median(runs(rows, 64, c, p)) for p in PATHS)]
    if not conns:
        return None
    plt = _pyplot()
    cols = min(len(conns), 2)
    nrows = (len(conns) + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(5.5 * cols, 3.8 * nrows), squeeze=False)
    quantiles = list(range(1, 100))
    for ax, c in zip(axes.flat, conns):
        for path in PATHS:
            pct = pct_median(runs(rows, 64, c, path))
            if pct:
                ax.plot(pct, quantiles, label=path, color=STYLE[path]["color"], linewidth=1.8)
        ax.set_xscale("log")
        _plain_log_ticks(ax.xaxis)
        ax.set_title(f"64 B, {c} connection{'s' if c > 1 else ''}")
        ax.set_xlabel("round-trip latency (µs, log scale)")
        ax.set_ylabel("percentile")
        ax.set_ylim(0, 100)
        ax.grid(True, which="both", alpha=0.3)
    for ax in list(axes.flat)[len(conns):]:
        ax.set_visible(False)
    axes.flat[0].legend(loc="lower right", fontsize=8)
    fig.suptitle("Python ping-pong round-trip latency (percentiles 1–99; median over repeats)")
    fig.tight_layout()
    return fig


# A swept point: (x on the plot, message size, connections).
Point = tuple[int, int, int]


def _series(rows: list[dict[str, Any]], points: list[Point], path: str,
            value: Any) -> tuple[list[int], list[float], list[float], list[float]]:
    """x, medians, and the distances down to min and up to max (error bars)."""
    xs, meds, down, up = [], [], [], []
    for x, size, conns in points:
        rs = runs(rows, size, conns, path)
        if not rs:
            continue
        med, lo, hi = spread([value(r) for r in rs])
        xs.append(x)
        meds.append(med)
        down.append(med - lo)
        up.append(hi - med)
    return xs, meds, down, up


def _plot_series(ax: Any, rows: list[dict[str, Any]], points: list[Point], value: Any) -> None:
    for path in PATHS:
        xs, meds, down, up = _series(rows, points, path, value)
        if xs:
            ax.errorbar(xs, meds, yerr=[down, up], label=path, capsize=3, linewidth=1.6,
                        markersize=5, **STYLE[path])


def throughput_vs_conns(rows: list[dict[str, Any]]) -> Any:
    if not is_sweep(rows, [(64, c) for c in SWEEP_CONNS]):
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    _plot_series(ax, rows, [(c, 64, c) for c in SWEEP_CONNS], lambda r: float(r["rt_per_s"]))
    ax.set_xscale("log", base=2)
    ax.set_xticks(SWEEP_CONNS, [str(c) for c in SWEEP_CONNS])
    ax.set_ylim(bottom=0)
    ax.yaxis.set_major_formatter(_thousands())
    ax.set_xlabel("connections (one 64-byte message in flight on each)")
    ax.set_ylabel("round trips/s")
    ax.set_title("Python ping-pong: throughput versus connections (median, min–max)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def throughput_vs_size(rows: list[dict[str, Any]]) -> Any:
    if not is_sweep(rows, [(s, 1) for s in SWEEP_SIZES]):
        return None
    plt = _pyplot()
    points = [(s, s, 1) for s in SWEEP_SIZES]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    _plot_series(left, rows, points, mb_per_s)
    _plot_series(right, rows, points, lambda r: float(r["rt_per_s"]))
    for ax in (left, right):
        ax.set_xscale("log", base=2)
        ax.set_xticks(SWEEP_SIZES, [size_label(s) for s in SWEEP_SIZES])
        ax.set_xlabel("message size (1 connection)")
        ax.grid(True, which="both", alpha=0.3)
    left.set_yscale("log")
    _plain_log_ticks(left.yaxis)
    left.set_ylabel("MB/s each way (log scale)")
    left.set_title("payload throughput")
    right.set_ylim(bottom=0)
    right.yaxis.set_major_formatter(_thousands())
    right.set_ylabel("round trips/s")
    right.set_title("round trips")
    left.legend(fontsize=8)
    fig.suptitle("Python ping-pong: throughput versus message size (median, min–max)")
    fig.tight_layout()
    return fig


def _plain_log_ticks(axis: Any) -> None:
    """Ticks at 1, 2, 5 x 10^n labelled as plain numbers: matplotlib's
    default labels minor ticks in 10^n form when the range spans less than
    a decade, and they overlap."""
    from matplotlib.ticker import LogLocator, NullFormatter

    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(_thousands())
    axis.set_minor_formatter(NullFormatter())


def _thousands() -> Any:
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 else f"{v:g}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench.plots", description="redraw the ping-pong plots from results.json")
    ap.add_argument("results", nargs="?", default=str(BENCH / "report" / "results.json"))
    ap.add_argument("--out", help="directory for the PNGs (default: beside results.json)")
    args = ap.parse_args(argv)
    why = missing()
    if why:
        print(f"bench.plots: {why}", file=sys.stderr)
        return 1
    rows = json.loads(Path(args.results).read_text()).get("python", [])
    out = Path(args.out) if args.out else Path(args.results).parent
    for name in draw_all(rows, out):
        print(out / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
