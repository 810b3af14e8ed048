"""Request parsing and error mapping shared by the services' handlers.

Bad input is the caller's fault (400 with a JSON reason); a dependency that
fails or answers badly is 502, so a load generator can tell the two apart.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Awaitable, Callable, Mapping
from datetime import date
from functools import partial
from typing import Any

import aiohttp
from aiohttp import web

from .data import parse_stay
from .upstreams import UpstreamError

_dumps = partial(json.dumps, separators=(",", ":"))

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_response(data: Any) -> web.Response:
    return web.json_response(data, dumps=_dumps)


def bad_request(message: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=_dumps({"error": message}), content_type="application/json")


def _error(status: type[web.HTTPException], message: str) -> web.HTTPException:
    return status(text=_dumps({"error": message}), content_type="application/json")


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except UpstreamError as exc:
        raise _error(web.HTTPBadGateway, str(exc)) from exc
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        raise _error(web.HTTPBadGateway, f"upstream failed: {type(exc).__name__}: {exc}") from exc


def new_app() -> web.Application:
    return web.Application(middlewares=[error_middleware])


def text_param(params: Mapping[str, Any], name: str) -> str:
    value = params.get(name)
    if not isinstance(value, str) or not value:
        raise bad_request(f"{name} is required (a non-empty string)")
    return value


def float_param(params: Mapping[str, Any], name: str, low: float, high: float) -> float:
    raw = params.get(name)
    try:
        value = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise bad_request(f"{name} must be a number") from None
    if not (math.isfinite(value) and low <= value <= high):
        raise bad_request(f"{name} must be in [{low}, {high}]")
    return value


def int_param(params: Mapping[str, Any], name: str, low: int, high: int) -> int:
    raw = params.get(name)
    if isinstance(raw, bool):  # JSON true is not a count
        raise bad_request(f"{name} must be an integer")
    try:
        value = int(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise bad_request(f"{name} must be an integer") from None
    if not low <= value <= high:
        raise bad_request(f"{name} must be in [{low}, {high}]")
    return value


def coordinates(params: Mapping[str, Any]) -> tuple[float, float]:
    return float_param(params, "lat", -90.0, 90.0), float_param(params, "lon", -180.0, 180.0)


def stay(params: Mapping[str, Any]) -> tuple[date, date]:
    try:
        return parse_stay(text_param(params, "inDate"), text_param(params, "outDate"))
    except ValueError as exc:
        raise bad_request(f"inDate/outDate: {exc}") from None


def id_list(params: Mapping[str, Any], name: str = "hotel_ids") -> list[str]:
    ids = params.get(name)
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise bad_request(f"{name} must be a list of strings")
    return ids


async def json_object(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise bad_request("body must be JSON") from None
    if not isinstance(body, dict):
        raise bad_request("body must be a JSON object")
    return body
