"""Starting DPDK's EAL inside this process.

Every DockNet process (master or slave) is its own DPDK primary with its
own ``--file-prefix``; ``--in-memory`` keeps it from leaving files behind,
and the runtime directory the EAL makes anyway is removed as soon as the
EAL is up.
When hugepages are not available (unprivileged, none reserved, or not
enough free) the EAL runs with ``--no-huge``: slower, and said once in the
log.
"""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

from .errors import check
from ._lib import ffi, lib
from ..log import get_logger

__all__ = ["init_eal", "hugepages_free_mb", "eal_memory"]

log = get_logger("aiodocknet.native.eal")
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


def _runtime_base() -> str:
    if os.geteuid() == 0:
        return "/var/run/dpdk"
    return os.path.join(os.environ.get("XDG_RUNTIME_DIR", "/tmp"), "dpdk")


def _remove_runtime_dir(prefix: str) -> None:
    shutil.rmtree(os.path.join(_runtime_base(), prefix), ignore_errors=True)


def _remove_stale_runtime_dirs() -> None:
    """The EAL makes a runtime directory per file prefix even in-memory;
    those of DockNet processes that died without cleaning up go here."""
    try:
        names = os.listdir(_runtime_base())
    except OSError:
        return
    for name in names:
        head, _, pid = name.rpartition("-")
        if head in ("dn-master", "dn-slave") and pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
            _remove_runtime_dir(name)


def init_eal(role: str, mem_mb: int) -> list[str]:
    """Initialise the EAL once for this process; return the arguments used.

    The main lcore may run on every CPU the process may use: pinning each
    DockNet process to CPU 0 (DPDK's default) would put them all on one core.
    """
    global _args
    with _lock:
        if _args is not None:
            return _args
        prefix = f"dn-{role}-{os.getpid()}"
        args = [
            f"aiodocknet-{role}",
            "--no-pci",
            "--no-telemetry",
            f"--file-prefix={prefix}",
            f"--lcores=0@({_cpu_list()})",
            f"--log-level=*:{os.environ.get('DOCKNET_DPDK_LOG_LEVEL', 'error')}",
            "-m",
            str(mem_mb),
        ]
        no_huge = False
        if os.environ.get("DOCKNET_NO_HUGE") == "1" or (
            os.geteuid() != 0 or hugepages_free_mb() < mem_mb
        ):
            args.append("--no-huge")
            no_huge = True
            log.warning(
                "hugepages unavailable, running DPDK with --no-huge (slower)",
                role=role,
                need_mb=mem_mb,
                free_mb=hugepages_free_mb(),
                root=os.geteuid() == 0,
            )
        _remove_stale_runtime_dirs()
        if not no_huge:
            # --in-memory leaves no files behind; one file per memseg list
            # rather than one per page keeps the descriptor count small.
            args += ["--in-memory", "--single-file-segments"]
        keep = [ffi.new("char[]", a.encode()) for a in args]
        argv = ffi.new("char *[]", keep)
        try:
            check(lib.dn_eal_init(len(args), argv))
        finally:
            # The directory is for secondary processes (its multi-process
            # socket, shared config), and there are none: a process of ours
            # is its own primary. Gone now, it cannot be left behind by an
            # exit that runs no Python (SIGTERM's default action, SIGKILL),
            # which atexit could not cover. Files the EAL keeps open
            # (--no-huge maps its config) stay valid once unlinked.
            _remove_runtime_dir(prefix)
        _args = args
        log.debug("eal ready", role=role, args=" ".join(args))
        return args


def eal_memory() -> tuple[int, int]:
    """DPDK heap bytes (in use, reserved) in this process."""
    in_use = ffi.new("unsigned long long *")
    total = ffi.new("unsigned long long *")
    check(lib.dn_eal_memory(in_use, total))
    return int(in_use[0]), int(total[0])
