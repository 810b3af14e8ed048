"""cffi (API mode) build of ``aiodocknet._native``.

The extension holds the slave stack, the master switch and lwIP's core,
compiled from the Debian lwIP sources that ``scripts/bootstrap.sh`` fetches
(``DOCKNET_LWIP_SRC`` points elsewhere). None of lwIP's code lives in this
repository. DPDK is found with pkg-config.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
LWIP_SRC = Path(os.environ.get("DOCKNET_LWIP_SRC", ROOT / "build" / "lwip"))

# The headers whose declarations make up the Python-visible API.
API_HEADERS = ["dn_error.h", "dn_eal.h", "dn_link.h", "dn_stack.h", "dn_switch.h", "dn_bench.h", "dn_fastchan.h",
               "dn_crowding.h"]

OUR_SOURCES = [
    "native/dn_error.c",
    "native/dn_eal.c",
    "native/dn_pktpool.c",
    "native/dn_link.c",
    "native/dn_stack.c",
    "native/dn_switch.c",
    "native/dn_bench.c",
    "native/dn_limit.c",
    "native/dn_fault.c",
    "native/dn_policy.c",
    "native/dn_uplink.c",
    "native/dn_fastchan.c",
    "native/dn_crowding.c",
    "lwip/netif/dn_netif.c",
    "lwip/dn_hooks.c",
]

# lwIP core: what NO_SYS=1 IPv4 TCP/UDP/ICMP/raw needs, nothing more.
LWIP_CORE = [
    "def.c", "inet_chksum.c", "init.c", "ip.c", "mem.c", "memp.c",
    "netif.c", "pbuf.c", "raw.c", "stats.c", "sys.c", "tcp.c", "tcp_in.c",
    "tcp_out.c", "timeouts.c", "udp.c",
    "ipv4/etharp.c", "ipv4/icmp.c", "ipv4/ip4.c", "ipv4/ip4_addr.c",
    "ipv4/ip4_frag.c",
]


def _pkg_config(*args: str) -> list[str]:
    try:
        out = subprocess.run(
            ["pkg-config", *args, "libdpdk"],
            check=True, capture_output=True, text=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        raise SystemExit(
            "DPDK development files not found by pkg-config "
            "(run scripts/bootstrap.sh, or apt-get install libdpdk-dev)"
        ) from exc
    return shlex.split(out)


def _cdef_from_headers() -> str:
    """The API headers, minus what cffi's parser does not take."""
    out = []
    for name in API_HEADERS:
        text = (HERE / name).read_text()
        text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
        text = re.sub(
            r"__attribute__\s*\(\((?:[^()]|\([^()]*\))*\)\)", "", text)
        for line in text.splitlines():
            s = line.strip()
            if s.startswith("#"):
                m = re.match(r"#define\s+(DN_\w+)\s+(-?\d+)\s*$", s)
                if m:
                    out.append(f"#define {m.group(1)} {m.group(2)}")
                continue
            out.append(line)
    return "\n".join(out)


def _lwip_sources() -> list[str]:
    core = LWIP_SRC / "src" / "core"
    if not (core / "tcp.c").is_file():
        raise SystemExit(
            f"lwIP sources not found in {LWIP_SRC} "
            "(run scripts/bootstrap.sh, or set DOCKNET_LWIP_SRC)"
        )
    files = [core / f for f in LWIP_CORE] + [LWIP_SRC / "src" / "netif" / "ethernet.c"]
    # setuptools wants source paths relative to setup.py.
    return [os.path.relpath(f, ROOT) for f in files]


ffi = FFI()
ffi.cdef(_cdef_from_headers())

_cflags = _pkg_config("--cflags")
_libs = _pkg_config("--libs")

ffi.set_source(
    "aiodocknet._native",
    "\n".join(f'#include "{h}"' for h in API_HEADERS),
    sources=OUR_SOURCES + _lwip_sources(),
    include_dirs=[
        str(HERE),
        str(ROOT / "lwip"),
        str(LWIP_SRC / "src" / "include"),
    ],
    extra_compile_args=[
        *_cflags,
        "-O3",
        "-std=gnu11",
        "-D_GNU_SOURCE",
        "-Wall",
        "-Wno-unused-parameter",
        "-Wno-address-of-packed-member",
        "-fvisibility=hidden",
    ],
    # rte_vdev_init() lives in the vdev bus driver, which pkg-config
    # leaves out of the application link line.
    extra_link_args=[*_libs, "-lrte_bus_vdev"],
)

if __name__ == "__main__":
    ffi.compile(verbose=True)
