"""The management API's request bodies and answers, as pydantic models.

One source for two things: a request body is checked by its model, and
``/v1/openapi.json`` takes its schemas from the same models. Each request
field's rule is the function in ``aiodocknet/validate.py`` (or
``faults.check_field``) that the TOML configuration and the CLI use too,
with the JSON schema that describes it declared on the same field, so the
check and the document cannot say different things. Answers are described
by models as well; the switch's counters come from its C structs
(``native/switch/dn_switch.h`` through cffi), field by field.

:func:`error_sentence` turns pydantic's errors into the API's one sentence
(``FIELD: what is wrong``): the first unknown field, else the first missing
one, else the first value refused, in the validator's own words.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import (BaseModel, ConfigDict, Field, PlainValidator, RootModel, ValidationError,
                      ValidationInfo, WithJsonSchema, create_model, model_validator)

from .. import validate
from ..native._lib import ffi
from .faults import FIELD_MAX, check_field

__all__ = [
    "REQUEST_MODELS",
    "RESPONSE_MODELS",
    "error_sentence",
]


def _check(rule: Callable[..., Any], *args: Any) -> PlainValidator:
    """rule(value, *args) as the field's whole validation: pydantic adds no
    coercion of its own."""
    return PlainValidator(lambda value: rule(value, *args))


def _ci(word: str) -> str:
    """word in any case, as a JSON Schema pattern (ECMA-262 has no flags)."""
    return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else c for c in word)


# rates.parse_bits / parse_pkts as patterns: what they read, with the words
# that mean no limit; the range is the validator's (see MAX_BITS_PER_S).
_NO_LIMIT = "|".join(_ci(w) for w in ("none", "unlimited", "off"))
BITS_PATTERN = (rf"^\s*(?:{_NO_LIMIT}|\d+(?:\.\d+)?\s*[kKmMgGtT]?(?:{_ci('bit')}|{_ci('bps')}|[bB])?"
                rf"(?:/[sS])?)\s*$")
PKTS_PATTERN = (rf"^\s*(?:{_NO_LIMIT}|\d+(?:\.\d+)?\s*[kKmMgG]?(?:{_ci('pps')}|{_ci('p/s')}|"
                rf"{_ci('packets/s')})|0)\s*$")


def _name_schema(examples: list[str]) -> dict[str, Any]:
    return {"type": "string", "minLength": 1, "maxLength": validate.MAX_NAME,
            "pattern": validate.NAME_PATTERN, "examples": examples}


def _rate_schema(high: int, pattern: str, examples: list[Any]) -> dict[str, Any]:
    return {"oneOf": [{"type": "integer", "minimum": 0, "maximum": high},
                      {"type": "string", "maxLength": 64, "pattern": pattern}],
            "examples": examples}


EndpointName = Annotated[str, _check(validate.endpoint_name), WithJsonSchema(_name_schema(["api", "shop-1"]))]
TenantName = Annotated[str, _check(validate.tenant_name), WithJsonSchema(_name_schema(["default", "shop"]))]
NetnsPath = Annotated[str, _check(validate.netns_path),
                      WithJsonSchema({"type": "string", "pattern": validate.NETNS_PATTERN,
                                      "examples": ["/run/netns/api", "/proc/4242/ns/net"]})]
Port = Annotated[int, _check(validate.port, "'port'"),
                 WithJsonSchema({"type": "integer", "minimum": 0, "maximum": 65535, "examples": [5432]})]
Owner = Annotated[dict[str, str], _check(validate.owner), WithJsonSchema({
    "type": "object",
    "properties": {
        "runtime": _name_schema(["cni"]),
        "network": _name_schema(["dn-net"]),
        "container_id": {"type": "string", "maxLength": validate.MAX_CONTAINER_ID,
                         "pattern": validate.CONTAINER_ID_PATTERN, "examples": ["c0ffee01"]},
        "ifname": {"type": "string", "pattern": validate.IFNAME_PATTERN, "examples": ["eth0"]},
    },
    "required": list(validate.OWNER_KEYS),
    "additionalProperties": False,
})]


def _host_address(value: Any, info: ValidationInfo) -> str | None:
    # The master's range and gateway come with the request (the context);
    # null asks for the next free address, as leaving ip out does.
    if value is None:
        return None
    ctx = info.context or {}
    return validate.host_address(value, ctx["range"], ctx["gateway"], twins=ctx.get("twins"))


# An IPv6 address (of the master's prefix) asks for its IPv4 twin.
HostAddress = Annotated[str | None, PlainValidator(_host_address),
                        WithJsonSchema({"type": ["string", "null"], "anyOf": [{"format": "ipv4"}, {"format": "ipv6"}],
                                        "examples": ["10.77.0.9", "fd77:d0c::9"]})]


def _limit(key: str) -> Any:
    pkts = key.endswith("_pps")
    high = validate.MAX_PKTS_PER_S if pkts else validate.MAX_BITS_PER_S
    examples: list[Any] = (["20kpps", 0] if pkts else ["1mbit", 0] if key.endswith("_burst")
                           else ["100mbit", "1.5gbit", 0])
    return Annotated[int, PlainValidator(lambda value: validate.limit(key, value)),
                     WithJsonSchema(_rate_schema(high, PKTS_PATTERN if pkts else BITS_PATTERN, examples))]


def _fault(key: str) -> Any:
    return Annotated[int, PlainValidator(lambda value: check_field(key, value)),
                     WithJsonSchema({"type": "integer", "minimum": 0, "maximum": FIELD_MAX[key]})]


_BODY = ConfigDict(extra="forbid", frozen=True)


# ---- request bodies ----

Egress, Ingress, EgressPps, IngressPps, EgressBurst, IngressBurst = (
    _limit(k) for k in ("egress", "ingress", "egress_pps", "ingress_pps", "egress_burst", "ingress_burst"))
_LIMIT_DOC = {"egress": "bits/s the endpoint may send", "ingress": "bits/s it may receive",
              "egress_pps": "packets/s it may send", "ingress_pps": "packets/s it may receive",
              "egress_burst": "bits it may send at once above its egress rate",
              "ingress_burst": "bits it may receive at once above its ingress rate"}


def _limit_field(key: str) -> Any:
    none = ("0 for 10 ms of the rate; the switch takes at least two jumbo frames" if key.endswith("_burst")
            else "0 or \"unlimited\" for none")
    return Field(None, description=f"{_LIMIT_DOC[key]}; {none}")


def _limits_of(body: BaseModel) -> dict[str, int]:
    """The limits a body gives, by the attribute each is kept as (egress_bits...)."""
    return {attr: getattr(body, key) for key, attr in validate.LIMIT_KEYS.items() if key in body.model_fields_set}


class RegisterBody(BaseModel):
    """An endpoint to register: the process in netns that attaches under
    name gets its address, tenant and limits."""
    model_config = _BODY

    name: EndpointName = Field(description="the endpoint's name")
    netns: NetnsPath = Field(description="its network namespace: /run/netns/NAME or /proc/PID/ns/net")
    tenant: TenantName = Field("default", description="the tenant it belongs to")
    ip: HostAddress = Field(None, description="an address in the master's range, or its IPv6 twin (default: the "
                                              "next free one)")
    owner: Owner = Field(None, description="the container it is for (the CNI plugin): attached by its "
                                           "namespace alone, one per namespace, its address claimed now")
    egress: Egress = _limit_field("egress")
    ingress: Ingress = _limit_field("ingress")
    egress_pps: EgressPps = _limit_field("egress_pps")
    ingress_pps: IngressPps = _limit_field("ingress_pps")
    egress_burst: EgressBurst = _limit_field("egress_burst")
    ingress_burst: IngressBurst = _limit_field("ingress_burst")

    def limits(self) -> dict[str, int]:
        return _limits_of(self)


class LimitBody(BaseModel):
    """New rate limits for an endpoint; the ones not given stay as they are."""
    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_extra={"minProperties": 1})

    egress: Egress = _limit_field("egress")
    ingress: Ingress = _limit_field("ingress")
    egress_pps: EgressPps = _limit_field("egress_pps")
    ingress_pps: IngressPps = _limit_field("ingress_pps")
    egress_burst: EgressBurst = _limit_field("egress_burst")
    ingress_burst: IngressBurst = _limit_field("ingress_burst")

    @model_validator(mode="after")
    def _one_at_least(self) -> LimitBody:
        if not self.model_fields_set:
            raise ValueError(f"give at least one of {', '.join(validate.LIMIT_KEYS)}")
        return self

    def limits(self) -> dict[str, int]:
        return _limits_of(self)


class FaultsBody(BaseModel):
    """Fault injection on the link towards an endpoint (for tests), in parts
    per million of frames; seed makes a run repeatable (drawn when absent)."""
    model_config = _BODY

    drop_ppm: _fault("drop_ppm") = Field(None, description="frames dropped, parts per million")
    dup_ppm: _fault("dup_ppm") = Field(None, description="frames duplicated, parts per million")
    reorder_ppm: _fault("reorder_ppm") = Field(None, description="frames held back one, parts per million")
    corrupt_ppm: _fault("corrupt_ppm") = Field(None, description="frames with a flipped bit, parts per million")
    drop_next: _fault("drop_next") = Field(None, description="drop the next this many frames outright")
    seed: _fault("seed") = Field(None, description="the PRNG's seed (the answer tells the one drawn)")

    def settings(self) -> dict[str, int]:
        return {key: getattr(self, key) for key in self.model_fields_set}


class PolicyBody(BaseModel):
    """A rule: endpoints of tenant from may connect to tenant to's, on port
    (0: any)."""
    model_config = _BODY

    from_: TenantName = Field(alias="from", description="the tenant that connects")
    to: TenantName = Field(description="the tenant connected to")
    port: Port = Field(0, description="the destination port; 0 for any")


REQUEST_MODELS: tuple[type[BaseModel], ...] = (RegisterBody, LimitBody, FaultsBody, PolicyBody)


def _known(model: type[BaseModel]) -> list[str]:
    return sorted(f.alias or name for name, f in model.model_fields.items())


def error_sentence(exc: ValidationError, model: type[BaseModel]) -> str:
    """The API's one sentence for what pydantic found wrong with a body."""
    errors = exc.errors(include_url=False)
    extra = sorted(str(e["loc"][0]) for e in errors if e["type"] == "extra_forbidden" and e["loc"])
    if extra:
        return f"unknown field {extra[0][:40]!r} (known: {', '.join(_known(model))})"
    by_alias = {f.alias or name: f for name, f in model.model_fields.items()}
    for e in errors:
        if e["type"] == "missing" and e["loc"]:
            key = str(e["loc"][0])
            field = by_alias.get(key)
            what = f" ({field.description})" if field is not None and field.description else ""
            return f"{key!r} is required{what}"
    first = errors[0]
    cause = (first.get("ctx") or {}).get("error")
    if isinstance(cause, ValueError):
        return str(cause)  # validate.py's (or Faults') own sentence, naming the field
    where = ".".join(str(p) for p in first["loc"])
    return f"{where}: {first['msg']}" if where else str(first["msg"])


# ---- answers ----

_ANSWER = ConfigDict(extra="forbid")
_C_RANGES = {"uint64_t": (0, (1 << 64) - 1), "uint32_t": (0, (1 << 32) - 1), "unsigned int": (0, (1 << 32) - 1),
             "int": (-(1 << 31), (1 << 31) - 1), "int64_t": (-(1 << 63), (1 << 63) - 1)}


def _from_struct(model: str, struct: str, doc: str, **more: Any) -> type[BaseModel]:
    """A model with one integer field per field of a C struct, in its range:
    the switch reports its counters by these structs, so the schema follows
    native/ without anyone copying field names."""
    fields: dict[str, Any] = {}

    def add(ctype: Any) -> None:
        for name, f in ctype.fields:
            if f.type.kind == "struct":  # embedded: its fields are the answer's (switch.py flattens them)
                add(f.type)
                continue
            low, high = _C_RANGES[f.type.cname]
            fields[name] = (Annotated[int, Field(ge=low, le=high)], ...)

    add(ffi.typeof(struct))
    return create_model(model, __config__=_ANSWER, __doc__=doc, **fields, **more)


PortCounters = _from_struct("PortCounters", "struct dn_port_counters",
                            "An endpoint's port on the switch: frames, bytes, drops by reason, faults injected.")
SwitchCounters = _from_struct("SwitchCounters", "struct dn_switch_counters", "The switch thread's counters.")
SwitchStatus = _from_struct("SwitchStatus", "struct dn_switch_counters",
                            "The switch thread's counters and its utilisation (busy loops / loops).",
                            utilisation=(Annotated[float, Field(ge=0, le=1)], ...))
UplinkInfo = _from_struct(
    "UplinkInfo", "struct dn_uplink_info", "The uplink port: which DPDK port it is, and its counters.",
    pmd=(str, Field(description="the port's driver: af_xdp, af_packet, or the DPDK driver of raw device "
                                "arguments (net_tap, ...)", examples=["af_xdp"])),
    pmd_fallback=(str | None, Field(description="why an iface: uplink is not on af_xdp (it fell back to "
                                                "af_packet); null: it is on what was asked for",
                                    examples=[None])))


class Error(BaseModel):
    """What every 4xx and 5xx answers."""
    model_config = _ANSWER
    error: str = Field(description="one sentence: FIELD: what is wrong", examples=["no endpoint 'api'"])


class Ok(BaseModel):
    model_config = _ANSWER
    ok: Literal[True]


class FastChannelStats(BaseModel):
    """Fast channels (shared memory between endpoints on this host)."""
    model_config = _ANSWER
    enabled: bool
    ring_size: int = Field(ge=0, description="bytes per direction of a new channel")
    made: int = Field(ge=0)
    open: int = Field(ge=0)
    released: int = Field(ge=0)
    refused_by_policy: int = Field(ge=0)
    memory: int = Field(ge=0, description="bytes of shared memory the open channels hold")
    bytes: int = Field(ge=0, description="bytes carried, open and released channels")


class PeerLinkStats(BaseModel):
    """Peer links: frame links the master set up between two endpoints' stacks,
    which then bypass the switch."""
    model_config = _ANSWER
    enabled: bool
    up: int = Field(ge=0, description="links up now")
    made: int = Field(ge=0)
    removed: int = Field(ge=0, description="links taken down: an endpoint left, or limits, faults or a second "
                                           "process came")
    bytes: int = Field(ge=0, description="bytes the links carried, both ways, open and taken down (frames with "
                                         "their ring records' headers and padding)")


class Status(BaseModel):
    """The master: its network, switch, fast channels, peer links and uplink."""
    model_config = _ANSWER
    pid: int
    subnet: str = Field(examples=["10.77.0.0/16"])
    gateway: str = Field(examples=["10.77.0.1"])
    range: str = Field(description="the addresses this master hands out", examples=["10.77.0.0/16"])
    subnet6: str = Field(None, description="the endpoints' IPv6 prefix (each one's IPv6 address is its IPv4 "
                                           "host part in the low 32 bits); absent: IPv4 only",
                         examples=["fd77:d0c::/64"])
    gateway6: str = Field(None, description="the gateway's IPv6 address; absent: IPv4 only",
                          examples=["fd77:d0c::1"])
    mtu: int
    control: str = Field(description="the control socket's path")
    endpoints_attached: int = Field(ge=0)
    endpoints_registered: int = Field(ge=0)
    tenants: list[str]
    addresses_in_use: int = Field(None, ge=0)
    switch: SwitchStatus
    fast_channels: FastChannelStats
    peer_links: PeerLinkStats
    uplink: UplinkInfo | None


class Registration(BaseModel):
    """What a registration holds."""
    model_config = _ANSWER
    name: str
    tenant: str
    netns: str
    ip: str | None
    egress_bits: int = Field(ge=0)
    ingress_bits: int = Field(ge=0)
    egress_pkts: int = Field(ge=0)
    ingress_pkts: int = Field(ge=0)
    egress_burst_bits: int = Field(0, ge=0)
    ingress_burst_bits: int = Field(0, ge=0)
    owner: dict[str, str] | None
    mac: str | None = Field(description="the MAC the switch gives its address (null without one)",
                            examples=["02:00:0a:4d:00:09"])


class Registered(Registration):
    """A registration and the secret its process attaches with (shown once)."""
    secret: str = Field(description="DOCKNET_SECRET for the process that attaches under this name")


class Member(BaseModel):
    """One process attached to an endpoint (pre-fork workers, a sidecar:
    several may share an endpoint's address, each with its own link)."""
    model_config = _ANSWER
    pid: int | None
    link: int = Field(ge=0, description="its link in the endpoint's switch slot (0: the first)")
    ports: list[int] | None = Field(description="the ephemeral ports its link's connections use [low, high]; "
                                                "null: the endpoint's only link, any")
    listening: list[int] = Field(description="ports its servers listen on")
    attached_at: float = Field(description="seconds since the epoch")


class EndpointView(BaseModel):
    """An endpoint: registered (by the API), attached (a live process), or
    both; the fields of a state it is not in are absent."""
    model_config = _ANSWER
    name: str
    state: Literal["attached", "registered"]
    tenant: str
    netns: str = Field(None)
    ip: str | None = Field(None, description="the address asked for at registration")
    owner: dict[str, str] | None = Field(None)
    egress_bits: int = Field(ge=0)
    ingress_bits: int = Field(ge=0)
    egress_pkts: int = Field(ge=0)
    ingress_pkts: int = Field(ge=0)
    egress_burst_bits: int = Field(0, ge=0)
    ingress_burst_bits: int = Field(0, ge=0)
    address: str = Field(None, description="the address it is attached with")
    address6: str = Field(None, description="its IPv6 address (absent when the master has no subnet6)",
                          examples=["fd77:d0c::9"])
    mac: str | None = Field(None, description="the MAC of its address (null for a registration without one)")
    pid: int = Field(None, description="its first process's")
    attached_at: float = Field(None, description="seconds since the epoch")
    counters: PortCounters = Field(None)
    members: list[Member] = Field(None, description="its processes, in attach order")


class EndpointList(RootModel[list[EndpointView]]):
    """Every endpoint, registered or attached, by name."""


class Limits(BaseModel):
    """An endpoint's limits after the change: bits/s and packets/s, 0 for none."""
    model_config = _ANSWER
    name: str
    egress_bits: int = Field(ge=0)
    ingress_bits: int = Field(ge=0)
    egress_pkts: int = Field(ge=0)
    ingress_pkts: int = Field(ge=0)
    egress_burst_bits: int = Field(0, ge=0)
    ingress_burst_bits: int = Field(0, ge=0)


class FaultSettings(BaseModel):
    model_config = _ANSWER
    drop_ppm: int = Field(ge=0, le=FIELD_MAX["drop_ppm"])
    dup_ppm: int = Field(ge=0, le=FIELD_MAX["dup_ppm"])
    reorder_ppm: int = Field(ge=0, le=FIELD_MAX["reorder_ppm"])
    corrupt_ppm: int = Field(ge=0, le=FIELD_MAX["corrupt_ppm"])
    drop_next: int = Field(ge=0, le=FIELD_MAX["drop_next"])
    seed: int = Field(ge=0, le=FIELD_MAX["seed"])


class FaultsAnswer(BaseModel):
    """The link's faults now; null when off."""
    model_config = _ANSWER
    name: str
    faults: FaultSettings | None


# An address and port as ss writes them: IPv4, [IPv6], or *:* for none.
_SOCKET_NAME = r"^(\*:\*|[0-9.]{7,15}:[0-9]{1,5}|\[[0-9a-f:.]{2,45}\]:[0-9]{1,5})$"


class Connection(BaseModel):
    """One socket, as `ss` lists it."""
    model_config = _ANSWER
    id: str = Field(pattern=r"^(lwip|fc)[0-9]+$", examples=["lwip3", "fc12"],
                    description="lwipN: the slave stack's connection N (through the switch or a peer link); "
                                "fcN: fast channel N")
    kind: Literal["tcp-listen", "tcp", "udp", "?"]
    # The endpoint's process writes these rows: only the shapes ss prints
    # pass (nothing a terminal would take as a control sequence).
    state: str = Field(pattern=r"^[A-Z][A-Z0-9-]{0,15}$", examples=["ESTAB", "LISTEN"])
    local: str = Field(pattern=_SOCKET_NAME, examples=["10.77.0.2:8080", "[fd77:d0c::2]:8080"])
    peer: str = Field(pattern=_SOCKET_NAME, examples=["10.77.0.3:40000", "*:*"])
    recv_q: int = Field(ge=0, le=(1 << 63) - 1)
    send_q: int = Field(ge=0, le=(1 << 63) - 1)
    path: Literal["switch", "fast", "peer"]
    pid: int | None = Field(None, description="the process holding it, when the endpoint has several")
    family: Literal[4, 6] | None = Field(None, description="IP version of the addresses (IPv6 ones in brackets, "
                                                           "as ss writes them)")


class Connections(BaseModel):
    """An endpoint's connections (its DockNetLoop answers); total counts
    them all, the list may be cut short."""
    model_config = _ANSWER
    total: int = Field(ge=0)
    connections: list[Connection]
    malformed: int = Field(0, ge=0, description="rows the endpoint's process sent that were not connections "
                                                "(left out)")


EndpointStats = _from_struct(
    "EndpointStats", "struct dn_port_counters",
    "An attached endpoint's port counters, and the bytes it sent and received over fast channels and peer links "
    "(which the switch does not see).",
    fast_tx_bytes=(Annotated[int, Field(ge=0)], ...), fast_rx_bytes=(Annotated[int, Field(ge=0)], ...),
    fast_tx_writes=(Annotated[int, Field(ge=0)], ...), fast_rx_writes=(Annotated[int, Field(ge=0)], ...),
    peer_tx_bytes=(Annotated[int, Field(ge=0)],
                   Field(..., description="frame bytes it sent over peer links, as the slaves' ring positions say")),
    peer_rx_bytes=(Annotated[int, Field(ge=0)],
                   Field(..., description="frame bytes its peers sent it over peer links")))


class Stats(BaseModel):
    """The switch's counters, each attached endpoint's, and fast channels'."""
    model_config = _ANSWER
    switch: SwitchCounters
    endpoints: dict[str, EndpointStats]
    fast_channels: FastChannelStats


class Channel(BaseModel):
    """An open fast channel between two endpoints."""
    model_config = _ANSWER
    id: int
    client: str
    server: str
    client_addr: str
    server_addr: str
    bytes_to_server: int = Field(ge=0)
    bytes_to_client: int = Field(ge=0)
    closed: list[bool] = Field(min_length=2, max_length=2, description="client's side, server's side")
    reset: bool | int
    ring_size: int = Field(ge=0)
    memory: int = Field(ge=0)
    opened_at: float


class ChannelList(RootModel[list[Channel]]):
    """The open fast channels."""


class PolicyRule(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    from_: str = Field(alias="from")
    to: str
    port: int = Field(ge=0, le=65535, description="0: any port")


class PolicyList(RootModel[list[PolicyRule]]):
    """The tenant policy's allow rules, sorted."""

RESPONSE_MODELS: tuple[type[BaseModel], ...] = (
    Error, Ok, Status, EndpointList, EndpointView, Registered, Limits, FaultsAnswer, Connections, Stats,
    ChannelList, PolicyList)
