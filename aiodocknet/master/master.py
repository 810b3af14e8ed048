"""A host's master: EAL, switch thread, control socket, until told to stop."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import signal

from .. import validate
from ..native.eal import eal_memory, init_eal
from ..log import get_logger
from .addresses import AddressPool
from .api import serve_api
from .config import MasterConfig
from .control_server import ControlServer
from .state import MasterState
from .switch import Switch
from .iface_undo import InterfaceUndo
from .uplink import attempts, check_present, host_addresses, open_uplink, parse as parse_uplink

__all__ = ["MasterConfig", "run_master"]

log = get_logger("aiodocknet.master")


def _limit_attrs(defaults: dict[str, int]) -> dict[str, int]:
    return {validate.LIMIT_KEYS[k]: v for k, v in defaults.items()}


async def run_master(
    cfg: MasterConfig,
    stop: asyncio.Event | None = None,
    *,
    defaults: dict[str, int] | None = None,
    policies: list[tuple[str, str, int]] | None = None,
) -> None:
    # Checked again here for callers that built cfg themselves (the CLI
    # and the configuration file have already checked it).
    uplink = parse_uplink(cfg.uplink) if cfg.uplink else None
    if uplink is not None:
        check_present(uplink)
    subnet = ipaddress.IPv4Network(cfg.subnet)
    local_range = ipaddress.IPv4Network(cfg.range) if cfg.range else None
    prefix6 = ipaddress.IPv6Network(cfg.subnet6) if cfg.subnet6 else None
    addresses = AddressPool(subnet, local_range, prefix6)
    os.makedirs(cfg.run_dir, mode=0o755, exist_ok=True)
    init_eal("master", cfg.mem_mb)

    undo = InterfaceUndo(cfg.run_dir)
    iface = attempts(uplink)[0].iface if uplink is not None else None
    # Every port of the uplink is on the one interface.
    promisc_was = undo.begin(iface) if iface is not None else -1

    def make_switch(devargs: str | None, mtu: int) -> Switch:
        return Switch(
            subnet,
            addresses.gateway,
            mtu=mtu,
            n_mbufs=cfg.n_mbufs,
            max_endpoints=cfg.max_endpoints,
            spin_us=cfg.spin_us,
            local_range=local_range,
            uplink=devargs,
            prefix6=prefix6,
            uplink_promisc_was=promisc_was,
        )

    devargs = None
    if uplink is None:
        switch = make_switch(None, cfg.mtu)
    else:
        try:
            switch, _attempt, fallback, cfg.mtu = open_uplink(uplink, cfg.mtu, make_switch,
                                                              await host_addresses(uplink))
        except BaseException:
            undo.done()  # no port is open: each that opened has closed
            raise
        switch.uplink_fallback = fallback
        devargs = switch.uplink_devargs
    up = switch.uplink()
    if cfg.uplink_faults is not None:
        direction, faults = cfg.uplink_faults
        try:
            switch.set_uplink_faults(direction, faults)
        except OSError:
            switch.close()
            undo.done()
            raise
        log.warning("fault injection on the uplink", direction=direction, **faults.public())
    if up is not None:
        log.info(
            "uplink ready",
            uplink=cfg.uplink,
            device=devargs,
            pmd=up["pmd"],
            pmd_fallback=up["pmd_fallback"],
            classification="hardware (rte_flow)" if up["hw_classification"] else "software",
            wake=("AF_XDP sockets" if up["pmd"] == "af_xdp" else "packet socket") if up["wake_fds"] > 0
            else "polls every few ms when idle",
            filtered_sockets=up["filtered_sockets"],
            xdp_filter=bool(up["xdp_filter"]),
        )
        if up["stale_xdp_removed"]:
            log.warning("removed the XDP program a stopped master left on the uplink interface", uplink=cfg.uplink)
    server = ControlServer(cfg.control_path, switch, addresses, cfg.mtu,
                           default_limits=_limit_attrs(defaults or {}), state=MasterState(cfg.run_dir))
    addresses.claimed = lambda: {r.ip for r in server.registry.endpoints.values() if r.ip}
    server.broker.enabled = cfg.fast_channels
    server.broker.ring_size = cfg.fast_channel_ring
    server.peer_links.enabled = cfg.peer_links
    for source, dest, port in policies or []:
        # The configuration's tenants exist without endpoints, so its
        # policy is in force before any of them attaches.
        server.registry.declare_tenant(source)
        server.registry.declare_tenant(dest)
        server.set_policy(source, dest, port, True)
    loop = asyncio.get_running_loop()
    stop = stop or asyncio.Event()
    api = None
    try:
        server.start()
        api = await serve_api(server, cfg.api_path)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        in_use, total = eal_memory()
        log.info(
            "master running",
            subnet=str(subnet),
            subnet6=str(prefix6) if prefix6 else "none",
            range=str(addresses.range),
            gateway=addresses.gateway,
            mtu=cfg.mtu,
            control=cfg.control_path,
            fast_channels=cfg.fast_channels,
            peer_links=cfg.peer_links,
            dpdk_heap_mb=round(total / 2**20, 1),
            pid=os.getpid(),
        )
        await stop.wait()
    finally:
        if api is not None:
            await api.cleanup()
            # aiohttp closes the listening socket but leaves its path.
            with contextlib.suppress(FileNotFoundError):
                os.unlink(cfg.api_path)
        server.close()
        server.broker.close()
        switch.close()
        undo.done()
        log.info("master stopped")
