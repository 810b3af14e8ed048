"""Fast channel rings between two real processes: integrity, back-pressure,
half-close, reset."""

from __future__ import annotations

import hashlib
import os
import select
import subprocess
import sys
import time

import pytest

from aiodocknet.native.fastchan import FastChannel, make_channel

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The far side: echoes everything back, then half-closes when it sees EOF.
ECHO = """
import os, select, sys
from aiodocknet.native.fastchan import FastChannel, FC_WRITABLE
memfd, mine, peer = (int(a) for a in sys.argv[1:4])
fc = FastChannel(memfd, 1, mine, peer)
pending = b""
eof = False
while True:
    progress = False
    if pending:
        n = fc.write(pending)
        pending = pending[n:]
        progress |= n > 0
    if not pending and not eof:
        data = fc.read()
        if data == b"":
            eof = True
            fc.shutdown()
        elif data:
            pending = data
            progress = True
    if eof and not pending:
        break
    if not progress and fc.arm() == 0:
        select.select([fc.fileno()], [], [], 1.0)
        fc.disarm()
fc.close()
"""


def spawn(script: str, memfd: int, efd1: int, efd0: int) -> subprocess.Popen[bytes]:
    """The child gets its own copies of the region and both eventfds."""
    return subprocess.Popen([sys.executable, "-c", script, str(memfd), str(efd1), str(efd0)],
                            pass_fds=(memfd, efd1, efd0), cwd=ROOT)


def wait(fc: FastChannel, timeout: float = 5.0) -> None:
    if fc.arm() == 0:
        select.select([fc.fileno()], [], [], timeout)
        fc.disarm()


def test_256_mib_each_way_through_an_echo_process() -> None:
    """256 MiB written through a 1 MiB ring to another process and echoed
    back: the digest of what came back is the digest of what was sent, and
    the echo side's half-close arrives as end of stream."""
    memfd, efd0, efd1 = make_channel(1 << 20)
    child = spawn(ECHO, memfd, efd1, efd0)
    fc = FastChannel(memfd, 0, efd0, efd1)
    try:
        block = os.urandom(1 << 20)
        total = 256 << 20
        sent = received = 0
        h_sent, h_recv = hashlib.sha256(), hashlib.sha256()
        out = memoryview(b"")
        start = time.monotonic()
        while received < total:
            progress = False
            if sent < total:
                if not out:
                    piece = hashlib.sha256(sent.to_bytes(8, "little")).digest() + block[32:]
                    h_sent.update(piece)
                    out = memoryview(piece)
                n = fc.write(out)
                out = out[n:]
                sent += n
                progress |= n > 0
                if sent == total:
                    fc.shutdown()
            data = fc.read()
            if data:
                h_recv.update(data)
                received += len(data)
                progress = True
            if not progress:
                wait(fc)
            assert time.monotonic() - start < 120, "transfer stalled"
        while (last := fc.read()) is None:
            wait(fc)
        assert last == b""
        assert h_recv.hexdigest() == h_sent.hexdigest()
    finally:
        fc.close()
        child.wait(10)
    assert child.returncode == 0


def test_back_pressure_half_close_and_reset_in_one_process() -> None:
    """Both sides in this process: a full ring takes nothing more until the
    reader drains it (then FC_WRITABLE), shutdown delivers what is queued and
    then end of stream, writes after shutdown fail, a reset reaches both."""
    from aiodocknet.native.fastchan import FC_READABLE, FC_WRITABLE

    memfd, efd0, efd1 = make_channel(4096)
    a = FastChannel(os.dup(memfd), 0, os.dup(efd0), os.dup(efd1))
    b = FastChannel(memfd, 1, efd1, efd0)
    try:
        assert a.write(b"x" * 10000) == 4096
        assert a.write(b"more") == 0
        assert a.queued() == (0, 4096)
        assert b.ready() & FC_READABLE
        assert b.read(1000) == b"x" * 1000
        assert a.ready() & FC_WRITABLE
        assert a.write(b"y" * 1000) == 1000
        a.shutdown()
        with pytest.raises(BrokenPipeError):
            a.write(b"z")
        got = b""
        while (d := b.read()) not in (None, b""):
            got += d
        assert got == b"x" * 3096 + b"y" * 1000
        assert b.read() == b""
        assert b.write(b"reply") == 5
        assert a.read() == b"reply"
        b.reset()
        with pytest.raises(ConnectionResetError):
            a.read()
        with pytest.raises(ConnectionResetError):
            b.write(b"after")
        assert select.select([a.fileno()], [], [], 0)[0]  # the reset rang
    finally:
        a.close()
        b.close()


def test_an_idle_reader_sleeps_and_is_woken() -> None:
    """A reader armed on an empty ring is woken by the writer's doorbell,
    not by polling."""
    memfd, efd0, efd1 = make_channel(4096)
    a = FastChannel(os.dup(memfd), 0, os.dup(efd0), os.dup(efd1))
    b = FastChannel(memfd, 1, efd1, efd0)
    try:
        assert b.arm() == 0
        assert not select.select([b.fileno()], [], [], 0)[0]
        a.write(b"wake up")
        assert select.select([b.fileno()], [], [], 1)[0]
        b.disarm()
        assert b.read() == b"wake up"
        a.write(b"no ring while awake")
        assert not select.select([b.fileno()], [], [], 0)[0]
    finally:
        a.close()
        b.close()
