"""The ``docknet`` command (``main``) and what only it needs: the management
API client and the network namespaces ``docknet run`` makes.

``main`` is imported on first call: the CNI plugin uses ``api_client``
without the command's dependencies (structlog, pyroute2)."""

from __future__ import annotations

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    from .main import main as run

    return run(argv)
