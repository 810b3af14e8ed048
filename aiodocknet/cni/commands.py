"""ADD, DEL, CHECK, STATUS, GC and VERSION against this host's master.

The endpoint's name is K8S_POD_NAME from CNI_ARGS (Kubernetes passes the
pod's name, Podman the container's: the name services call it by), else the
runtime's container id, shortened to its first 12 characters when longer
than an endpoint name may be (a 64-hex id's short form, as Podman and Docker
print it). Its tenant is the configuration's ``tenant``, else
K8S_POD_NAMESPACE, else the default tenant. Its owner (runtime, network,
container id, interface) is recorded with the master: DEL, CHECK and GC find
the endpoint by it, never by name alone, so they never touch an endpoint
someone else registered.
"""

from __future__ import annotations

import ipaddress
import os
from typing import Any

from .. import validate
from .config import SUPPORTED_VERSIONS, Env, NetConf
from .errors import CHECK_FAILED, INVALID_ENV, IO_FAILURE, MASTER_REFUSED, NOT_AVAILABLE, CniError
from .master import Master, MasterUnreachable
from .result import DockNetAttachment, merge

__all__ = ["add", "check", "delete", "gc", "status", "version", "endpoint_name", "SHORT_ID"]

SHORT_ID = 12


def endpoint_name(env: Env) -> str:
    pod = env.args.get("K8S_POD_NAME")
    if pod:
        try:
            return validate.endpoint_name(pod, "K8S_POD_NAME")
        except validate.ValidationError as exc:
            raise CniError(INVALID_ENV, f"CNI_ARGS: {exc}", "the endpoint's name is the pod's") from None
    cid = env.container_id
    return cid if len(cid) <= validate.MAX_NAME else cid[:SHORT_ID]


def _tenant(env: Env, conf: NetConf) -> str:
    if conf.tenant:
        return conf.tenant
    namespace = env.args.get("K8S_POD_NAMESPACE")
    if namespace:
        try:
            return validate.tenant_name(namespace, "K8S_POD_NAMESPACE")
        except validate.ValidationError as exc:
            raise CniError(INVALID_ENV, f"CNI_ARGS: {exc}") from None
    return "default"


def _owner(env: Env, conf: NetConf) -> dict[str, str]:
    runtime = "kubernetes" if "K8S_POD_UID" in env.args else "cni"
    return {"runtime": runtime, "network": conf.name, "container_id": env.container_id, "ifname": env.ifname}


def _same_attachment(view: dict[str, Any], env: Env, conf: NetConf) -> bool:
    owner = view.get("owner")
    return (isinstance(owner, dict) and owner.get("network") == conf.name
            and owner.get("container_id") == env.container_id and owner.get("ifname") == env.ifname)


def _ours(master: Master, env: Env, conf: NetConf) -> list[dict[str, Any]]:
    return [e for e in master.endpoints() if _same_attachment(e, env, conf)]


def _attachment(st: dict[str, Any], reg: dict[str, Any]) -> DockNetAttachment:
    return DockNetAttachment(reg["ip"], reg.get("mac"), st["subnet"], st["gateway"], int(st["mtu"]), st["control"],
                             st.get("subnet6"), st.get("gateway6"))


def add(env: Env, conf: NetConf) -> dict[str, Any]:
    master = Master(conf.api_path)
    name, tenant = endpoint_name(env), _tenant(env, conf)
    st = master.status()
    mine = _ours(master, env, conf)
    if mine and mine[0].get("netns") != env.netns:
        # The same attachment in a namespace of its own now: the old one's
        # endpoint goes (its namespace is another container's business).
        master.unregister(mine[0]["name"])
        mine = []
    if mine:
        # ADD again without a DEL (a runtime that crashed half way): the
        # same attachment, the same answer.
        reg = mine[0]
    else:
        body: dict[str, Any] = {"name": name, "netns": env.netns, "tenant": tenant, "owner": _owner(env, conf)}
        if conf.bandwidth.egress_rate:
            body["egress"] = conf.bandwidth.egress_rate
        if conf.bandwidth.ingress_rate:
            body["ingress"] = conf.bandwidth.ingress_rate
        # A burst without its rate limits nothing: the master keeps it
        # only with one.
        if conf.bandwidth.egress_rate and conf.bandwidth.egress_burst:
            body["egress_burst"] = conf.bandwidth.egress_burst
        if conf.bandwidth.ingress_rate and conf.bandwidth.ingress_burst:
            body["ingress_burst"] = conf.bandwidth.ingress_burst
        try:
            reg = master.register(body)
        except CniError as exc:
            if exc.code == MASTER_REFUSED:
                exc.details = f"endpoint {name!r}, network namespace {env.netns}: {exc.details}"
            raise
    return merge(conf.cni_version, env.ifname, env.netns, _attachment(st, reg), conf.prev_result, conf.dns)


def delete(env: Env, conf: NetConf) -> None:
    master = Master(conf.api_path)
    try:
        mine = _ours(master, env, conf)
    except MasterUnreachable:
        # A master that comes back drops a registration whose namespace is
        # gone; one whose namespace is still there it would keep.
        if env.netns and os.path.exists(env.netns):
            raise
        return
    for view in mine:
        master.unregister(view["name"])


def _address_of(cidr: Any) -> str | None:
    """An ips[] entry's address as the master writes it (a runtime may
    write an IPv6 address another way); None if it is none."""
    try:
        return str(ipaddress.ip_interface(cidr).ip) if isinstance(cidr, str) else None
    except ValueError:
        return None


def check(env: Env, conf: NetConf) -> None:
    master = Master(conf.api_path)
    mine = _ours(master, env, conf)
    if not mine:
        raise CniError(CHECK_FAILED, "the container's DockNet endpoint is gone",
                       f"no endpoint of network {conf.name!r} for container {env.container_id} ({env.ifname})")
    view = mine[0]
    problems = []
    if view.get("netns") != env.netns:
        problems.append(f"its network namespace is {view.get('netns')}, not {env.netns}")
    bw = conf.bandwidth
    for key, want in (("egress_bits", bw.egress_rate), ("ingress_bits", bw.ingress_rate),
                      ("egress_burst_bits", bw.egress_burst if bw.egress_rate else 0),
                      ("ingress_burst_bits", bw.ingress_burst if bw.ingress_rate else 0)):
        if view.get(key, 0) != want:
            problems.append(f"{key} is {view.get(key, 0)}, not {want}")
    prev_ips = {_address_of(ip.get("address")) for ip in (conf.prev_result or {}).get("ips", [])
                if isinstance(ip, dict)}
    if conf.prev_result is not None:
        # Both families: the master's IPv6 prefix gives the address's twin.
        wanted = [view.get("ip")]
        if view.get("ip"):
            wanted = _attachment(master.status(), view).addresses()
        for address in wanted:
            if address not in prev_ips:
                problems.append(f"its address {address} is not in prevResult")
    if problems:
        raise CniError(CHECK_FAILED, f"endpoint {view['name']!r} is not as ADD left it", "; ".join(problems))


def status(conf: NetConf) -> None:
    try:
        Master(conf.api_path, timeout=5.0).status()
    except CniError as exc:
        raise CniError(NOT_AVAILABLE, "the DockNet master is not available", f"{exc.msg}: {exc.details}") from None


def gc(conf: NetConf) -> None:
    master = Master(conf.api_path)
    valid = set(conf.valid_attachments or [])
    failures = []
    for view in master.endpoints():
        owner = view.get("owner")
        if not isinstance(owner, dict) or owner.get("network") != conf.name:
            continue
        if (owner.get("container_id"), owner.get("ifname")) in valid:
            continue
        try:
            master.unregister(view["name"])
        except CniError as exc:
            failures.append(f"{view['name']}: {exc.msg}")
    if failures:
        raise CniError(IO_FAILURE, f"GC could not remove {len(failures)} endpoint(s)", "; ".join(failures))


def version(requested: str | None) -> dict[str, Any]:
    return {"cniVersion": requested or SUPPORTED_VERSIONS[-1], "supportedVersions": list(SUPPORTED_VERSIONS)}
