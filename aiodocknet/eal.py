"""Starting DPDK's EAL inside this process.

Every DockNet process (master or slave) is its own DPDK primary with its
own ``--file-prefix``; ``--in-memory`` keeps it from leaving files behind.
When hugepages are not available (unprivileged, none reserved, or not
enough free) the EAL runs with ``--no-huge``: slower, and said once in the
log.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from ._errors import check
from ._native import ffi, lib
from .log import get_logger

__all__ = ["init_eal", "hugepages_free_mb", "eal_memory"]

log = get_logger("aiodocknet.eal")
_lock = threading.Lock()
_args: list[str] | None = None

HUGEPAGES = Path("/sys/kernel/mm/hugepages/hugepages-2048kB")


def hugepages_free_mb() -> int:
    """Free 2 MiB hugepages, in MiB, if hugetlbfs is mounted; else 0."""
    try:
        mounts = Path("/proc/mounts").read_text()
        if " hugetlbfs " not in mounts:
            return 0
        free = int((HUGEPAGES / "free_hugepages").read_text())
    except (OSError, ValueError):
        return 0
    return free * 2


def _cpu_list() -> str:
    return ",".join(str(c) for c in sorted(os.sched_getaffinity(0)))


def init_eal(role: str, mem_mb: int) -> list[str]:
    """Initialise the EAL once for this process; return the arguments used.

    The main lcore may run on every CPU the process may use: pinning each
    DockNet process to CPU 0 (DPDK's default) would put them all on one core.
    """
    global _args
    with _lock:
        if _args is not None:
            return _args
        args = [
            f"aiodocknet-{role}",
            "--in-memory",
            "--no-pci",
            "--no-telemetry",
            f"--file-prefix=dn-{role}-{os.getpid()}",
            f"--lcores=0@({_cpu_list()})",
            "--log-level=*:error",
            "-m",
            str(mem_mb),
        ]
        if os.environ.get("DOCKNET_NO_HUGE") == "1" or (
            os.geteuid() != 0 or hugepages_free_mb() < mem_mb
        ):
            args.append("--no-huge")
            log.warning(
                "hugepages unavailable, running DPDK with --no-huge (slower)",
                role=role,
                need_mb=mem_mb,
                free_mb=hugepages_free_mb(),
                root=os.geteuid() == 0,
            )
        keep = [ffi.new("char[]", a.encode()) for a in args]
        argv = ffi.new("char *[]", keep)
        check(lib.dn_eal_init(len(args), argv))
        _args = args
        log.debug("eal ready", role=role, args=" ".join(args))
        return args


def eal_memory() -> tuple[int, int]:
    """DPDK heap bytes (in use, reserved) in this process."""
    in_use = ffi.new("unsigned long long *")
    total = ffi.new("unsigned long long *")
    check(lib.dn_eal_memory(in_use, total))
    return int(in_use[0]), int(total[0])
