"""The master's management API: JSON over HTTP on a unix socket.

Served by aiohttp next to the control socket (``RUN_DIR/api.sock``); the
``docknet`` CLI is its client. Bad requests get a 4xx with ``{"error": ...}``
saying what was wrong, and change nothing: every value is checked
(``aiodocknet/validate.py``) before anything is stored. ``/metrics`` has the
same counters in Prometheus' text format; ``/v1/openapi.json`` describes
the routes.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from .. import validate
from ..log import get_logger
from .control_server import ControlServer
from .faults import PPM_FIELDS, Faults
from .metrics import DockNetCollector
from .registry import RegistryError

__all__ = ["make_app", "serve_api", "OPENAPI"]

log = get_logger("aiodocknet.api")

LIMIT_FIELDS = validate.LIMIT_KEYS
REGISTER_FIELDS = {"name", "netns", "tenant", "ip", "owner", *LIMIT_FIELDS}
POLICY_FIELDS = {"from", "to", "port"}
FAULT_FIELDS = {*PPM_FIELDS, "drop_next", "seed"}


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


@web.middleware
async def _errors(request: web.Request,
                  handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """Bad values anywhere in a handler are the client's 400; anything else
    that goes wrong is logged here and answered in JSON, never as a bare
    traceback page."""
    try:
        return await handler(request)
    except validate.ValidationError as exc:
        return _error(400, str(exc))
    except RegistryError as exc:
        return _error(exc.status, str(exc))
    except web.HTTPException as exc:
        if exc.status >= 400 and exc.content_type != "application/json":
            return _error(exc.status, exc.reason)
        raise
    except Exception as exc:
        log.exception("API request failed", method=request.method, path=request.path)
        return _error(500, f"internal error ({type(exc).__name__}); the master's log has the details")


async def _body(request: web.Request, known: set[str]) -> dict[str, Any]:
    try:
        body = await request.json()
    except (ValueError, RecursionError):  # JSONDecodeError, bad UTF-8, ints too long to read
        raise validate.ValidationError("request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise validate.ValidationError("request body must be a JSON object")
    unknown = sorted(set(body) - known)
    if unknown:
        raise validate.ValidationError(
            f"unknown field {unknown[0][:40]!r} (known: {', '.join(sorted(known))})")
    return body


def _limits(body: dict[str, Any]) -> dict[str, int]:
    return {attr: validate.limit(key, body[key]) for key, attr in LIMIT_FIELDS.items() if key in body}


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
        return web.json_response(ctl.status())

    @routes.get("/v1/endpoints")
    async def endpoints(request: web.Request) -> web.Response:
        names = sorted(set(ctl.endpoints) | set(ctl.registry.endpoints))
        return web.json_response([_endpoint_view(ctl, n) for n in names])

    @routes.post("/v1/endpoints")
    async def register(request: web.Request) -> web.Response:
        body = await _body(request, REGISTER_FIELDS)
        if "name" not in body:
            return _error(400, "'name' (a string) is required")
        if "netns" not in body:
            return _error(400, "'netns' (a namespace path, e.g. /run/netns/NAME) is required")
        name = validate.endpoint_name(body["name"])
        tenant = validate.tenant_name(body.get("tenant", "default"))
        limits = _limits(body)
        ip = body.get("ip")
        if ip is not None:
            ip = validate.host_address(ip, ctl.addresses.range, ctl.addresses.gateway)
        netns = validate.netns_path(body["netns"])
        owner = validate.owner(body["owner"]) if "owner" in body else None
        if owner is not None:
            # A container's endpoint: its namespace identifies it, so one
            # per namespace, and its address is claimed now, for its life.
            try:
                held = ctl.registry.owned_in(os.stat(netns).st_ino)
            except OSError as exc:
                return _error(400, f"network namespace {netns!r}: {exc.strerror}")
            if held is not None:
                return _error(409, f"network namespace {netns} already holds endpoint {held.name!r}")
            if ip is None and name not in ctl.registry.endpoints:
                try:
                    ip = ctl.addresses.unclaimed()
                except ValueError as exc:
                    return _error(409, str(exc))
        reg = ctl.register(name, tenant, netns, ip, limits)
        if owner is not None:
            reg.owner = owner  # set before any await: nothing sees it without
            ctl.registry.on_change()
        log.info("endpoint registered", endpoint=name, tenant=tenant, netns=netns, owner=owner)
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
        body = await _body(request, set(LIMIT_FIELDS))
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
            spec = Faults.parse(await _body(request, FAULT_FIELDS)) if request.method == "PUT" else None
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
        fast = ctl.broker.bytes_by_endpoint()
        for n, ep in ctl.endpoints.items():
            sent, received = fast.get(n, (0, 0))
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
        body = await _body(request, POLICY_FIELDS)
        if "from" not in body or "to" not in body:
            return _error(400, "'from' and 'to' (tenant names) are required")
        a, b = validate.tenant_name(body["from"]), validate.tenant_name(body["to"])
        port = validate.port(body.get("port", 0), "'port'")
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

    metrics_registry = CollectorRegistry(auto_describe=False)
    metrics_registry.register(DockNetCollector(ctl))

    @routes.get("/metrics")
    async def metrics(request: web.Request) -> web.Response:
        # What the scraper asks for (OpenMetrics, or the text format's
        # versions), as prometheus_client's own HTTP handler negotiates.
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        return web.Response(body=encoder(metrics_registry), headers={"Content-Type": content_type})

    @routes.get("/v1/openapi.json")
    async def openapi(request: web.Request) -> web.Response:
        return web.json_response(OPENAPI)

    app = web.Application(middlewares=[_errors])
    app.add_routes(routes)
    return app


def _op(summary: str, body: bool = False) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": {
        "200": {"description": "ok"}, "400": {"description": "bad request"},
        "404": {"description": "no such endpoint or tenant"}}}
    if body:
        op["requestBody"] = {"content": {"application/json": {"schema": {"type": "object"}}}}
    return op


OPENAPI: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "DockNet master management API", "version": "1"},
    "paths": {
        "/v1/status": {"get": _op("master status and switch utilisation")},
        "/v1/endpoints": {"get": _op("endpoints, registered and attached"),
                          "post": _op("register an endpoint: name, netns, tenant, ip, egress, ingress, owner "
                                      "(runtime, network, container_id, ifname: a container's, attached "
                                      "by its namespace alone)", True)},
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
