"""The hotel world every service and the load checker agree on.

Everything here is a pure function of a seed: each service process builds the
same dataset on its own at start-up (no shared database), and the checker
rebuilds it to know what a correct answer is. The ranking rules (nearest,
cheapest, best) live here too so that there is one definition of them.
"""

from __future__ import annotations

import heapq
import math
import random
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache
from typing import Any, Iterable

HOTEL_COUNT = 80
USER_COUNT = 500
NEARBY_COUNT = 5
RECOMMEND_COUNT = 5
MAX_STAY_NIGHTS = 30
RECOMMEND_REQUIRES = ("dis", "rate", "price")

# The load scenario books 1 room for 1-3 nights in a 15-day window at 80
# hotels: about 1 booking in 600 lands on a given hotel-night. At ~1k req/s
# (0.5% reservations, 5/s) that is ~5 rooms per hotel-night per 10 minutes,
# so 500 rooms stay unsold through many runs against the same processes,
# which is what lets the checker insist every valid reservation succeeds.
ROOMS_PER_NIGHT = 500

# Rate plans: code and percentage of the rack price.
RATE_PLANS: tuple[tuple[str, int], ...] = (("RACK", 100), ("MEMBER", 90))
WEEKEND_PERCENT = 125  # Friday and Saturday nights

# San Francisco, roughly from the Presidio down to Glen Park.
LAT_RANGE = (37.70, 37.80)
LON_RANGE = (-122.50, -122.40)
EARTH_RADIUS_KM = 6371.0

_NAME_FIRST = (
    "Golden", "Bay", "Harbor", "Union", "Mission", "Presidio", "Marina", "Nob Hill",
    "Twin Peaks", "Sunset", "Pacific", "Embarcadero", "Castro", "Fog City", "Cable Car",
)
_NAME_SECOND = ("Gate", "View", "Square", "Park", "Heights", "Point", "Landing", "Garden", "Bridge", "Court")
_NAME_KIND = ("Hotel", "Inn", "Suites", "Lodge", "Resort", "Hostel", "Motel", "House")
_STREETS = (
    "Market Street", "Mission Street", "Geary Boulevard", "Lombard Street", "Van Ness Avenue",
    "Divisadero Street", "Valencia Street", "Folsom Street", "Haight Street", "Irving Street",
    "Judah Street", "Taraval Street", "Clement Street", "Columbus Avenue", "California Street",
)
_POSTAL_CODES = (
    "94102", "94103", "94107", "94109", "94110", "94114", "94115", "94117", "94118", "94121", "94122", "94131",
)
_DESCRIPTION_SENTENCES = (
    "Rooms look out over the bay and the city lights.",
    "A short walk takes you to cable cars, cafes and the waterfront.",
    "Breakfast is served every morning in the garden courtyard.",
    "The rooftop bar is a favourite spot to watch the fog roll in.",
    "Every room has a rain shower, a work desk and fast wireless internet.",
    "Pets are welcome and the staff keep treats at the front desk.",
    "Bicycles are free to borrow for a ride through Golden Gate Park.",
    "The restaurant serves seasonal dishes from Northern California farms.",
    "Quiet streets and tree-lined blocks make this a restful base.",
    "Muni stops are around the corner for trips downtown.",
    "Family suites sleep up to six guests with a kitchenette.",
    "A fitness centre and sauna are open around the clock.",
    "Local art from Mission District studios hangs in every hallway.",
    "Parking is available in the garage for a daily fee.",
    "The lobby lounge hosts live jazz on Friday evenings.",
)


@dataclass(frozen=True)
class Address:
    street_number: str
    street_name: str
    city: str
    state: str
    country: str
    postal_code: str
    lat: float
    lon: float


@dataclass(frozen=True)
class Hotel:
    id: str
    name: str
    phone: str
    description: str
    address: Address
    image_urls: tuple[str, ...]
    rating: float
    price_cents: int  # rack price of a weekday night
    rooms_per_night: int

    @property
    def lat(self) -> float:
        return self.address.lat

    @property
    def lon(self) -> float:
        return self.address.lon


@dataclass(frozen=True)
class User:
    username: str
    password: str


@dataclass(frozen=True)
class Dataset:
    seed: int
    hotels: tuple[Hotel, ...]
    hotels_by_id: dict[str, Hotel]
    users: tuple[User, ...]
    users_by_name: dict[str, User]


def username_of(index: int) -> str:
    return f"Cornell_{index}"


def password_of(index: int) -> str:
    # DeathStarBench's convention: the index's digits repeated ten times.
    return str(index) * 10


def id_order(hotel_id: str) -> tuple[int, str]:
    """Sort key putting "9" before "10" (ids are decimal strings)."""
    return (len(hotel_id), hotel_id)


def _description(rng: random.Random) -> str:
    target = rng.randint(100, 600)
    # Shuffled rather than drawn so that no sentence repeats; the pool is
    # longer than 600 characters in all.
    pool = rng.sample(_DESCRIPTION_SENTENCES, len(_DESCRIPTION_SENTENCES))
    sentences: list[str] = []
    length = -1
    while length < target:
        sentence = pool[len(sentences)]
        sentences.append(sentence)
        length += len(sentence) + 1
    text = " ".join(sentences)
    if len(text) > 600:
        # Sentences are under 100 characters, so this keeps more than 500.
        text = text[: text.rindex(". ", 0, 600) + 1]
    return text


def _hotel(rng: random.Random, index: int, rooms_per_night: int) -> Hotel:
    hotel_id = str(index)
    lat = round(rng.uniform(*LAT_RANGE), 6)
    lon = round(rng.uniform(*LON_RANGE), 6)
    name = " ".join((rng.choice(_NAME_FIRST), rng.choice(_NAME_SECOND), rng.choice(_NAME_KIND)))
    address = Address(
        street_number=str(rng.randint(1, 3999)),
        street_name=rng.choice(_STREETS),
        city="San Francisco",
        state="CA",
        country="United States",
        postal_code=rng.choice(_POSTAL_CODES),
        lat=lat,
        lon=lon,
    )
    images = tuple(
        f"https://images.example.com/hotels/{hotel_id}/{n}.jpg" for n in range(rng.randint(1, 4))
    )
    return Hotel(
        id=hotel_id,
        name=name,
        phone=f"(415) {rng.randint(200, 999)}-{rng.randint(0, 9999):04d}",
        description=_description(rng),
        address=address,
        image_urls=images,
        rating=round(rng.uniform(2.5, 5.0), 1),
        price_cents=rng.randint(90, 450) * 100 + rng.choice((0, 50, 99)),
        rooms_per_night=rooms_per_night,
    )


@lru_cache(maxsize=8)
def make_dataset(seed: int = 1, *, rooms_per_night: int = ROOMS_PER_NIGHT) -> Dataset:
    """The hotels and users for seed (cached: treat the result as read-only)."""
    rng = random.Random(seed)
    hotels = tuple(_hotel(rng, i, rooms_per_night) for i in range(1, HOTEL_COUNT + 1))
    users = tuple(User(username_of(i), password_of(i)) for i in range(USER_COUNT))
    return Dataset(
        seed=seed,
        hotels=hotels,
        hotels_by_id={h.id: h for h in hotels},
        users=users,
        users_by_name={u.username: u for u in users},
    )


def profile_of(hotel: Hotel) -> dict[str, Any]:
    """The JSON profile the profile service serves for hotel."""
    a = hotel.address
    return {
        "id": hotel.id,
        "name": hotel.name,
        "phone": hotel.phone,
        "description": hotel.description,
        "address": {
            "street_number": a.street_number,
            "street_name": a.street_name,
            "city": a.city,
            "state": a.state,
            "country": a.country,
            "postal_code": a.postal_code,
            "lat": a.lat,
            "lon": a.lon,
        },
        "images": [{"url": url, "default": n == 0} for n, url in enumerate(hotel.image_urls)],
    }


def distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle (haversine) distance."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(h))


def hotels_by_distance(ds: Dataset, lat: float, lon: float, count: int) -> list[Hotel]:
    """The count hotels nearest (lat, lon), nearest first, ties by id."""
    return heapq.nsmallest(count, ds.hotels, key=lambda h: (distance_km(lat, lon, h.lat, h.lon), id_order(h.id)))


def nearest_hotel_ids(ds: Dataset, lat: float, lon: float, count: int = NEARBY_COUNT) -> list[str]:
    return [h.id for h in hotels_by_distance(ds, lat, lon, count)]


def recommend_ids(ds: Dataset, require: str, lat: float, lon: float, count: int = RECOMMEND_COUNT) -> list[str]:
    """The best hotels by distance, rating or price, ties broken by id."""
    if require == "dis":
        ranked = hotels_by_distance(ds, lat, lon, count)
    elif require == "rate":
        ranked = sorted(ds.hotels, key=lambda h: (-h.rating, id_order(h.id)))
    elif require == "price":
        ranked = sorted(ds.hotels, key=lambda h: (h.price_cents, id_order(h.id)))
    else:
        raise ValueError(f"require must be one of {RECOMMEND_REQUIRES}, not {require!r}")
    return [h.id for h in ranked[:count]]


def parse_stay(in_text: str, out_text: str) -> tuple[date, date]:
    """Check-in and check-out dates; ValueError unless a stay of 1..30 nights."""
    in_date, out_date = date.fromisoformat(in_text), date.fromisoformat(out_text)
    nights = (out_date - in_date).days
    if not 1 <= nights <= MAX_STAY_NIGHTS:
        raise ValueError(f"a stay must be 1 to {MAX_STAY_NIGHTS} nights, not {nights}")
    return in_date, out_date


def stay_nights(in_date: date, out_date: date) -> list[date]:
    return [in_date + timedelta(days=n) for n in range((out_date - in_date).days)]


def night_price_cents(hotel: Hotel, night: date) -> int:
    if night.weekday() in (4, 5):
        return hotel.price_cents * WEEKEND_PERCENT // 100
    return hotel.price_cents


def rate_plans(ds: Dataset, hotel_ids: Iterable[str], in_date: date, out_date: date) -> list[dict[str, Any]]:
    """Every plan of the known hotels for the stay, cheapest first, ties by id."""
    nights = stay_nights(in_date, out_date)
    rows: list[tuple[int, tuple[int, str], str, str]] = []
    for hotel_id in dict.fromkeys(hotel_ids):
        hotel = ds.hotels_by_id.get(hotel_id)
        if hotel is None:
            continue
        rack = sum(night_price_cents(hotel, n) for n in nights)
        for code, percent in RATE_PLANS:
            rows.append((rack * percent // 100, id_order(hotel_id), code, hotel_id))
    rows.sort()
    in_text, out_text = in_date.isoformat(), out_date.isoformat()
    return [
        {"hotel_id": hotel_id, "code": code, "in_date": in_text, "out_date": out_text, "total": cents / 100}
        for cents, _, code, hotel_id in rows
    ]


def ids_in_plan_order(plans: Iterable[dict[str, Any]]) -> list[str]:
    """Hotel ids in the order of their first (cheapest) plan."""
    return list(dict.fromkeys(p["hotel_id"] for p in plans))


def search_ids(ds: Dataset, lat: float, lon: float, in_date: date, out_date: date) -> list[str]:
    """What search answers: the nearby hotels, cheapest stay first."""
    return ids_in_plan_order(rate_plans(ds, nearest_hotel_ids(ds, lat, lon), in_date, out_date))
