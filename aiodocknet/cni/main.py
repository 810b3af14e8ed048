"""The ``docknet-cni`` executable: environment and stdin in, one JSON
object (or nothing) on stdout, exit status 0 or 1. Whatever goes wrong is
a CNI error object, never a traceback."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from typing import Any, BinaryIO, TextIO

from .config import SUPPORTED_VERSIONS, parse_config, parse_env
from .errors import IO_FAILURE, INTERNAL, CniError

__all__ = ["main", "run"]


def _requested_version(data: bytes) -> str | None:
    try:
        conf = json.loads(data) if data.strip() else {}
    except (ValueError, RecursionError):
        return None
    value = conf.get("cniVersion") if isinstance(conf, dict) else None
    return value if isinstance(value, str) and len(value) <= 20 else None


def run(environ: Mapping[str, str], stdin: BinaryIO) -> tuple[int, dict[str, Any] | None]:
    from . import commands

    version = SUPPORTED_VERSIONS[-1]
    try:
        env = parse_env(environ)
        try:
            data = stdin.read()
        except OSError as exc:
            raise CniError(IO_FAILURE, "cannot read the network configuration from stdin", str(exc)) from None
        if env.command == "VERSION":
            return 0, commands.version(_requested_version(data))
        version = _requested_version(data) or version
        conf = parse_config(data, env.command)
        version = conf.cni_version
        if env.command == "ADD":
            return 0, commands.add(env, conf)
        if env.command == "DEL":
            commands.delete(env, conf)
        elif env.command == "CHECK":
            commands.check(env, conf)
        elif env.command == "STATUS":
            commands.status(conf)
        else:
            commands.gc(conf)
        return 0, None
    except CniError as exc:
        return 1, exc.to_json(version)
    except Exception as exc:  # noqa: BLE001 - a runtime must get an error object, whatever happened
        print(f"docknet-cni: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1, CniError(INTERNAL, "internal error in docknet-cni", f"{type(exc).__name__}: {exc}"[:300]
                           ).to_json(version)


def main(environ: Mapping[str, str] | None = None, stdin: BinaryIO | None = None,
         stdout: TextIO | None = None) -> int:
    rc, answer = run(os.environ if environ is None else environ, stdin or sys.stdin.buffer)
    out = stdout or sys.stdout
    if answer is not None:
        out.write(json.dumps(answer) + "\n")
        out.flush()
    return rc
