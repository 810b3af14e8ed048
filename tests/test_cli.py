"""``docknet`` as `ip`/`docker` users expect: global options before or after
the command, ``--json`` on every command and its errors, one confirmation
line for each change, and bad input answered in one line, never with a
traceback. Against a real master where the command talks to one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dn_harness import Master  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
NO_MASTER = "/nonexistent/api.sock"


def docknet(*args: str, api: str | None = NO_MASTER, stdin: str | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "aiodocknet.cli", *(["--api", api] if api else []), *args]
    return subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=60, input=stdin,
                          env=env if env is not None else dict(os.environ))


def api_of(master: Master) -> str:
    return os.path.join(master.run_dir, "api.sock")


def assert_one_line_error(res: subprocess.CompletedProcess[str], as_json: bool) -> str:
    assert res.returncode != 0, res
    assert "Traceback" not in res.stderr + res.stdout, res
    if as_json:
        assert res.stderr == "", res
        lines = res.stdout.splitlines()
        assert len(lines) == 1, res
        err = json.loads(lines[0])
        assert isinstance(err["error"], str) and err["error"], err
        return str(err["error"])
    assert res.stdout == "", res
    lines = res.stderr.splitlines()
    assert len(lines) == 1, res
    assert lines[0].startswith("docknet"), res
    return lines[0]


# Each subcommand, given what a user could mistype: a bad name (one with a
# space, '/', '!', or 64 characters), a bad rate, a missing or extra
# argument, an option the command does not have.
BAD = [
    ["ps", "extra"],
    ["stats", "--nope"],
    ["ss"],
    ["ss", "bad name!"],
    ["ss", "a/../../v1/policy"],
    ["policy"],
    ["policy", "allow", "a"],
    ["policy", "allow", "a b", "c"],
    ["policy", "allow", "a", "b", "--port", "70000"],
    ["policy", "maybe", "a", "b"],
    ["limit"],
    ["limit", "x" * 64],
    ["limit", "api", "--egress", "fast"],
    ["limit", "api", "--egress", "99999999gbit"],
    ["limit", "api", "--egress-pps", "-1pps"],
    ["run", "--name", "bad name!", "--", "true"],
    ["run", "--name", "ok"],
    ["attach", "--name", "ok"],
    ["attach", "--name", "ok", "--netns", "/etc/passwd"],
    ["detach"],
    ["detach", "--name", "bad name!"],
    ["master", "--mtu", "50", "--check-config"],
    ["master", "--subnet", "foo"],
    ["master", "--mtu", "many"],
    ["master", "status", "--nope"],
    ["demo", "--users", "lots"],
    ["bench", "--slow"],
    ["--log-level", "foo", "ps"],
    ["ps", "--log-format", "xml"],
    ["nosuch"],
    [],
]


@pytest.mark.parametrize("argv", BAD, ids=lambda a: " ".join(a) or "(nothing)")
@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_bad_input_gets_one_line_and_a_non_zero_status(argv: list[str], as_json: bool) -> None:
    # --json after the command, as a user would add it last; before the
    # command when there is none.
    args = [*argv, "--json"] if as_json and argv else (["--json"] if as_json else [])
    if as_json and argv and argv[0] == "run" and "--" in argv:
        args = ["--json", *argv]
    assert_one_line_error(docknet(*args), as_json)


def test_no_master_is_one_line_for_every_api_command() -> None:
    for argv in (["ps"], ["stats"], ["ss", "api"], ["policy", "ls"], ["limit", "api"],
                 ["detach", "--name", "api"], ["master", "status"]):
        line = assert_one_line_error(docknet(*argv), False)
        assert "no DockNet master API at /nonexistent/api.sock" in line
        err = assert_one_line_error(docknet(*argv, "--json"), True)
        assert "no DockNet master API" in err


def test_global_options_before_or_after_the_command(master: Master) -> None:
    api = api_of(master)
    before = docknet("--json", "ps", api=api)
    after = subprocess.run([sys.executable, "-m", "aiodocknet.cli", "ps", "--json", "--api", api],
                           capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert before.returncode == after.returncode == 0, (before, after)
    assert json.loads(before.stdout) == json.loads(after.stdout) == []
    # A value given before the command is not reset by the command's parser.
    kept = docknet("--json", "policy", "ls", api=api)
    assert kept.returncode == 0 and json.loads(kept.stdout) == []


def test_every_change_confirms_in_one_line(master: Master) -> None:
    api = api_of(master)
    netns = f"/proc/{os.getpid()}/ns/net"
    att = docknet("attach", "--name", "svc", "--netns", netns, "--tenant", "ta", "--rate", "100mbit", api=api)
    assert att.returncode == 0, att
    env = dict(line.split("=", 1) for line in att.stdout.splitlines())
    assert env["DOCKNET_ENDPOINT"] == "svc" and env["DOCKNET_SECRET"]

    att_json = docknet("--json", "attach", "--name", "svc2", "--netns", netns, "--tenant", "tb", api=api)
    assert att_json.returncode == 0, att_json
    value = json.loads(att_json.stdout)
    assert value["env"]["DOCKNET_ENDPOINT"] == "svc2" and value["env"]["DOCKNET_SECRET"]

    allow = docknet("policy", "allow", "ta", "tb", "--port", "80", api=api)
    assert allow.stdout.splitlines() == ["allowed ta -> tb port 80"], allow
    ls = docknet("policy", "ls", "--json", api=api)
    assert json.loads(ls.stdout) == [{"from": "ta", "to": "tb", "port": 80}]
    deny = docknet("policy", "deny", "ta", "tb", "--port", "80", api=api)
    assert deny.stdout.splitlines() == ["denied ta -> tb port 80"], deny
    assert json.loads(docknet("policy", "ls", "--json", api=api).stdout) == []
    assert docknet("policy", "ls", api=api).stdout.splitlines() == ["no rules: tenants reach only themselves"]

    lim = docknet("limit", "svc", "--egress", "1.5gbit", "--ingress-pps", "20kpps", api=api)
    assert lim.stdout.splitlines() == ["svc: egress 1.5gbit, ingress unlimited, egress unlimited, ingress 20kpps"], lim
    shown = docknet("limit", "svc", api=api)
    assert shown.returncode == 0 and shown.stdout == lim.stdout, shown
    shown_json = json.loads(docknet("limit", "svc", "--json", api=api).stdout)
    assert shown_json == {"name": "svc", "egress_bits": 1_500_000_000, "ingress_bits": 0, "egress_pkts": 0,
                          "ingress_pkts": 20_000, "egress_burst_bits": 0, "ingress_burst_bits": 0}
    burst = docknet("limit", "svc", "--egress-burst", "2mbit", api=api)
    assert burst.stdout.splitlines() == ["svc: egress 1.5gbit, ingress unlimited, egress unlimited, ingress 20kpps, "
                                         "egress burst 2,000,000 bits"], burst
    bad = docknet("limit", "svc", "--ingress-burst", "-1", api=api)
    assert bad.returncode != 0 and "--ingress-burst" in bad.stderr, bad

    ps = docknet("ps", api=api).stdout.splitlines()
    row = next(line for line in ps if line.startswith("svc "))
    assert "1.5gbit" in row and "20kpps" in row and row.split()[-1] == "cli", ps

    det = docknet("detach", "--name", "svc", api=api)
    assert det.stdout.splitlines() == ["detached svc"], det
    gone = docknet("limit", "svc", api=api)
    assert_one_line_error(gone, False)


def test_a_closed_pipe_ends_quietly(master: Master) -> None:
    api = api_of(master)
    for i in range(3):
        res = docknet("attach", "--name", f"e{i}", "--netns", f"/proc/{os.getpid()}/ns/net", api=api)
        assert res.returncode == 0, res
    # The reader is gone before docknet writes its first line (as `head`
    # is, once it has its lines, for a longer listing).
    cmd = (f"{sys.executable} -m aiodocknet.cli --api {api} ps | true; "
           "echo ${PIPESTATUS[0]}")
    res = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert res.stdout.strip() == "0", res
    assert res.stderr == "", res


def test_children_log_as_the_cli_was_asked(master: Master) -> None:
    """`docknet --log-format json run` hands its format and level to the
    command it runs, which logs through aiodocknet's structlog set-up."""
    code = ("from aiodocknet.log import get_logger; get_logger('child').warning('hello', n=1); "
            "get_logger('child').debug('hidden')")
    res = docknet("--log-format", "json", "--log-level", "warning", "run", "--name", "child", "--",
                  sys.executable, "-c", code, api=api_of(master))
    assert res.returncode == 0, res
    lines = [json.loads(line) for line in res.stderr.splitlines() if line.startswith("{")]
    assert [(e["event"], e["n"], e["level"]) for e in lines] == [("hello", 1, "warning")], res.stderr


def test_a_stale_namespace_from_a_crash_is_replaced(master: Master) -> None:
    """`docknet run` names its namespace after the endpoint; one left by a
    run that was killed (no process in it) must not block the next run,
    while one still in use must not be taken over."""
    api = api_of(master)
    first = docknet("run", "--name", "again", "--", "ip", "netns", "identify", api=api)
    assert first.returncode == 0, first
    ns = first.stdout.strip()
    assert ns.startswith("dn-again-"), first
    subprocess.run(["ip", "netns", "add", ns], check=True)  # what a killed run leaves
    try:
        again = docknet("run", "--name", "again", "--", "true", api=api)
        assert again.returncode == 0, again
        assert not os.path.exists(f"/run/netns/{ns}")
        subprocess.run(["ip", "netns", "add", ns], check=True)
        holder = subprocess.Popen(["ip", "netns", "exec", ns, "sleep", "60"])
        try:
            busy = docknet("run", "--name", "again", "--", "true", api=api)
            line = assert_one_line_error(busy, False)
            assert "in use" in line, line
            assert holder.poll() is None
        finally:
            holder.kill()
            holder.wait()
    finally:
        if os.path.exists(f"/run/netns/{ns}"):
            subprocess.run(["ip", "netns", "del", ns], check=False)


def test_an_orderly_stop_logs_nothing_alarming(master: Master, tmp_path: Path) -> None:
    """A service under `docknet run` stopped with SIGTERM, as an operator
    stops it: neither it nor docknet logs a warning or an error (it once
    logged "bad control message ... Connection reset by peer")."""
    import signal
    import time

    (tmp_path / "srv.py").write_text(
        "import asyncio, aiodocknet\n"
        "async def main():\n"
        "    await asyncio.start_server(lambda r, w: None, '0.0.0.0', 7600)\n"
        "    print('ready', flush=True)\n"
        "    await asyncio.sleep(3600)\n"
        "aiodocknet.run(main())\n")
    argv = [sys.executable, "-m", "aiodocknet.cli", "--api", api_of(master), "--log-format", "json",
            "run", "--name", "calm", "--", sys.executable, str(tmp_path / "srv.py")]
    p = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        time.sleep(0.2)  # serving, not starting
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
    events = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert [e for e in events if e.get("level") in ("warning", "error", "critical")] == [], err
    assert "Traceback" not in err, err
    assert [e["event"] for e in events] == ["attached"], err
