"""Stopping the processes a benchmark started."""

from __future__ import annotations

import subprocess


def stop_all(procs: list[subprocess.Popen[str]]) -> None:
    """SIGTERM the newest first (clients before their master), then wait."""
    for p in reversed(procs):
        if p.poll() is None:
            p.terminate()
    for p in reversed(procs):
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
