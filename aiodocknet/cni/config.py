"""What a runtime hands the plugin: the CNI environment and the network
configuration on stdin, both checked before anything is asked of the
master. A value that is wrong gets the spec's error code for it: a missing
or malformed variable 4, configuration that is not JSON or has a value of
the wrong type 6, a field DockNet does not know 2, a value it refuses 7, a
version it does not speak 1."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .. import validate
from ..control import DEFAULT_RUN_DIR
from .errors import (DECODE_FAILURE, INCOMPATIBLE_VERSION, INVALID_CONFIG, INVALID_ENV, UNKNOWN_CONTAINER,
                     UNSUPPORTED_FIELD, CniError)

__all__ = ["COMMANDS", "SUPPORTED_VERSIONS", "Bandwidth", "Env", "NetConf", "parse_config", "parse_env"]

# 1.1.0 adds STATUS and GC; both results are 1.0.0's format.
SUPPORTED_VERSIONS = ("1.0.0", "1.1.0")
COMMANDS = ("ADD", "DEL", "CHECK", "STATUS", "GC", "VERSION")
_NEEDS = {"ADD": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"),
          "CHECK": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"),
          "DEL": ("CNI_CONTAINERID", "CNI_IFNAME")}
# CNI_ARGS keys DockNet reads, and those runtimes send that it may ignore.
_ARGS_KNOWN = {"IgnoreUnknown", "K8S_POD_NAME", "K8S_POD_NAMESPACE", "K8S_POD_UID", "K8S_POD_INFRA_CONTAINER_ID"}
_NETWORK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
# The keys of a plugin configuration object: the protocol's, the
# well-known ones DockNet honours, and its own (runDir, tenant).
_CONF_KEYS = {"cniVersion", "name", "type", "args", "dns", "capabilities", "runtimeConfig", "prevResult",
              "runDir", "tenant"}
_CAPABILITIES = {"bandwidth"}
_BANDWIDTH_KEYS = ("ingressRate", "ingressBurst", "egressRate", "egressBurst")


@dataclass(frozen=True)
class Env:
    command: str
    container_id: str = ""
    netns: str = ""
    ifname: str = ""
    args: dict[str, str] = field(default_factory=dict)
    path: str = ""


@dataclass(frozen=True)
class Bandwidth:
    """runtimeConfig.bandwidth: bits/s and bits, 0 when not given."""

    ingress_rate: int = 0
    ingress_burst: int = 0
    egress_rate: int = 0
    egress_burst: int = 0


@dataclass
class NetConf:
    cni_version: str
    name: str
    type: str
    run_dir: str = DEFAULT_RUN_DIR
    tenant: str | None = None
    bandwidth: Bandwidth = field(default_factory=Bandwidth)
    dns: dict[str, Any] | None = None
    prev_result: dict[str, Any] | None = None
    valid_attachments: list[tuple[str, str]] | None = None
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def api_path(self) -> str:
        return os.path.join(self.run_dir, "api.sock")

    @property
    def control_path(self) -> str:
        return os.path.join(self.run_dir, "master.sock")


def _env_error(var: str, why: str) -> CniError:
    return CniError(INVALID_ENV, f"{var}: {why}", f"invalid environment variable {var}")


def _cni_args(text: str) -> dict[str, str]:
    """CNI_ARGS, "K=V;K=V": every pair has a key and '='; keys DockNet does
    not know are an error unless IgnoreUnknown is set, as libcni's plugins
    do."""
    args: dict[str, str] = {}
    for pair in filter(None, text.split(";")):
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise _env_error("CNI_ARGS", f"{pair[:40]!r} is not KEY=VALUE")
        args[key] = value
    ignore = args.get("IgnoreUnknown", "").lower() in ("1", "true")
    unknown = sorted(set(args) - _ARGS_KNOWN)
    if unknown and not ignore:
        raise _env_error("CNI_ARGS", f"unknown key {unknown[0][:40]!r} (IgnoreUnknown=1 lets it pass)")
    return args


def _netns(value: str) -> str:
    # containerd and CRI-O say /var/run/netns/..., the same directory.
    if value.startswith("/var/run/netns/"):
        value = value[len("/var"):]
    try:
        return validate.netns_path(value, "CNI_NETNS")
    except validate.ValidationError as exc:
        if os.path.exists(value) or not value.startswith(("/run/netns/", "/proc/")):
            raise _env_error("CNI_NETNS", str(exc)) from None
        raise CniError(UNKNOWN_CONTAINER, f"network namespace {value} does not exist", str(exc)) from None


def parse_env(environ: Mapping[str, str]) -> Env:
    command = environ.get("CNI_COMMAND", "")
    if command not in COMMANDS:
        raise _env_error("CNI_COMMAND", f"{command[:20]!r} is not one of {', '.join(COMMANDS)}"
                         if command else "required")
    missing = [v for v in _NEEDS.get(command, ()) if not environ.get(v)]
    if missing:
        raise CniError(INVALID_ENV, f"required environment variables missing: {', '.join(missing)}",
                       f"{command} needs {', '.join(_NEEDS[command])}")
    container_id = environ.get("CNI_CONTAINERID", "")
    ifname = environ.get("CNI_IFNAME", "")
    try:
        if container_id:
            validate.container_id(container_id, "CNI_CONTAINERID")
        if ifname:
            validate.interface_name(ifname, "CNI_IFNAME")
    except validate.ValidationError as exc:
        raise CniError(INVALID_ENV, str(exc), "invalid environment variable") from None
    netns = environ.get("CNI_NETNS", "")
    if netns and command in ("ADD", "CHECK"):
        netns = _netns(netns)
    return Env(command, container_id, netns, ifname, _cni_args(environ.get("CNI_ARGS", "")),
               environ.get("CNI_PATH", ""))


def _want(conf: Mapping[str, Any], key: str, kind: type | tuple[type, ...], what: str) -> Any:
    value = conf[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise CniError(DECODE_FAILURE, f"{what}: must be {_kind_name(kind)}, not {type(value).__name__}",
                       f"network configuration field {key!r}")
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    names = {str: "a string", dict: "an object", list: "a list", bool: "a boolean", int: "a whole number"}
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _version(conf: Mapping[str, Any]) -> str:
    if "cniVersion" not in conf:
        raise CniError(INVALID_CONFIG, "cniVersion: required")
    version = _want(conf, "cniVersion", str, "cniVersion")
    if version not in SUPPORTED_VERSIONS:
        raise CniError(INCOMPATIBLE_VERSION, "incompatible CNI versions",
                       f"config is {version[:20]!r}, plugin supports {', '.join(SUPPORTED_VERSIONS)}")
    return version


def _bandwidth(conf: Mapping[str, Any]) -> Bandwidth:
    runtime = _want(conf, "runtimeConfig", dict, "runtimeConfig") if "runtimeConfig" in conf else {}
    unknown = sorted(set(runtime) - _CAPABILITIES)
    if unknown:
        raise CniError(UNSUPPORTED_FIELD, f"unsupported field runtimeConfig.{unknown[0][:40]}: "
                       f"{json.dumps(runtime[unknown[0]])[:80]}", f"DockNet supports {', '.join(_CAPABILITIES)}")
    bw = runtime.get("bandwidth")
    if bw is None:
        return Bandwidth()
    if not isinstance(bw, dict):
        raise CniError(DECODE_FAILURE, "runtimeConfig.bandwidth: must be an object")
    unknown = sorted(set(bw) - set(_BANDWIDTH_KEYS))
    if unknown:
        raise CniError(UNSUPPORTED_FIELD, f"unsupported field runtimeConfig.bandwidth.{unknown[0][:40]}: "
                       f"{json.dumps(bw[unknown[0]])[:80]}", f"known: {', '.join(_BANDWIDTH_KEYS)}")
    values = []
    for key in _BANDWIDTH_KEYS:
        value = bw.get(key, 0)
        if not isinstance(value, int) or isinstance(value, bool):
            raise CniError(DECODE_FAILURE, f"runtimeConfig.bandwidth.{key}: must be a whole number")
        if not 0 <= value <= validate.MAX_BITS_PER_S:
            raise CniError(INVALID_CONFIG, f"runtimeConfig.bandwidth.{key}: must be 0 to "
                           f"{validate.MAX_BITS_PER_S:,} (bits/s, bits)")
        values.append(value)
    return Bandwidth(*values)


def _attachments(conf: Mapping[str, Any]) -> list[tuple[str, str]] | None:
    key = "cni.dev/valid-attachments"
    if key not in conf:
        return None
    rows = _want(conf, key, list, key)
    out = []
    for row in rows:
        if (not isinstance(row, dict) or not isinstance(row.get("containerID"), str)
                or not isinstance(row.get("ifname"), str)):
            raise CniError(DECODE_FAILURE, f"{key}: each entry is an object with containerID and ifname strings")
        out.append((row["containerID"], row["ifname"]))
    return out


def parse_config(data: bytes, command: str) -> NetConf:
    try:
        conf = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise CniError(DECODE_FAILURE, "network configuration is not valid JSON", str(exc)[:200]) from None
    if not isinstance(conf, dict):
        raise CniError(DECODE_FAILURE, "network configuration must be a JSON object")
    unknown = sorted(k for k in conf if k not in _CONF_KEYS and not k.startswith("cni.dev/"))
    if unknown:
        raise CniError(UNSUPPORTED_FIELD, f"unsupported field {unknown[0][:40]!r}: "
                       f"{json.dumps(conf[unknown[0]])[:80]}",
                       f"DockNet's configuration knows {', '.join(sorted(_CONF_KEYS))}")
    version = _version(conf)
    if command in ("STATUS", "GC") and version != "1.1.0":
        raise CniError(INCOMPATIBLE_VERSION, f"config version does not allow {command}",
                       f"{command} is CNI 1.1.0; the config is {version}")
    for key in ("name", "type"):
        if key not in conf:
            raise CniError(INVALID_CONFIG, f"{key}: required")
        _want(conf, key, str, key)
    if _NETWORK_NAME.fullmatch(conf["name"]) is None or len(conf["name"]) > validate.MAX_NAME:
        raise CniError(INVALID_CONFIG, f"name: {conf['name'][:40]!r} is not a network name",
                       f"1-{validate.MAX_NAME} letters, digits, '_', '.' or '-', starting with a letter or digit")
    out = NetConf(version, conf["name"], conf["type"], raw=conf)
    if "runDir" in conf:
        run_dir = _want(conf, "runDir", str, "runDir")
        if not os.path.isabs(run_dir) or "\0" in run_dir:
            raise CniError(INVALID_CONFIG, f"runDir: {run_dir[:60]!r} is not an absolute path")
        out.run_dir = os.path.normpath(run_dir)
    if "tenant" in conf:
        try:
            out.tenant = validate.tenant_name(_want(conf, "tenant", str, "tenant"), "tenant")
        except validate.ValidationError as exc:
            raise CniError(INVALID_CONFIG, str(exc)) from None
    if "capabilities" in conf:
        caps = _want(conf, "capabilities", dict, "capabilities")
        unknown = sorted(set(caps) - _CAPABILITIES)
        if unknown:
            raise CniError(UNSUPPORTED_FIELD, f"unsupported field capabilities.{unknown[0][:40]}: "
                           f"{json.dumps(caps[unknown[0]])[:80]}", f"DockNet supports {', '.join(_CAPABILITIES)}")
        if not all(isinstance(v, bool) for v in caps.values()):
            raise CniError(DECODE_FAILURE, "capabilities: values must be booleans")
    if "args" in conf:
        _want(conf, "args", dict, "args")
    if "dns" in conf:
        out.dns = _want(conf, "dns", dict, "dns")
    out.bandwidth = _bandwidth(conf)
    if "prevResult" in conf:
        out.prev_result = _want(conf, "prevResult", dict, "prevResult")
    out.valid_attachments = _attachments(conf)
    return out
