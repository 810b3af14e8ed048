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
