"""Registered endpoints, tenants and the policy between tenants.

An endpoint registered here (``docknet run`` / ``docknet attach``) may be
attached only by a process in its network namespace that presents its
secret. One registered for a container by the CNI plugin (it has an
``owner``: runtime, network, container id, interface) is identified by its
namespace alone: a runtime cannot hand a secret to a container's first
process, and the namespace is what the runtime made for that container. A name nobody registered may be attached ad hoc, but only by a
process in the master's own network namespace (a process on the host);
anything from another namespace must be registered first.

Tenants exist only with their endpoints: a registration creates its tenant,
the configuration may name tenants that always exist (its policy's), and a
tenant goes, with its policy, when nothing holds it any more. The switch
has a fixed number of tenant ids; tenants made up by policy requests alone
would use them up for good.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from .. import validate
from ..log import get_logger
from .switch import mac_of

__all__ = ["Registration", "Registry", "RegistryError", "netns_inode"]

log = get_logger("aiodocknet.master")

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
    egress_burst_bits: int = 0
    ingress_burst_bits: int = 0
    created: float = field(default_factory=time.time)
    # The container it was registered for (validate.owner), None for
    # `docknet run/attach`.
    owner: dict[str, str] | None = None

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
            "egress_burst_bits": self.egress_burst_bits,
            "ingress_burst_bits": self.ingress_burst_bits,
            "owner": self.owner,
            # The MAC the switch gives the address (a CNI result names it).
            "mac": mac_of(self.ip) if self.ip else None,
        }


class Registry:
    def __init__(self) -> None:
        self.endpoints: dict[str, Registration] = {}
        self.tenants: dict[str, int] = {DEFAULT_TENANT: 0}
        # Tenants kept with no endpoint: the default and the configuration's.
        self.declared: set[str] = {DEFAULT_TENANT}
        # (from, to, port): port 0 is any port
        self.policies: set[tuple[str, str, int]] = set()
        self.master_netns = netns_inode("/proc/self/ns/net")
        # Called after every change to the registrations (the master saves
        # them for its next start).
        self.on_change: Callable[[], None] = lambda: None

    def tenant_id(self, name: str) -> int:
        """The switch's id of an existing tenant; 404 for one that is not."""
        tid = self.tenants.get(name)
        if tid is None:
            raise RegistryError(
                404,
                f"no tenant {name!r}: a tenant exists while an endpoint of it is registered "
                "(`docknet run/attach --tenant`) or when the configuration names it",
            )
        return tid

    def _new_tenant_id(self, name: str) -> int:
        if name in self.tenants:
            return self.tenants[name]
        # The lowest free id: ids of tenants that went are taken again.
        used = set(self.tenants.values())
        tid = next((i for i in range(MAX_TENANTS) if i not in used), None)
        if tid is None:
            raise RegistryError(409, f"too many tenants (at most {MAX_TENANTS})")
        return tid

    def declare_tenant(self, name: str) -> int:
        """A tenant the configuration names: it exists from the start and
        stays without endpoints."""
        tid = self._new_tenant_id(name)
        self.tenants[name] = tid
        self.declared.add(name)
        return tid

    def register(self, name: str, tenant: str, netns: str, ip: str | None = None,
                 limits: dict[str, int] | None = None) -> Registration:
        """Everything is checked before anything is kept: a refused
        registration leaves no trace (no tenant, no name)."""
        if name in self.endpoints:
            raise RegistryError(409, f"endpoint {name!r} is already registered")
        if ip is not None:
            holder = next((r.name for r in self.endpoints.values() if r.ip == ip), None)
            if holder is not None:
                raise RegistryError(409, f"ip {ip} is already registered for endpoint {holder!r}")
        try:
            ino = netns_inode(netns)
        except OSError as exc:
            raise RegistryError(400, f"network namespace {netns!r}: {exc.strerror}") from None
        tid = self._new_tenant_id(tenant)
        reg = Registration(name, tenant, netns, ino, secrets.token_hex(16), ip)
        for attr, value in (limits or {}).items():
            setattr(reg, attr, value)
        self.tenants[tenant] = tid
        self.endpoints[name] = reg
        self.on_change()
        return reg

    def owned_in(self, ino: int) -> Registration | None:
        """The container registration of a network namespace: a namespace
        that identifies its endpoint holds only one."""
        return next((r for r in self.endpoints.values() if r.owner is not None and r.netns_ino == ino), None)

    def unregister(self, name: str) -> Registration:
        reg = self.endpoints.pop(name, None)
        if reg is None:
            raise RegistryError(404, f"no endpoint {name!r} is registered")
        self.on_change()
        return reg

    def release_tenants(self, attached: Iterable[str], clear: Callable[[int, int, int], None]) -> list[str]:
        """Forgets the tenants nothing holds any more (no registration, not
        in attached, not declared) and their policy rules; clear(from_id,
        to_id, port) takes each rule out of the switch first, so an id
        handed to a later tenant carries none of its predecessor's rights.
        Returns the tenants forgotten."""
        held = self.declared | set(attached) | {r.tenant for r in self.endpoints.values()}
        gone = [t for t in self.tenants if t not in held]
        for tenant in gone:
            for rule in sorted(r for r in self.policies if tenant in (r[0], r[1])):
                source, dest, port = rule
                clear(self.tenants[source], self.tenants[dest], port)
                self.policies.discard(rule)
            del self.tenants[tenant]
        return gone

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
        if reg.owner is not None and secret is None:
            # Identified by the namespace alone: its path must still name
            # that namespace (a bind mount pins it; a namespace that went
            # could hand its inode number to a new one).
            try:
                same = netns_inode(reg.netns) == ino
            except OSError:
                same = False
            if not same:
                raise RegistryError(403, f"endpoint {name!r}'s network namespace {reg.netns} is gone")
            return reg
        # Compared as bytes: compare_digest refuses str with non-ASCII
        # characters, and what a caller sends is anything it likes.
        if not isinstance(secret, str) or not secrets.compare_digest(secret.encode(), reg.secret.encode()):
            raise RegistryError(403, f"wrong or missing secret for endpoint {name!r}")
        return reg

    # ---- across a restart (master/state.py) ----

    def saved(self) -> dict[str, Any]:
        return {"registrations": [asdict(r) for r in self.endpoints.values()],
                "policies": sorted(self.policies)}

    def restore(self, saved: dict[str, Any]) -> list[tuple[str, str, int]]:
        """Registrations from a saved state whose namespace is still the
        one registered; returns the saved policies for the caller to put
        back in force."""
        names = {f.name for f in fields(Registration)}
        for row in saved.get("registrations") or []:
            try:
                reg = Registration(**{k: v for k, v in row.items() if k in names})
                if not (isinstance(reg.name, str) and isinstance(reg.secret, str) and isinstance(reg.netns, str)):
                    raise TypeError("bad field types")
                if reg.owner is not None:
                    reg.owner = validate.owner(reg.owner)
                if netns_inode(reg.netns) != reg.netns_ino:
                    raise OSError("its network namespace is gone")
                self.tenants[reg.tenant] = self._new_tenant_id(reg.tenant)
            except (TypeError, ValueError, OSError, AttributeError, RegistryError) as exc:
                log.warning("saved registration skipped", row=str(row)[:200], reason=str(exc))
                continue
            self.endpoints[reg.name] = reg
        out = []
        for rule in saved.get("policies") or []:
            if (isinstance(rule, list) and len(rule) == 3 and all(isinstance(x, str) for x in rule[:2])
                    and isinstance(rule[2], int) and not isinstance(rule[2], bool)):
                out.append((rule[0], rule[1], rule[2]))
        return out
