"""structlog set-up shared by the master, the CLI and services."""

from __future__ import annotations

import logging
import os
import sys

import structlog

_configured = False


def configure(level: str = "info", fmt: str = "console") -> None:
    """Key-value logs on stderr; ``fmt="json"`` for machines."""
    global _configured
    renderer: structlog.typing.Processor
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelName(level.upper())
        ),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    _configured = True


LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("console", "json")


def configure_from_env() -> None:
    """As DOCKNET_LOG_LEVEL and DOCKNET_LOG_FORMAT say (the CLI sets them
    for the processes it starts); values it does not know are ignored."""
    level = os.environ.get("DOCKNET_LOG_LEVEL", "").lower()
    fmt = os.environ.get("DOCKNET_LOG_FORMAT", "").lower()
    configure(level if level in LEVELS else "info", fmt if fmt in FORMATS else "console")


def get_logger(name: str) -> structlog.typing.FilteringBoundLogger:
    if not _configured:
        configure_from_env()
    return structlog.get_logger(name)  # type: ignore[no-any-return]
