"""The ADD result (SPEC.md, "ADD Success"), DockNet's part merged into the
previous plugin's when chained: its interfaces, ips and routes are kept as
they are and DockNet's interface is appended, its addresses (IPv4, and
IPv6 when the master has a prefix) pointing at it, a route per family."""

from __future__ import annotations

import copy
import ipaddress
from typing import Any

from ..master.addresses import address6_of
from .errors import DECODE_FAILURE, CniError

__all__ = ["DockNetAttachment", "merge"]

# The interface DockNet adds when CNI_IFNAME is already the previous
# plugin's kernel interface in the container.
CHAINED_IFNAME = "docknet0"


class DockNetAttachment:
    """What the master gave: an address of its subnet, its gateway, its
    control socket (where the container's processes attach)."""

    def __init__(self, address: str, mac: str | None, subnet: str, gateway: str, mtu: int, control: str,
                 subnet6: str | None = None, gateway6: str | None = None) -> None:
        self.address = address
        self.mac = mac
        self.network = ipaddress.IPv4Network(subnet)
        self.gateway = gateway
        self.mtu = mtu
        self.control = control
        # The IPv6 twin, when the master has a prefix: the one rule the
        # master and the switch use, so nothing is asked of the master.
        self.network6 = ipaddress.IPv6Network(subnet6) if subnet6 else None
        self.gateway6 = gateway6
        self.address6 = (address6_of(address, self.network, self.network6)
                         if self.network6 is not None else None)

    def addresses(self) -> list[str]:
        """Its addresses, IPv4 first."""
        return [self.address] + ([self.address6] if self.address6 else [])


def _prev_lists(prev: dict[str, Any]) -> tuple[list[Any], list[Any], list[Any]]:
    out = []
    for key in ("interfaces", "ips", "routes"):
        value = prev.get(key, [])
        if not isinstance(value, list):
            raise CniError(DECODE_FAILURE, f"prevResult.{key}: must be a list")
        out.append(copy.deepcopy(value))
    return out[0], out[1], out[2]


def merge(cni_version: str, ifname: str, netns: str, att: DockNetAttachment, prev: dict[str, Any] | None,
          dns: dict[str, Any] | None) -> dict[str, Any]:
    interfaces, ips, routes = _prev_lists(prev or {})
    taken = {i.get("name") for i in interfaces if isinstance(i, dict) and i.get("sandbox") == netns}
    name = ifname if ifname not in taken else CHAINED_IFNAME
    # Runtimes check every interface's MAC (podman refuses a result
    # without one).
    interfaces.append({"name": name, "mac": att.mac, "mtu": att.mtu, "sandbox": netns, "socketPath": att.control})
    ips.append({"address": f"{att.address}/{att.network.prefixlen}", "gateway": att.gateway,
                "interface": len(interfaces) - 1})
    routes.append({"dst": str(att.network), "gw": att.gateway})
    if att.address6 is not None and att.network6 is not None:
        # One address and one route per family (SPEC.md: ips[] has both).
        ip6: dict[str, Any] = {"address": f"{att.address6}/{att.network6.prefixlen}", "interface": len(interfaces) - 1}
        route6: dict[str, Any] = {"dst": str(att.network6)}
        if att.gateway6:
            ip6["gateway"] = route6["gw"] = att.gateway6
        ips.append(ip6)
        routes.append(route6)
    result: dict[str, Any] = {**copy.deepcopy(prev or {}), "cniVersion": cni_version, "interfaces": interfaces,
                              "ips": ips, "routes": routes}
    if "dns" not in result and dns:
        result["dns"] = copy.deepcopy(dns)
    return result
