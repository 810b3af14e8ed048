"""A hostile endpoint: it attaches like a slave, then does to the shared
memory it was given what a buggy or malicious process could. JSON lines on
stdout, like tests/peer.py.

    python tests/hostile_peer.py link --name N [--seconds S]
        Maps its link, marks it attached, tries to shrink and grow the
        memory, punches the pages out, then scribbles random bytes over the
        ring positions and rings while ringing the master's eventfd.
    python tests/hostile_peer.py fastchan --name N --target A --port P [--seconds S]
        Asks the master for a fast channel to A:P (as a DockNetLoop would),
        writes the start of a proper stream to the peer, then tries to
        resize the channel's memory and scribbles over its header (ring
        size, positions, flags) and rings, ringing the peer each time.

Both print {"event": "done", ...} with what each attempt answered (an errno
name, or "allowed").
"""

from __future__ import annotations

import argparse
import ctypes
import errno
import json
import mmap
import os
import random
import socket
import struct
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from aiodocknet.control import default_master_path, recv_message, send_message  # noqa: E402
from aiodocknet.native.stack import request_attach  # noqa: E402

PAGE = 4096
# dn_linkmem.h: the positions page follows the doorbell page; the two
# rings' positions take two cache lines each, then slave_attached.
LINK_ATTACHED = PAGE + 256
# dn_fastchan.c's region header: ring[s] starts at 64 + 256 * s with head,
# then tail one cache line on.
FC_RING = (64, 320)
FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE = 0x01, 0x02


def say(event: str, **kw: Any) -> None:
    print(json.dumps({"event": event, **kw}), flush=True)


def attempt(fn: Any, *args: Any) -> str:
    try:
        fn(*args)
    except OSError as exc:
        return errno.errorcode.get(exc.errno or 0, str(exc))
    return "allowed"


def punch(fd: int, size: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
    if libc.fallocate(fd, FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, 0, size) < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def ring(efd: int) -> None:
    try:
        os.eventfd_write(efd, 1)
    except BlockingIOError:
        pass  # counter saturated: the peer is woken anyway


def scribble(mem: mmap.mmap, rng: random.Random, spots: list[int], size: int, efd: int, seconds: float) -> int:
    """Random positions and bytes until seconds have passed; returns how
    many rounds rang the peer."""
    rounds = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for off in spots:
            value = rng.choice([0, 1, 2**31, 2**32 - 1, 2**63, 2**64 - 1, rng.getrandbits(64)])
            struct.pack_into("<Q", mem, off, value)
        for _ in range(16):
            off = rng.randrange(0, size - 8)
            struct.pack_into("<Q", mem, off, rng.getrandbits(64))
        ring(efd)
        rounds += 1
        time.sleep(0.001)
    return rounds


def attack_link(args: argparse.Namespace) -> None:
    control, info, (link, _wake, master_wake) = request_attach(args.name, default_master_path())
    size = os.fstat(link).st_size
    mem = mmap.mmap(link, size)
    struct.pack_into("<I", mem, LINK_ATTACHED, 1)
    say("attached", address=info.address, size=size)
    shrink = attempt(os.ftruncate, link, 0)
    grow = attempt(os.ftruncate, link, size * 2)
    ring(master_wake)
    holes = attempt(punch, link, size)
    ring(master_wake)
    spots = [PAGE, PAGE + 64, PAGE + 128, PAGE + 192]  # both rings' head and tail
    rounds = scribble(mem, random.Random(args.seed), spots, size, master_wake, args.seconds)
    say("done", shrink=shrink, grow=grow, punch=holes, rounds=rounds)
    mem.close()
    control.close()


def attack_fastchan(args: argparse.Namespace) -> None:
    control, info, (link, _wake, _master_wake) = request_attach(args.name, default_master_path())
    os.close(link)
    send_message(control, {"op": "fc_connect", "req": 1, "address": args.target, "port": args.port})
    control.settimeout(10)
    while True:
        msg, fds = recv_message(control)
        if msg is None:
            raise SystemExit("master closed the connection")
        if msg.get("event") == "fc_result":
            break
        for fd in fds:
            os.close(fd)
    if not msg.get("ok"):
        raise SystemExit(f"no fast channel: {msg}")
    memfd, _mine, peer_wake = fds
    size = os.fstat(memfd).st_size
    mem = mmap.mmap(memfd, size)
    # A proper start, so the peer's server has a connection to lose: the
    # command line of tests/fc_peer.py's echo mode, on ring 0 (side 0 is
    # the connecting side).
    hello = b"echo\nhello\n"
    data0 = PAGE
    mem[data0 : data0 + len(hello)] = hello
    struct.pack_into("<Q", mem, FC_RING[0], len(hello))
    ring(peer_wake)
    time.sleep(0.2)
    say("connected", size=size)
    shrink = attempt(os.ftruncate, memfd, 0)
    grow = attempt(os.ftruncate, memfd, size * 2)
    ring(peer_wake)
    # Everything in the header: magic, ring size, flags, both rings'
    # positions; then the rest of the page at random.
    spots = [0, FC_RING[0], FC_RING[0] + 64, FC_RING[1], FC_RING[1] + 64]
    rounds = scribble(mem, random.Random(args.seed), spots, PAGE, peer_wake, args.seconds)
    say("done", shrink=shrink, grow=grow, rounds=rounds)
    mem.close()
    control.close()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("attack", choices=["link", "fastchan"])
    p.add_argument("--name", required=True)
    p.add_argument("--target")
    p.add_argument("--port", type=int, default=7000)
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    socket.setdefaulttimeout(30)
    (attack_link if args.attack == "link" else attack_fastchan)(args)


if __name__ == "__main__":
    main()
