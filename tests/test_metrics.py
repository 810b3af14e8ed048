"""/metrics as Prometheus users expect it, parsed by prometheus_client's
own parser: HELP and TYPE on every family, base units, counters named
``_total``, one family per quantity told apart by labels, and an
endpoint's fast-channel bytes counted (and kept after its channels close)
beside its switch bytes; /v1/stats and `docknet stats` give the same
numbers."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as text_fd_to_metric_families

from aiodocknet.cli.api_client import ApiClient
from dn_harness import Master, Proc, running_master, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (DPDK, hugepages)")

ROOT = Path(__file__).resolve().parent.parent
FC_PEER = Path(__file__).resolve().parent / "fc_peer.py"
# Non-base units and unit-less byte counts the old exposition had.
NOT_BASE_UNITS = ("_ns", "_ms", "_us", "_kb", "_mb", "_mib", "_memory")


@pytest.fixture(scope="module")
def master() -> Iterator[Master]:
    with running_master("dn-metrics-") as m:
        yield m


def fc_proc(master: Master, name: str, *args: str) -> Proc:
    p = Proc([sys.executable, str(FC_PEER), *args], dict(master.env, DOCKNET_ENDPOINT=name), name)
    master.peers.append(p)
    return p


def scrape(master: Master) -> dict[str, Any]:
    import http.client
    import socket

    conn = http.client.HTTPConnection("docknet")
    conn.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.sock.connect(os.path.join(master.run_dir, "api.sock"))
    # What Prometheus 2 sends.
    conn.request("GET", "/metrics", headers={"Accept": "application/openmetrics-text;version=1.0.0,"
                                                       "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"})
    resp = conn.getresponse()
    body = resp.read().decode()
    conn.close()
    assert resp.status == 200
    # Negotiated: OpenMetrics, which is what the scraper asked for first.
    assert resp.headers["Content-Type"].startswith("application/openmetrics-text; version=1.0.0"), resp.headers
    assert body.endswith("# EOF\n")
    return {f.name: f for f in text_fd_to_metric_families(body)}


def sample(families: dict[str, Any], family: str, **labels: str) -> float:
    values = [s.value for s in families[family].samples
              if s.name.endswith("_total") or families[family].type != "counter"
              if all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(values) == 1, (family, labels, families[family].samples)
    return float(values[0])


def test_every_family_is_named_and_described_as_prometheus_asks(master: Master) -> None:
    srv = fc_proc(master, "m-web", "server", "--port", "7000").expect("ready", timeout=60)
    assert srv
    families = scrape(master)
    assert families
    for name, f in families.items():
        assert name.startswith("docknet_"), name
        assert f.documentation and f.documentation[0].isupper(), (name, f.documentation)
        assert f.type in ("counter", "gauge"), (name, f.type)
        assert not name.endswith(NOT_BASE_UNITS), name
        if "bytes" in name:
            assert name.endswith("_bytes"), name
        if "seconds" in name:
            assert name.endswith("_seconds"), name
        for s in f.samples:
            if f.type == "counter":
                assert s.name in (f"{name}_total", f"{name}_created"), s.name
            if name.startswith("docknet_endpoint_"):
                assert {"endpoint", "tenant"} <= set(s.labels), s
    # One family with a reason label, not one family per reason.
    reasons = {s.labels["reason"] for s in families["docknet_endpoint_dropped_frames"].samples
               if s.labels["endpoint"] == "m-web"}
    assert {"ring_full", "no_route", "spoofed", "malformed", "policy"} <= reasons, reasons
    assert not any(n.startswith("docknet_endpoint_drop_") for n in families)
    paths = {(s.labels["direction"], s.labels["path"]) for s in families["docknet_endpoint_bytes"].samples
             if s.labels["endpoint"] == "m-web"}
    assert paths == {(d, p) for d in ("transmit", "receive") for p in ("switch", "fast", "peer")}
    # Both addresses, on the one info series per endpoint (not on traffic).
    row = next(e for e in master.status()["endpoints"] if e["name"] == "m-web")
    assert row["address6"].startswith("fd77:d0c::")
    assert sample(families, "docknet_endpoint_info", endpoint="m-web", address=row["address"],
                  address6=row["address6"]) == 1
    assert "address6" not in families["docknet_endpoint_bytes"].samples[0].labels


def test_fast_channel_bytes_are_counted_per_endpoint_and_kept_after_close(master: Master) -> None:
    """A client sends "echo\\nhello\\n" (11 bytes) over a fast channel and
    gets "hello\\n" (6) back, then closes the connection and stays
    attached: both endpoints' fast bytes are exactly those, after the
    channel is gone, in /metrics, /v1/stats and `docknet stats`."""
    srv = fc_proc(master, "m-srv", "server", "--port", "7001").expect("ready", timeout=60)
    cli = fc_proc(master, "m-cli", "client", "--host", srv["address"], "--port", "7001", "twice")
    assert cli.expect("first", timeout=60)["echoed"] == "hello\n"
    api = ApiClient(os.path.join(master.run_dir, "api.sock"))
    assert wait_for(lambda: not any("m-cli" in (c["client"], c["server"]) for c in api.call("GET", "/v1/channels")))

    families = scrape(master)
    want = {("m-cli", "transmit"): 11, ("m-cli", "receive"): 6, ("m-srv", "transmit"): 6, ("m-srv", "receive"): 11}
    for (ep, direction), n in want.items():
        assert sample(families, "docknet_endpoint_bytes", endpoint=ep, direction=direction, path="fast") == n
    # One write each way: the client's "echo\nhello\n", the echo's "hello\n".
    for (ep, direction), n in {("m-cli", "transmit"): 1, ("m-cli", "receive"): 1, ("m-srv", "transmit"): 1,
                               ("m-srv", "receive"): 1}.items():
        assert sample(families, "docknet_endpoint_fast_writes", endpoint=ep, direction=direction) == n
    stats = api.call("GET", "/v1/stats")["endpoints"]
    assert (stats["m-cli"]["fast_tx_writes"], stats["m-cli"]["fast_rx_writes"]) == (1, 1)
    assert (stats["m-cli"]["fast_tx_bytes"], stats["m-cli"]["fast_rx_bytes"]) == (11, 6)
    assert (stats["m-srv"]["fast_tx_bytes"], stats["m-srv"]["fast_rx_bytes"]) == (6, 11)
    # The switch path's bytes are in the same family, from the switch's
    # counters seen from the endpoint (its transmit is the switch's rx).
    assert sample(families, "docknet_endpoint_bytes", endpoint="m-cli", direction="transmit", path="switch") == \
        stats["m-cli"]["rx_bytes"]
    out = subprocess.run([sys.executable, "-m", "aiodocknet.cli", "--api", api.path, "stats"],
                         capture_output=True, text=True, cwd=ROOT, timeout=60)
    row = next(line.split() for line in out.stdout.splitlines() if line.startswith("m-cli "))
    header = next(line for line in out.stdout.splitlines() if line.startswith("ENDPOINT"))
    assert "FAST TX BYTES" in header
    assert row[5:7] == ["11", "6"], out.stdout
    cli.send("go")
    cli.expect("result", timeout=60)


def test_the_grafana_dashboard_asks_for_metrics_the_master_has(master: Master) -> None:
    """deploy/grafana-dashboard.json's queries name only series /metrics
    has (a renamed family would leave a panel empty)."""
    import json
    import re

    dash = json.loads((ROOT / "deploy" / "grafana-dashboard.json").read_text())
    fc_proc(master, "m-dash", "server", "--port", "7002").expect("ready", timeout=60)
    families = scrape(master)
    series = {s.name for f in families.values() for s in f.samples}
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    exprs += [v["query"] for v in dash["templating"]["list"] if v["type"] == "query"]
    named = {n for e in exprs for n in re.findall(r"docknet_\w+", e)}
    assert len(named) >= 8
    assert named <= series, named - series
