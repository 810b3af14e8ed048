"""TCP flow control through the switch, lwIP against lwIP: a receiver that
stops reading closes its window; the sender holds its data (no loss, no
reset) and probes; when the receiver reads again, even if the window
update that says so is lost, the stream completes intact."""

from __future__ import annotations

import os
import time

import pytest

from aiodocknet.cli.api_client import ApiClient
from dn_harness import Master, wait_for

MiB = 1 << 20
# Several times what lwIP's window and send buffer hold (lwipopts.h: 512
# KiB each), so the sender is left holding most of it while the window is
# shut.
STREAM = 8 * MiB


@pytest.fixture
def master(switch_master: Master) -> Master:
    return switch_master


def counters(api: ApiClient, name: str) -> dict[str, int]:
    return api.call("GET", f"/v1/endpoints/{name}")["counters"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("lose_update", [False, True], ids=["window-update-delivered", "window-update-lost"])
def test_zero_window_holds_the_stream_and_recovers(master: Master, lose_update: bool) -> None:
    api = ApiClient(os.path.join(master.run_dir, "api.sock"))
    srv = master.peer("echo-server", "srv", "--sink", "--hold-reads")
    addr = srv.expect("ready")["address"]
    cli = master.peer("stream", "cli", "--target", addr, "--bytes", str(STREAM), "--timeout", "60",
                      "--linger")
    cli.expect("connected")
    # The window shuts: what the client has got through the switch stops
    # at about the receiver's window, far short of the stream.
    sent = wait_for(lambda: (b := counters(api, "cli")["rx_bytes"]) > 256 * 1024 and b, timeout=10)
    assert sent
    stalled = wait_for(lambda: (a := counters(api, "cli")["rx_bytes"],
                                time.sleep(0.5), a == counters(api, "cli")["rx_bytes"])[2], timeout=15)
    assert stalled, "the sender never stopped: the receive window did not close"
    held = counters(api, "cli")["rx_bytes"]
    assert held < STREAM // 4, held
    assert counters(api, "srv")["drop_ring_full"] == 0
    if lose_update:
        # The next frame towards the sender (the window update, or a
        # probe's answer) is lost: only the sender's persist timer can
        # find the window open again.
        api.call("PUT", "/v1/endpoints/cli/faults", {"drop_next": 1})
    srv.send("go")
    srv.expect("reading")
    done = cli.expect("done", timeout=60)
    assert done["error"] == "" and done["eof"], done
    assert done["answer"] == {"bytes": STREAM, "sha256": done["sent_sha256"]}, done
    if lose_update:
        assert counters(api, "cli")["fault_dropped"] == 1
    cli.send("bye")
    assert cli.wait(30) == 0
