"""``docknet``: the command line.

``docknet master`` runs a host's master; the other commands talk to it
through its management API (``RUN_DIR/api.sock``; ``--api`` or
``DOCKNET_MASTER`` pick another master).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from .. import validate
from ..log import configure

__all__ = ["main"]


def _client(args: argparse.Namespace) -> Any:
    from .api_client import ApiClient

    return ApiClient(args.api)


def _master(args: argparse.Namespace) -> int:
    if args.action == "status":
        st = _client(args).call("GET", "/v1/status")
        if args.json:
            print(json.dumps(st, indent=1))
        else:
            sw = st["switch"]
            print(f"master pid {st['pid']}  subnet {st['subnet']}  gateway {st['gateway']}  mtu {st['mtu']}")
            print(f"endpoints: {st['endpoints_attached']} attached, {st['endpoints_registered']} registered; "
                  f"tenants: {', '.join(st['tenants'])}")
            print(f"switch: {sw['loops']:,} loops, {sw['sleeps']:,} sleeps, utilisation {sw['utilisation']:.1%}, "
                  f"{sw['pool_free']} free mbufs")
            fc = st["fast_channels"]
            print(f"fast channels: {'on' if fc['enabled'] else 'off'}, {fc['open']} open "
                  f"({fc['memory'] / 2**20:.1f} MiB), {fc['made']} made, {fc['refused_by_policy']} refused by policy, "
                  f"{fc['bytes']:,} bytes")
        return 0
    from ..master.config import ConfigError, FileConfig, check_setting, describe, load_config
    from ..master.master import MasterConfig, run_master

    try:
        fc = load_config(args.config) if args.config else FileConfig(MasterConfig())
    except ConfigError as exc:
        print(f"docknet master: {exc}", file=sys.stderr)
        return 2
    # Flags are checked as the file's keys are, by the same code; subnet
    # first, and a range from the file again against a subnet from a flag.
    given = [k for k in ("subnet", "range", "run_dir", "mtu", "spin_us", "uplink", "fast_channels",
                         "fast_channel_ring") if getattr(args, k) is not None]
    flags = {k: (getattr(args, k), "--" + k.replace("_", "-")) for k in given}
    if "subnet" in given and "range" not in given and fc.master.range is not None:
        given.insert(1, "range")
        flags["range"] = (fc.master.range, f"{args.config}: range")
    try:
        for key in given:
            check_setting(fc.master, key, *flags[key])
    except validate.ValidationError as exc:
        print(f"docknet master: {exc}", file=sys.stderr)
        return 2
    if args.uplink_faults is not None:
        from ..master.faults import parse_spec

        try:
            fc.master.uplink_faults = parse_spec(args.uplink_faults)
        except ValueError as exc:
            print(f"docknet master: --uplink-faults: {exc}", file=sys.stderr)
            return 2
    if fc.master.uplink_faults is not None and not fc.master.uplink:
        print("docknet master: uplink faults need an uplink (--uplink)", file=sys.stderr)
        return 2
    if args.check_config:
        print(json.dumps(describe(fc), indent=1))
        print("configuration is valid", file=sys.stderr)
        return 0
    try:
        asyncio.run(run_master(fc.master, defaults=fc.defaults, policies=fc.policies))
    except OSError as exc:
        print(f"docknet master: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


def _checkout() -> Path | None:
    """The aiodocknet checkout the demo and benchmarks live in: the current
    directory, or the one an editable install points at. The installed
    package carries neither."""
    for root in (Path.cwd(), Path(__file__).resolve().parents[2]):
        if (root / "bench" / "run.py").is_file() and (root / "services").is_dir():
            return root
    return None


def _from_checkout(what: str, module: str, argv: list[str]) -> int:
    root = _checkout()
    if root is None:
        print(f"docknet {what}: runs from a checkout of aiodocknet (git clone, then `make {what}` there)",
              file=sys.stderr)
        return 1
    return subprocess.call([sys.executable, "-m", module, *argv], cwd=root)


def _bench(args: argparse.Namespace) -> int:
    return _from_checkout("bench", "bench.run", ["--quick"] if args.quick else [])


def _demo(args: argparse.Namespace) -> int:
    argv = ["--data-plane"] if args.data_plane else ["--users", str(args.users)]
    if args.seconds:
        argv += ["--seconds", str(args.seconds)]
    return _from_checkout("demo", "bench.demo", argv)


def _fmt_rate(bits: int) -> str:
    from ..rates import format_bits

    return format_bits(bits)


def _ps(args: argparse.Namespace) -> int:
    eps = _client(args).call("GET", "/v1/endpoints")
    if args.json:
        print(json.dumps(eps, indent=1))
        return 0
    print(f"{'NAME':24} {'TENANT':12} {'ADDRESS':15} {'STATE':10} {'PID':>7} {'EGRESS':>10} {'INGRESS':>10}")
    for e in eps:
        print(f"{e['name']:24} {e.get('tenant', 'default'):12} {e.get('address', '-'):15} {e['state']:10} "
              f"{e.get('pid') or '-':>7} {_fmt_rate(e.get('egress_bits', 0)):>10} "
              f"{_fmt_rate(e.get('ingress_bits', 0)):>10}")
    return 0


def _stats(args: argparse.Namespace) -> int:
    st = _client(args).call("GET", "/v1/stats")
    if args.json:
        print(json.dumps(st, indent=1))
        return 0
    sw = st["switch"]
    util = sw["busy_loops"] / sw["loops"] if sw["loops"] else 0.0
    print(f"switch: {sw['loops']:,} loops ({util:.1%} busy), {sw['sleeps']:,} sleeps")
    print(f"{'ENDPOINT':24} {'RX PKTS':>10} {'RX BYTES':>12} {'TX PKTS':>10} {'TX BYTES':>12} "
          f"{'DROPS':>8} {'POLICY':>7} {'LIMITED':>8}")
    for name, c in sorted(st["endpoints"].items()):
        drops = c["drop_ring_full"] + c["drop_no_route"] + c["drop_spoofed"] + c["drop_malformed"]
        limited = c["egress_delayed"] + c["ingress_delayed"] + c["ingress_dropped"]
        print(f"{name:24} {c['rx_frames']:>10} {c['rx_bytes']:>12} {c['tx_frames']:>10} {c['tx_bytes']:>12} "
              f"{drops:>8} {c['drop_policy']:>7} {limited:>8}")
    return 0


def _ss(args: argparse.Namespace) -> int:
    ans = _client(args).call("GET", f"/v1/endpoints/{args.name}/connections")
    if args.json:
        print(json.dumps(ans, indent=1))
        return 0
    print(f"{'State':12} {'Recv-Q':>8} {'Send-Q':>8} {'Local Address:Port':24} {'Peer Address:Port':24} Path")
    for c in ans["connections"]:
        print(f"{c['state']:12} {c['recv_q']:>8} {c['send_q']:>8} {c['local']:24} {c['peer']:24} {c['path']}")
    if ans["total"] > len(ans["connections"]):
        print(f"... {ans['total'] - len(ans['connections'])} more")
    return 0


def _policy(args: argparse.Namespace) -> int:
    api = _client(args)
    if args.verb == "ls":
        rules = api.call("GET", "/v1/policy")
        for r in rules:
            print(f"allow {r['from']} -> {r['to']} {'port ' + str(r['port']) if r['port'] else 'any port'}")
        return 0
    if not args.source or not args.dest:
        print("docknet policy: allow/deny need two tenants", file=sys.stderr)
        return 2
    try:
        validate.tenant_name(args.source, "from")
        validate.tenant_name(args.dest, "to")
        validate.port(args.port, "--port")
    except validate.ValidationError as exc:
        print(f"docknet policy: {exc}", file=sys.stderr)
        return 2
    body = {"from": args.source, "to": args.dest, "port": args.port}
    api.call("POST" if args.verb == "allow" else "DELETE", "/v1/policy", body)
    return 0


def _limit(args: argparse.Namespace) -> int:
    body = {k: v for k, v in (("egress", args.egress), ("ingress", args.ingress),
                              ("egress_pps", args.egress_pps), ("ingress_pps", args.ingress_pps)) if v is not None}
    now = _client(args).call("PUT", f"/v1/endpoints/{args.name}/limit", body)
    print(f"{args.name}: egress {_fmt_rate(now['egress_bits'])}, ingress {_fmt_rate(now['ingress_bits'])}")
    return 0


def _register(api: Any, args: argparse.Namespace, netns: str) -> dict[str, Any]:
    body: dict[str, Any] = {"name": args.name, "tenant": args.tenant, "netns": netns}
    if args.ip:
        body["ip"] = args.ip
    if args.rate:
        body["egress"] = args.rate
    return dict(api.call("POST", "/v1/endpoints", body))


def _control_path(api: Any) -> str:
    return os.path.join(os.path.dirname(api.path), "master.sock")


def _check_registration(args: argparse.Namespace) -> bool:
    """run/attach flags, checked here as the master would check them: the
    endpoint's name also names its network namespace, made before the
    master is asked."""
    try:
        validate.endpoint_name(args.name, "--name")
        validate.tenant_name(args.tenant, "--tenant")
        if args.rate:
            validate.limit("egress", args.rate, "--rate")
        if getattr(args, "netns", None) is not None:
            validate.netns_path(args.netns, "--netns")
    except validate.ValidationError as exc:
        print(f"docknet {args.command}: {exc}", file=sys.stderr)
        return False
    return True


def _run(args: argparse.Namespace) -> int:
    from .netns import NetnsError, create_netns, delete_netns

    cmd = [c for c in args.cmd if c != "--"] if args.cmd and args.cmd[0] == "--" else args.cmd
    if not cmd:
        print("docknet run: give a command after --", file=sys.stderr)
        return 2
    if not _check_registration(args):
        return 2
    api = _client(args)
    # Named after the endpoint and its master: endpoint names are unique
    # per master, and a host may run several (tests, a demo beside a
    # service), whose endpoints must not meet in one namespace name.
    master_id = hashlib.blake2s(os.path.realpath(api.path).encode(), digest_size=3).hexdigest()
    ns = f"dn-{args.name}-{master_id}"
    try:
        path = create_netns(ns)
    except NetnsError as exc:
        print(f"docknet run: cannot create the endpoint's network namespace: {exc}", file=sys.stderr)
        return 1
    try:
        reg = _register(api, args, path)
        try:
            env = dict(os.environ, DOCKNET_ENDPOINT=args.name, DOCKNET_SECRET=reg["secret"],
                       DOCKNET_MASTER=_control_path(api))
            child = subprocess.Popen(["ip", "netns", "exec", ns, *cmd], env=env)
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, lambda s, f: child.send_signal(s))
            return child.wait()
        finally:
            try:
                api.call("DELETE", f"/v1/endpoints/{args.name}")
            except Exception:  # noqa: BLE001 - the master may be gone; cleanup goes on
                pass
    finally:
        delete_netns(ns)


def _attach(args: argparse.Namespace) -> int:
    if not _check_registration(args):
        return 2
    api = _client(args)
    reg = _register(api, args, args.netns)
    print(f"DOCKNET_ENDPOINT={args.name}")
    print(f"DOCKNET_SECRET={reg['secret']}")
    print(f"DOCKNET_MASTER={_control_path(api)}")
    return 0


def _detach(args: argparse.Namespace) -> int:
    _client(args).call("DELETE", f"/v1/endpoints/{args.name}")
    return 0


def _cni(args: argparse.Namespace) -> int:
    from ..cni.install import InstallError, install

    try:
        for line in install(args.bin_dir, args.conf_dir, args.run_dir, args.force):
            print(line)
    except (InstallError, OSError) as exc:
        print(f"docknet cni install: {exc}", file=sys.stderr)
        return 1
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="docknet", description="DockNet userspace networking")
    p.add_argument("--log-format", choices=["console", "json"], default="console")
    p.add_argument("--log-level", default=os.environ.get("DOCKNET_LOG_LEVEL", "info"))
    p.add_argument("--api", help="the master's management socket (default RUN_DIR/api.sock)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    sub = p.add_subparsers(dest="command", required=True)

    m = sub.add_parser("master", help="run this host's master, or `master status`")
    m.add_argument("action", nargs="?", choices=["run", "status"], default="run")
    m.add_argument("--config", help="TOML configuration file (flags override it)")
    m.add_argument("--check-config", action="store_true", help="validate the configuration and exit")
    m.add_argument("--run-dir", default=os.environ.get("DOCKNET_RUN_DIR"),
                   help="directory for the control and API sockets (default /run/docknet)")
    m.add_argument("--subnet", help="endpoint address range (default 10.77.0.0/16)")
    m.add_argument("--mtu", type=int, help="MTU of the internal links to endpoints (default 9000)")
    m.add_argument("--spin-us", type=int, help="busy-poll time before sleeping (default 200)")
    m.add_argument("--range", help="this host's share of the subnet when hosts share it, e.g. 10.77.1.0/24")
    m.add_argument("--uplink", help="DPDK port to other hosts, e.g. net_af_packet0,iface=eth1")
    m.add_argument("--no-fast-channels", dest="fast_channels", action="store_const", const=False,
                   help="carry every connection through the switch (for comparison)")
    m.add_argument("--fast-channel-ring", help="bytes per fast-channel ring, a power of two (default 1MiB)")
    m.add_argument("--uplink-faults", metavar="SPEC",
                   help="fault injection on the uplink, for tests: drop_ppm=N,dup_ppm=N,reorder_ppm=N,"
                        "corrupt_ppm=N,seed=N[,direction=egress|ingress|both] (parts per million)")
    m.set_defaults(func=_master)

    d = sub.add_parser("demo", help="the sample service mesh on DockNet and on the kernel, side by side")
    d.add_argument("--seconds", type=float, help="load per path (default 15; 3 with --data-plane)")
    d.add_argument("--users", type=int, default=16, help="concurrent users driving the mesh (default 16)")
    d.add_argument("--data-plane", action="store_true",
                   help="instead: the bare data plane (native loops through the switch)")
    d.set_defaults(func=_demo)

    b = sub.add_parser("bench", help="the benchmark suite (`make bench`); --quick: a first look in two minutes")
    b.add_argument("--quick", action="store_true")
    b.set_defaults(func=_bench)

    sub.add_parser("ps", help="endpoints: tenant, address, state, limits").set_defaults(func=_ps)
    sub.add_parser("stats", help="per-endpoint counters and switch utilisation").set_defaults(func=_stats)

    ss = sub.add_parser("ss", help="an endpoint's connections (its process must run a DockNetLoop)")
    ss.add_argument("name")
    ss.set_defaults(func=_ss)

    pol = sub.add_parser("policy", help="which tenants may reach which")
    pol.add_argument("verb", choices=["allow", "deny", "ls"])
    pol.add_argument("source", nargs="?")
    pol.add_argument("dest", nargs="?")
    pol.add_argument("--port", type=int, default=0)
    pol.set_defaults(func=_policy)

    lim = sub.add_parser("limit", help="rate limits of an endpoint (live)")
    lim.add_argument("name")
    lim.add_argument("--egress")
    lim.add_argument("--ingress")
    lim.add_argument("--egress-pps")
    lim.add_argument("--ingress-pps")
    lim.set_defaults(func=_limit)

    for name, func, helptext in (("run", _run, "run a command as an endpoint in its own namespace"),
                                 ("attach", _attach, "register an existing namespace as an endpoint")):
        r = sub.add_parser(name, help=helptext)
        r.add_argument("--name", required=True)
        r.add_argument("--tenant", default="default")
        r.add_argument("--rate", help="egress limit, e.g. 100mbit")
        r.add_argument("--ip", help="ask for this address")
        if name == "run":
            r.add_argument("cmd", nargs=argparse.REMAINDER)
        else:
            r.add_argument("--netns", required=True, help="namespace path, e.g. /run/netns/NAME")
        r.set_defaults(func=func)

    cni = sub.add_parser("cni", help="the CNI plugin for container runtimes (docknet-cni)")
    cni.add_argument("action", choices=["install"])
    cni.add_argument("--bin-dir", default="/opt/cni/bin", help="where runtimes find plugins (default /opt/cni/bin)")
    cni.add_argument("--conf-dir", default="/etc/cni/net.d",
                     help="where the example conflist goes (default /etc/cni/net.d)")
    cni.add_argument("--run-dir", default="/run/docknet", help="the master's run directory, for the conflist")
    cni.add_argument("--force", action="store_true", help="replace files that differ")
    cni.set_defaults(func=_cni)

    det = sub.add_parser("detach", help="unregister an endpoint (its process is cut off)")
    det.add_argument("--name", required=True)
    det.set_defaults(func=_detach)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    configure(args.log_level, args.log_format)
    from .api_client import ApiError

    try:
        return int(args.func(args))
    except ApiError as exc:
        print(f"docknet {args.command}: {exc.message}", file=sys.stderr)
        return 1
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        print(f"docknet {args.command}: {exc.strerror or exc}", file=sys.stderr)
        return 1
