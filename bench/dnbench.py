"""The native benchmark loops (bench/native/dn_bench.c) for the bench runners.

``bench._dnbench`` is built into the checkout by ``scripts/bootstrap.sh``;
it calls the slave stack's C API in ``aiodocknet.native._lib``, which is
made global here before it loads, so its dn_* calls bind to the copy this
process already runs (one lwIP, one error slot). Service processes never
import this module.
"""

from __future__ import annotations

import ctypes
import os

from aiodocknet.native import _lib

__all__ = ["ffi", "lib"]

# RTLD_NOLOAD: _lib is loaded already; this only widens its symbols' scope.
ctypes.CDLL(_lib.__file__, mode=os.RTLD_NOLOAD | os.RTLD_GLOBAL)

try:
    from bench._dnbench import ffi, lib  # noqa: E402
except ImportError as exc:
    raise ImportError(f"{exc}: the native bench loops are built by `make bootstrap` "
                      "(python bench/native/build.py)") from None
