"""reservation: rooms left per hotel per night, and booking them."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import date

from aiohttp import web

from .data import Dataset, make_dataset, stay_nights
from .httputil import id_list, int_param, json_object, json_response, new_app, stay, text_param
from .upstreams import Upstreams

MAX_ROOMS_PER_BOOKING = 100


class RoomBook:
    """Rooms booked per (hotel, night), in memory."""

    def __init__(self, ds: Dataset) -> None:
        self._ds = ds
        self._booked: Counter[tuple[str, date]] = Counter()
        # Checking and booking must be one step for concurrent requests. No
        # await sits between them today, but a persistent store (DeathStarBench
        # writes through to MongoDB) would add one: the lock keeps it correct.
        self._lock = asyncio.Lock()
        self.bookings = 0

    def _fits(self, hotel_id: str, nights: list[date], number: int) -> bool:
        hotel = self._ds.hotels_by_id.get(hotel_id)
        if hotel is None:
            return False
        return all(self._booked[(hotel_id, n)] + number <= hotel.rooms_per_night for n in nights)

    def booked(self, hotel_id: str, night: date) -> int:
        return self._booked[(hotel_id, night)]

    def available(self, hotel_ids: list[str], in_date: date, out_date: date, number: int) -> list[str]:
        nights = stay_nights(in_date, out_date)
        return [h for h in dict.fromkeys(hotel_ids) if self._fits(h, nights, number)]

    async def reserve(self, hotel_id: str, in_date: date, out_date: date, number: int) -> str | None:
        """None once booked, else why not."""
        if hotel_id not in self._ds.hotels_by_id:
            return "unknown hotel"
        nights = stay_nights(in_date, out_date)
        async with self._lock:
            if not self._fits(hotel_id, nights, number):
                return "no rooms left"
            for night in nights:
                self._booked[(hotel_id, night)] += number
            self.bookings += 1
        return None


ROOM_BOOK: web.AppKey[RoomBook] = web.AppKey("room_book", RoomBook)


def make_app(up: Upstreams, *, dataset: Dataset | None = None) -> web.Application:
    book = RoomBook(dataset or make_dataset())

    async def availability(request: web.Request) -> web.Response:
        body = await json_object(request)
        hotel_ids = id_list(body)
        in_date, out_date = stay(body)
        number = int_param(body, "number", 1, MAX_ROOMS_PER_BOOKING) if "number" in body else 1
        return json_response({"hotel_ids": book.available(hotel_ids, in_date, out_date, number)})

    async def reserve(request: web.Request) -> web.Response:
        body = await json_object(request)
        hotel_id = text_param(body, "hotelId")
        text_param(body, "customerName")  # required, though only a database would keep it
        in_date, out_date = stay(body)
        number = int_param(body, "number", 1, MAX_ROOMS_PER_BOOKING)
        refusal = await book.reserve(hotel_id, in_date, out_date, number)
        if refusal is not None:
            return json_response({"ok": False, "reason": refusal})
        return json_response({"ok": True})

    app = new_app()
    app[ROOM_BOOK] = book  # for inspection (tests)
    app.router.add_post("/availability", availability)
    app.router.add_post("/reserve", reserve)
    return app
