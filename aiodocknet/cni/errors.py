"""CNI error objects: what a plugin prints on stdout when it fails."""

from __future__ import annotations

from typing import Any

__all__ = ["CniError", "INCOMPATIBLE_VERSION", "UNSUPPORTED_FIELD", "UNKNOWN_CONTAINER", "INVALID_ENV",
           "IO_FAILURE", "DECODE_FAILURE", "INVALID_CONFIG", "TRY_AGAIN", "NOT_AVAILABLE", "MASTER_REFUSED",
           "CHECK_FAILED", "INTERNAL"]

# The spec's reserved codes (SPEC.md, "Error").
INCOMPATIBLE_VERSION = 1
UNSUPPORTED_FIELD = 2
UNKNOWN_CONTAINER = 3
INVALID_ENV = 4
IO_FAILURE = 5
DECODE_FAILURE = 6
INVALID_CONFIG = 7
TRY_AGAIN = 11
NOT_AVAILABLE = 50
# DockNet's own (100 and above are the plugin's): the master refused a
# request for a reason that is neither the configuration nor transient, e.g.
# the endpoint's name is taken.
MASTER_REFUSED = 100
# CHECK found the endpoint missing or not as ADD left it.
CHECK_FAILED = 101
# A bug in the plugin: said as an error object, never as a traceback.
INTERNAL = 102


class CniError(Exception):
    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.details = details

    def to_json(self, cni_version: str) -> dict[str, Any]:
        return {"cniVersion": cni_version, "code": self.code, "msg": self.msg, "details": self.details}
