"""The master's management API: JSON over HTTP on a unix socket.

Served by aiohttp next to the control socket (``RUN_DIR/api.sock``); the
``docknet`` CLI is its client. Bad requests get a 4xx with ``{"error": ...}``
saying what was wrong, and change nothing: every body is checked by its
model (``api_models.py``, whose fields use ``aiodocknet/validate.py``'s
rules) before anything is stored. ``/metrics`` has the same counters in
Prometheus' text format. ``/v1/openapi.json`` describes the routes: it is
made from the route table in :func:`make_app` and the same models, so what
it says is what the API checks and answers. Every error, unknown routes and
methods included, is the same JSON object.
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pydantic
from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from pydantic.json_schema import GenerateJsonSchema, models_json_schema

from .. import validate
from ..control import LIMIT_FIELDS
from ..log import get_logger
from . import api_models as models
from .broker import FastTraffic
from .control_server import ControlServer
from .faults import Faults
from .metrics import DockNetCollector
from .registry import RegistryError

__all__ = ["Route", "make_app", "openapi_document", "serve_api"]

log = get_logger("aiodocknet.api")

Handler = Callable[..., Awaitable[web.StreamResponse]]


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _shown(text: str) -> str:
    """A path as an error quotes it: a client's text, so never long."""
    return repr(text) if len(text) <= 60 else repr(text[:57]) + "..."


def _host_admin(request: web.Request, ctl: ControlServer) -> bool:
    """Whether the caller may administer the master: root or the master's
    user, and not in an endpoint's network namespace (unless that is the
    master's own). api.sock sits in the run directory that containers
    mount to reach master.sock, and a container's root is root: its
    network namespace, registered for its endpoint, is what tells it
    apart. A master run in a namespace of its own (one host simulated per
    namespace) is still administered from the host's."""
    sock = request.transport.get_extra_info("socket") if request.transport is not None else None
    if sock is None or sock.family != socket.AF_UNIX:
        return False
    try:
        pid, uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                             struct.calcsize("3i")))
        netns = os.stat(f"/proc/{pid}/ns/net").st_ino
    except OSError:
        return False
    if uid not in (0, os.geteuid()):
        return False
    if netns == ctl.registry.master_netns:
        return True
    return all(r.netns_ino != netns for r in ctl.registry.endpoints.values())


def _callers(ctl: ControlServer) -> Callable[..., Awaitable[web.StreamResponse]]:
    @web.middleware
    async def only_host_admins(request: web.Request,
                               handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        if not _host_admin(request, ctl):
            log.warning("API request refused: the caller is an endpoint's or not root",
                        method=request.method, path=request.path)
            return _error(403, "the management API answers root on the master's host only, "
                               "not processes in endpoints' namespaces")
        return await handler(request)
    return only_host_admins


@web.middleware
async def _errors(request: web.Request,
                  handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """Bad values anywhere in a handler are the client's 400; anything else
    that goes wrong is logged here and answered in JSON, never as a bare
    traceback page. aiohttp's own answers (no such route, a method the
    route has not, a body too large) become the same JSON object."""
    try:
        return await handler(request)
    except validate.ValidationError as exc:
        return _error(400, str(exc))
    except RegistryError as exc:
        return _error(exc.status, str(exc))
    except web.HTTPMethodNotAllowed as exc:
        allowed = sorted(exc.allowed_methods)
        resp = _error(405, f"method {exc.method} is not allowed on {_shown(request.path)} "
                           f"(allowed: {', '.join(allowed)})")
        resp.headers["Allow"] = ",".join(allowed)
        return resp
    except web.HTTPNotFound:
        return _error(404, f"no route {_shown(request.path)}: /v1/openapi.json lists them")
    except web.HTTPException as exc:
        if exc.status >= 400 and exc.content_type != "application/json":
            # aiohttp's text, where it says more than "413: reason" (a body
            # too large says the limit).
            text = exc.text or ""
            return _error(exc.status, exc.reason if not text or text.startswith(f"{exc.status}:") else text)
        raise
    except Exception as exc:
        log.exception("API request failed", method=request.method, path=request.path)
        return _error(500, f"internal error ({type(exc).__name__}); the master's log has the details")


async def _parse(request: web.Request, model: type[pydantic.BaseModel], context: dict[str, Any]) -> Any:
    """The body as model, or ValidationError with the API's one sentence."""
    try:
        body = await request.json()
    except (ValueError, RecursionError):  # JSONDecodeError, bad UTF-8, ints too long to read
        raise validate.ValidationError("request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise validate.ValidationError("request body must be a JSON object")
    try:
        return model.model_validate(body, context=context)
    except pydantic.ValidationError as exc:
        raise validate.ValidationError(models.error_sentence(exc, model)) from None


@dataclass(frozen=True)
class Route:
    """One operation: what aiohttp serves and what the document says of it."""
    method: str
    path: str
    summary: str
    # The model of the JSON answer, or a content type -> media type object
    # for answers that are not a model (the metrics' text, the document).
    answer: type[pydantic.BaseModel] | dict[str, dict[str, Any]]
    handler: Handler
    name: str
    body: type[pydantic.BaseModel] | None = None
    status: int = 200
    # Errors this operation answers besides the ones every such route has
    # (400 for a body, 404 for a path that names an endpoint).
    errors: dict[int, str] = field(default_factory=dict)


class RouteTable:
    """The API's routes. A handler with a body model is called with the
    body already checked, as its second argument."""

    def __init__(self, context: dict[str, Any]) -> None:
        self.routes: list[Route] = []
        self._context = context  # for the models' checks that need the master's (ip: its range)

    def _with_body(self, handler: Handler, body: type[pydantic.BaseModel]) -> Handler:
        """handler, given the request's body once its model has checked it."""
        async def serve(request: web.Request) -> web.StreamResponse:
            return await handler(request, await _parse(request, body, self._context))
        return serve  # type: ignore[return-value]

    def route(self, method: str, path: str, answer: Any, summary: str, *,
              body: type[pydantic.BaseModel] | None = None, status: int = 200,
              errors: dict[int, str] | None = None) -> Callable[[Handler], Handler]:
        def add(handler: Handler) -> Handler:
            serve = handler if body is None else self._with_body(handler, body)
            self.routes.append(Route(method, path, summary, answer, serve, handler.__name__, body, status,
                                     dict(errors or {})))
            return handler
        return add

    def add_to(self, app: web.Application) -> None:
        for r in self.routes:
            app.router.add_route(r.method, r.path, r.handler)


class _Schemas(GenerateJsonSchema):
    """pydantic's JSON schemas, less the "default": null of optional
    fields: a body leaves such a field unset by leaving it out."""

    def default_schema(self, schema: Any) -> Any:
        out = super().default_schema(schema)
        if isinstance(out, dict) and "default" in out and out["default"] is None:
            del out["default"]
        return out


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _first_paragraph(doc: str | None) -> str:
    return " ".join((doc or "").strip().split("\n\n")[0].split())


def openapi_document(routes: list[Route]) -> dict[str, Any]:
    """The OpenAPI 3.1 document of these routes, with their bodies and
    answers as components/schemas from the models that check them."""
    wanted: list[tuple[type[pydantic.BaseModel], Any]] = [(models.Error, "serialization")]
    for r in routes:
        if r.body is not None:
            wanted.append((r.body, "validation"))
        if isinstance(r.answer, type):
            wanted.append((r.answer, "serialization"))
    refs, top = models_json_schema(list(dict.fromkeys(wanted)), ref_template="#/components/schemas/{model}",
                                   schema_generator=_Schemas)
    error = _json(refs[models.Error, "serialization"])
    name = {"name": "name", "in": "path", "required": True, "description": "the endpoint's name",
            "schema": pydantic.TypeAdapter(models.EndpointName).json_schema()}
    paths: dict[str, dict[str, Any]] = {}
    for r in routes:
        op: dict[str, Any] = {"operationId": r.name, "summary": r.summary}
        if "{name}" in r.path:
            op["parameters"] = [name]
        if r.body is not None:
            op["requestBody"] = {"required": True, "description": _first_paragraph(r.body.__doc__),
                                 "content": _json(refs[r.body, "validation"])}
        if isinstance(r.answer, type):
            ok = {"description": _first_paragraph(r.answer.__doc__) or r.summary,
                  "content": _json(refs[r.answer, "serialization"])}
        else:
            ok = {"description": r.summary, "content": r.answer}
        errors = dict(r.errors)
        if r.body is not None:
            errors.setdefault(400, "the body is refused: the field and what is wrong with it")
        if "{name}" in r.path:
            errors.setdefault(404, "no such endpoint")
        responses: dict[str, Any] = {str(r.status): ok}
        for status, why in sorted(errors.items()):
            responses[str(status)] = {"description": why, "content": error}
        responses["default"] = {"description": "any other error: no such route (404), a method the route "
                                               "has not (405, with Allow), a failure inside the master (500)",
                                "content": error}
        op["responses"] = responses
        paths.setdefault(r.path, {})[r.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "DockNet master management API", "version": "1",
                 "description": "JSON over HTTP on the master's unix socket (RUN_DIR/api.sock). Every error "
                                "answers {\"error\": \"...\"} in one sentence; a refused request changes "
                                "nothing."},
        "paths": paths,
        "components": {"schemas": top.get("$defs", {})},
    }


def _endpoint_view(ctl: ControlServer, name: str) -> dict[str, Any]:
    ep = ctl.endpoints.get(name)
    reg = ctl.registry.endpoints.get(name)
    view: dict[str, Any] = {"name": name, "state": "attached" if ep else "registered"}
    if reg is not None:
        view.update(reg.public())
    if ep is not None:
        view.update({"address": ep.address, "mac": ep.mac, "pid": ep.pid, "tenant": ep.tenant,
                     "attached_at": ep.attached_at, "members": [m.public() for m in ep.members]})
        if ep.address6 is not None:
            view["address6"] = ep.address6
        if reg is None:
            view.update({k: ep.limits.get(k, 0) for k in LIMIT_FIELDS})
        try:
            view["counters"] = ctl.switch.port_counters(ep.slot)
        except OSError:
            pass
    return view


def _connection_rows(answer: dict[str, Any]) -> dict[str, Any]:
    """An endpoint's answer to `ss`, as the API gives it: its process wrote
    the rows, so each must be a connection, or it is left out and counted."""
    rows: list[dict[str, Any]] = []
    malformed = 0
    for row in answer.get("conns", []):
        try:
            rows.append(models.Connection.model_validate(row).model_dump(exclude_none=True))
        except pydantic.ValidationError:
            malformed += 1
    if malformed:
        log.warning("endpoint sent malformed connection rows", malformed=malformed)
    return {"total": answer.get("total", 0), "connections": rows, "malformed": malformed}


def make_app(ctl: ControlServer) -> web.Application:
    pool = ctl.addresses
    routes = RouteTable({"range": pool.range, "gateway": pool.gateway,
                         "twins": (pool.subnet, pool.prefix6) if pool.prefix6 is not None else None})

    @routes.route("GET", "/v1/status", models.Status, "master status and switch utilisation")
    async def status(request: web.Request) -> web.Response:
        return web.json_response(ctl.status())

    @routes.route("GET", "/v1/endpoints", models.EndpointList, "endpoints, registered and attached")
    async def endpoints(request: web.Request) -> web.Response:
        names = sorted(set(ctl.endpoints) | set(ctl.registry.endpoints))
        return web.json_response([_endpoint_view(ctl, n) for n in names])

    @routes.route("POST", "/v1/endpoints", models.Registered,
                  "register an endpoint (a container's, with owner, is attached by its namespace alone)",
                  body=models.RegisterBody, status=201,
                  errors={409: "the namespace already holds an endpoint, or no address is free"})
    async def register(request: web.Request, body: models.RegisterBody) -> web.Response:
        name, tenant, netns, ip, owner = body.name, body.tenant, body.netns, body.ip, body.owner
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
        reg = ctl.register(name, tenant, netns, ip, body.limits())
        if owner is not None:
            reg.owner = owner  # set before any await: nothing sees it without
            ctl.registry.on_change()
        log.info("endpoint registered", endpoint=name, tenant=tenant, netns=netns, owner=owner)
        return web.json_response({**reg.public(), "secret": reg.secret}, status=201)

    @routes.route("GET", "/v1/endpoints/{name}", models.EndpointView, "one endpoint with its counters")
    async def endpoint(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in ctl.endpoints and name not in ctl.registry.endpoints:
            return _error(404, f"no endpoint {name!r}")
        return web.json_response(_endpoint_view(ctl, name))

    @routes.route("DELETE", "/v1/endpoints/{name}", models.Ok, "unregister (detaches the process)")
    async def unregister(request: web.Request) -> web.Response:
        try:
            ctl.drop_endpoint(request.match_info["name"])
        except RegistryError as exc:
            return _error(exc.status, str(exc))
        return web.json_response({"ok": True})

    @routes.route("GET", "/v1/endpoints/{name}/connections", models.Connections,
                  "the endpoint's connections, like ss -tn",
                  errors={404: "no such endpoint is attached",
                          504: "the endpoint's process did not answer (only a DockNetLoop does)"})
    async def connections(request: web.Request) -> web.Response:
        try:
            answer = await ctl.connections(request.match_info["name"])
        except RegistryError as exc:
            return _error(exc.status, str(exc))
        return web.json_response(_connection_rows(answer))

    @routes.route("PUT", "/v1/endpoints/{name}/limit", models.Limits,
                  "rate limits: egress, ingress (bits/s), egress_pps, ingress_pps (packets/s)",
                  body=models.LimitBody)
    async def limit(request: web.Request, body: models.LimitBody) -> web.Response:
        try:
            now = ctl.set_limits(request.match_info["name"], body.limits())
        except RegistryError as exc:
            return _error(exc.status, str(exc))
        except OSError as exc:
            return _error(400, exc.strerror or str(exc))
        return web.json_response({"name": request.match_info["name"], **now})

    async def _faults(name: str, spec: Faults | None) -> web.Response:
        # The body was checked whole before this: a bad request leaves the
        # link as it was.
        try:
            return web.json_response(ctl.set_faults(name, spec))
        except RegistryError as exc:
            return _error(exc.status, str(exc))
        except OSError as exc:
            return _error(400, exc.strerror or str(exc))

    not_attached = {409: "the endpoint is registered but not attached: faults apply to a live link"}

    @routes.route("PUT", "/v1/endpoints/{name}/faults", models.FaultsAnswer,
                  "fault injection towards the endpoint (for tests)", body=models.FaultsBody, errors=not_attached)
    async def faults_set(request: web.Request, body: models.FaultsBody) -> web.Response:
        return await _faults(request.match_info["name"], Faults.parse(body.settings()))

    @routes.route("DELETE", "/v1/endpoints/{name}/faults", models.FaultsAnswer, "turn fault injection off",
                  errors=not_attached)
    async def faults_clear(request: web.Request) -> web.Response:
        return await _faults(request.match_info["name"], None)

    @routes.route("GET", "/v1/stats", models.Stats, "switch and per-endpoint counters")
    async def stats(request: web.Request) -> web.Response:
        endpoints = {}
        fast = ctl.broker.traffic_by_endpoint()
        peer = ctl.peer_links.traffic_by_endpoint()
        for n, ep in ctl.endpoints.items():
            t = fast.get(n) or FastTraffic()
            peer_tx, peer_rx = peer.get(n, (0, 0))
            endpoints[n] = {**ctl.switch.port_counters(ep.slot), "fast_tx_bytes": t.sent_bytes,
                            "fast_rx_bytes": t.received_bytes, "fast_tx_writes": t.sent_writes,
                            "fast_rx_writes": t.received_writes, "peer_tx_bytes": peer_tx,
                            "peer_rx_bytes": peer_rx}
        return web.json_response({"switch": ctl.switch.counters(), "endpoints": endpoints,
                                  "fast_channels": ctl.broker.stats()})

    @routes.route("GET", "/v1/channels", models.ChannelList, "open fast channels: ends, bytes each way, memory")
    async def channels(request: web.Request) -> web.Response:
        return web.json_response([c.view() for c in ctl.broker.channels.values()])

    @routes.route("GET", "/v1/policy", models.PolicyList, "tenant policy rules")
    async def policy_list(request: web.Request) -> web.Response:
        rules = [{"from": a, "to": b, "port": p} for a, b, p in sorted(ctl.registry.policies)]
        return web.json_response(rules)

    async def _policy(body: models.PolicyBody, allow: bool) -> web.Response:
        try:
            ctl.set_policy(body.from_, body.to, body.port, allow)
        except RegistryError as exc:
            return _error(exc.status, str(exc))
        except OSError as exc:
            return _error(400, exc.strerror or str(exc))
        return web.json_response({"ok": True})

    no_tenant = {404: "no such tenant (a tenant exists while it has endpoints, or is configured)"}

    @routes.route("POST", "/v1/policy", models.Ok, "allow from -> to [port]", body=models.PolicyBody,
                  errors=no_tenant)
    async def policy_allow(request: web.Request, body: models.PolicyBody) -> web.Response:
        return await _policy(body, True)

    @routes.route("DELETE", "/v1/policy", models.Ok, "take an allow rule back", body=models.PolicyBody,
                  errors=no_tenant)
    async def policy_deny(request: web.Request, body: models.PolicyBody) -> web.Response:
        return await _policy(body, False)

    metrics_registry = CollectorRegistry(auto_describe=False)
    metrics_registry.register(DockNetCollector(ctl))
    text = {"schema": {"type": "string"}}

    @routes.route("GET", "/metrics", {"text/plain": text, "application/openmetrics-text": text},
                  "the counters in Prometheus' text format (OpenMetrics when the Accept header asks)")
    async def metrics(request: web.Request) -> web.Response:
        # What the scraper asks for (OpenMetrics, or the text format's
        # versions), as prometheus_client's own HTTP handler negotiates.
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        return web.Response(body=encoder(metrics_registry), headers={"Content-Type": content_type})

    @routes.route("GET", "/v1/openapi.json", {"application/json": {"schema": {"type": "object"}}},
                  "this API as an OpenAPI 3.1 document")
    async def openapi(request: web.Request) -> web.Response:
        return web.json_response(document)

    document = openapi_document(routes.routes)
    app = web.Application(middlewares=[_errors, _callers(ctl)])
    routes.add_to(app)
    return app


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
