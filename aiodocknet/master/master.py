"""A host's master: EAL, switch thread, control socket, until told to stop."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import signal
from dataclasses import dataclass

from ..control import DEFAULT_RUN_DIR
from ..eal import eal_memory, init_eal
from ..log import get_logger
from .addresses import AddressPool
from .api import serve_api
from .control import ControlServer
from .switch import Switch

__all__ = ["MasterConfig", "run_master"]

log = get_logger("aiodocknet.master")


@dataclass
class MasterConfig:
    run_dir: str = DEFAULT_RUN_DIR
    subnet: str = "10.77.0.0/16"
    # memif links are internal: jumbo frames cut the per-segment cost.
    mtu: int = 9000
    max_endpoints: int = 1024
    # Busy-poll this long after the last frame before sleeping: long enough
    # to catch the answer to a request, short enough to cost ~0% when idle.
    spin_us: int = 200
    # One jumbo frame each (~9.6 KiB): ~78 MiB.
    n_mbufs: int = 8191
    mem_mb: int = 128

    @property
    def control_path(self) -> str:
        return os.path.join(self.run_dir, "master.sock")

    @property
    def api_path(self) -> str:
        return os.path.join(self.run_dir, "api.sock")


async def run_master(cfg: MasterConfig, stop: asyncio.Event | None = None) -> None:
    subnet = ipaddress.IPv4Network(cfg.subnet)
    addresses = AddressPool(subnet)
    os.makedirs(cfg.run_dir, mode=0o755, exist_ok=True)
    init_eal("master", cfg.mem_mb)
    switch = Switch(
        subnet,
        addresses.gateway,
        mtu=cfg.mtu,
        n_mbufs=cfg.n_mbufs,
        max_endpoints=cfg.max_endpoints,
        spin_us=cfg.spin_us,
    )
    server = ControlServer(cfg.control_path, cfg.run_dir, switch, addresses, cfg.mtu)
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
            gateway=addresses.gateway,
            mtu=cfg.mtu,
            control=cfg.control_path,
            dpdk_heap_mb=round(total / 2**20, 1),
            pid=os.getpid(),
        )
        await stop.wait()
    finally:
        if api is not None:
            await api.cleanup()
        server.close()
        switch.close()
        log.info("master stopped")
