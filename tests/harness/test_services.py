"""The hotel-reservation services (services/): their logic, the checker, the load driver.

Every service runs in-process on aiohttp's TestServer (127.0.0.1, kernel
sockets, the plain asyncio loop): no master, no DPDK. Expected answers are
recomputed here by brute force rather than with the ranking helpers the
services use, so a wrong ranking rule fails here too.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import date, timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from dn_harness import ROOT
from services import data, frontend, geo, profile, rate, reservation, search
from services.mesh import DEPENDS, SERVICES
from services.reservation import ROOM_BOOK
from services.run import make_service_app
from services.upstreams import UpstreamError, Upstreams
from services.workload import KINDS, LOGIN, MIX, RECOMMEND, RESERVE, SEARCH, Checker, Request, Scenario, run_load

DS = data.make_dataset()
SF_LAT, SF_LON = 37.7512, -122.4467


@dataclass
class Mesh:
    servers: dict[str, TestServer]
    session: aiohttp.ClientSession

    def url(self, service: str) -> str:
        server = self.servers[service]
        return f"http://{server.host}:{server.port}"

    def app(self, service: str) -> web.Application:
        return self.servers[service].app  # type: ignore[no-any-return]

    async def get(self, service: str, path: str, **params: str) -> tuple[int, Any]:
        async with self.session.get(self.url(service) + path, params=params) as resp:
            return resp.status, await resp.json(content_type=None)

    async def post(self, service: str, path: str, body: Any = None, **params: str) -> tuple[int, Any]:
        async with self.session.post(self.url(service) + path, json=body, params=params) as resp:
            return resp.status, await resp.json(content_type=None)


async def start(app: web.Application) -> TestServer:
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


@pytest.fixture
async def mesh() -> AsyncIterator[Mesh]:
    """All eight services, each pointed at the test servers of its dependencies."""
    servers: dict[str, TestServer] = {}
    try:
        # SERVICES lists dependencies first, so their URLs are known in time.
        for name in SERVICES:
            urls = {dep: f"http://127.0.0.1:{servers[dep].port}" for dep in DEPENDS[name]}
            servers[name] = await start(make_service_app(name, Upstreams(urls)))
        async with aiohttp.ClientSession() as session:
            yield Mesh(servers, session)
    finally:
        for name in reversed(list(servers)):
            await servers[name].close()


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def serve_one(app: web.Application, session: aiohttp.ClientSession) -> tuple[TestServer, Mesh]:
    server = await start(app)
    return server, Mesh({"only": server}, session)


def brute_force_nearest(lat: float, lon: float, count: int = 5) -> list[str]:
    ranked = sorted(DS.hotels, key=lambda h: (data.distance_km(lat, lon, h.lat, h.lon), int(h.id)))
    return [h.id for h in ranked[:count]]


def stay_total_cents(hotel: data.Hotel, check_in: date, check_out: date, percent: int) -> int:
    rack = 0
    day = check_in
    while day < check_out:
        weekend = day.strftime("%a") in ("Fri", "Sat")
        rack += hotel.price_cents * 125 // 100 if weekend else hotel.price_cents
        day += timedelta(days=1)
    return rack * percent // 100


# -- dataset -----------------------------------------------------------------


def test_dataset_is_deterministic_and_in_range() -> None:
    assert [h.id for h in DS.hotels] == [str(i) for i in range(1, 81)]
    for h in DS.hotels:
        assert 37.7 <= h.lat <= 37.8 and -122.5 <= h.lon <= -122.4
        assert 100 <= len(h.description) <= 600
        assert h.image_urls and h.rooms_per_night == data.ROOMS_PER_NIGHT
        assert 200 <= len(json.dumps(data.profile_of(h))) <= 4096
    assert len(DS.users) == 500
    assert DS.users_by_name["Cornell_7"].password == "7777777777"
    assert DS.users_by_name["Cornell_42"].password == "42" * 10
    data.make_dataset.cache_clear()
    assert data.make_dataset(1) == DS
    assert data.make_dataset(2).hotels != DS.hotels


# -- geo -----------------------------------------------------------------------


async def test_geo_returns_the_five_nearest_in_order(client: aiohttp.ClientSession) -> None:
    server, one = await serve_one(geo.make_app(Upstreams()), client)
    try:
        for lat, lon in ((SF_LAT, SF_LON), (37.70, -122.50), (37.8, -122.4), (DS.hotels[9].lat, DS.hotels[9].lon)):
            status, body = await one.get("only", "/nearby", lat=str(lat), lon=str(lon))
            assert status == 200
            assert body == {"hotel_ids": brute_force_nearest(lat, lon)}
        # Standing on a hotel, it is the nearest.
        status, body = await one.get("only", "/nearby", lat=str(DS.hotels[9].lat), lon=str(DS.hotels[9].lon))
        assert body["hotel_ids"][0] == "10"
        status, body = await one.get("only", "/nearby", lat="north", lon="-122.4")
        assert status == 400 and "lat" in body["error"]
    finally:
        await server.close()


def test_geo_ties_are_broken_by_numeric_id() -> None:
    # Hotels 9 and 10 moved to one spot: "9" must come first although "10" < "9" as text.
    spot = data.Address("1", "Market Street", "San Francisco", "CA", "US", "94102", 37.75, -122.45)
    hotels = tuple(replace(h, address=spot) if h.id in ("9", "10") else h for h in DS.hotels)
    tied = replace(DS, hotels=hotels, hotels_by_id={h.id: h for h in hotels})
    assert data.nearest_hotel_ids(tied, 37.75, -122.45)[:2] == ["9", "10"]


# -- rate ----------------------------------------------------------------------


async def test_rate_plans_sorted_by_total_then_id(client: aiohttp.ClientSession) -> None:
    server, one = await serve_one(rate.make_app(Upstreams()), client)
    try:
        ids = [str(i) for i in range(1, 81, 3)] + ["nope", "1"]
        # Thursday to Sunday: one weekday night and two weekend nights.
        body_in = {"hotel_ids": ids, "inDate": "2015-04-09", "outDate": "2015-04-12"}
        status, body = await one.post("only", "/rates", body_in)
        assert status == 200
        plans = body["rate_plans"]
        assert len(plans) == 2 * len(set(ids) - {"nope"})
        keys = [(p["total"], int(p["hotel_id"])) for p in plans]
        assert keys == sorted(keys)
        for p in plans:
            hotel = DS.hotels_by_id[p["hotel_id"]]
            percent = {"RACK": 100, "MEMBER": 90}[p["code"]]
            expected = stay_total_cents(hotel, date(2015, 4, 9), date(2015, 4, 12), percent)
            assert round(p["total"] * 100) == expected
            assert (p["in_date"], p["out_date"]) == ("2015-04-09", "2015-04-12")
        status, body = await one.post("only", "/rates", {**body_in, "outDate": "2015-04-09"})
        assert status == 400
        status, body = await one.post("only", "/rates", {**body_in, "hotel_ids": "1"})
        assert status == 400
    finally:
        await server.close()


def test_rate_ties_are_broken_by_id() -> None:
    hotels = tuple(replace(h, price_cents=10000) for h in DS.hotels)
    same = replace(DS, hotels=hotels, hotels_by_id={h.id: h for h in hotels})
    plans = data.rate_plans(same, ["12", "3", "7"], date(2015, 4, 13), date(2015, 4, 14))
    assert [(p["hotel_id"], p["code"]) for p in plans] == [
        ("3", "MEMBER"), ("7", "MEMBER"), ("12", "MEMBER"), ("3", "RACK"), ("7", "RACK"), ("12", "RACK"),
    ]


# -- search --------------------------------------------------------------------


async def test_search_goes_through_geo_and_rate(mesh: Mesh) -> None:
    check_in, check_out = date(2015, 4, 10), date(2015, 4, 11)
    status, body = await mesh.get(
        "search", "/nearby", lat=str(SF_LAT), lon=str(SF_LON), inDate="2015-04-10", outDate="2015-04-11"
    )
    assert status == 200
    nearest = brute_force_nearest(SF_LAT, SF_LON)
    by_price = sorted(
        nearest, key=lambda i: (stay_total_cents(DS.hotels_by_id[i], check_in, check_out, 90), int(i))
    )
    assert body == {"hotel_ids": by_price}
    status, body = await mesh.get("search", "/nearby", lat=str(SF_LAT), lon=str(SF_LON), inDate="2015-04-10")
    assert status == 400


async def test_search_reports_a_failing_dependency_as_502(client: aiohttp.ClientSession) -> None:
    # "geo" points at the profile service, which has no /nearby route.
    profile_server = await start(profile.make_app(Upstreams()))
    url = f"http://127.0.0.1:{profile_server.port}"
    search_server, one = await serve_one(search.make_app(Upstreams({"geo": url, "rate": url})), client)
    try:
        status, body = await one.get(
            "only", "/nearby", lat=str(SF_LAT), lon=str(SF_LON), inDate="2015-04-10", outDate="2015-04-11"
        )
        assert status == 502
        assert "geo /nearby: HTTP 404" in body["error"]
    finally:
        await search_server.close()
        await profile_server.close()


async def test_upstreams_raise_on_non_200_and_need_a_started_app(mesh: Mesh) -> None:
    up = Upstreams({"geo": mesh.url("geo")})
    assert Upstreams().url("rate") == "http://rate:8080"
    with pytest.raises(RuntimeError):
        await up.get_json("geo", "/nearby", {"lat": "1", "lon": "1"})
    app = web.Application()
    up.install(app)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        assert (await up.get_json("geo", "/nearby", {"lat": "37.75", "lon": "-122.45"}))["hotel_ids"]
        with pytest.raises(UpstreamError) as caught:
            await up.get_json("geo", "/nearby", {"lat": "x", "lon": "1"})
        assert caught.value.status == 400 and caught.value.service == "geo"
    finally:
        await runner.cleanup()


# -- recommendation ------------------------------------------------------------


@pytest.mark.parametrize(
    "require, key",
    [
        ("dis", lambda h: (data.distance_km(SF_LAT, SF_LON, h.lat, h.lon), int(h.id))),
        ("rate", lambda h: (-h.rating, int(h.id))),
        ("price", lambda h: (h.price_cents, int(h.id))),
    ],
)
async def test_recommendation_by_each_require(mesh: Mesh, require: str, key: Any) -> None:
    status, body = await mesh.get("recommendation", "/recommend", require=require, lat=str(SF_LAT), lon=str(SF_LON))
    assert status == 200
    assert body == {"hotel_ids": [h.id for h in sorted(DS.hotels, key=key)[:5]]}


async def test_recommendation_rejects_an_unknown_require(mesh: Mesh) -> None:
    status, body = await mesh.get("recommendation", "/recommend", require="stars", lat="37.7", lon="-122.4")
    assert status == 400 and "require" in body["error"]


# -- user ----------------------------------------------------------------------


async def test_user_check(mesh: Mesh) -> None:
    for username, password, ok in (
        ("Cornell_0", "0000000000", True),
        ("Cornell_499", "499" * 10, True),
        ("Cornell_499", "499" * 9, False),
        ("Cornell_1", "2222222222", False),
        ("Cornell_500", "500" * 10, False),
    ):
        status, body = await mesh.get("user", "/check", username=username, password=password)
        assert (status, body) == (200, {"ok": ok}), username
    status, _ = await mesh.get("user", "/check", username="Cornell_0")
    assert status == 400


# -- reservation ---------------------------------------------------------------


async def test_availability_and_reserve(client: aiohttp.ClientSession) -> None:
    small = data.make_dataset(1, rooms_per_night=3)
    server, one = await serve_one(reservation.make_app(Upstreams(), dataset=small), client)
    booking = {
        "hotelId": "5", "customerName": "Cornell_1", "inDate": "2015-04-10", "outDate": "2015-04-12", "number": 1,
    }
    try:
        query = {"hotel_ids": ["5", "6", "999"], "inDate": "2015-04-11", "outDate": "2015-04-13", "number": 1}
        assert await one.post("only", "/availability", query) == (200, {"hotel_ids": ["5", "6"]})
        assert await one.post("only", "/reserve", {**booking, "number": 2}) == (200, {"ok": True})
        assert await one.post("only", "/reserve", booking) == (200, {"ok": True})
        assert await one.post("only", "/reserve", booking) == (200, {"ok": False, "reason": "no rooms left"})
        # The night of the 11th is full for hotel 5; the 12th is not.
        assert await one.post("only", "/availability", query) == (200, {"hotel_ids": ["6"]})
        after = {**query, "inDate": "2015-04-12", "outDate": "2015-04-13", "number": 3}
        assert await one.post("only", "/availability", after) == (200, {"hotel_ids": ["5", "6"]})
        assert await one.post("only", "/reserve", {**booking, "hotelId": "999"}) == (
            200, {"ok": False, "reason": "unknown hotel"},
        )
        status, _ = await one.post("only", "/reserve", {**booking, "number": 0})
        assert status == 400
        book = one.app("only")[ROOM_BOOK]
        assert book.bookings == 2 and book.booked("5", date(2015, 4, 11)) == 3
    finally:
        await server.close()


async def test_concurrent_reserves_never_exceed_capacity(client: aiohttp.ClientSession) -> None:
    rooms = 7
    small = data.make_dataset(1, rooms_per_night=rooms)
    server, one = await serve_one(reservation.make_app(Upstreams(), dataset=small), client)
    # Overlapping stays over 2015-04-10..14 of 1 or 2 rooms: far more asked than there is.
    stays = [(date(2015, 4, 10 + n % 3), 1 + n % 3, 1 + n % 2) for n in range(60)]
    try:
        answers = await asyncio.gather(*(
            one.post("only", "/reserve", {
                "hotelId": "8", "customerName": f"c{n}", "inDate": check_in.isoformat(),
                "outDate": (check_in + timedelta(days=nights)).isoformat(), "number": number,
            })
            for n, (check_in, nights, number) in enumerate(stays)
        ))
        granted: Counter[date] = Counter()
        for (status, body), (check_in, nights, number) in zip(answers, stays):
            assert status == 200
            if body["ok"]:
                for d in range(nights):
                    granted[check_in + timedelta(days=d)] += number
            else:
                assert body["reason"] == "no rooms left"
        book = one.app("only")[ROOM_BOOK]
        assert max(granted.values()) <= rooms
        assert any(not body["ok"] for _, body in answers)
        for night in (date(2015, 4, d) for d in range(9, 16)):
            assert book.booked("8", night) == granted[night]
    finally:
        await server.close()


# -- frontend ------------------------------------------------------------------


async def test_frontend_hotels(mesh: Mesh) -> None:
    params = {"inDate": "2015-04-15", "outDate": "2015-04-18", "lat": "37.7312", "lon": "-122.4711"}
    status, body = await mesh.get("frontend", "/hotels", **params)
    assert status == 200
    ids = [h["id"] for h in body["hotels"]]
    assert sorted(ids) == sorted(brute_force_nearest(37.7312, -122.4711))  # nothing booked yet
    assert body["hotels"] == [data.profile_of(DS.hotels_by_id[i]) for i in ids]
    assert Checker().check(Request(SEARCH, "GET", "/hotels", params), status, body) is None
    status, body = await mesh.get("frontend", "/hotels", **{**params, "outDate": "2015-04-15"})
    assert status == 400


async def test_frontend_recommendations(mesh: Mesh) -> None:
    for require in data.RECOMMEND_REQUIRES:
        params = {"require": require, "lat": "37.7799", "lon": "-122.4123"}
        status, body = await mesh.get("frontend", "/recommendations", **params)
        assert status == 200
        expected = data.recommend_ids(DS, require, 37.7799, -122.4123)
        assert body == {"hotels": [data.profile_of(DS.hotels_by_id[i]) for i in expected]}


async def test_frontend_login(mesh: Mesh) -> None:
    assert await mesh.post("frontend", "/user", username="Cornell_12", password="12" * 10) == (200, {"ok": True})
    assert await mesh.post("frontend", "/user", username="Cornell_12", password="12") == (200, {"ok": False})


async def test_frontend_reservation(mesh: Mesh) -> None:
    params = {
        "inDate": "2015-04-20", "outDate": "2015-04-22", "lat": "37.75", "lon": "-122.45", "hotelId": "17",
        "customerName": "Cornell_3", "username": "Cornell_3", "password": "3333333333", "number": "1",
    }
    assert await mesh.post("frontend", "/reservation", **params) == (200, {"ok": True})
    wrong = {**params, "password": "3333"}
    assert await mesh.post("frontend", "/reservation", **wrong) == (200, {"ok": False, "reason": "invalid credentials"})
    book = mesh.app("reservation")[ROOM_BOOK]
    assert book.bookings == 1
    assert book.booked("17", date(2015, 4, 21)) == 1 and book.booked("17", date(2015, 4, 22)) == 0


# -- workload ------------------------------------------------------------------


def test_scenario_mix_and_determinism() -> None:
    requests = [r for r, _ in zip(Scenario(seed=5), range(40_000))]
    assert requests[:50] == [r for r, _ in zip(Scenario(seed=5), range(50))]
    assert requests[:50] != [r for r, _ in zip(Scenario(seed=6), range(50))]
    counts = Counter(r.kind for r in requests)
    for kind, share in MIX:
        assert abs(counts[kind] / len(requests) - share) < max(0.01, share / 2), kind
    with_credentials = [r for r in requests if r.kind in (LOGIN, RESERVE)]
    wrong = sum(DS.users_by_name[r.params["username"]].password != r.params["password"] for r in with_credentials)
    assert 0.04 < wrong / len(with_credentials) < 0.2
    for r in requests[:2000]:
        if "inDate" in r.params:
            check_in, check_out = data.parse_stay(r.params["inDate"], r.params["outDate"])
            assert date(2015, 4, 9) <= check_in <= date(2015, 4, 23) and 1 <= (check_out - check_in).days <= 3
        if r.kind == RESERVE:
            assert r.params["number"] == "1" and r.params["hotelId"] in DS.hotels_by_id


def test_checker_catches_wrong_bodies() -> None:
    checker = Checker()
    lat, lon = 37.76, -122.43
    stay = {"inDate": "2015-04-11", "outDate": "2015-04-12"}
    search_request = Request(SEARCH, "GET", "/hotels", {**stay, "lat": str(lat), "lon": str(lon)})
    expected_ids = data.search_ids(DS, lat, lon, date(2015, 4, 11), date(2015, 4, 12))
    right = {"hotels": [data.profile_of(DS.hotels_by_id[i]) for i in expected_ids]}
    assert checker.check(search_request, 200, right) is None
    # Sold-out hotels may be missing, in order.
    assert checker.check(search_request, 200, {"hotels": right["hotels"][1:4]}) is None

    far = next(h for h in DS.hotels if h.id not in expected_ids)
    tampered = json.loads(json.dumps(right))
    tampered["hotels"][0]["phone"] = "(415) 000-0000"
    wrong_search_bodies = [
        {"hotels": right["hotels"] + [data.profile_of(far)]},  # not nearby
        {"hotels": right["hotels"][::-1]},  # not in price order
        {"hotels": right["hotels"] + right["hotels"][:1]},  # duplicate
        tampered,  # profile changed
        {"hotels": [{"id": "81"}]},  # not a hotel
        {"hotel_ids": expected_ids},  # wrong shape
        [],
    ]
    for body in wrong_search_bodies:
        assert checker.check(search_request, 200, body) is not None, body
    assert checker.check(search_request, 500, right) == "HTTP 500"

    rec = Request(RECOMMEND, "GET", "/recommendations", {"require": "price", "lat": "37.7", "lon": "-122.4"})
    best = data.recommend_ids(DS, "price", 37.7, -122.4)
    assert checker.check(rec, 200, {"hotels": [data.profile_of(DS.hotels_by_id[i]) for i in best]}) is None
    swapped = best[1:2] + best[:1] + best[2:]
    assert checker.check(rec, 200, {"hotels": [data.profile_of(DS.hotels_by_id[i]) for i in swapped]}) is not None
    assert checker.check(rec, 200, {"hotels": []}) is not None

    good_login = Request(LOGIN, "POST", "/user", {"username": "Cornell_8", "password": "8" * 10})
    bad_login = Request(LOGIN, "POST", "/user", {"username": "Cornell_8", "password": "8" * 10 + "x"})
    assert checker.check(good_login, 200, {"ok": True}) is None
    assert checker.check(good_login, 200, {"ok": False}) is not None
    assert checker.check(bad_login, 200, {"ok": False}) is None
    assert checker.check(bad_login, 200, {"ok": True}) is not None

    booking = {**stay, "lat": "37.7", "lon": "-122.4", "hotelId": "3", "customerName": "Cornell_8", "number": "1"}
    good_reserve = Request(RESERVE, "POST", "/reservation", {**booking, **good_login.params})
    bad_reserve = Request(RESERVE, "POST", "/reservation", {**booking, **bad_login.params})
    assert checker.check(good_reserve, 200, {"ok": True}) is None
    assert checker.check(good_reserve, 200, {"ok": False, "reason": "no rooms left"}) is not None
    assert checker.check(bad_reserve, 200, {"ok": False, "reason": "invalid credentials"}) is None
    assert checker.check(bad_reserve, 200, {"ok": True}) is not None


async def test_run_load_against_the_mesh_has_no_errors(mesh: Mesh) -> None:
    ticks: list[float] = []
    result = await run_load(
        mesh.url("frontend"), 1.0, 4, seed=3,
        session_factory=lambda: aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)),
        progress=ticks.append,
    )
    assert result["errors"] == 0, result["error_samples"]
    assert result["error_samples"] == []
    assert result["requests"] > 20 and len(result["latencies"]) == result["requests"]
    assert set(result["by_kind"]) <= set(KINDS) and result["by_kind"][SEARCH] > result["by_kind"].get(LOGIN, 0)
    assert sum(result["by_kind"].values()) == result["requests"]
    assert 5 <= len(ticks) <= 20 and ticks == sorted(ticks) and ticks[-1] == 1.0
    assert 1.0 <= result["elapsed"] < 5.0


async def test_run_load_counts_wrong_answers_as_errors(mesh: Mesh) -> None:
    # The mesh's geo on another dataset: its answers are consistent but wrong.
    wrong_geo = await start(geo.make_app(Upstreams(), dataset=data.make_dataset(2)))
    up = Upstreams({"geo": f"http://127.0.0.1:{wrong_geo.port}", "rate": mesh.url("rate")})
    wrong_search = await start(search.make_app(up))
    up = Upstreams({**{n: mesh.url(n) for n in DEPENDS["frontend"]}, "search": f"http://127.0.0.1:{wrong_search.port}"})
    wrong_frontend = await start(frontend.make_app(up))
    try:
        result = await run_load(
            f"http://127.0.0.1:{wrong_frontend.port}", 0.3, 2, seed=4, session_factory=aiohttp.ClientSession,
        )
    finally:
        for server in (wrong_frontend, wrong_search, wrong_geo):
            await server.close()
    assert result["errors"] >= result["by_kind"][SEARCH] > 0
    assert len(result["error_samples"]) == min(5, result["errors"])
    assert "search GET /hotels?" in result["error_samples"][0]


# -- run.py --------------------------------------------------------------------


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_run_serves_until_sigterm(loop: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "services.run", "user", "--loop", loop, "--host", "127.0.0.1", "--port", "0"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        ready = json.loads(proc.stdout.readline())
        assert ready["event"] == "ready" and ready["service"] == "user" and ready["host"] == "127.0.0.1"
        assert ready["port"] > 0
        import urllib.request

        url = f"http://127.0.0.1:{ready['port']}/check?username=Cornell_2&password=2222222222"
        with urllib.request.urlopen(url, timeout=5) as resp:
            assert json.loads(resp.read()) == {"ok": True}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_run_docknet_without_an_endpoint_exits_with_a_message() -> None:
    # DOCKNET_DISABLE keeps the loop off any master running on this machine:
    # with no endpoint there is no DockNet address to listen on.
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DOCKNET_DISABLE": "1"}
    cmd = [sys.executable, "-m", "services.run", "geo", "--loop", "docknet", "--port", "0"]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode != 0
    assert "DockNet endpoint" in done.stderr
