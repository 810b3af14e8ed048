"""The management API (RUN_DIR/api.sock) answers the host's administrators
only. The run directory is what containers mount to reach master.sock, so
anyone in a container can open api.sock; tried from an endpoint's network
namespace (one the test makes and registers, as a runtime registers a
container's), as root there, and as another user on the host: every route
answers 403 and nothing changes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest

from dn_harness import Master

PROBE = """
import json, sys
from aiodocknet.cli.api_client import ApiClient, ApiError
api = ApiClient(sys.argv[1])
out = []
for method, route, body in [("GET", "/v1/endpoints", None), ("GET", "/v1/status", None),
                            ("POST", "/v1/endpoints", {"name": "intruder", "netns": "/proc/1/ns/net"}),
                            ("DELETE", "/v1/endpoints/victim", None), ("GET", "/metrics", None),
                            ("GET", "/no/such/route", None)]:
    try:
        api.call(method, route, body)
        out.append([method, route, 200, ""])
    except ApiError as exc:
        out.append([method, route, exc.status, exc.message])
print(json.dumps(out))
"""


def probe(argv_prefix: list[str], api: str) -> list[list]:
    res = subprocess.run([*argv_prefix, sys.executable, "-c", PROBE, api], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


@pytest.fixture
def netns() -> str:
    name = f"dn-api-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    yield name
    subprocess.run(["ip", "netns", "del", name], check=False)


def test_a_container_root_cannot_use_the_api(master: Master, netns: str) -> None:
    """The namespace is an endpoint's, as a container's is once its runtime
    has registered it."""
    api = os.path.join(master.run_dir, "api.sock")
    reg = subprocess.run([sys.executable, "-m", "aiodocknet.cli", "--api", api, "attach", "--name", "box",
                          "--netns", f"/run/netns/{netns}"], capture_output=True, text=True)
    assert reg.returncode == 0, reg.stderr
    before = json.loads(subprocess.run([sys.executable, "-m", "aiodocknet.cli", "--api", api, "--json", "ps"],
                                       capture_output=True, text=True, check=True).stdout)
    answers = probe(["ip", "netns", "exec", netns], api)
    assert [a[2] for a in answers] == [403] * len(answers), answers
    assert all("root on the master's host" in a[3] for a in answers), answers
    after = json.loads(subprocess.run([sys.executable, "-m", "aiodocknet.cli", "--api", api, "--json", "ps"],
                                      capture_output=True, text=True, check=True).stdout)
    assert before == after and [e["name"] for e in after] == ["box"]


def test_another_user_on_the_host_cannot_use_the_api(master: Master) -> None:
    api = os.path.join(master.run_dir, "api.sock")
    os.chmod(api, 0o666)  # the socket's mode is not what keeps them out
    os.chmod(master.run_dir, 0o755)
    answers = probe(["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups"], api)
    assert [a[2] for a in answers] == [403] * len(answers), answers


def test_the_hosts_root_still_can(master: Master) -> None:
    answers = probe([], os.path.join(master.run_dir, "api.sock"))
    assert [a[2] for a in answers[:2]] == [200, 200], answers
