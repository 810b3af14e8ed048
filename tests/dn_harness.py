"""Real processes for the tests: a master and slave peers.

Every test that needs a master gets its own (its own run directory, so
tests never share state); slaves are ``tests/peer.py`` processes that print
JSON lines. Everything started is stopped at teardown, also on failure.
"""

from __future__ import annotations

import contextlib

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any


ROOT = Path(__file__).resolve().parent.parent
PEER = Path(__file__).resolve().parent / "peer.py"

def control_request(path: str, msg: dict[str, Any]) -> dict[str, Any]:
    from aiodocknet.control import request

    return request(path, msg)


def wait_for(what: Any, timeout: float = 5.0) -> Any:
    """what()'s first true value within timeout, else its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = what()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


class Proc:
    """A child process whose stdout is JSON lines."""

    def __init__(self, argv: list[str], env: dict[str, str], name: str) -> None:
        self.name = name
        # stderr goes to a file, not a pipe: a chatty process (a master logs
        # every attach) must never block on a pipe nobody reads.
        self._stderr = tempfile.TemporaryFile(mode="w+", prefix=f"dn-{name}-")
        self.popen = subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            cwd=ROOT,
        )
        self.lines: list[dict[str, Any]] = []
        self._partial = b""
        self.stderr_text = ""

    @property
    def pid(self) -> int:
        return self.popen.pid

    def expect(self, event: str, timeout: float = 30) -> dict[str, Any]:
        """Wait for the next line with this event (others are kept)."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self.lines:
                if line.get("event") == event:
                    self.lines.remove(line)
                    return line
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{self.name}: no {event!r} within {timeout}s; {self.stderr_tail()}")
            if self._read(left) < 0:
                raise AssertionError(
                    f"{self.name} exited ({self.popen.wait()}) before {event!r}: {self.stderr_tail()}"
                )

    def said(self, event: str) -> bool:
        """Whether a line with this event has been printed so far (reads
        what is waiting in the pipe first, without blocking)."""
        while self._read(0) > 0:
            pass
        return any(line.get("event") == event for line in self.lines)

    def _read(self, timeout: float) -> int:
        """Take in what arrives within ``timeout``: the bytes read (0 if
        none came), -1 at the end of the output."""
        assert self.popen.stdout is not None
        # Raw reads, split here: a buffered readline() could leave a
        # second line in its buffer where select() cannot see it.
        r, _, _ = select.select([self.popen.stdout], [], [], timeout)
        if not r:
            return 0
        chunk = os.read(self.popen.stdout.fileno(), 65536)
        if not chunk:
            return -1
        self._partial += chunk
        *complete, self._partial = self._partial.split(b"\n")
        self.lines.extend(json.loads(raw) for raw in complete if raw.strip())
        return len(chunk)

    def send(self, text: str) -> None:
        """A line on the child's stdin."""
        assert self.popen.stdin is not None
        self.popen.stdin.write(text + "\n")
        self.popen.stdin.flush()

    def stderr_tail(self) -> str:
        if not self._stderr.closed:
            self._stderr.seek(0)
            self.stderr_text = self._stderr.read()
        return self.stderr_text[-3000:]

    def wait(self, timeout: float = 60) -> int:
        return self.popen.wait(timeout)

    def kill(self, sig: int = signal.SIGTERM) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)

    def stop(self) -> None:
        self.kill()
        try:
            self.popen.wait(10)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
        self.stderr_tail()
        self._stderr.close()
        for f in (self.popen.stdin, self.popen.stdout):
            if f is not None:
                try:
                    f.close()
                except BrokenPipeError:
                    pass


class Master:
    """A `docknet master` process with its own run directory."""

    def __init__(self, run_dir: str, extra: list[str] | None = None) -> None:
        self.run_dir = run_dir
        self.path = os.path.join(run_dir, "master.sock")
        self.env = dict(os.environ, DOCKNET_MASTER=self.path, PYTHONUNBUFFERED="1")
        self.proc = Proc(
            [sys.executable, "-m", "aiodocknet.cli", "master", "--run-dir", run_dir, *(extra or [])],
            self.env,
            "master",
        )
        self.peers: list[Proc] = []
        deadline = time.monotonic() + 30
        while True:
            try:
                if control_request(self.path, {"op": "ping"}).get("ok"):
                    break
            except OSError:
                pass
            if self.proc.popen.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"master did not start: {self.proc.stderr_tail()}")
            time.sleep(0.01)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def status(self) -> dict[str, Any]:
        reply = control_request(self.path, {"op": "status"})
        assert reply["ok"], reply
        return reply

    def peer(self, role: str, name: str, *args: str) -> Proc:
        p = Proc([sys.executable, str(PEER), role, "--name", name, *args], self.env, name)
        self.peers.append(p)
        return p

    def stop_peers(self) -> None:
        for p in self.peers:
            p.stop()
        self.peers.clear()

    def stop(self) -> int:
        self.stop_peers()
        self.proc.kill()
        try:
            rc = self.proc.wait(20)
        finally:
            self.proc.stop()
        return rc


@contextlib.contextmanager
def running_master(prefix: str = "dn-test-", extra: list[str] | None = None) -> Iterator[Master]:
    """A master in a fresh run directory; stopped (and checked to exit
    cleanly) afterwards."""
    with tempfile.TemporaryDirectory(prefix=prefix) as run_dir:
        m = Master(run_dir, extra)
        try:
            yield m
        finally:
            rc = m.stop()
        assert rc == 0, f"master exited with {rc}: {m.proc.stderr_tail()}"


def self_signed(directory: str, name: str) -> tuple[str, str]:
    """A throw-away certificate and key for name (CN and subjectAltName)."""
    cert, key = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", f"/CN={name}", "-addext", f"subjectAltName=DNS:{name}", "-keyout", key, "-out", cert],
        check=True, capture_output=True,
    )
    return cert, key


def policy_drops(master: Master, name: str, at_least: int, timeout: float = 20) -> int:
    """Wait until the master has dropped ``at_least`` frames from endpoint
    ``name`` by policy: the positive sign that its traffic is refused."""
    deadline = time.monotonic() + timeout
    while True:
        eps = {e["name"]: e for e in master.status()["endpoints"]}
        drops = eps[name]["counters"]["drop_policy"] if name in eps else 0
        if drops >= at_least:
            return int(drops)
        assert time.monotonic() < deadline, f"{name}: {drops} policy drops, wanted {at_least}"
        time.sleep(0.05)
