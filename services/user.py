"""user: checks a username and password."""

from __future__ import annotations

import hashlib
import hmac
import os

from aiohttp import web

from .data import Dataset, make_dataset
from .httputil import json_response, new_app, text_param
from .upstreams import Upstreams

_SALT_BYTES = 16


def _digest(salt: bytes, password: str) -> bytes:
    return hashlib.sha256(salt + password.encode()).digest()


class CredentialStore:
    """Salted password hashes, as a user database would hold them.

    Salts are random per process: nothing outside this process sees a hash,
    and a check has to do the hashing work a real one does.
    """

    def __init__(self, ds: Dataset) -> None:
        self._records: dict[str, tuple[bytes, bytes]] = {}
        for user in ds.users:
            salt = os.urandom(_SALT_BYTES)
            self._records[user.username] = (salt, _digest(salt, user.password))

    def check(self, username: str, password: str) -> bool:
        record = self._records.get(username)
        if record is None:
            return False
        salt, expected = record
        return hmac.compare_digest(_digest(salt, password), expected)


def make_app(up: Upstreams, *, dataset: Dataset | None = None) -> web.Application:
    store = CredentialStore(dataset or make_dataset())

    async def check(request: web.Request) -> web.Response:
        username = text_param(request.query, "username")
        password = text_param(request.query, "password")
        return json_response({"ok": store.check(username, password)})

    app = new_app()
    app.router.add_get("/check", check)
    return app
