"""The master's management API: JSON over HTTP on a unix socket.

Served by aiohttp next to the control socket (``RUN_DIR/api.sock``); the
``docknet`` CLI is its client. Bad requests get a 4xx with ``{"error": ...}``
saying what was wrong. ``/metrics`` has the same counters in Prometheus'
text format; ``/v1/openapi.json`` describes the routes.
"""

from __future__ import annotations

import json
import os
from typing import Any

from aiohttp import web

from ..log import get_logger
from ..rates import parse_bits, parse_pkts
from .control import ControlServer
from .faults import Faults
from .registry import RegistryError

__all__ = ["make_app", "serve_api", "OPENAPI"]

log = get_logger("aiodocknet.api")

LIMIT_FIELDS = {"egress": ("egress_bits", parse_bits), "ingress": ("ingress_bits", parse_bits),
                "egress_pps": ("egress_pkts", parse_pkts), "ingress_pps": ("ingress_pkts", parse_pkts)}


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise web.HTTPBadRequest(text=json.dumps({"error": "request body is not valid JSON"}),
                                 content_type="application/json") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text=json.dumps({"error": "request body must be a JSON object"}),
                                 content_type="application/json")
    return body


def _limits(body: dict[str, Any]) -> dict[str, int]:
    out = {}
    for key, (attr, parse) in LIMIT_FIELDS.items():
        if key in body:
            try:
                out[attr] = parse(body[key])
            except (ValueError, TypeError) as exc:
                raise web.HTTPBadRequest(text=json.dumps({"error": f"{key}: {exc}"}),
                                         content_type="application/json") from None
    return out


def _endpoint_view(ctl: ControlServer, name: str) -> dict[str, Any]:
    ep = ctl.endpoints.get(name)
    reg = ctl.registry.endpoints.get(name)
    view: dict[str, Any] = {"name": name, "state": "attached" if ep else "registered"}
    if reg is not None:
        view.update(reg.public())
    if ep is not None:
        view.update({"address": ep.address, "mac": ep.mac, "pid": ep.pid, "tenant": ep.tenant,
                     "attached_at": ep.attached_at})
        if reg is None:
            view.update({k: ep.limits.get(k, 0) for k in ("egress_bits", "ingress_bits", "egress_pkts",
                                                          "ingress_pkts")})
        try:
            view["counters"] = ctl.switch.port_counters(ep.slot)
        except OSError:
            pass
    return view


def make_app(ctl: ControlServer) -> web.Application:
    routes = web.RouteTableDef()

    @routes.get("/v1/status")
    async def status(request: web.Request) -> web.Response:
        sw = ctl.switch.counters()
        util = sw["busy_loops"] / sw["loops"] if sw["loops"] else 0.0
        return web.json_response({
            "pid": os.getpid(), "subnet": str(ctl.addresses.subnet), "gateway": ctl.addresses.gateway,
            "mtu": ctl.mtu, "control": ctl.path, "endpoints_attached": len(ctl.endpoints),
            "endpoints_registered": len(ctl.registry.endpoints), "tenants": sorted(ctl.registry.tenants),
            "switch": {**sw, "utilisation": round(util, 4)},
            "range": str(ctl.addresses.range),
            "fast_channels": ctl.broker.stats(),
            "uplink": ctl.switch.uplink(),
        })

    @routes.get("/v1/endpoints")
    async def endpoints(request: web.Request) -> web.Response:
        names = sorted(set(ctl.endpoints) | set(ctl.registry.endpoints))
        return web.json_response([_endpoint_view(ctl, n) for n in names])

    @routes.post("/v1/endpoints")
    async def register(request: web.Request) -> web.Response:
        body = await _body(request)
        name, netns = body.get("name"), body.get("netns")
        if not isinstance(name, str) or not name:
            return _error(400, "'name' (a string) is required")
        if not isinstance(netns, str) or not netns:
            return _error(400, "'netns' (a namespace path, e.g. /run/netns/NAME) is required")
        tenant = body.get("tenant", "default")
        if not isinstance(tenant, str) or not tenant:
            return _error(400, "'tenant' must be a non-empty string")
        limits = _limits(body)
        ip = body.get("ip")
        if ip is not None and not isinstance(ip, str):
            return _error(400, "'ip' must be a string")
        try:
            reg = ctl.registry.register(name, tenant, netns, ip)
            for attr, value in limits.items():
                setattr(reg, attr, value)
        except RegistryError as exc:
            return _error(exc.status, str(exc))
        log.info("endpoint registered", endpoint=name, tenant=tenant, netns=netns)
        return web.json_response({**reg.public(), "secret": reg.secret}, status=201)

    @routes.get("/v1/endpoints/{name}")
    async def endpoint(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in ctl.endpoints and name not in ctl.registry.endpoints:
            return _error(404, f"no endpoint {name!r}")
        return web.json_response(_endpoint_view(ctl, name))

    @routes.delete("/v1/endpoints/{name}")
    async def unregister(request: web.Request) -> web.Response:
        try:
            ctl.drop_endpoint(request.match_info["name"])
        except RegistryError as exc:
            return _error(exc.status, str(exc))
        return web.json_response({"ok": True})

    @routes.get("/v1/endpoints/{name}/connections")
    async def connections(request: web.Request) -> web.Response:
        try:
            answer = await ctl.connections(request.match_info["name"])
        except RegistryError as exc:
            return _error(exc.status, str(exc))
        return web.json_response({"total": answer.get("total", 0), "connections": answer.get("conns", [])})

    @routes.put("/v1/endpoints/{name}/limit")
    async def limit(request: web.Request) -> web.Response:
        body = await _body(request)
        limits = _limits(body)
        if not limits:
            return _error(400, f"give at least one of {', '.join(LIMIT_FIELDS)}")
        try:
            now = ctl.set_limits(request.match_info["name"], limits)
        except RegistryError as exc:
            return _error(exc.status, str(exc))
        except OSError as exc:
            return _error(400, exc.strerror or str(exc))
        return web.json_response({"name": request.match_info["name"], **now})

    @routes.put("/v1/endpoints/{name}/faults")
    @routes.delete("/v1/endpoints/{name}/faults")
    async def faults(request: web.Request) -> web.Response:
        # Everything is checked before the switch is touched: a bad request
        # leaves the link as it was.
        try:
            spec = Faults.parse(await _body(request)) if request.method == "PUT" else None
            return web.json_response(ctl.set_faults(request.match_info["name"], spec))
        except ValueError as exc:
            return _error(400, str(exc))
        except RegistryError as exc:
            return _error(exc.status, str(exc))
        except OSError as exc:
            return _error(400, exc.strerror or str(exc))

    @routes.get("/v1/stats")
    async def stats(request: web.Request) -> web.Response:
        endpoints = {}
        for n, ep in ctl.endpoints.items():
            sent, received = ctl.broker.endpoint_bytes(n)
            endpoints[n] = {**ctl.switch.port_counters(ep.slot), "fast_tx_bytes": sent, "fast_rx_bytes": received}
        return web.json_response({"switch": ctl.switch.counters(), "endpoints": endpoints,
                                  "fast_channels": ctl.broker.stats()})

    @routes.get("/v1/channels")
    async def channels(request: web.Request) -> web.Response:
        return web.json_response([c.view() for c in ctl.broker.channels.values()])

    @routes.get("/v1/policy")
    async def policy_list(request: web.Request) -> web.Response:
        rules = [{"from": a, "to": b, "port": p} for a, b, p in sorted(ctl.registry.policies)]
        return web.json_response(rules)

    async def _policy(request: web.Request, allow: bool) -> web.Response:
        body = await _body(request)
        a, b, port = body.get("from"), body.get("to"), body.get("port", 0)
        if not isinstance(a, str) or not isinstance(b, str) or not a or not b:
            return _error(400, "'from' and 'to' (tenant names) are required")
        if not isinstance(port, int) or not 0 <= port <= 65535:
            return _error(400, "'port' must be 0 (any) to 65535")
        try:
            ctl.set_policy(a, b, port, allow)
        except RegistryError as exc:
            return _error(exc.status, str(exc))
        except OSError as exc:
            return _error(400, exc.strerror or str(exc))
        return web.json_response({"ok": True})

    @routes.post("/v1/policy")
    async def policy_allow(request: web.Request) -> web.Response:
        return await _policy(request, True)

    @routes.delete("/v1/policy")
    async def policy_deny(request: web.Request) -> web.Response:
        return await _policy(request, False)

    @routes.get("/metrics")
    async def metrics(request: web.Request) -> web.Response:
        lines = []
        sw = ctl.switch.counters()
        for key in ("loops", "busy_loops", "sleeps", "busy_ns"):
            lines.append(f"# TYPE docknet_switch_{key}_total counter")
            lines.append(f"docknet_switch_{key}_total {sw[key]}")
        lines.append("# TYPE docknet_endpoints gauge")
        lines.append(f"docknet_endpoints {len(ctl.endpoints)}")
        per_ep: dict[str, list[str]] = {}
        for name, ep in sorted(ctl.endpoints.items()):
            for key, value in ctl.switch.port_counters(ep.slot).items():
                if key == "link_up":
                    continue
                per_ep.setdefault(key, []).append(
                    f'docknet_endpoint_{key}_total{{endpoint="{name}",tenant="{ep.tenant}"}} {value}')
        for key, samples in per_ep.items():
            lines.append(f"# TYPE docknet_endpoint_{key}_total counter")
            lines.extend(samples)
        fc = ctl.broker.stats()
        for key, kind in (("made", "counter"), ("released", "counter"), ("refused_by_policy", "counter"),
                          ("bytes", "counter"), ("open", "gauge"), ("memory", "gauge")):
            suffix = "_total" if kind == "counter" else ""
            lines.append(f"# TYPE docknet_fast_channels_{key}{suffix} {kind}")
            lines.append(f"docknet_fast_channels_{key}{suffix} {fc[key]}")
        return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")

    @routes.get("/v1/openapi.json")
    async def openapi(request: web.Request) -> web.Response:
        return web.json_response(OPENAPI)

    app = web.Application()
    app.add_routes(routes)
    return app


def _op(summary: str, body: bool = False) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": {
        "200": {"description": "ok"}, "400": {"description": "bad request"},
        "404": {"description": "no such endpoint"}}}
    if body:
        op["requestBody"] = {"content": {"application/json": {"schema": {"type": "object"}}}}
    return op


OPENAPI: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "DockNet master management API", "version": "1"},
    "paths": {
        "/v1/status": {"get": _op("master status and switch utilisation")},
        "/v1/endpoints": {"get": _op("endpoints, registered and attached"),
                          "post": _op("register an endpoint: name, netns, tenant, ip, egress, ingress", True)},
        "/v1/endpoints/{name}": {"get": _op("one endpoint with its counters"),
                                 "delete": _op("unregister (detaches the process)")},
        "/v1/endpoints/{name}/connections": {"get": _op("the endpoint's connections, like ss -tn")},
        "/v1/endpoints/{name}/limit": {"put": _op("rate limits: egress, ingress (bits/s), *_pps", True)},
        "/v1/endpoints/{name}/faults": {
            "put": _op("fault injection towards the endpoint (tests): drop_ppm, dup_ppm, reorder_ppm, corrupt_ppm "
                       "(0..1000000 parts per million), drop_next (frames), seed", True),
            "delete": _op("turn fault injection off")},
        "/v1/stats": {"get": _op("switch and per-endpoint counters")},
        "/v1/channels": {"get": _op("open fast channels: ends, bytes each way, memory")},
        "/v1/policy": {"get": _op("tenant policy rules"), "post": _op("allow from -> to [port]", True),
                       "delete": _op("take an allow rule back", True)},
        "/metrics": {"get": _op("Prometheus text format")},
    },
}


async def serve_api(ctl: ControlServer, path: str) -> web.AppRunner:
    runner = web.AppRunner(make_app(ctl), access_log=None)
    await runner.setup()
    if os.path.exists(path):
        os.unlink(path)
    site = web.UnixSite(runner, path)
    await site.start()
    os.chmod(path, 0o660)
    log.info("management API ready", path=path)
    return runner
