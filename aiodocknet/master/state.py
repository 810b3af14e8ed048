"""What a master keeps across a restart: ``RUN_DIR/state.json``.

Services outlive their master: when it is killed and started again on the
same run directory they re-attach by themselves (see
``DockNetLoop._dn_master_lost``). For that to give them back what they had,
the new master needs what the old one knew: the registrations (namespace,
secret, tenant, limits), the policy between tenants, and which address each
attached endpoint had, which it holds for that endpoint for a while so that
no newcomer takes it first.

The file holds secrets: it is written 0600, atomically (a crash while
writing leaves the old file). Whatever it says is checked again on load,
like any other input: a registration whose namespace is gone, or an entry
that does not parse, is skipped with a log line.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

from ..log import get_logger

__all__ = ["MasterState", "STATE_FILE", "write_private"]

log = get_logger("aiodocknet.master")

STATE_FILE = "state.json"
VERSION = 1


class MasterState:
    def __init__(self, run_dir: str) -> None:
        self.run_dir = run_dir
        self.path = os.path.join(run_dir, STATE_FILE)

    def load(self) -> dict[str, Any]:
        """The last saved state, or an empty one (none yet, unreadable, or
        of another version: said in the log)."""
        try:
            with open(self.path, encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, RecursionError) as exc:
            log.warning("master state unreadable, starting afresh", path=self.path, error=str(exc))
            return {}
        if not isinstance(data, dict) or data.get("version") != VERSION:
            log.warning("master state of another version, starting afresh", path=self.path)
            return {}
        return data

    def save(self, state: dict[str, Any]) -> None:
        try:
            write_private(self.path, json.dumps({"version": VERSION, **state}, separators=(",", ":")))
        except OSError as exc:
            log.error("cannot save the master's state", path=self.path, error=str(exc))


def write_private(path: str, text: str) -> None:
    """Replaces path's contents with text atomically (a crash leaves the
    old file), readable by the owner only (mkstemp's 0600)."""
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + "-", dir=os.path.dirname(path))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
