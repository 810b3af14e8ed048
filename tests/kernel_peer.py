"""A kernel TCP peer for the tests (plain blocking sockets, run inside a
namespace the test made): prints JSON lines as tests/peer.py does.

    python tests/kernel_peer.py sink-server --bind ADDR --port N
    python tests/kernel_peer.py stream-client --target ADDR --port N --bytes N

The sink reads one connection to its end, answers with its byte count and
SHA-256 and closes; the client streams pseudo-random bytes, shuts down
writing, reads the answer.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import socket
import time
from typing import Any

MIB = 1 << 20


def say(**kw: Any) -> None:
    print(json.dumps(kw), flush=True)


def sink_server(args: argparse.Namespace) -> None:
    with socket.create_server((args.bind, args.port)) as ls:
        say(event="ready", address=args.bind, port=args.port)
        conn, peer = ls.accept()
        with conn:
            h = hashlib.sha256()
            total = 0
            buf = bytearray(MIB)
            while True:
                n = conn.recv_into(buf)
                if n == 0:
                    break
                h.update(memoryview(buf)[:n])
                total += n
            say(event="eof", bytes=total, sha256=h.hexdigest(), peer=list(peer))
            conn.sendall(json.dumps({"bytes": total, "sha256": h.hexdigest()}).encode())


def stream_client(args: argparse.Namespace) -> None:
    with socket.create_connection((args.target, args.port), timeout=args.timeout) as s:
        say(event="connected", sockname=list(s.getsockname()))
        h = hashlib.sha256()
        block = os.urandom(MIB)
        start = time.monotonic()
        for i, off in enumerate(range(0, args.bytes, MIB)):
            piece = (hashlib.sha256(i.to_bytes(8, "little")).digest() + block[32:])[: args.bytes - off]
            h.update(piece)
            s.sendall(piece)
        s.shutdown(socket.SHUT_WR)
        answer = bytearray()
        while chunk := s.recv(65536):
            answer += chunk
        say(event="done", sent_sha256=h.hexdigest(), seconds=round(time.monotonic() - start, 3),
            answer=json.loads(bytes(answer) or b"null"))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("role", choices=["sink-server", "stream-client"])
    p.add_argument("--bind", default="0.0.0.0")
    p.add_argument("--target")
    p.add_argument("--port", type=int, default=7000)
    p.add_argument("--bytes", type=int, default=MIB)
    p.add_argument("--timeout", type=float, default=60)
    args = p.parse_args()
    (sink_server if args.role == "sink-server" else stream_client)(args)


if __name__ == "__main__":
    main()
