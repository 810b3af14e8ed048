"""The master's management API as the plugin uses it: every failure is a
CNI error (an unreachable master is "try again later", a refusal says
why)."""

from __future__ import annotations

from typing import Any

from ..cli.api_client import ApiClient, ApiError
from .errors import INVALID_CONFIG, IO_FAILURE, MASTER_REFUSED, TRY_AGAIN, UNKNOWN_CONTAINER, CniError

__all__ = ["Master", "MasterUnreachable"]


class MasterUnreachable(CniError):
    pass


class Master:
    def __init__(self, api_path: str, timeout: float = 10.0) -> None:
        self.api = ApiClient(api_path, timeout=timeout)

    def call(self, method: str, route: str, body: Any = None) -> Any:
        try:
            return self.api.call(method, route, body)
        except ApiError as exc:
            code = {400: INVALID_CONFIG, 404: UNKNOWN_CONTAINER}.get(exc.status, MASTER_REFUSED)
            if exc.status >= 500:
                code = IO_FAILURE
            raise CniError(code, f"the DockNet master refused: {exc.message}", f"{method} {route}: HTTP {exc.status}")
        except (OSError, ValueError) as exc:  # no socket, refused, timed out, a reply that is not JSON
            raise MasterUnreachable(TRY_AGAIN, f"no DockNet master at {self.api.path}",
                                    f"{type(exc).__name__}: {getattr(exc, 'strerror', None) or exc}") from None

    def status(self) -> dict[str, Any]:
        return dict(self.call("GET", "/v1/status"))

    def endpoints(self) -> list[dict[str, Any]]:
        return list(self.call("GET", "/v1/endpoints"))

    def endpoint(self, name: str) -> dict[str, Any] | None:
        try:
            return dict(self.call("GET", f"/v1/endpoints/{name}"))
        except CniError as exc:
            if exc.code == UNKNOWN_CONTAINER:
                return None
            raise

    def register(self, body: dict[str, Any]) -> dict[str, Any]:
        return dict(self.call("POST", "/v1/endpoints", body))

    def unregister(self, name: str) -> bool:
        """False when it was not registered (any more)."""
        try:
            self.call("DELETE", f"/v1/endpoints/{name}")
        except CniError as exc:
            if exc.code == UNKNOWN_CONTAINER:
                return False
            raise
        return True
