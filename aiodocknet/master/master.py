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

__all__ = ["MasterConfig", "run_master"]

log = get_logger("aiodocknet.master")


def _limit_attrs(defaults: dict[str, int]) -> dict[str, int]:
    return {validate.LIMIT_KEYS[k]: v for k, v in defaults.items()}


def _clamp_to_uplink(uplink: str, mtu: int) -> int:
    """Endpoints' frames cross the uplink unchanged (no fragmentation), so
    the links may not be wider than it."""
    for arg in uplink.split(",")[1:]:
        key, _, value = arg.partition("=")
        if key == "iface":
            try:
                wire = int(open(f"/sys/class/net/{value}/mtu").read())
            except (OSError, ValueError):
                return mtu
            if wire < mtu:
                log.warning("link MTU lowered to the uplink's", uplink=value, mtu=wire, wanted=mtu)
                return wire
    return mtu


def _size_af_packet(uplink: str, mtu: int) -> str:
    """net_af_packet's ring frames are 2 KiB unless told otherwise; a jumbo
    frame would not fit. One block per frame; the kernel wants blocks of
    a power of two pages."""
    if not uplink.startswith("net_af_packet") or "framesz=" in uplink:
        return uplink
    size = 4096
    while size < mtu + 256:
        size *= 2
    return f"{uplink},framesz={size},blocksz={size}"


async def run_master(
    cfg: MasterConfig,
    stop: asyncio.Event | None = None,
    *,
    defaults: dict[str, int] | None = None,
    policies: list[tuple[str, str, int]] | None = None,
) -> None:
    if cfg.uplink:
        cfg.mtu = _clamp_to_uplink(cfg.uplink, cfg.mtu)
        cfg.uplink = _size_af_packet(cfg.uplink, cfg.mtu)
    subnet = ipaddress.IPv4Network(cfg.subnet)
    local_range = ipaddress.IPv4Network(cfg.range) if cfg.range else None
    prefix6 = ipaddress.IPv6Network(cfg.subnet6) if cfg.subnet6 else None
    addresses = AddressPool(subnet, local_range, prefix6)
    os.makedirs(cfg.run_dir, mode=0o755, exist_ok=True)
    init_eal("master", cfg.mem_mb)
    switch = Switch(
        subnet,
        addresses.gateway,
        mtu=cfg.mtu,
        n_mbufs=cfg.n_mbufs,
        max_endpoints=cfg.max_endpoints,
        spin_us=cfg.spin_us,
        local_range=local_range,
        uplink=cfg.uplink,
        prefix6=prefix6,
    )
    up = switch.uplink()
    if cfg.uplink_faults is not None:
        direction, faults = cfg.uplink_faults
        try:
            switch.set_uplink_faults(direction, faults)
        except OSError:
            switch.close()
            raise
        log.warning("fault injection on the uplink", direction=direction, **faults.public())
    if up is not None:
        log.info(
            "uplink ready",
            device=cfg.uplink,
            classification="hardware (rte_flow)" if up["hw_classification"] else "software",
            wake="packet socket" if up["wake_fd"] >= 0 else "polls every few ms when idle",
        )
    server = ControlServer(cfg.control_path, switch, addresses, cfg.mtu,
                           default_limits=_limit_attrs(defaults or {}), state=MasterState(cfg.run_dir))
    addresses.claimed = lambda: {r.ip for r in server.registry.endpoints.values() if r.ip}
    server.broker.enabled = cfg.fast_channels
    server.broker.ring_size = cfg.fast_channel_ring
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
        log.info("master stopped")
