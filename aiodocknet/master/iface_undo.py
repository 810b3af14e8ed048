"""What the uplink's port changes on its kernel interface, remembered so
that it is undone even when the master that changed it could not.

The PMDs turn the interface's promiscuous mode on, and the uplink puts it
back as it was when the port closes. A master killed with ``-9`` closes
nothing: the flag stays on, and the next master on that interface would
take "on" for how the interface was and leave it on for good. So before
the port opens, the interface's flag is written to ``RUN_DIR/uplink.json``
and the record is removed once the port has closed. A master that finds a
record for its interface knows its predecessor died with the port open,
and puts back the record's flag instead of the one it finds.

The record is input like any other: one that does not parse, or names
another interface, is ignored with a log line (the other interface is
left alone: another master may be using it now).
"""

from __future__ import annotations

import json
import os

from .. import validate
from ..log import get_logger
from .state import write_private
from .uplink import if_ioctl

__all__ = ["InterfaceUndo", "RECORD_FILE", "promiscuous"]

log = get_logger("aiodocknet.master.uplink")

RECORD_FILE = "uplink.json"
_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_PROMISC = 0x100


def _flags(iface: str) -> int | None:
    return if_ioctl(iface, _SIOCGIFFLAGS, "H")


def promiscuous(iface: str) -> bool | None:
    """The interface's IFF_PROMISC, or None if there is no such
    interface."""
    flags = _flags(iface)
    return None if flags is None else bool(flags & _IFF_PROMISC)


class InterfaceUndo:
    def __init__(self, run_dir: str) -> None:
        self.path = os.path.join(run_dir, RECORD_FILE)
        self.iface: str | None = None

    def _load(self) -> dict[str, object] | None:
        try:
            with open(self.path, encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, RecursionError) as exc:
            log.warning("uplink record unreadable, ignored", path=self.path, error=str(exc))
            return None
        try:
            if not isinstance(data, dict) or not isinstance(data.get("promisc_was"), bool):
                raise validate.ValidationError("not an object with a boolean promisc_was")
            validate.uplink_interface(data.get("iface"), "iface")
        except validate.ValidationError as exc:
            log.warning("uplink record malformed, ignored", path=self.path, error=str(exc))
            return None
        return data

    def begin(self, iface: str) -> int:
        """The promiscuous flag to put back when the port on iface closes
        (1 or 0; -1 when the interface cannot be asked), recorded before
        the port opens."""
        self.iface = iface
        old = self._load()
        if old is not None and old["iface"] == iface:
            was = bool(old["promisc_was"])
            log.warning("the last master on this interface stopped without undoing its changes; they are "
                        "undone when this one stops", iface=iface, promisc_was=was)
        else:
            if old is not None:
                log.warning("uplink record of another interface, left alone", iface=old["iface"], now=iface)
            now = promiscuous(iface)
            if now is None:
                return -1
            was = now
        self._save({"iface": iface, "promisc_was": was})
        return int(was)

    def _save(self, data: dict[str, object]) -> None:
        try:
            write_private(self.path, json.dumps(data))
        except OSError as exc:
            log.error("cannot record the uplink interface's state", path=self.path, error=str(exc))

    def done(self) -> None:
        """The port has closed (or never opened): the interface's flag is
        as recorded, put back here if the port did not get as far as
        doing it (a predecessor's flag on a port that failed to open), and
        the record goes."""
        if self.iface is None:
            return
        rec = self._load()
        if rec is None or rec["iface"] != self.iface:
            return  # none made by begin(), or another interface's: left alone
        if not rec["promisc_was"]:
            flags = _flags(self.iface)
            if flags is not None and flags & _IFF_PROMISC:
                if_ioctl(self.iface, _SIOCSIFFLAGS, "H", flags & ~_IFF_PROMISC)
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
