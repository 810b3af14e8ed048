"""cffi (API mode) build of ``aiodocknet.native._lib``.

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
API_HEADERS = ["runtime/dn_error.h", "runtime/dn_eal.h", "stack/dn_link.h", "stack/dn_stack.h",
               "switch/dn_switch.h", "switch/dn_limit.h", "fastchan/dn_fastchan.h",
               "runtime/dn_crowding.h", "runtime/dn_spin.h"]

# One folder per component; headers include each other by bare name.
COMPONENTS = ["runtime", "shm", "stack", "switch", "fastchan"]

OUR_SOURCES = [
    "native/runtime/dn_error.c",
    "native/runtime/dn_eal.c",
    "native/runtime/dn_pktpool.c",
    "native/runtime/dn_crowding.c",
    "native/runtime/dn_spin.c",
    "native/stack/dn_link.c",
    "native/stack/dn_stack.c",
    "native/stack/dn_netif.c",
    "native/switch/dn_switch.c",
    "native/switch/dn_limit.c",
    "native/switch/dn_fault.c",
    "native/switch/dn_policy.c",
    "native/switch/dn_flow.c",
    "native/switch/dn_uplink.c",
    "native/switch/dn_xdp.c",
    "native/fastchan/dn_fastchan.c",
    "lwip/dn_hooks.c",
]

# lwIP core: what NO_SYS=1 IPv4 TCP/UDP/ICMP/raw needs, nothing more.
LWIP_CORE = [
    "def.c", "inet_chksum.c", "init.c", "ip.c", "mem.c", "memp.c",
    "netif.c", "pbuf.c", "raw.c", "stats.c", "sys.c", "tcp.c", "tcp_in.c",
    "tcp_out.c", "timeouts.c", "udp.c",
    "ipv4/etharp.c", "ipv4/icmp.c", "ipv4/ip4.c", "ipv4/ip4_addr.c",
    "ipv4/ip4_frag.c",
    "ipv6/ethip6.c", "ipv6/icmp6.c", "ipv6/inet6.c", "ipv6/ip6.c",
    "ipv6/ip6_addr.c", "ipv6/ip6_frag.c", "ipv6/nd6.c",
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


def cdef_from_headers(paths: list[Path]) -> str:
    """The headers' declarations, minus what cffi's parser does not take:
    comments, attributes, DN_EXPORT, preprocessor lines (but numeric DN_
    constants) and static inline definitions (C callers' fast paths; the
    header declares what Python calls)."""
    out = []
    for path in paths:
        text = path.read_text()
        text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
        text = re.sub(
            r"__attribute__\s*\(\((?:[^()]|\([^()]*\))*\)\)", "", text)
        text = re.sub(r"\bDN_EXPORT\b\s*", "", text)
        text = re.sub(r"^static inline\b.*?^}[ \t]*$", "", text, flags=re.S | re.M)
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
ffi.cdef(cdef_from_headers([HERE / h for h in API_HEADERS]))

_cflags = _pkg_config("--cflags")
_libs = _pkg_config("--libs")

ffi.set_source(
    "aiodocknet.native._lib",
    "\n".join(f'#include "{Path(h).name}"' for h in API_HEADERS),
    sources=OUR_SOURCES + _lwip_sources(),
    include_dirs=[
        *(str(HERE / c) for c in COMPONENTS),
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
    # leaves out of the application link line; libbpf finds and fills the
    # af_xdp uplink's XDP program (dn_xdp.c).
    extra_link_args=[*_libs, "-lrte_bus_vdev", "-lbpf"],
)

if __name__ == "__main__":
    ffi.compile(verbose=True)
