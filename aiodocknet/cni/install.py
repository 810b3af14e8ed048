"""``docknet cni install``: the plugin where runtimes look for it, and an
example network.

The executable is a two-line launcher for this Python installation (the
runtime runs it by its file name, ``type`` in the configuration); the
network is a conflist with DockNet chained after the ``bridge`` plugin, so
a container keeps a kernel interface for everything that is not DockNet.
A file that is already there with other contents is left alone unless
``force``: it may be an operator's.

The conflist sets ``disableCheck``: the ``bridge`` plugin's CHECK (Debian's
1.1.1) wants every address of the final result on its own interface, so
any chain that adds an address after it fails CHECK there.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import tempfile

from ..control import DEFAULT_RUN_DIR

__all__ = ["PLUGIN", "CONFLIST", "install", "launcher", "example_conflist", "InstallError"]

PLUGIN = "docknet-cni"
# Late in the directory's order: runtimes that take the first network as
# their default must not find DockNet's first.
CONFLIST = "90-docknet.conflist"


class InstallError(Exception):
    pass


def launcher(python: str = sys.executable) -> str:
    # -I: neither the runtime's environment (PYTHONPATH) nor its working
    # directory may change what the plugin imports.
    return f"#!/bin/sh\nexec {shlex.quote(python)} -I -m aiodocknet.cni \"$@\"\n"


def example_conflist(run_dir: str = DEFAULT_RUN_DIR) -> str:
    conf = {
        "cniVersion": "1.0.0",
        "name": "docknet",
        "disableCheck": True,
        "plugins": [
            {"type": "bridge", "bridge": "docknet-br0", "isGateway": True, "ipMasq": True,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.89.77.0/24"}]],
                      "routes": [{"dst": "0.0.0.0/0"}]}},
            {"type": PLUGIN, "runDir": run_dir, "capabilities": {"bandwidth": True}},
        ],
    }
    return json.dumps(conf, indent=2) + "\n"


def _write(path: str, text: str, mode: int, force: bool) -> str:
    """'written', 'unchanged' or 'replaced'; InstallError for a different
    file without force."""
    try:
        with open(path, encoding="utf-8") as f:
            old: str | None = f.read()
    except FileNotFoundError:
        old = None
    except (OSError, UnicodeDecodeError) as exc:
        if not force:
            raise InstallError(f"{path} exists and cannot be read ({exc}): --force replaces it") from None
        old = ""
    if old == text:
        os.chmod(path, mode)
        return "unchanged"
    if old is not None and not force:
        raise InstallError(f"{path} exists with other contents: --force replaces it")
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return "written" if old is None else "replaced"


def install(bin_dir: str, conf_dir: str, run_dir: str = DEFAULT_RUN_DIR, force: bool = False) -> list[str]:
    """Lines saying what was done with each file. Both files are checked
    before either is written."""
    plan = [(os.path.join(bin_dir, PLUGIN), launcher(), 0o755),
            (os.path.join(conf_dir, CONFLIST), example_conflist(run_dir), 0o644)]
    if not force:
        for path, text, _ in plan:
            try:
                with open(path, encoding="utf-8") as f:
                    same = f.read() == text
            except FileNotFoundError:
                continue
            except (OSError, UnicodeDecodeError):
                same = False
            if not same:
                raise InstallError(f"{path} exists with other contents: --force replaces it")
    return [f"{path}: {_write(path, text, mode, force)}" for path, text, mode in plan]
