"""recommendation: the best hotels by distance, rating or price."""

from __future__ import annotations

from aiohttp import web

from .data import RECOMMEND_REQUIRES, Dataset, make_dataset, recommend_ids
from .httputil import bad_request, coordinates, json_response, new_app, text_param
from .upstreams import Upstreams


def make_app(up: Upstreams, *, dataset: Dataset | None = None) -> web.Application:
    ds = dataset or make_dataset()

    async def recommend(request: web.Request) -> web.Response:
        require = text_param(request.query, "require")
        if require not in RECOMMEND_REQUIRES:
            raise bad_request(f"require must be one of {', '.join(RECOMMEND_REQUIRES)}")
        lat, lon = coordinates(request.query)
        return json_response({"hotel_ids": recommend_ids(ds, require, lat, lon)})

    app = new_app()
    app.router.add_get("/recommend", recommend)
    return app
