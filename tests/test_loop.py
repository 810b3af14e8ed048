"""DockNetLoop's public surface and its fall-back to plain uvloop."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap

import pytest
import uvloop

import aiodocknet

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A kernel-only program: a server on 127.0.0.1, a client, a unix socket, a
# subprocess and a signal, all under DockNetLoop. It never names a DockNet
# address, so with DockNet off nothing can leave the machine.
KERNEL_PROGRAM = textwrap.dedent(
    """
    import asyncio, os, signal, sys, tempfile
    import aiodocknet

    async def main():
        loop = asyncio.get_running_loop()
        assert type(loop).__name__ == "DockNetLoop"
        async def echo(r, w):
            w.write(await r.read(100)); await w.drain(); w.close()
        srv = await asyncio.start_server(echo, "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(b"tcp"); assert await r.read(100) == b"tcp"; w.close()
        path = os.path.join(tempfile.mkdtemp(), "s")
        usrv = await asyncio.start_unix_server(echo, path)
        r, w = await asyncio.open_unix_connection(path)
        w.write(b"unix"); assert await r.read(100) == b"unix"; w.close()
        proc = await asyncio.create_subprocess_exec(sys.executable, "-c", "print('sub')",
                                                    stdout=asyncio.subprocess.PIPE)
        assert (await proc.communicate())[0] == b"sub\\n"
        got = loop.create_future()
        loop.add_signal_handler(signal.SIGUSR1, got.set_result, "sig")
        os.kill(os.getpid(), signal.SIGUSR1)
        assert await asyncio.wait_for(got, 5) == "sig"
        srv.close(); usrv.close()
        return "ok"

    print(aiodocknet.run(main()))
    """
)


def run_program(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", KERNEL_PROGRAM], env=env, capture_output=True,
                          text=True, timeout=60, cwd=ROOT)


def test_disabled_by_environment_is_plain_uvloop() -> None:
    env = dict(os.environ, DOCKNET_DISABLE="1", DOCKNET_MASTER="/nonexistent/master.sock")
    res = run_program(env)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "ok"
    assert res.stderr.count("docknet off") == 1
    assert "DOCKNET_DISABLE=1" in res.stderr


def test_no_master_is_plain_uvloop_with_the_reason(tmp_path) -> None:
    sock = str(tmp_path / "no-master.sock")
    env = dict(os.environ, DOCKNET_MASTER=sock)
    env.pop("DOCKNET_DISABLE", None)
    res = run_program(env)
    assert res.returncode == 0, res.stderr
    assert res.stderr.count("docknet off") == 1
    assert sock in res.stderr


def test_run_and_new_event_loop() -> None:
    async def main() -> str:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, aiodocknet.DockNetLoop)
        assert isinstance(loop, uvloop.Loop)
        return "done"

    assert aiodocknet.run(main()) == "done"
    loop = aiodocknet.new_event_loop()
    try:
        assert isinstance(loop, aiodocknet.DockNetLoop)
    finally:
        loop.close()
    with pytest.raises(RuntimeError):
        async def nested() -> None:
            coro = main()
            try:
                aiodocknet.run(coro)
            finally:
                coro.close()
        aiodocknet.run(nested())


def test_policy_and_install() -> None:
    old = asyncio.get_event_loop_policy()
    try:
        asyncio.set_event_loop_policy(aiodocknet.DockNetPolicy())
        loop = asyncio.new_event_loop()
        assert isinstance(loop, aiodocknet.DockNetLoop)
        loop.close()
        asyncio.set_event_loop_policy(None)
        aiodocknet.install()
        loop = asyncio.new_event_loop()
        assert isinstance(loop, aiodocknet.DockNetLoop)
        loop.close()
    finally:
        asyncio.set_event_loop_policy(old)


REQUIRED_PROGRAM = textwrap.dedent(
    """
    import asyncio, os, sys
    import aiodocknet

    async def main():
        # A wildcard listener is served on the endpoint too: it attaches.
        srv = await asyncio.start_server(lambda r, w: None, "0.0.0.0", 0)
        srv.close()
        print("main ran")

    aiodocknet.run(main(), require=sys.argv[1] == "arg")
    """
)


@pytest.mark.parametrize("how", ["env", "arg"])
def test_required_docknet_without_a_master_stops_with_one_line(tmp_path, how: str) -> None:
    """DOCKNET_REQUIRE=1, or run(require=True): no master means the program
    stops before main runs, non-zero, with one line naming the socket and
    what to do; not a traceback, not plain uvloop."""
    sock = str(tmp_path / "no-master.sock")
    env = dict(os.environ, DOCKNET_MASTER=sock)
    env.pop("DOCKNET_DISABLE", None)
    if how == "env":
        env["DOCKNET_REQUIRE"] = "1"
    res = subprocess.run([sys.executable, "-c", REQUIRED_PROGRAM, how], env=env, capture_output=True,
                         text=True, timeout=60, cwd=ROOT)
    assert res.returncode != 0
    assert res.stdout == ""
    lines = res.stderr.splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("aiodocknet: cannot attach to DockNet: ") and sock in lines[0], lines
    assert "DOCKNET_MASTER" in lines[0], lines  # the fix: the variable that chose the path


def test_fallback_warns_once_with_the_reason_and_the_fix(tmp_path) -> None:
    """Without DOCKNET_REQUIRE the program runs on plain uvloop, and says so
    once, at warning level, with the fix: a container without the
    master's run directory mounted is told to mount it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKNET_")}
    # The default path, as in a container with nothing mounted: a run
    # directory with no master in it.
    env["DOCKNET_RUN_DIR"] = str(tmp_path)
    res = subprocess.run([sys.executable, "-c", REQUIRED_PROGRAM, "no"], env=env, capture_output=True,
                         text=True, timeout=60, cwd=ROOT)
    assert res.returncode == 0 and res.stdout == "main ran\n", res
    warnings = [line for line in res.stderr.splitlines() if "docknet off" in line]
    assert len(warnings) == 1 and "warning" in warnings[0], res.stderr
    assert "fix=" in warnings[0] and str(tmp_path) in warnings[0], warnings
