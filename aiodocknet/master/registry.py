"""Registered endpoints, tenants and the policy between tenants.

An endpoint registered here (``docknet run`` / ``docknet attach``) may be
attached only by a process in its network namespace that presents its
secret. A name nobody registered may be attached ad hoc, but only by a
process in the master's own network namespace (a process on the host);
anything from another namespace must be registered first.
"""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Registration", "Registry", "RegistryError", "netns_inode"]

DEFAULT_TENANT = "default"
MAX_TENANTS = 256


class RegistryError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def netns_inode(path: str) -> int:
    """The inode that identifies a network namespace (/proc/PID/ns/net or a
    bind mount under /run/netns)."""
    return os.stat(path).st_ino


@dataclass
class Registration:
    name: str
    tenant: str
    netns: str
    netns_ino: int
    secret: str
    ip: str | None = None
    egress_bits: int = 0
    ingress_bits: int = 0
    egress_pkts: int = 0
    ingress_pkts: int = 0
    created: float = field(default_factory=time.time)

    def public(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "tenant": self.tenant,
            "netns": self.netns,
            "ip": self.ip,
            "egress_bits": self.egress_bits,
            "ingress_bits": self.ingress_bits,
            "egress_pkts": self.egress_pkts,
            "ingress_pkts": self.ingress_pkts,
        }


class Registry:
    def __init__(self) -> None:
        self.endpoints: dict[str, Registration] = {}
        self.tenants: dict[str, int] = {DEFAULT_TENANT: 0}
        # (from, to, port): port 0 is any port
        self.policies: set[tuple[str, str, int]] = set()
        self.master_netns = netns_inode("/proc/self/ns/net")

    def tenant_id(self, name: str) -> int:
        if name not in self.tenants:
            if len(self.tenants) >= MAX_TENANTS:
                raise RegistryError(409, f"too many tenants (at most {MAX_TENANTS})")
            self.tenants[name] = len(self.tenants)
        return self.tenants[name]

    def register(self, name: str, tenant: str, netns: str, ip: str | None = None) -> Registration:
        if name in self.endpoints:
            raise RegistryError(409, f"endpoint {name!r} is already registered")
        try:
            ino = netns_inode(netns)
        except OSError as exc:
            raise RegistryError(400, f"network namespace {netns!r}: {exc.strerror}") from None
        self.tenant_id(tenant)
        reg = Registration(name, tenant, netns, ino, secrets.token_hex(16), ip)
        self.endpoints[name] = reg
        return reg

    def unregister(self, name: str) -> Registration:
        reg = self.endpoints.pop(name, None)
        if reg is None:
            raise RegistryError(404, f"no endpoint {name!r} is registered")
        return reg

    def allows(self, source: str, dest: str, port: int) -> bool:
        """The switch's rule for a new connection (see native/dn_policy.h)."""
        return source == dest or (source, dest, 0) in self.policies or (source, dest, port) in self.policies

    def may_reach(self, source: str, dest: str) -> bool:
        """Whether source may connect to dest on some port (what a name
        lookup may reveal)."""
        return source == dest or any(a == source and b == dest for a, b, _ in self.policies)

    def check_attach(self, name: str, pid: int | None, secret: Any) -> Registration | None:
        """The registration a process may attach under, None for an ad-hoc
        host endpoint; RegistryError (403) saying why otherwise."""
        if pid is None:
            raise RegistryError(403, "cannot identify the attaching process (no SO_PEERCRED)")
        try:
            ino = netns_inode(f"/proc/{pid}/ns/net")
        except OSError:
            raise RegistryError(403, f"process {pid} is gone or its namespace cannot be read") from None
        reg = self.endpoints.get(name)
        if reg is None:
            if ino != self.master_netns:
                raise RegistryError(
                    403,
                    f"endpoint {name!r} is not registered: a process outside the host's network "
                    "namespace must be started with `docknet run` or registered with `docknet attach`",
                )
            return None
        if ino != reg.netns_ino:
            raise RegistryError(403, f"process {pid} is not in endpoint {name!r}'s network namespace ({reg.netns})")
        if not isinstance(secret, str) or not secrets.compare_digest(secret, reg.secret):
            raise RegistryError(403, f"wrong or missing secret for endpoint {name!r}")
        return reg
