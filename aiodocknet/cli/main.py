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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, NoReturn
from urllib.parse import quote

from .. import validate
from ..log import FORMATS, LEVELS, configure

__all__ = ["main"]


class CliError(Exception):
    """What the user gets told, in one line, and the exit status."""

    def __init__(self, message: str, status: int = 2, *, command: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.command = command


@dataclass
class Result:
    """A command's answer: ``value`` for --json, ``lines`` for people."""

    value: Any
    lines: list[str] = field(default_factory=list)
    status: int = 0
    to_stderr: bool = False


def _client(args: argparse.Namespace) -> Any:
    from .api_client import ApiClient

    return ApiClient(args.api)


def _peer_links_line(pl: dict[str, Any] | None) -> str:
    if pl is None:
        return "peer links: none (an older master)"
    return (f"peer links: {'on' if pl['enabled'] else 'off'}, {pl['up']} up, {pl['made']} made, "
            f"{pl['removed']} removed, {pl.get('bytes', 0):,} bytes")


def _master(args: argparse.Namespace) -> int | Result:
    if args.action == "status":
        st = _client(args).call("GET", "/v1/status")
        sw, fc = st["switch"], st["fast_channels"]
        return Result(st, [
            f"master pid {st['pid']}  subnet {st['subnet']}  gateway {st['gateway']}  mtu {st['mtu']}",
            f"subnet6 {st['subnet6']}  gateway6 {st['gateway6']}" if st.get("subnet6") else "subnet6 none (IPv4 only)",
            f"endpoints: {st['endpoints_attached']} attached, {st['endpoints_registered']} registered; "
            f"tenants: {', '.join(st['tenants'])}",
            f"switch: {sw['loops']:,} loops, {sw['sleeps']:,} sleeps, utilisation {sw['utilisation']:.1%}, "
            f"{sw['pool_free']} free mbufs",
            f"fast channels: {'on' if fc['enabled'] else 'off'}, {fc['open']} open "
            f"({fc['memory'] / 2**20:.1f} MiB), {fc['made']} made, {fc['refused_by_policy']} refused by policy, "
            f"{fc['bytes']:,} bytes",
            _peer_links_line(st.get("peer_links")),
            *_uplink_lines(st.get("uplink"))])
    # The master's modules (aiohttp, the API's models) only to run one:
    # checking a configuration needs none of them.
    from ..master.config import ConfigError, FileConfig, MasterConfig, check_setting, describe, load_config

    try:
        fc = load_config(args.config) if args.config else FileConfig(MasterConfig())
    except ConfigError as exc:
        raise CliError(str(exc)) from None
    # Flags are checked as the file's keys are, by the same code; subnet
    # first, and a range from the file again against a subnet from a flag.
    given = [k for k in ("subnet", "subnet6", "range", "run_dir", "mtu", "spin_us", "uplink", "fast_channels",
                         "fast_channel_ring", "peer_links") if getattr(args, k) is not None]
    flags = {k: (getattr(args, k), "--" + k.replace("_", "-")) for k in given}
    if "subnet" in given and "range" not in given and fc.master.range is not None:
        given.insert(1, "range")
        flags["range"] = (fc.master.range, f"{args.config}: range")
    for key in given:
        check_setting(fc.master, key, *flags[key])
    if args.uplink_faults is not None:
        from ..master.faults import parse_spec

        try:
            fc.master.uplink_faults = parse_spec(args.uplink_faults)
        except ValueError as exc:
            raise CliError(f"--uplink-faults: {exc}") from None
    if fc.master.uplink_faults is not None and not fc.master.uplink:
        raise CliError("uplink faults need an uplink (--uplink)")
    if args.check_config:
        if not args.json:
            print(json.dumps(describe(fc), indent=1))
        return Result(describe(fc), ["configuration is valid"], to_stderr=True)
    from ..master.master import run_master

    try:
        asyncio.run(run_master(fc.master, defaults=fc.defaults, policies=fc.policies))
    except OSError as exc:
        raise CliError(exc.strerror or str(exc), 1) from None
    return 0


def _uplink_lines(up: dict[str, Any] | None) -> list[str]:
    if up is None:
        return ["uplink: none"]
    line = (f"uplink: {up['pmd']}, {up['rx_frames']:,} frames in, {up['tx_frames']:,} out, "
            f"{up['unresolved_dropped'] + up['drop_other']:,} dropped")
    return ([line] + ([f"  fell back from {up['pmd_fallback']}"] if up.get("pmd_fallback") else [])
            + ([f"  {up['filtered_sockets']} packet sockets take only DockNet's frames (the host's own pass by)"]
               if up.get("filtered_sockets") else [])
            + (["  DockNet's XDP program takes only DockNet's frames (the host's own pass by)"]
               if up.get("xdp_filter") else [])
            + (["  removed the XDP program a stopped master left on the interface"]
               if up.get("stale_xdp_removed") else []))


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
        raise CliError(f"runs from a checkout of aiodocknet (git clone, then `make {what}` there)", 1)
    return subprocess.call([sys.executable, "-m", module, *argv], cwd=root)


def _bench(args: argparse.Namespace) -> int:
    return _from_checkout("bench", "bench.run", ["--quick"] if args.quick else [])


def _demo(args: argparse.Namespace) -> int:
    argv = ["--data-plane"] if args.data_plane else ["--users", str(args.users)]
    if args.rounds and not args.data_plane:
        argv += ["--rounds", str(args.rounds)]
    if args.seconds:
        argv += ["--seconds", str(args.seconds)]
    return _from_checkout("demo", "bench.demo", argv)


def _fmt_rate(bits: int) -> str:
    from ..rates import format_bits

    return format_bits(bits)


def _fmt_pkts(pkts: int) -> str:
    from ..rates import format_pkts

    return format_pkts(pkts)


def _name_arg(args: argparse.Namespace, attr: str = "name", what: str = "NAME") -> str:
    """An endpoint name from the command line, checked before it goes into
    a URL path."""
    name = getattr(args, attr)
    validate.endpoint_name(name, what)
    return quote(name, safe="")


def _owner(e: dict[str, Any]) -> str:
    """Who made the endpoint: a runtime's container (CNI) or the CLI."""
    owner = e.get("owner")
    if owner:
        return f"{owner['runtime']}:{owner['container_id'][:12]}"
    return "cli" if e.get("netns") else "-"


def _ps(args: argparse.Namespace) -> Result:
    eps = _client(args).call("GET", "/v1/endpoints")
    lines = [f"{'NAME':24} {'TENANT':12} {'ADDRESS':15} {'ADDRESS6':20} {'STATE':10} {'PID':>7} {'EGRESS':>10} "
             f"{'INGRESS':>10} {'EGRESS PPS':>10} {'INGRESS PPS':>11} OWNER"]
    for e in eps:
        lines.append(f"{e['name']:24} {e.get('tenant', 'default'):12} {e.get('address', '-'):15} "
                     f"{e.get('address6', '-'):20} {e['state']:10} {e.get('pid') or '-':>7} "
                     f"{_fmt_rate(e.get('egress_bits', 0)):>10} "
                     f"{_fmt_rate(e.get('ingress_bits', 0)):>10} {_fmt_pkts(e.get('egress_pkts', 0)):>10} "
                     f"{_fmt_pkts(e.get('ingress_pkts', 0)):>11} {_owner(e)}")
        members = e.get("members") or []
        if len(members) > 1:
            # Several processes share the endpoint: one line each, under it.
            for m in members:
                ports = ",".join(str(p) for p in m["listening"]) or "-"
                lines.append(f"  {'process':22} {'link ' + str(m['link']):12} {'listening ' + ports:26} "
                             f"{m['pid'] or '-':>7}")
    return Result(eps, lines)


def _stats(args: argparse.Namespace) -> Result:
    st = _client(args).call("GET", "/v1/stats")
    sw = st["switch"]
    util = sw["busy_loops"] / sw["loops"] if sw["loops"] else 0.0
    lines = [f"switch: {sw['loops']:,} loops ({util:.1%} busy), {sw['sleeps']:,} sleeps",
             f"{'ENDPOINT':24} {'TX PKTS':>10} {'TX BYTES':>12} {'RX PKTS':>10} {'RX BYTES':>12} "
             f"{'FAST TX BYTES':>14} {'FAST RX BYTES':>14} {'PEER TX BYTES':>14} {'PEER RX BYTES':>14} "
             f"{'DROPS':>8} {'POLICY':>7} {'LIMITED':>8}"]
    # TX/RX as the endpoint sees them (the switch's rx is what it sent),
    # as /metrics' direction label says.
    for name, c in sorted(st["endpoints"].items()):
        drops = c["drop_ring_full"] + c["drop_no_route"] + c["drop_spoofed"] + c["drop_malformed"]
        limited = c["egress_delayed"] + c["ingress_delayed"] + c["ingress_dropped"]
        lines.append(f"{name:24} {c['rx_frames']:>10} {c['rx_bytes']:>12} {c['tx_frames']:>10} {c['tx_bytes']:>12} "
                     f"{c['fast_tx_bytes']:>14} {c['fast_rx_bytes']:>14} {c['peer_tx_bytes']:>14} "
                     f"{c['peer_rx_bytes']:>14} {drops:>8} {c['drop_policy']:>7} "
                     f"{limited:>8}")
    return Result(st, lines)


def _hostport(text: str) -> str:
    """An address and port as `ss` writes them: an IPv6 address in
    brackets, so its colons are not read as the port's."""
    host, sep, port = text.rpartition(":")
    if sep and ":" in host and not host.startswith("["):
        return f"[{host}]:{port}"
    return text


def _ss(args: argparse.Namespace) -> Result:
    ans = _client(args).call("GET", f"/v1/endpoints/{_name_arg(args)}/connections")
    # An endpoint of several processes: each row says whose it is.
    several = any(c.get("pid") for c in ans["connections"])
    lines = [f"{'State':12} {'Recv-Q':>8} {'Send-Q':>8} {'Local Address:Port':24} {'Peer Address:Port':24} Path"
             + ("   Process" if several else "")]
    for c in ans["connections"]:
        lines.append(f"{c['state']:12} {c['recv_q']:>8} {c['send_q']:>8} {_hostport(c['local']):24} "
                     f"{_hostport(c['peer']):24} {c['path']}"
                     + (f" {c.get('pid') or '-':>9}" if several else ""))
    malformed = ans.get("malformed", 0)
    if ans["total"] > len(ans["connections"]) + malformed:
        lines.append(f"... {ans['total'] - len(ans['connections']) - malformed} more")
    if malformed:
        lines.append(f"({malformed} rows the endpoint sent were not connections: left out)")
    return Result(ans, lines)


def _rule(r: dict[str, Any]) -> str:
    return f"{r['from']} -> {r['to']} {'port ' + str(r['port']) if r['port'] else 'any port'}"


def _policy(args: argparse.Namespace) -> Result:
    api = _client(args)
    if args.verb == "ls":
        rules = api.call("GET", "/v1/policy")
        return Result(rules, [f"allow {_rule(r)}" for r in rules] or ["no rules: tenants reach only themselves"])
    if not args.source or not args.dest:
        raise CliError("allow/deny need two tenants: docknet policy allow FROM TO [--port N]")
    validate.tenant_name(args.source, "FROM")
    validate.tenant_name(args.dest, "TO")
    validate.port(args.port, "--port")
    rule = {"from": args.source, "to": args.dest, "port": args.port}
    api.call("POST" if args.verb == "allow" else "DELETE", "/v1/policy", rule)
    verb = "allowed" if args.verb == "allow" else "denied"
    return Result({**rule, "allowed": args.verb == "allow"}, [f"{verb} {_rule(rule)}"])


def _limits_line(name: str, now: dict[str, Any]) -> str:
    line = (f"{name}: egress {_fmt_rate(now.get('egress_bits', 0))}, ingress {_fmt_rate(now.get('ingress_bits', 0))}, "
            f"egress {_fmt_pkts(now.get('egress_pkts', 0))}, ingress {_fmt_pkts(now.get('ingress_pkts', 0))}")
    bursts = [f"{d} burst {now[f'{d}_burst_bits']:,} bits" for d in ("egress", "ingress")
              if now.get(f"{d}_burst_bits")]
    return ", ".join([line, *bursts])


def _limit(args: argparse.Namespace) -> Result:
    path = f"/v1/endpoints/{_name_arg(args)}"
    flags = (("egress", args.egress, "--egress"), ("ingress", args.ingress, "--ingress"),
             ("egress_pps", args.egress_pps, "--egress-pps"), ("ingress_pps", args.ingress_pps, "--ingress-pps"),
             ("egress_burst", args.egress_burst, "--egress-burst"),
             ("ingress_burst", args.ingress_burst, "--ingress-burst"))
    body = {k: validate.limit(k, v, flag) for k, v, flag in flags if v is not None}
    if not body:
        ep = _client(args).call("GET", path)
        now = {k: ep.get(k, 0) for k in validate.LIMIT_KEYS.values()}
        return Result({"name": args.name, **now}, [_limits_line(args.name, now)])
    now = _client(args).call("PUT", f"{path}/limit", body)
    return Result(now, [_limits_line(args.name, now)])


def _register(api: Any, args: argparse.Namespace, netns: str) -> dict[str, Any]:
    body: dict[str, Any] = {"name": args.name, "tenant": args.tenant, "netns": netns}
    if args.ip:
        body["ip"] = args.ip
    if args.rate:
        body["egress"] = args.rate
    return dict(api.call("POST", "/v1/endpoints", body))


def _control_path(api: Any) -> str:
    return os.path.join(os.path.dirname(api.path), "master.sock")


def _check_registration(args: argparse.Namespace) -> None:
    """run/attach flags, checked here as the master would check them, before
    anything is made: the endpoint's name also names its network namespace,
    made before the master is asked."""
    validate.endpoint_name(args.name, "--name")
    validate.tenant_name(args.tenant, "--tenant")
    if args.rate:
        validate.limit("egress", args.rate, "--rate")
    if getattr(args, "netns", None) is not None:
        validate.netns_path(args.netns, "--netns")


def _run(args: argparse.Namespace) -> int:
    from .netns import NetnsError, create_netns, delete_netns

    cmd = args.cmd[1:] if args.cmd and args.cmd[0] == "--" else args.cmd
    if not cmd:
        raise CliError("give a command after --")
    _check_registration(args)
    api = _client(args)
    # Named after the endpoint and its master: endpoint names are unique
    # per master, and a host may run several (tests, a demo beside a
    # service), whose endpoints must not meet in one namespace name.
    master_id = hashlib.blake2s(os.path.realpath(api.path).encode(), digest_size=3).hexdigest()
    ns = f"dn-{args.name}-{master_id}"
    try:
        path = create_netns(ns)
    except NetnsError as exc:
        raise CliError(f"cannot create the endpoint's network namespace: {exc}", 1) from None
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
                api.call("DELETE", f"/v1/endpoints/{quote(args.name, safe='')}")
            except Exception:  # noqa: BLE001 - the master may be gone; cleanup goes on
                pass
    finally:
        delete_netns(ns)


def _attach(args: argparse.Namespace) -> Result:
    _check_registration(args)
    api = _client(args)
    reg = _register(api, args, args.netns)
    env = {"DOCKNET_ENDPOINT": args.name, "DOCKNET_SECRET": reg["secret"], "DOCKNET_MASTER": _control_path(api)}
    return Result({**reg, "env": env}, [f"{k}={v}" for k, v in env.items()])


def _detach(args: argparse.Namespace) -> Result:
    _client(args).call("DELETE", f"/v1/endpoints/{_name_arg(args, what='--name')}")
    return Result({"name": args.name, "detached": True}, [f"detached {args.name}"])


def _global_options(p: argparse.ArgumentParser, defaults: bool) -> None:
    """The options every command takes, before or after its name (as `ip`
    and `docker` take them). On the subcommands they default to SUPPRESS,
    so a value given before the name survives."""
    def d(value: Any) -> Any:
        return value if defaults else argparse.SUPPRESS

    p.add_argument("--log-format", choices=FORMATS,
                   default=d(os.environ.get("DOCKNET_LOG_FORMAT") or "console"),
                   help="log lines for people or for machines (also DOCKNET_LOG_FORMAT)")
    p.add_argument("--log-level", type=str.lower, choices=LEVELS,
                   default=d(os.environ.get("DOCKNET_LOG_LEVEL") or "info"),
                   help="least severe level logged (also DOCKNET_LOG_LEVEL)")
    p.add_argument("--api", default=d(None), help="the master's management socket (default RUN_DIR/api.sock)")
    p.add_argument("--json", action="store_true", default=d(False), help="machine-readable output, errors too")


class _Parser(argparse.ArgumentParser):
    """argparse, with usage errors reported as the CLI's other errors are
    (one line; JSON with --json)."""

    def error(self, message: str) -> NoReturn:
        raise CliError(f"{message} (see `{self.prog} --help`)", 2, command=self.prog.removeprefix("docknet").strip())


def _cni(args: argparse.Namespace) -> Result:
    from ..cni.install import InstallError, install

    try:
        lines = list(install(args.bin_dir, args.conf_dir, args.run_dir, args.force, args.python))
    except InstallError as exc:
        raise CliError(str(exc), 1) from None
    return Result({"installed": lines}, lines)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="docknet", description="DockNet userspace networking")
    _global_options(p, defaults=True)
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def command(name: str, helptext: str, func: Callable[[argparse.Namespace], int | Result]) -> argparse.ArgumentParser:
        c = sub.add_parser(name, help=helptext)
        _global_options(c, defaults=False)
        c.set_defaults(func=func)
        return c

    m = command("master", "run this host's master, or `master status`", _master)
    m.add_argument("action", nargs="?", choices=["run", "status"], default="run")
    m.add_argument("--config", help="TOML configuration file (flags override it)")
    m.add_argument("--check-config", action="store_true", help="validate the configuration and exit")
    m.add_argument("--run-dir", default=os.environ.get("DOCKNET_RUN_DIR"),
                   help="directory for the control and API sockets (default /run/docknet)")
    m.add_argument("--subnet", help="endpoint address range (default 10.77.0.0/16)")
    m.add_argument("--subnet6", help="endpoints' IPv6 prefix, /64 to /96 (default fd77:d0c::/64); "
                                     "none: IPv4 only")
    m.add_argument("--mtu", type=int, help="MTU of the internal links to endpoints (default 9000)")
    m.add_argument("--spin-us", type=int, help="busy-poll time before sleeping (default 200)")
    m.add_argument("--range", help="this host's share of the subnet when hosts share it, e.g. 10.77.1.0/24")
    m.add_argument("--uplink", metavar="UPLINK",
                   help="port to other hosts: iface:NAME (af_xdp on kernel interface NAME, else af_packet, "
                        "the reason logged), af_xdp:NAME, af_packet:NAME, or DPDK device arguments such as "
                        "net_af_packet0,iface=eth1")
    m.add_argument("--no-fast-channels", dest="fast_channels", action="store_const", const=False,
                   help="carry every connection through the switch (for comparison)")
    m.add_argument("--fast-channel-ring", help="bytes per fast-channel ring, a power of two (default 1MiB)")
    m.add_argument("--no-peer-links", dest="peer_links", action="store_const", const=False,
                   help="keep the switch between every two endpoints: no frame links between their stacks "
                        "(for comparison)")
    m.add_argument("--uplink-faults", metavar="SPEC",
                   help="fault injection on the uplink, for tests: drop_ppm=N,dup_ppm=N,reorder_ppm=N,"
                        "corrupt_ppm=N,seed=N[,direction=egress|ingress|both] (parts per million)")

    d = command("demo", "the sample service mesh on DockNet and on the kernel, side by side", _demo)
    d.add_argument("--seconds", type=float, help="load per path and round (default 6; 3 with --data-plane)")
    d.add_argument("--users", type=int, default=16, help="concurrent users driving the mesh (default 16)")
    d.add_argument("--rounds", type=int,
                   help="rounds of every path in turn (default: 5, fewer if five would pass five minutes)")
    d.add_argument("--data-plane", action="store_true",
                   help="instead: the bare data plane (native loops through the switch)")

    b = command("bench", "the benchmark suite (`make bench`); --quick: a first look in two minutes", _bench)
    b.add_argument("--quick", action="store_true")

    command("ps", "endpoints: tenant, addresses, state, limits", _ps)
    command("stats", "per-endpoint counters and switch utilisation", _stats)

    ss = command("ss", "an endpoint's connections (its process must run a DockNetLoop)", _ss)
    ss.add_argument("name")

    pol = command("policy", "which tenants may reach which", _policy)
    pol.add_argument("verb", choices=["allow", "deny", "ls"])
    pol.add_argument("source", nargs="?", metavar="FROM")
    pol.add_argument("dest", nargs="?", metavar="TO")
    pol.add_argument("--port", type=int, default=0)

    lim = command("limit", "show or set an endpoint's rate limits (live)", _limit)
    lim.add_argument("name")
    lim.add_argument("--egress", help="bits/s, e.g. 100mbit; 0 or unlimited for none")
    lim.add_argument("--ingress")
    lim.add_argument("--egress-pps", help="packets/s, e.g. 20kpps")
    lim.add_argument("--ingress-pps")
    lim.add_argument("--egress-burst", help="bits that may pass at once above the rate, e.g. 1mbit; "
                                            "0: 10 ms of the rate")
    lim.add_argument("--ingress-burst")

    for name, func, helptext in (("run", _run, "run a command as an endpoint in its own namespace"),
                                 ("attach", _attach, "register an existing namespace as an endpoint")):
        r = command(name, helptext, func)
        r.add_argument("--name", required=True)
        r.add_argument("--tenant", default="default")
        r.add_argument("--rate", help="egress limit, e.g. 100mbit")
        r.add_argument("--ip", help="ask for this address (or its IPv6 twin)")
        if name == "run":
            r.add_argument("cmd", nargs=argparse.REMAINDER)
        else:
            r.add_argument("--netns", required=True, help="namespace path, e.g. /run/netns/NAME")

    cni = command("cni", "the CNI plugin for container runtimes (docknet-cni)", _cni)
    cni.add_argument("action", choices=["install"])
    cni.add_argument("--bin-dir", default="/opt/cni/bin", help="where runtimes find plugins (default /opt/cni/bin)")
    cni.add_argument("--conf-dir", default="/etc/cni/net.d",
                     help="where the example conflist goes (default /etc/cni/net.d)")
    cni.add_argument("--run-dir", default="/run/docknet", help="the master's run directory, for the conflist")
    cni.add_argument("--force", action="store_true", help="replace files that differ")
    cni.add_argument("--python", default="/usr/bin/python3",
                     help="the node's Python (3.11 or newer) that runs the plugin (default /usr/bin/python3)")

    det = command("detach", "unregister an endpoint (its process is cut off)", _detach)
    det.add_argument("--name", required=True)
    return p


def _wants_json(argv: list[str]) -> bool:
    """--json, looked for before parsing, for errors in the parse itself."""
    return "--json" in argv[: argv.index("--")] if "--" in argv else "--json" in argv


def _fail(command: str, message: str, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"error": message, "command": command or None}))
    else:
        print(f"docknet{' ' + command if command else ''}: {message}", file=sys.stderr)


def _emit(result: Result, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result.value, indent=1))
    else:
        for line in result.lines:
            print(line, file=sys.stderr if result.to_stderr else sys.stdout)


def main(argv: list[str] | None = None) -> int:
    from .api_client import ApiError

    argv = sys.argv[1:] if argv is None else argv
    as_json = _wants_json(argv)
    command = ""
    try:
        args = _parser().parse_args(argv)
        as_json, command = args.json, args.command
        configure(args.log_level, args.log_format)
        # Children (`docknet run`'s command, the master's helpers) log as
        # the CLI was asked to.
        os.environ["DOCKNET_LOG_FORMAT"] = args.log_format
        os.environ["DOCKNET_LOG_LEVEL"] = args.log_level
        out = args.func(args)
        if isinstance(out, Result):
            _emit(out, as_json)
            sys.stdout.flush()
            return out.status
        return int(out)
    except CliError as exc:
        _fail(exc.command if exc.command is not None else command, exc.message, as_json)
        return exc.status
    except validate.ValidationError as exc:
        _fail(command, str(exc), as_json)
        return 2
    except ApiError as exc:
        _fail(command, exc.message, as_json)
        return 1
    except BrokenPipeError:
        # `docknet ps | head`: the reader has what it wanted. Nothing more
        # is written (not even at exit) to a pipe nobody reads.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        return 130
    except OSError as exc:
        _fail(command, exc.strerror or str(exc), as_json)
        return 1
    except Exception as exc:  # noqa: BLE001 - a bug: one line, the trace only when asked for
        if os.environ.get("DOCKNET_LOG_LEVEL") == "debug":
            raise
        _fail(command, f"internal error ({type(exc).__name__}: {exc}); run with --log-level debug for the trace",
              as_json)
        return 70
