"""A small blocking client for the master's management API (unix socket)."""

from __future__ import annotations

import http.client
import json
import os
import socket
from typing import Any

from ..control import DEFAULT_RUN_DIR

__all__ = ["ApiClient", "ApiError", "default_api_path"]


def default_api_path() -> str:
    master = os.environ.get("DOCKNET_MASTER")
    run_dir = os.path.dirname(master) if master else os.environ.get("DOCKNET_RUN_DIR", DEFAULT_RUN_DIR)
    return os.path.join(run_dir, "api.sock")


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{message} (HTTP {status})")
        self.status = status
        self.message = message


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("docknet", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        try:
            s.connect(self._path)
        except OSError:
            s.close()
            raise
        self.sock = s


class ApiClient:
    def __init__(self, path: str | None = None, timeout: float = 10.0) -> None:
        self.path = path or default_api_path()
        self.timeout = timeout

    def call(self, method: str, route: str, body: Any = None) -> Any:
        conn = _UnixConnection(self.path, self.timeout)
        try:
            try:
                payload = None if body is None else json.dumps(body)
                headers = {"Content-Type": "application/json"} if payload is not None else {}
                conn.request(method, route, body=payload, headers=headers)
            except (FileNotFoundError, ConnectionRefusedError) as exc:
                raise type(exc)(exc.errno, f"no DockNet master API at {self.path} (is `docknet master` running?)") from None
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        if resp.headers.get_content_type() == "application/json":
            value = json.loads(data)
        else:
            value = data.decode()
        if resp.status >= 400:
            msg = value.get("error", str(value)) if isinstance(value, dict) else str(value)
            raise ApiError(resp.status, msg)
        return value
