"""The load: DeathStarBench's mixed hotel workload, a checker for its answers, a driver.

``Scenario`` yields frontend requests, ``Checker`` says whether a response is
what the dataset implies, ``run_load`` drives a frontend with closed-loop
workers and counts every wrong answer as an error, not only failed requests.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any
from urllib.parse import urlencode

import aiohttp

from .data import (
    HOTEL_COUNT,
    NEARBY_COUNT,
    RECOMMEND_REQUIRES,
    USER_COUNT,
    Dataset,
    make_dataset,
    parse_stay,
    password_of,
    profile_of,
    recommend_ids,
    search_ids,
    username_of,
)

SEARCH, RECOMMEND, LOGIN, RESERVE = "search", "recommend", "login", "reserve"
KINDS = (SEARCH, RECOMMEND, LOGIN, RESERVE)

# DeathStarBench's mixed-workload.lua ratios.
MIX: tuple[tuple[str, float], ...] = ((SEARCH, 0.60), (RECOMMEND, 0.39), (LOGIN, 0.005), (RESERVE, 0.005))
WRONG_PASSWORD_FRACTION = 0.10

# Check-ins 2015-04-09 .. 2015-04-23, stays of 1-3 nights (the capacity
# arithmetic in data.ROOMS_PER_NIGHT assumes this window).
FIRST_CHECK_IN = date(2015, 4, 9)
CHECK_IN_DAYS = 15
MAX_NIGHTS = 3

# A box a little larger than the hotels' so that some points lie outside them.
QUERY_LAT_RANGE = (37.68, 37.82)
QUERY_LON_RANGE = (-122.52, -122.38)

PROGRESS_INTERVAL_SECONDS = 0.1
ERROR_SAMPLE_COUNT = 5


@dataclass(frozen=True)
class Request:
    """One frontend request; params go in the query string for every method."""

    kind: str
    method: str
    path: str
    params: dict[str, str]

    def describe(self) -> str:
        return f"{self.kind} {self.method} {self.path}?{urlencode(self.params)}"


class Scenario:
    """An endless, seeded stream of frontend requests in DeathStarBench's mix."""

    def __init__(self, seed: int = 1) -> None:
        self._rng = random.Random(seed)

    def __iter__(self) -> Iterator[Request]:
        return self

    def __next__(self) -> Request:
        draw = self._rng.random()
        for kind, share in MIX:
            if draw < share:
                break
            draw -= share
        if kind == SEARCH:
            return Request(SEARCH, "GET", "/hotels", {**self._stay(), **self._point()})
        if kind == RECOMMEND:
            require = self._rng.choice(RECOMMEND_REQUIRES)
            return Request(RECOMMEND, "GET", "/recommendations", {"require": require, **self._point()})
        if kind == LOGIN:
            return Request(LOGIN, "POST", "/user", self._credentials())
        credentials = self._credentials()
        params = {
            **self._stay(),
            **self._point(),
            "hotelId": str(self._rng.randint(1, HOTEL_COUNT)),
            "customerName": credentials["username"],
            **credentials,
            "number": "1",
        }
        return Request(RESERVE, "POST", "/reservation", params)

    def _point(self) -> dict[str, str]:
        lat = self._rng.uniform(*QUERY_LAT_RANGE)
        lon = self._rng.uniform(*QUERY_LON_RANGE)
        return {"lat": f"{lat:.4f}", "lon": f"{lon:.4f}"}

    def _stay(self) -> dict[str, str]:
        check_in = FIRST_CHECK_IN + timedelta(days=self._rng.randrange(CHECK_IN_DAYS))
        check_out = check_in + timedelta(days=self._rng.randint(1, MAX_NIGHTS))
        return {"inDate": check_in.isoformat(), "outDate": check_out.isoformat()}

    def _credentials(self) -> dict[str, str]:
        index = self._rng.randrange(USER_COUNT)
        password = password_of(index)
        if self._rng.random() < WRONG_PASSWORD_FRACTION:
            password += "x"  # a near miss: same user, wrong password
        return {"username": username_of(index), "password": password}


class Checker:
    """Whether a frontend response says what the dataset implies.

    Reservations change only availability: a search may leave out sold-out
    hotels (so its answer must be an in-order subset of the nearby hotels),
    while everything else has exactly one right answer.
    """

    def __init__(self, dataset: Dataset | None = None) -> None:
        self._ds = dataset or make_dataset()
        self._profiles = {h.id: profile_of(h) for h in self._ds.hotels}

    def check(self, request: Request, status: int, body: Any) -> str | None:
        """None if right, else a short description of what is wrong."""
        if status != 200:
            return f"HTTP {status}"
        if not isinstance(body, dict):
            return "body is not a JSON object"
        if request.kind == SEARCH:
            return self._check_search(request.params, body)
        if request.kind == RECOMMEND:
            return self._check_recommend(request.params, body)
        if request.kind == LOGIN:
            return self._check_login(request.params, body)
        if request.kind == RESERVE:
            return self._check_reserve(request.params, body)
        raise ValueError(f"unknown request kind {request.kind!r}")

    def _valid_credentials(self, params: dict[str, str]) -> bool:
        user = self._ds.users_by_name.get(params["username"])
        return user is not None and user.password == params["password"]

    def _hotel_ids(self, body: dict[str, Any]) -> list[str] | str:
        """The ids of body's hotels, or what is wrong with their profiles."""
        hotels = body.get("hotels")
        if not isinstance(hotels, list):
            return "no hotels list"
        ids: list[str] = []
        for hotel in hotels:
            hotel_id = hotel.get("id") if isinstance(hotel, dict) else None
            expected = self._profiles.get(hotel_id) if isinstance(hotel_id, str) else None
            if expected is None:
                return f"not a hotel of the dataset: {str(hotel)[:80]}"
            if hotel != expected:
                return f"profile of hotel {hotel_id} differs from the dataset"
            ids.append(hotel_id)
        return ids

    def _check_search(self, params: dict[str, str], body: dict[str, Any]) -> str | None:
        got = self._hotel_ids(body)
        if isinstance(got, str):
            return got
        in_date, out_date = parse_stay(params["inDate"], params["outDate"])
        expected = search_ids(self._ds, float(params["lat"]), float(params["lon"]), in_date, out_date)
        rank = {hotel_id: n for n, hotel_id in enumerate(expected)}
        if len(set(got)) != len(got):
            return f"duplicate hotels {got}"
        stray = [h for h in got if h not in rank]
        if stray:
            return f"hotels {stray} are not among the {NEARBY_COUNT} nearest {expected}"
        if [rank[h] for h in got] != sorted(rank[h] for h in got):
            return f"hotels {got} not in the order of their price {expected}"
        return None

    def _check_recommend(self, params: dict[str, str], body: dict[str, Any]) -> str | None:
        got = self._hotel_ids(body)
        if isinstance(got, str):
            return got
        expected = recommend_ids(self._ds, params["require"], float(params["lat"]), float(params["lon"]))
        if got != expected:
            return f"recommended {got}, expected {expected} for require={params['require']}"
        return None

    def _check_login(self, params: dict[str, str], body: dict[str, Any]) -> str | None:
        expected = {"ok": self._valid_credentials(params)}
        if body != expected:
            return f"login answered {body}, expected {expected}"
        return None

    def _check_reserve(self, params: dict[str, str], body: dict[str, Any]) -> str | None:
        if self._valid_credentials(params):
            # Rooms never run out under this scenario (data.ROOMS_PER_NIGHT).
            if body != {"ok": True}:
                return f"valid reservation answered {body}"
        elif body.get("ok") is not False:
            return f"reservation with a wrong password answered {body}"
        return None


SessionFactory = Callable[[], aiohttp.ClientSession | Awaitable[aiohttp.ClientSession]]


async def run_load(
    base_url: str,
    seconds: float,
    concurrency: int,
    seed: int,
    session_factory: SessionFactory,
    progress: Callable[[float], None] | None = None,
    *,
    checker: Checker | None = None,
) -> dict[str, Any]:
    """Closed-loop load on the frontend at base_url for seconds.

    ``concurrency`` workers share one session from ``session_factory`` (a
    callable returning a ClientSession, or an awaitable of one), which
    run_load closes at the end. Workers start no request after ``seconds``;
    requests in flight then are finished and counted. Returns requests,
    errors, error_samples (the first 5), latencies (seconds, one per request,
    failed ones included), by_kind (requests per kind) and elapsed (seconds).
    """
    if seconds <= 0 or concurrency < 1:
        raise ValueError("seconds must be positive and concurrency at least 1")
    base = base_url.rstrip("/")
    scenario = Scenario(seed)
    checker = checker or Checker()
    latencies: list[float] = []
    by_kind: Counter[str] = Counter()
    error_samples: list[str] = []
    errors = 0

    made = session_factory()
    session: aiohttp.ClientSession = await made if inspect.isawaitable(made) else made
    loop = asyncio.get_running_loop()
    start = loop.time()
    deadline = start + seconds

    async def one(session: aiohttp.ClientSession, request: Request) -> str | None:
        began = time.perf_counter()
        try:
            async with session.request(request.method, base + request.path, params=request.params) as resp:
                status, raw = resp.status, await resp.read()
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            latencies.append(time.perf_counter() - began)
            return f"{type(exc).__name__}: {exc}"
        latencies.append(time.perf_counter() - began)
        try:
            body = json.loads(raw)
        except ValueError:
            return f"HTTP {status}, body not JSON: {raw[:80]!r}"
        return checker.check(request, status, body)

    async def worker() -> None:
        nonlocal errors
        while loop.time() < deadline:
            request = next(scenario)
            by_kind[request.kind] += 1
            problem = await one(session, request)
            if problem is not None:
                errors += 1
                if len(error_samples) < ERROR_SAMPLE_COUNT:
                    error_samples.append(f"{request.describe()}: {problem}")

    try:
        workers = asyncio.ensure_future(asyncio.gather(*(worker() for _ in range(concurrency))))
        try:
            # Waiting on the workers with a timeout gives the progress ticks
            # and ends the moment the last worker does.
            while True:
                done, _ = await asyncio.wait({workers}, timeout=PROGRESS_INTERVAL_SECONDS)
                if progress is not None:
                    progress(min(1.0, (loop.time() - start) / seconds))
                if done:
                    break
        finally:
            if not workers.done():
                workers.cancel()
            await asyncio.gather(workers, return_exceptions=True)
        workers.result()  # a worker's unexpected exception is the caller's
    finally:
        await session.close()

    return {
        "requests": sum(by_kind.values()),
        "errors": errors,
        "error_samples": error_samples,
        "latencies": latencies,
        "by_kind": dict(by_kind),
        "elapsed": loop.time() - start,
    }
