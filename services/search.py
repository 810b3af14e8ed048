"""search: nearby hotels (geo), ordered by what the stay costs (rate)."""

from __future__ import annotations

from aiohttp import web

from .data import ids_in_plan_order
from .httputil import coordinates, json_response, new_app, stay, text_param
from .upstreams import Upstreams


def make_app(up: Upstreams) -> web.Application:
    async def nearby(request: web.Request) -> web.Response:
        q = request.query
        # Validated here so a bad request fails before any fan-out; the
        # original strings are passed on so downstream parses the same text.
        coordinates(q)
        stay(q)
        lat, lon = text_param(q, "lat"), text_param(q, "lon")
        in_text, out_text = text_param(q, "inDate"), text_param(q, "outDate")
        near = await up.get_json("geo", "/nearby", {"lat": lat, "lon": lon})
        rates = await up.post_json(
            "rate", "/rates", {"hotel_ids": near["hotel_ids"], "inDate": in_text, "outDate": out_text}
        )
        return json_response({"hotel_ids": ids_in_plan_order(rates["rate_plans"])})

    app = new_app()
    up.install(app)
    app.router.add_get("/nearby", nearby)
    return app
