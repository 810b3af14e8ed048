"""frontend: the user-facing API, composing the other services."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .data import RECOMMEND_REQUIRES
from .httputil import bad_request, coordinates, int_param, json_response, new_app, stay, text_param
from .reservation import MAX_ROOMS_PER_BOOKING
from .upstreams import Upstreams


def make_app(up: Upstreams) -> web.Application:
    async def profiles(hotel_ids: list[str]) -> list[dict[str, Any]]:
        if not hotel_ids:
            return []
        found = await up.post_json("profile", "/profiles", {"hotel_ids": hotel_ids})
        hotels: list[dict[str, Any]] = found["hotels"]
        return hotels

    async def credentials_ok(username: str, password: str) -> bool:
        answer = await up.get_json("user", "/check", {"username": username, "password": password})
        return answer["ok"] is True

    async def hotels(request: web.Request) -> web.Response:
        q = request.query
        coordinates(q)
        stay(q)
        in_text, out_text = text_param(q, "inDate"), text_param(q, "outDate")
        found = await up.get_json(
            "search",
            "/nearby",
            {"lat": text_param(q, "lat"), "lon": text_param(q, "lon"), "inDate": in_text, "outDate": out_text},
        )
        free = await up.post_json(
            "reservation",
            "/availability",
            {"hotel_ids": found["hotel_ids"], "inDate": in_text, "outDate": out_text, "number": 1},
        )
        return json_response({"hotels": await profiles(free["hotel_ids"])})

    async def recommendations(request: web.Request) -> web.Response:
        q = request.query
        require = text_param(q, "require")
        if require not in RECOMMEND_REQUIRES:
            raise bad_request(f"require must be one of {', '.join(RECOMMEND_REQUIRES)}")
        coordinates(q)
        best = await up.get_json(
            "recommendation", "/recommend", {"require": require, "lat": q["lat"], "lon": q["lon"]}
        )
        return json_response({"hotels": await profiles(best["hotel_ids"])})

    async def login(request: web.Request) -> web.Response:
        q = request.query
        ok = await credentials_ok(text_param(q, "username"), text_param(q, "password"))
        return json_response({"ok": ok})

    async def reservation(request: web.Request) -> web.Response:
        q = request.query
        coordinates(q)  # part of DeathStarBench's API, unused by the booking
        stay(q)
        booking = {
            "hotelId": text_param(q, "hotelId"),
            "customerName": text_param(q, "customerName"),
            "inDate": q["inDate"],
            "outDate": q["outDate"],
            "number": int_param(q, "number", 1, MAX_ROOMS_PER_BOOKING),
        }
        if not await credentials_ok(text_param(q, "username"), text_param(q, "password")):
            return json_response({"ok": False, "reason": "invalid credentials"})
        result = await up.post_json("reservation", "/reserve", booking)
        answer: dict[str, Any] = {"ok": result["ok"] is True}
        if "reason" in result:
            answer["reason"] = result["reason"]
        return json_response(answer)

    app = new_app()
    up.install(app)
    app.router.add_get("/hotels", hotels)
    app.router.add_get("/recommendations", recommendations)
    app.router.add_post("/user", login)
    app.router.add_post("/reservation", reservation)
    return app
