"""The one place where native error codes become Python exceptions.

Native calls return a negative errno and leave the reason in
``dn_last_error()``; ``OSError(errno, msg)`` picks the matching subclass
(``ECONNRESET`` -> ``ConnectionResetError``, ``EAGAIN`` -> ``BlockingIOError``).
"""

from __future__ import annotations

import os

from ._lib import ffi, lib

__all__ = ["check", "raise_errno"]


def raise_errno(rc: int) -> None:
    code = -rc
    msg = ffi.string(lib.dn_last_error()).decode(errors="replace")
    raise OSError(code, msg or os.strerror(code))


def check(rc: int) -> int:
    """Return rc if it is not an error, else raise the matching OSError."""
    if rc < 0:
        raise_errno(rc)
    return rc

