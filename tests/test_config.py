"""The master's TOML configuration and `docknet master --check-config`."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

from aiodocknet.cli.api_client import ApiClient
from dn_harness import ROOT, Master


def check(text: str) -> subprocess.CompletedProcess[str]:
    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
        f.write(text)
    try:
        return subprocess.run([sys.executable, "-m", "aiodocknet.cli", "master", "--config", f.name,
                               "--check-config"], capture_output=True, text=True, cwd=ROOT, timeout=30)
    finally:
        os.unlink(f.name)


def test_check_config_explains_errors_with_the_line() -> None:
    ok = check('subnet = "10.80.0.0/16"\nrange = "10.80.3.0/24"\n[defaults]\negress = "200mbit"\n'
               '[[policy]]\nfrom = "web"\nto = "db"\nport = 5432\n')
    assert ok.returncode == 0 and "configuration is valid" in ok.stderr
    assert '"subnet6": "fd77:d0c::/64"' in ok.stdout  # the default
    off = check('subnet6 = "none"\n')
    assert off.returncode == 0 and '"subnet6": null' in off.stdout, off
    cases = {
        'subnet = "10.77.0.0/16"\nmtu = 100000\n': ":2: mtu: must be a whole number from 576 to 9000",
        'subnet = "10.77.0.0/33"\n': ":1: subnet:",
        'subnet = "10.77.0.0/16"\nrange = "10.99.1.0/24"\n': ":2: range: 10.99.1.0/24 is not inside",
        'colour = "blue"\n': ":1: colour: unknown key",
        '[defaults]\negress = "quick"\n': ":2: defaults.egress: not a rate",
        '[[policy]]\nfrom = "a"\n': "policy rule 1 needs 'from' and 'to'",
        'subnet = "unterminated\n': "line 1",
        'fast_channels = "yes"\n': ":1: fast_channels: must be true or false",
        'mtu = 9000\nfast_channel_ring = "3MiB"\n': ":2: fast_channel_ring: 3145728 bytes is not a power of two",
        'fast_channel_ring = "huge"\n': ":1: fast_channel_ring: not a size",
        'mtu = 9000\nsubnet6 = "fd77:d0c::/100"\n': ":2: subnet6: prefix length /100 is not from /64 to /96",
    }
    for text, expected in cases.items():
        res = check(text)
        assert res.returncode == 2, (text, res.stderr)
        assert expected in res.stderr, (text, res.stderr)


def test_master_runs_with_a_config_file(tmp_path) -> None:
    cfg = tmp_path / "master.toml"
    cfg.write_text('subnet = "10.77.0.0/16"\nrange = "10.77.5.0/24"\nfast_channel_ring = "256KiB"\n'
                   '[defaults]\negress = "300mbit"\n'
                   '[[policy]]\nfrom = "web"\nto = "db"\nport = 5432\n')
    m = Master(str(tmp_path / "run"), ["--config", str(cfg)])
    try:
        api = ApiClient(os.path.join(m.run_dir, "api.sock"))
        st = api.call("GET", "/v1/status")
        assert st["range"] == "10.77.5.0/24" and st["gateway"] == "10.77.5.1"
        # The host's share of the IPv6 prefix is the same host parts.
        assert st["subnet6"] == "fd77:d0c::/64" and st["gateway6"] == "fd77:d0c::501"
        assert st["fast_channels"]["ring_size"] == 256 * 1024
        assert api.call("GET", "/v1/policy") == [{"from": "web", "to": "db", "port": 5432}]
        addr = m.peer("idle", "svc").expect("ready")["address"]
        assert addr.startswith("10.77.5.")
        assert api.call("GET", "/v1/endpoints/svc")["address6"] == f"fd77:d0c::5{int(addr.split('.')[3]):02x}"
        assert api.call("GET", "/v1/endpoints/svc")["egress_bits"] == 300_000_000
    finally:
        assert m.stop() == 0
