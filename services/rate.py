"""rate: what a stay costs at each hotel, under each rate plan."""

from __future__ import annotations

from aiohttp import web

from .data import Dataset, make_dataset, rate_plans
from .httputil import id_list, json_object, json_response, new_app, stay
from .upstreams import Upstreams


def make_app(up: Upstreams, *, dataset: Dataset | None = None) -> web.Application:
    ds = dataset or make_dataset()

    async def rates(request: web.Request) -> web.Response:
        body = await json_object(request)
        hotel_ids = id_list(body)
        in_date, out_date = stay(body)
        return json_response({"rate_plans": rate_plans(ds, hotel_ids, in_date, out_date)})

    app = new_app()
    app.router.add_post("/rates", rates)
    return app
