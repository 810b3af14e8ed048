"""The README's examples run as written, and its tables name what the code
has: every DOCKNET_* variable the library reads, every docknet command."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aiodocknet.cli.main import _parser
from dn_harness import Master

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def readme_files() -> dict[str, str]:
    """The code blocks that start with ``# file: NAME``."""
    files = {}
    for block in re.findall(r"```python\n(.*?)```", README, re.S):
        first, _, rest = block.partition("\n")
        m = re.fullmatch(r"# file: (\S+)", first)
        if m:
            files[m.group(1)] = block
    return files


def test_the_aiohttp_example_runs_as_written(master: Master, tmp_path: Path) -> None:
    files = readme_files()
    assert set(files) >= {"hello_server.py", "hello_client.py"}, set(files)
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    api = os.path.join(master.run_dir, "api.sock")
    docknet = [sys.executable, "-m", "aiodocknet.cli", "--api", api]
    env = {k: v for k, v in master.env.items() if not k.startswith("DOCKNET_")}
    server = subprocess.Popen([*docknet, "run", "--name", "hello", "--", sys.executable, "hello_server.py"],
                              cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            res = subprocess.run([*docknet, "run", "--name", "caller", "--", sys.executable, "hello_client.py"],
                                 cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
            if res.returncode == 0 or time.monotonic() > deadline or server.poll() is not None:
                break
            time.sleep(0.5)  # the server is not listening yet
        assert res.returncode == 0, (res, server.poll())
        assert res.stdout == "200 {'hello': 'DockNet'}\n", res
    finally:
        server.terminate()
        out, err = server.communicate(timeout=30)
    assert "Traceback" not in err, err


def test_the_environment_table_names_every_variable_the_code_reads() -> None:
    code = "\n".join(p.read_text() for p in (ROOT / "aiodocknet").rglob("*.py"))
    code += (ROOT / "native" / "build.py").read_text()
    # The stack reads some itself when it opens (native/stack/dn_stack.c).
    code += "\n".join(p.read_text() for p in (ROOT / "native").rglob("*.c"))
    used = set(re.findall(r"\bDOCKNET_[A-Z_]+\b", code))
    table = README[README.index("### Environment"):]
    table = table[:table.index("\n\n", table.index("|---"))]
    documented = set(re.findall(r"`(DOCKNET_[A-Z_]+)`", table))
    assert used <= documented, used - documented
    assert documented <= used, documented - used


def test_the_command_table_names_every_command() -> None:
    sub = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    table = README[README.index("### The `docknet` command"):]
    table = table[:table.index("\n\n", table.index("|---"))]
    documented = set(re.findall(r"^\| `([a-z]+)` \|", table, re.M))
    assert documented == set(sub.choices), documented ^ set(sub.choices)


@pytest.mark.parametrize("line", [
    "import aiodocknet; aiodocknet.aiohttp.DockNetConnector",
])
def test_the_one_line_client_works_after_a_bare_import(line: str) -> None:
    res = subprocess.run([sys.executable, "-c", line], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert res.returncode == 0, res.stderr
