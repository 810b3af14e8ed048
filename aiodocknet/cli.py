"""``docknet``: the command line."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from .log import configure

__all__ = ["main"]


def _master(args: argparse.Namespace) -> int:
    from .master.master import MasterConfig, run_master

    cfg = MasterConfig(run_dir=args.run_dir, subnet=args.subnet, mtu=args.mtu, spin_us=args.spin_us)
    try:
        asyncio.run(run_master(cfg))
    except OSError as exc:
        print(f"docknet master: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(args.seconds)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="docknet", description="DockNet userspace networking")
    p.add_argument("--log-format", choices=["console", "json"], default="console")
    p.add_argument("--log-level", default=os.environ.get("DOCKNET_LOG_LEVEL", "info"))
    sub = p.add_subparsers(dest="command", required=True)

    m = sub.add_parser("master", help="run this host's master (switch + control socket)")
    m.add_argument(
        "--run-dir",
        default=os.environ.get("DOCKNET_RUN_DIR", "/run/docknet"),
        help="directory for the control socket and memif sockets",
    )
    m.add_argument("--subnet", default="10.77.0.0/16", help="endpoint address range")
    m.add_argument("--mtu", type=int, default=9000, help="MTU of the internal memif links")
    m.add_argument("--spin-us", type=int, default=200, help="busy-poll time before sleeping")
    m.set_defaults(func=_master)

    d = sub.add_parser("demo", help="start a master and slaves here and measure the data plane")
    d.add_argument("--seconds", type=float, default=3.0, help="length of each measurement")
    d.set_defaults(func=_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    configure(args.log_level, args.log_format)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
