"""``docknet cni install``: the plugin where runtimes look for it, and an
example network.

The executable (the runtime runs it by its file name, ``type`` in the
configuration) is a zip application: the plugin's modules, which use
Python's standard library only, behind a ``#!`` line naming the node's
Python (``--python``, default ``/usr/bin/python3``, 3.11 or newer). A node
needs no aiodocknet installation, no DPDK and no virtualenv for it: runtimes
run plugins on the node, outside any container. The network is a conflist
with DockNet chained after the ``bridge`` plugin, so a container keeps a
kernel interface for everything that is not DockNet.
A file that is already there with other contents is left alone unless
``force``: it may be an operator's.

The conflist sets ``disableCheck``: the ``bridge`` plugin's CHECK (Debian's
1.1.1) wants every address of the final result on its own interface, so
any chain that adds an address after it fails CHECK there.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
from pathlib import Path

from ..control import DEFAULT_RUN_DIR

__all__ = ["PLUGIN", "CONFLIST", "NODE_PYTHON", "install", "plugin_zipapp", "example_conflist", "InstallError"]

PLUGIN = "docknet-cni"
# Late in the directory's order: runtimes that take the first network as
# their default must not find DockNet's first.
CONFLIST = "90-docknet.conflist"


class InstallError(Exception):
    pass


NODE_PYTHON = "/usr/bin/python3"
PACKAGE = Path(__file__).resolve().parent.parent
# What the plugin imports (tests/test_cni.py checks the list is whole).
PLUGIN_MODULES = ["__init__.py", "control.py", "rates.py", "validate.py", "cli/api_client.py",
                  "master/__init__.py", "master/addresses.py",
                  *(f"cni/{p.name}" for p in sorted((PACKAGE / "cni").glob("*.py")) if p.name != "install.py")]
_MAIN = b"import sys\nfrom aiodocknet.cni.main import main\nsys.exit(main())\n"


def plugin_zipapp(python: str = NODE_PYTHON) -> bytes:
    """The plugin as one executable file: a #! line, then a zip of its
    modules (as zipapp makes them; fixed timestamps, so the same package
    gives the same bytes and a second install finds the file unchanged)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        def add(name: str, data: bytes) -> None:
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            z.writestr(info, data)

        add("__main__.py", _MAIN)
        add("aiodocknet/cli/__init__.py", b"")
        for rel in PLUGIN_MODULES:
            add(f"aiodocknet/{rel}", (PACKAGE / rel).read_bytes())
    return f"#!{python} -I\n".encode() + buf.getvalue()


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


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def _write(path: str, data: bytes, mode: int, force: bool) -> str:
    """'written', 'unchanged' or 'replaced'; InstallError for a different
    file without force."""
    try:
        old = _read(path)
    except OSError as exc:
        if not force:
            raise InstallError(f"{path} exists and cannot be read ({exc.strerror}): --force replaces it") from None
        old = b""
    if old == data:
        os.chmod(path, mode)
        return "unchanged"
    if old is not None and not force:
        raise InstallError(f"{path} exists with other contents: --force replaces it")
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return "written" if old is None else "replaced"


def install(bin_dir: str, conf_dir: str, run_dir: str = DEFAULT_RUN_DIR, force: bool = False,
            python: str = NODE_PYTHON) -> list[str]:
    """Lines saying what was done with each file. Both files are checked
    before either is written."""
    if not os.path.isabs(python):
        raise InstallError(f"--python: {python!r} is not an absolute path (the #! line of the plugin)")
    plan = [(os.path.join(bin_dir, PLUGIN), plugin_zipapp(python), 0o755),
            (os.path.join(conf_dir, CONFLIST), example_conflist(run_dir).encode(), 0o644)]
    if not force:
        for path, data, _ in plan:
            try:
                old = _read(path)
            except OSError:
                old = b""
            if old is not None and old != data:
                raise InstallError(f"{path} exists with other contents: --force replaces it")
    return [f"{path}: {_write(path, data, mode, force)}" for path, data, mode in plan]
