"""The management API's OpenAPI document against a real master: it is valid
OpenAPI 3.1 (openapi-spec-validator), every route's answers in a live
session match the schemas it gives them (jsonschema), errors are its JSON
error object also for routes and methods that do not exist, and bodies its
schemas refuse are refused by the master with the reason and change
nothing. Offline, the request schemas and the validators that check bodies
are shown to agree value by value: they are meant to be one source."""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from openapi_spec_validator import validate as validate_spec

from dn_harness import Master, Proc, running_master

FC_PEER = Path(__file__).resolve().parent / "fc_peer.py"
HOST_NETNS = f"/proc/{os.getpid()}/ns/net"
OWNER = {"runtime": "cni", "network": "dn-test", "container_id": "c0ffee42", "ifname": "eth0"}


def request(master: Master, method: str, route: str, body: Any = None,
            raw: bytes | None = None) -> tuple[int, str, Any, http.client.HTTPResponse]:
    """(status, content type, decoded answer, response), over the API's unix
    socket, with body as JSON or raw as the exact bytes."""
    conn = http.client.HTTPConnection("docknet", timeout=10)
    conn.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.sock.connect(os.path.join(master.run_dir, "api.sock"))
    try:
        payload = raw if raw is not None else None if body is None else json.dumps(body).encode()
        conn.request(method, route, body=payload, headers={"Content-Type": "application/json"} if payload else {})
        resp = conn.getresponse()
        data = resp.read()
    finally:
        conn.close()
    kind = resp.headers.get_content_type()
    return resp.status, kind, json.loads(data) if kind == "application/json" else data.decode(), resp


class Checked:
    """Answers checked against the document: each one's schema is the
    operation's for its status (or its "default"), and which operations
    were seen with their success status is kept."""

    def __init__(self, master: Master) -> None:
        self.master = master
        status, _, self.doc, _ = request(master, "GET", "/v1/openapi.json")
        assert status == 200
        self.succeeded: set[tuple[str, str]] = set()

    def schema(self, template: str, method: str, status: int, kind: str) -> dict[str, Any]:
        responses = self.doc["paths"][template][method.lower()]["responses"]
        response = responses.get(str(status)) or responses["default"]
        assert kind in response["content"], (template, method, status, kind, list(response["content"]))
        # The document is the root the components' $refs point into.
        return {**response["content"][kind]["schema"], "components": self.doc["components"]}

    def call(self, method: str, template: str, body: Any = None, want: int = 200, **path: str) -> Any:
        route = template.format(**path)
        status, kind, answer, _ = request(self.master, method, route, body)
        assert status == want, (method, route, status, answer)
        jsonschema.Draft202012Validator(self.schema(template, method, status, kind),
                                        format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER).validate(answer)
        if status < 300:
            self.succeeded.add((template, method.lower()))
        return answer


def fc_proc(master: Master, name: str, *args: str) -> Proc:
    env = dict(master.env, DOCKNET_ENDPOINT=name, DOCKNET_FAST_CHANNELS="1")
    p = Proc([sys.executable, str(FC_PEER), *args], env, name)
    master.peers.append(p)
    return p


@pytest.fixture(scope="module")
def master() -> Iterator[Master]:
    if os.geteuid() != 0:
        pytest.skip("needs root (DPDK, hugepages)")
    with running_master("dn-openapi-") as m:
        yield m


def test_the_document_is_valid_openapi_3_1(master: Master) -> None:
    doc = Checked(master).doc
    validate_spec(doc)
    assert doc["openapi"] == "3.1.0"
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            names = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert names == set(re.findall(r"{(\w+)}", path)), (path, method)
            for status, response in op["responses"].items():
                if status == "default" or int(status) >= 400:
                    assert response["content"]["application/json"]["schema"] == \
                        {"$ref": "#/components/schemas/Error"}, (path, method, status)
    # Bodies and answers are schemas in components, not bare objects.
    register = doc["paths"]["/v1/endpoints"]["post"]
    assert register["requestBody"]["content"]["application/json"]["schema"] == \
        {"$ref": "#/components/schemas/RegisterBody"}
    body = doc["components"]["schemas"]["RegisterBody"]
    assert body["additionalProperties"] is False and body["required"] == ["name", "netns"]
    assert body["properties"]["name"]["pattern"] and body["properties"]["egress"]["oneOf"]
    assert "201" in register["responses"]
    assert set(doc["paths"]["/metrics"]["get"]["responses"]["200"]["content"]) >= {"text/plain"}


def test_every_route_answers_as_its_schema_says(master: Master) -> None:
    """A live session through every operation the document lists: two
    DockNetLoop services with fast channels open between them, an idle
    peer, a registration for a container; each answer (errors too) is
    checked against its schema, and every operation is seen succeeding."""
    api = Checked(master)
    srv = fc_proc(master, "fc-srv", "server", "--port", "7000").expect("ready", timeout=60)
    cli = fc_proc(master, "fc-cli", "client", "--host", srv["address"], "--port", "7000", "many", "2", "hold")
    cli.expect("held", timeout=60)
    master.peer("idle", "web").expect("ready")

    api.call("GET", "/v1/status")
    views = api.call("GET", "/v1/endpoints")
    assert {v["name"] for v in views} == {"fc-srv", "fc-cli", "web"}
    assert api.call("GET", "/v1/endpoints/{name}", name="web")["counters"]["link_up"] == 1
    api.call("GET", "/v1/endpoints/{name}", want=404, name="nobody")
    channels = api.call("GET", "/v1/channels")
    assert len(channels) == 2
    conns = api.call("GET", "/v1/endpoints/{name}/connections", name="fc-srv")
    assert any(c["path"] == "fast" for c in conns["connections"]), conns
    api.call("GET", "/v1/endpoints/{name}/connections", want=504, name="web")  # no DockNetLoop there
    stats = api.call("GET", "/v1/stats")
    assert stats["endpoints"]["fc-cli"]["fast_tx_bytes"] > 0
    cli.send("done")

    reg = api.call("POST", "/v1/endpoints", {"name": "reg", "netns": HOST_NETNS, "tenant": "shop",
                                              "egress": "5mbit", "ingress_pps": 1000}, want=201)
    assert len(reg["secret"]) == 32 and reg["egress_bits"] == 5_000_000
    owned = api.call("POST", "/v1/endpoints", {"name": "ctr", "netns": HOST_NETNS, "owner": OWNER}, want=201)
    assert owned["owner"] == OWNER and owned["ip"]
    api.call("POST", "/v1/endpoints", {"name": "ctr2", "netns": HOST_NETNS, "owner": OWNER}, want=409)
    assert api.call("GET", "/v1/endpoints/{name}", name="reg")["state"] == "registered"
    api.call("GET", "/v1/endpoints")  # registered and attached ones together

    assert api.call("PUT", "/v1/endpoints/{name}/limit", {"egress": "20mbit"}, name="web")["egress_bits"] == 20_000_000
    api.call("PUT", "/v1/endpoints/{name}/limit", {"egress": "fast"}, want=400, name="web")
    faults = api.call("PUT", "/v1/endpoints/{name}/faults", {"drop_ppm": 10}, name="web")
    assert faults["faults"]["drop_ppm"] == 10 and "seed" in faults["faults"]
    api.call("PUT", "/v1/endpoints/{name}/faults", {"drop_ppm": 1}, want=409, name="reg")
    assert api.call("DELETE", "/v1/endpoints/{name}/faults", name="web") == {"name": "web", "faults": None}

    api.call("POST", "/v1/policy", {"from": "shop", "to": "default", "port": 443})
    assert api.call("GET", "/v1/policy") == [{"from": "shop", "to": "default", "port": 443}]
    api.call("POST", "/v1/policy", {"from": "ghost", "to": "default"}, want=404)
    api.call("DELETE", "/v1/policy", {"from": "shop", "to": "default", "port": 443})
    api.call("DELETE", "/v1/endpoints/{name}", name="reg")
    api.call("DELETE", "/v1/endpoints/{name}", name="ctr")
    api.call("DELETE", "/v1/endpoints/{name}", want=404, name="reg")

    status, kind, text, _ = request(master, "GET", "/metrics")
    assert status == 200 and kind in api.doc["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert "# HELP" in text
    api.succeeded.add(("/metrics", "get"))
    api.call("GET", "/v1/openapi.json")

    documented = {(path, method) for path, ops in api.doc["paths"].items() for method in ops}
    assert api.succeeded == documented, documented - api.succeeded


def test_unknown_routes_and_methods_answer_the_json_error(master: Master) -> None:
    api = Checked(master)
    for route in ("/v1/nothing", "/", "/v1/endpoints/web/nothing", "/v1/" + "x" * 5000):
        status, kind, answer, _ = request(master, "GET", route)
        assert (status, kind) == (404, "application/json") and answer["error"].startswith("no route"), answer
        assert len(answer["error"]) < 200
    for method, route, allowed in (("PATCH", "/v1/policy", "DELETE,GET,POST"), ("POST", "/v1/status", "GET"),
                                   ("PUT", "/v1/endpoints", "GET,POST"), ("GET", "/v1/endpoints/x/limit", "PUT")):
        status, kind, answer, resp = request(master, method, route, {})
        assert (status, kind) == (405, "application/json"), (method, route, status, answer)
        assert resp.headers["Allow"] == allowed and f"method {method} is not allowed" in answer["error"], answer
    # A body past aiohttp's limit: its 413, in the same object.
    status, kind, answer, _ = request(master, "POST", "/v1/policy", raw=b" " * (2 << 20))
    assert (status, kind) == (413, "application/json") and "exceeded" in answer["error"], answer
    error = {"$ref": "#/components/schemas/Error", "components": api.doc["components"]}
    jsonschema.validate(answer, error)


def state(master: Master) -> Any:
    """What a refused request must not change."""
    views = [{k: v for k, v in e.items() if k != "counters"} for e in request(master, "GET", "/v1/endpoints")[2]]
    st = request(master, "GET", "/v1/status")[2]
    return views, request(master, "GET", "/v1/policy")[2], st["tenants"], st["endpoints_registered"]


# (route, method, body, what the master's sentence says); each body breaks
# its schema in one place.
OUT_OF_SCHEMA = [
    ("/v1/endpoints", "POST", {"name": "ok", "netns": HOST_NETNS, "color": "red"}, "unknown field 'color'"),
    ("/v1/endpoints", "POST", {"netns": HOST_NETNS}, "'name' is required"),
    ("/v1/endpoints", "POST", {"name": "a b", "netns": HOST_NETNS}, "endpoint name: 'a b' is not a name"),
    ("/v1/endpoints", "POST", {"name": "ok", "netns": "/tmp/ns"}, "netns: '/tmp/ns' is not a network namespace"),
    ("/v1/endpoints", "POST", {"name": "ok", "netns": HOST_NETNS, "egress": "-5mbit"}, "egress: not a rate"),
    ("/v1/endpoints", "POST", {"name": "ok", "netns": HOST_NETNS, "ingress_pps": True}, "ingress_pps: must be"),
    ("/v1/endpoints", "POST", {"name": "ok", "netns": HOST_NETNS, "owner": {**OWNER, "ifname": "eth0/1"}},
     "owner.ifname: 'eth0/1' is not an interface name"),
    ("/v1/endpoints", "POST", {"name": "ok", "netns": HOST_NETNS, "owner": {"runtime": "cni"}},
     "owner: 'network' is required"),
    ("/v1/endpoints/web/limit", "PUT", {}, "give at least one of egress, ingress, egress_pps, ingress_pps"),
    ("/v1/endpoints/web/limit", "PUT", {"egress": 10**13}, "egress: 10000000000000 is above the largest limit"),
    ("/v1/endpoints/web/faults", "PUT", {"drop_ppm": 1_000_001}, "drop_ppm must be a whole number from 0 to"),
    ("/v1/endpoints/web/faults", "PUT", {"seed": -1}, "seed must be a whole number"),
    ("/v1/policy", "POST", {"from": "default", "to": "default", "port": 65536}, "'port': must be 0 (any) to 65535"),
    ("/v1/policy", "DELETE", {"to": "default"}, "'from' is required"),
]


@pytest.mark.parametrize("route,method,body,text", OUT_OF_SCHEMA, ids=[t for *_, t in OUT_OF_SCHEMA])
def test_bodies_the_schema_refuses_are_refused_and_change_nothing(master: Master, route: str, method: str,
                                                                  body: Any, text: str) -> None:
    api = Checked(master)
    if not any(p.name == "web" for p in master.peers):
        master.peer("idle", "web").expect("ready")
    template = route.replace("/web/", "/{name}/")
    op = api.doc["paths"][template][method.lower()]
    schema = {**op["requestBody"]["content"]["application/json"]["schema"], "components": api.doc["components"]}
    assert not jsonschema.Draft202012Validator(schema).is_valid(body), body  # the document refuses it too
    before = state(master)
    status, kind, answer, _ = request(master, method, route, body)
    assert (status, kind) == (400, "application/json") and text in answer["error"], answer
    assert "\n" not in answer["error"]
    assert state(master) == before


# ---- the schemas and the validators agree (no master needed) ----

def _verdicts(model: Any, base: dict[str, Any], key: str, values: list[Any]) -> list[tuple[Any, bool, bool]]:
    """(value, the schema takes it, the model takes it) for base + {key: value}."""
    import ipaddress

    from aiodocknet.master.api import _Schemas

    schema = jsonschema.Draft202012Validator(model.model_json_schema(schema_generator=_Schemas),
                                             format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    context = {"range": ipaddress.IPv4Network("10.77.0.0/16"), "gateway": "10.77.0.1",
               "twins": (ipaddress.IPv4Network("10.77.0.0/16"), ipaddress.IPv6Network("fd77:d0c::/64"))}
    out = []
    for value in values:
        body = {**base, key: value}
        try:
            model.model_validate(body, context=context)
            taken = True
        except ValueError:
            taken = False
        out.append((value, schema.is_valid(body), taken))
    return out


# Values each field's rule takes and refuses. Left out, where the master is
# stricter than a schema can say: a name with a trailing newline (Python's
# `$`, which jsonschema uses, matches before one), whole numbers written as
# 1.0 (JSON Schema counts them as integers), rates in text above the cap,
# namespaces that do not exist, addresses outside the master's range.
NAMES = ["api", "a", "A9_.-x", "a" * 63, "a" * 64, "", "a/b", "..", ".x", "-x", "x y", "é", "a\0b", 5, None, True]
RATES = [0, 1, 10**12, 10**12 + 1, -1, 1.5, True, None, "100mbit", "1.5Gbit", "800kbit/s", "5 kbit", "12B",
         "0", "00", "unlimited", "OFF", " none ", "fast", "20kpps", "1.2.3mbit", "mbit", "", "5 mbit/s/s"]
PKT_RATES = [0, 10**9, 10**9 + 1, -5, "20kpps", "500pps", "1.5Mpps", "3 p/s", "7packets/s", "0", "5", "00",
             "unlimited", "20kbit", "pps", True]
PORTS = [0, 1, 443, 65535, 65536, -1, True, "80", None, [80]]
PPMS = [0, 1, 1_000_000, 1_000_001, -1, True, "5", None, 2**64]
OWNERS = [OWNER, {**OWNER, "extra": "x"}, {k: v for k, v in OWNER.items() if k != "ifname"},
          {**OWNER, "ifname": "x" * 15}, {**OWNER, "ifname": "x" * 16}, {**OWNER, "ifname": "a:b"},
          {**OWNER, "container_id": "-x"}, {**OWNER, "container_id": "c" * 129}, {**OWNER, "runtime": "a b"},
          "cni", None, []]


@pytest.mark.parametrize("model_name,base,key,values", [
    ("RegisterBody", {"netns": HOST_NETNS}, "name", NAMES),
    ("RegisterBody", {"name": "x", "netns": HOST_NETNS}, "tenant", NAMES),
    ("RegisterBody", {"name": "x", "netns": HOST_NETNS}, "owner", OWNERS),
    ("RegisterBody", {"name": "x"}, "netns", [HOST_NETNS, "/proc/self/ns/net", "/run/netns/../x", "/etc/passwd",
                                             "/proc/0/ns/net", "/proc/1/ns/mnt", "", 5]),
    ("RegisterBody", {"name": "x", "netns": HOST_NETNS}, "ip", ["10.77.0.9", None, "10.77.0.300", "x", 5,
                                                                         "fd77:d0c::9", "fd77:d0c::9%eth0", "::g"]),
    ("LimitBody", {}, "egress", RATES),
    ("LimitBody", {}, "ingress", RATES),
    ("LimitBody", {}, "egress_pps", PKT_RATES),
    ("LimitBody", {}, "ingress_pps", PKT_RATES),
    ("LimitBody", {"egress": 1}, "egress_bps", [1]),
    ("PolicyBody", {"from": "a", "to": "b"}, "port", PORTS),
    ("PolicyBody", {"to": "b"}, "from", NAMES),
    ("FaultsBody", {}, "drop_ppm", PPMS),
    ("FaultsBody", {}, "corrupt_ppm", PPMS),
    ("FaultsBody", {}, "drop_next", [0, 2**32 - 1, 2**32, -1, False]),
    ("FaultsBody", {}, "seed", [0, 2**64 - 1, 2**64, -1, 1.5]),
    ("FaultsBody", {}, "loss", [5]),
])
def test_request_schemas_and_validators_agree(model_name: str, base: dict[str, Any], key: str,
                                              values: list[Any]) -> None:
    from aiodocknet.master import api_models

    verdicts = _verdicts(getattr(api_models, model_name), base, key, values)
    assert [v for v in verdicts if v[1] != v[2]] == [], "the schema and the check differ on these"
    assert any(v[2] for v in verdicts) or len(values) == 1 and key in ("egress_bps", "loss")
    assert not all(v[2] for v in verdicts)
