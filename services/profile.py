"""profile: the hotels' descriptive records (the largest bodies in the mesh)."""

from __future__ import annotations

from aiohttp import web

from .data import Dataset, make_dataset, profile_of
from .httputil import id_list, json_object, json_response, new_app
from .upstreams import Upstreams


def make_app(up: Upstreams, *, dataset: Dataset | None = None) -> web.Application:
    ds = dataset or make_dataset()
    # Built once: a request only looks profiles up and serialises them.
    profiles = {h.id: profile_of(h) for h in ds.hotels}

    async def get_profiles(request: web.Request) -> web.Response:
        body = await json_object(request)
        # Unknown ids are left out, as a database query would.
        found = [profiles[i] for i in id_list(body) if i in profiles]
        return json_response({"hotels": found})

    app = new_app()
    app.router.add_post("/profiles", get_profiles)
    return app
