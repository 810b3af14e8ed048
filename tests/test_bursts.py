"""Bursts: how many bits may pass at once above a rate limit (the CNI
bandwidth capability's egressBurst/ingressBurst, the API's egress_burst and
ingress_burst), applied by the switch's token buckets and by the fast
channels' (native/switch/dn_limit.c). Counters, not clocks, tell whether
traffic waited."""

from __future__ import annotations

import os

from aiodocknet.cli.api_client import ApiClient
from aiodocknet.native.bucket import TokenBucket
from dn_harness import Master

JUMBO = 9018


def test_a_burst_given_is_the_bucket_s_and_never_below_two_jumbo_frames() -> None:
    assert TokenBucket(8 * 100_000, 0, 500_000).burst_bytes == 500_000
    assert TokenBucket(8 * 100_000, 0, 500_000).allowance(10**9) == 500_000
    # Less could never pass a jumbo frame.
    assert TokenBucket(8 * 100_000, 0, 100).burst_bytes == 2 * JUMBO
    # 0: 10 ms of the rate, as before.
    assert TokenBucket(8 * 100_000_000).burst_bytes == 1_000_000
    assert TokenBucket(8 * 100_000, 0, 10**30).burst_bytes == 10**12 // 8


def _counters(master: Master, name: str) -> dict[str, int]:
    eps = {e["name"]: e for e in master.status()["endpoints"]}
    return dict(eps[name]["counters"])


def test_traffic_within_the_burst_does_not_wait_and_beyond_it_does(master: Master) -> None:
    """Two clients limited to 1 Mbit/s egress through the switch send
    256 KiB each: the one allowed a 4 Mbit burst (512 KB) sends it at once,
    none of its frames delayed; the other, with the default burst (10 ms of
    the rate, raised to two jumbo frames), waits for tokens."""
    api = ApiClient(os.path.join(master.run_dir, "api.sock"))
    srv = master.peer("echo-server", "sink", "--port", "7500").expect("ready")
    clients = {}
    for name in ("roomy", "tight"):
        c = master.peer("echo-client", name, "--target", srv["address"], "--port", "7500",
                        "--bytes", str(256 << 10), "--cue", "--linger")
        c.expect("connected")
        clients[name] = c
    roomy = api.call("PUT", "/v1/endpoints/roomy/limit", {"egress": "1mbit", "egress_burst": "4mbit"})
    assert roomy["egress_bits"] == 1_000_000 and roomy["egress_burst_bits"] == 4_000_000, roomy
    tight = api.call("PUT", "/v1/endpoints/tight/limit", {"egress": "1mbit"})
    assert tight["egress_burst_bits"] == 0, tight
    for c in clients.values():
        c.send("go")
    for c in clients.values():
        assert c.expect("done", timeout=60)["ok"]
    assert _counters(master, "roomy")["egress_delayed"] == 0
    assert _counters(master, "tight")["egress_delayed"] > 0
