"""aiodocknet: userspace networking (DPDK + lwIP) for asyncio services.

One line puts an asyncio program on DockNet::

    aiodocknet.run(main())                                     # or
    asyncio.set_event_loop_policy(aiodocknet.DockNetPolicy())

The loop (uvloop, the native core, DPDK's libraries) is imported when a
loop is made, not with the package: the ``docknet`` command and the CNI
plugin import ``aiodocknet.cli``/``aiodocknet.cni`` without it.
"""

from __future__ import annotations

import asyncio as _asyncio
import sys as _sys
import warnings as _warnings
from typing import TYPE_CHECKING, Any, Coroutine, TypeVar

if TYPE_CHECKING:
    from .endpoint import DockNetUnavailable
    from .loop import DockNetLoop

__all__ = ["DockNetLoop", "DockNetUnavailable", "new_event_loop", "run", "run_on", "install", "DockNetPolicy"]

_T = TypeVar("_T")


def new_event_loop() -> DockNetLoop:
    """A new DockNet event loop."""
    from .loop import DockNetLoop

    return DockNetLoop()


def run(main: Coroutine[Any, Any, _T], *, debug: bool | None = None, require: bool = False,
        **run_kwargs: Any) -> _T:
    """Run a coroutine on a DockNetLoop (as ``uvloop.run`` does).

    With ``require=True`` (or DOCKNET_REQUIRE=1) the endpoint attaches
    first, and a failure stops the program with one line saying why,
    instead of running it on plain uvloop."""
    if _asyncio._get_running_loop() is not None:
        main.close()
        raise RuntimeError("aiodocknet.run() cannot be called from a running event loop")
    from .endpoint import DockNetUnavailable, ProcessEndpoint, required

    if require:
        ProcessEndpoint.require = True
    if required():
        try:
            ProcessEndpoint.get()
        except DockNetUnavailable as exc:
            main.close()
            raise SystemExit(f"aiodocknet: {exc.strerror}") from None
    with _asyncio.Runner(loop_factory=new_event_loop, debug=debug, **run_kwargs) as runner:
        return runner.run(main)


def run_on(loop: str, main: Coroutine[Any, Any, _T]) -> _T:
    """Run main on the loop named: "docknet", "uvloop" or "asyncio" (the
    default loop), for programs that compare them."""
    if loop == "docknet":
        return run(main)
    if loop == "uvloop":
        import uvloop

        return uvloop.run(main)
    if loop == "asyncio":
        return _asyncio.run(main)
    main.close()
    raise ValueError(f"unknown loop {loop!r} (docknet, uvloop or asyncio)")


class _DockNetPolicy(_asyncio.DefaultEventLoopPolicy):
    """An event loop policy whose loops are DockNetLoops."""

    def _loop_factory(self) -> DockNetLoop:  # type: ignore[override]
        return new_event_loop()


def install() -> None:
    """Make DockNetLoop the default for asyncio (sets the policy)."""
    if _sys.version_info >= (3, 12):
        _warnings.warn(
            "aiodocknet.install() sets an event loop policy, which asyncio deprecates; "
            "use aiodocknet.run()",
            DeprecationWarning,
            stacklevel=2,
        )
    _asyncio.set_event_loop_policy(_DockNetPolicy())


def __getattr__(name: str) -> Any:
    # `aiodocknet.aiohttp.DockNetConnector()` after a bare `import
    # aiodocknet`: the integration is imported on first use, so services
    # that do not use aiohttp do not pay for importing it.
    if name == "aiohttp":
        import importlib

        return importlib.import_module(".aiohttp", __name__)
    if name == "DockNetLoop":
        from .loop import DockNetLoop

        return DockNetLoop
    if name == "DockNetUnavailable":
        from .endpoint import DockNetUnavailable

        return DockNetUnavailable
    # Policies are deprecated from Python 3.14: made on demand, with the
    # warning asyncio gives.
    if name == "DockNetPolicy":
        if _sys.version_info >= (3, 14):
            _warnings.warn(
                "aiodocknet.DockNetPolicy is deprecated as asyncio's policies are; use aiodocknet.run()",
                DeprecationWarning,
                stacklevel=2,
            )
        return _DockNetPolicy
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
