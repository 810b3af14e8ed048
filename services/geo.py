"""geo: the hotels nearest a point."""

from __future__ import annotations

from aiohttp import web

from .data import Dataset, make_dataset, nearest_hotel_ids
from .httputil import coordinates, json_response, new_app
from .upstreams import Upstreams


def make_app(up: Upstreams, *, dataset: Dataset | None = None) -> web.Application:
    ds = dataset or make_dataset()

    async def nearby(request: web.Request) -> web.Response:
        lat, lon = coordinates(request.query)
        return json_response({"hotel_ids": nearest_hotel_ids(ds, lat, lon)})

    app = new_app()
    app.router.add_get("/nearby", nearby)
    return app
