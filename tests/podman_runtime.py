"""Real podman containers for the tests, isolated from the machine's podman.

``PodmanRuntime`` owns one temporary directory holding everything podman
keeps for it: storage (``--root``), state (``--runroot``, ``--tmpdir``), the
events log, its CNI config directory (conflists the test writes), a CNI
plugin directory searched before Debian's ``/usr/lib/cni``, host-local IPAM
leases, and a root filesystem for the containers. No image registry: every
container runs ``--rootfs`` on a directory tree of empty mount points and
symlinks, with the host's ``/usr``, the Python installation and the checkout
(with its ``.venv``) bind-mounted read-only at their own paths, so the venv
runs inside the container unchanged.

What this machine needed, and why (podman 4.3.1 from Debian bookworm):

- ``CONTAINERS_CONF`` / ``CONTAINERS_STORAGE_CONF`` pointing at files of our
  own: with them set podman reads no system-wide config, so nothing global
  changes what the test sees, and ``network_backend = "cni"``,
  ``cni_plugin_dirs`` and ``default_ulimits`` (which have no command-line
  flags) come from here.
- ``--runtime runc``: crun 1.8 refuses to start anything on a hybrid cgroup
  layout whose v2 root still holds a controller ("cgroups in hybrid mode not
  supported, drop all controllers from cgroupv2"); this VM has hugetlb there.
- ``--cgroup-manager cgroupfs``: PID 1 is not systemd.
- ``--events-backend file``: no journald.
- ``default_ulimits`` at or below the caller's limits: as root, podman asks
  for RLIMIT_NOFILE and RLIMIT_NPROC of 1048576 and more, and raising a hard
  limit needs CAP_SYS_RESOURCE, which root here lacks (EPERM from setrlimit in
  the OCI runtime).
- ``--rootfs`` on a directory of our own, not ``/``: with the host's ``/`` as
  the root filesystem, the runtime's tmpfs on ``/sys/fs/cgroup`` inside the
  new mount namespace hides the host's cgroup directories it then bind-mounts
  ("error mounting cgroup ... no such file or directory").
- ``--cgroup-parent`` of our own: podman's default ``/libpod_parent`` would be
  left in every cgroup hierarchy; ours is removed at close.
- storage driver ``vfs``: no overlay mounts to leak (``--rootfs`` uses no
  image layers anyway); ``log_driver = "k8s-file"``: no journald for
  ``podman logs``.
- ``--tmpfs /run --tmpfs /tmp`` per container, and ``/var/run`` in the root
  filesystem: the containers share one root filesystem, and DPDK's EAL puts
  its runtime directory in ``/var/run/dpdk``, named after the pid (small and
  equal in every container). Nothing else is needed for a DockNet process:
  podman's default capabilities and seccomp profile suffice, and with no
  hugetlbfs in the container the EAL runs with ``--no-huge``.

What podman 4.3 does with a CNI plugin (pinned by tests/test_podman.py):
``CNI_ARGS`` is ``IgnoreUnknown=1;K8S_POD_NAME=<container name>`` (plus
``IP=``/``MAC=`` from ``--network net:ip=...,mac=...``), never
``K8S_POD_NAMESPACE``; ``CNI_CONTAINERID`` is the full id, ``CNI_NETNS`` a
``/run/netns/netns-<uuid>`` podman made, ``CNI_IFNAME`` ``eth0``. The
conflist's own fields reach the plugin unchanged. ``runtimeConfig`` holds
only declared capabilities podman knows: ``aliases`` and ``portMappings``;
never ``bandwidth``. DEL comes when the container stops or exits (from the
``podman container cleanup`` conmon starts, whose environment is podman's
config variables only, so a plugin must find what it needs in its config),
on restart (then a new ADD with a new netns), and right after a failed ADD
(without prevResult); ``rm`` of a stopped container calls nothing. Every
podman command calls VERSION on every plugin of every conflist. No CHECK,
STATUS or GC (the libcni in podman 4.3 has no STATUS or GC). Conflists must
say ``cniVersion`` 1.0.0 (Debian's plugins refuse 1.1.0 and podman drops the
network), and every interface in a plugin's result needs a valid ``mac``
(else ``podman run`` fails: "invalid MAC address").

What stays outside our directory, and is cleaned at close: the network
namespaces podman creates in ``/run/netns`` (removed by podman when a
container stops), the bridges the ``bridge`` plugin creates (never removed by
it), and libcni's result cache in ``/var/lib/cni/results`` (podman 4.3 has no
setting for libcni's cache directory).
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SYSTEM_CNI_PLUGINS = "/usr/lib/cni"
CNI_CACHE = Path("/var/lib/cni/results")
CGROUP_ROOT = Path("/sys/fs/cgroup")
# Well above what a test needs, and below the RLIMIT_NPROC that podman's
# own processes end up with (conmon ran with a hard limit of 32768 here,
# lower than the caller's): the OCI runtime may only lower limits.
NPROC_LIMIT = 4096


RECORDER_PLUGIN = """#!{python}
import json, os, sys

text = sys.stdin.read()
conf = json.loads(text) if text.strip() else {{}}
call = {{"env": {{k: v for k, v in os.environ.items() if k.startswith("CNI_")}}, "config": conf}}
with open({log!r}, "a") as f:
    f.write(json.dumps(call) + "\\n")
command = os.environ.get("CNI_COMMAND")
if command == "VERSION":
    print(json.dumps({{"cniVersion": "1.0.0", "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0"]}}))
elif command == "ADD":
    print(json.dumps(conf.get("prevResult") or {{"cniVersion": conf.get("cniVersion", "1.0.0")}}))
"""


def recorded_calls(log: Path) -> list[dict[str, Any]]:
    """The calls a recorder plugin saw, oldest first."""
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines()]


class PodmanError(RuntimeError):
    """A podman command failed; the message carries its stderr."""


def podman_missing_reason() -> str | None:
    """Why podman containers cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "needs root (podman with CNI networks, bridges, network namespaces)"
    for tool in ("podman", "runc", "conmon"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (make bootstrap installs it)"
    for plugin in ("bridge", "host-local"):
        if not os.access(os.path.join(SYSTEM_CNI_PLUGINS, plugin), os.X_OK):
            return f"CNI plugin {plugin} missing in {SYSTEM_CNI_PLUGINS} (containernetworking-plugins)"
    return None


def _toml_list(items: list[str]) -> str:
    return "[" + ", ".join(json.dumps(i) for i in items) + "]"


def _ulimits() -> list[str]:
    _, nofile_hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    nofile = nofile_hard if nofile_hard != resource.RLIM_INFINITY else 1 << 20
    return [f"nofile={nofile}:{nofile}", f"nproc={NPROC_LIMIT}:{NPROC_LIMIT}"]


class PodmanRuntime:
    """One isolated podman: its own storage, state, CNI config and plugins."""

    def __init__(self, prefix: str = "dn-podman-") -> None:
        self.tag = secrets.token_hex(3)
        self.dir = Path(tempfile.mkdtemp(prefix=prefix))
        self.storage = self.dir / "root"
        self.state = self.dir / "runroot"
        self.tmp = self.dir / "tmp"
        self.cni_conf_dir = self.dir / "net.d"
        self.cni_plugin_dir = self.dir / "cni-bin"
        self.ipam_dir = self.dir / "ipam"
        self.rootfs = self.dir / "rootfs"
        self.cgroup_parent = f"/dn-podman-{self.tag}"
        self.networks: list[str] = []
        self.bridges: list[str] = []
        self.netns_seen: set[str] = set()
        for d in (self.storage, self.state, self.tmp, self.cni_conf_dir, self.cni_plugin_dir, self.ipam_dir):
            d.mkdir(parents=True)
        self._write_config()
        self._build_rootfs()
        self.env = dict(
            os.environ,
            CONTAINERS_CONF=str(self.dir / "containers.conf"),
            CONTAINERS_STORAGE_CONF=str(self.dir / "storage.conf"),
        )

    # -- setup -------------------------------------------------------------

    def _write_config(self) -> None:
        (self.dir / "containers.conf").write_text(
            "[containers]\n"
            f"default_ulimits = {_toml_list(_ulimits())}\n"
            'log_driver = "k8s-file"\n'
            'netns = "private"\n'
            "[network]\n"
            'network_backend = "cni"\n'
            f"cni_plugin_dirs = {_toml_list([str(self.cni_plugin_dir), SYSTEM_CNI_PLUGINS])}\n"
            f'network_config_dir = "{self.cni_conf_dir}"\n'
            # A name no conflist uses: podman then never writes its default
            # network's conflist into our directory.
            f'default_network = "dn-none-{self.tag}"\n'
            "[engine]\n"
            'cgroup_manager = "cgroupfs"\n'
            'events_logger = "file"\n'
            f'events_logfile_path = "{self.dir / "events.log"}"\n'
            f'tmp_dir = "{self.tmp}"\n'
            'runtime = "runc"\n'
        )
        (self.dir / "storage.conf").write_text(
            "[storage]\n"
            'driver = "vfs"\n'
            f'graphroot = "{self.storage}"\n'
            f'runroot = "{self.state}"\n'
        )

    def _build_rootfs(self) -> None:
        """Mount points and the merged-/usr symlinks; podman adds /etc/hosts,
        /etc/resolv.conf and /etc/hostname itself."""
        for d in ("usr", "etc", "proc", "sys", "dev", "tmp", "run", "var/tmp", "root"):
            (self.rootfs / d).mkdir(parents=True, exist_ok=True)
        # /var/run too: DPDK's EAL makes its runtime directory under it.
        for link in ("bin", "sbin", "lib", "lib64", "lib32", "var/run", "var/lock"):
            if os.path.islink(f"/{link}"):
                (self.rootfs / link).symlink_to(os.readlink(f"/{link}"))

    def host_mounts(self) -> list[str]:
        """Read-only bind mounts that let the checkout's venv python run in a
        container at the same paths: /usr, the base Python installation when
        it is elsewhere (pyenv), and the checkout."""
        import aiodocknet

        paths = ["/usr"]
        base = os.path.realpath(sys.base_prefix)
        if not base.startswith("/usr/"):
            paths.append(base)
        # The venv and the aiodocknet it imports, when they are not in this
        # checkout (tests run with another clone's venv).
        package_root = str(Path(aiodocknet.__file__).resolve().parent.parent)
        for path in (str(ROOT), sys.prefix, package_root):
            if not any(path == p or path.startswith(p + "/") for p in paths):
                paths.append(path)
        return [f"{p}:{p}:ro" for p in paths]

    # -- podman ------------------------------------------------------------

    def podman(self, *args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = [
            "podman",
            "--root", str(self.storage),
            "--runroot", str(self.state),
            "--tmpdir", str(self.tmp),
            "--runtime", "runc",
            "--cgroup-manager", "cgroupfs",
            "--events-backend", "file",
            "--network-config-dir", str(self.cni_conf_dir),
            *args,
        ]
        proc = subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise PodmanError(f"podman {' '.join(args)}: exit {proc.returncode}: {proc.stderr.strip()}")
        return proc

    def add_network(self, name: str, plugins: list[dict[str, Any]], cni_version: str = "1.0.0") -> Path:
        """Write a conflist into our CNI config directory. cniVersion 1.0.0:
        Debian's plugins (1.1.1) refuse 1.1.0, and podman then drops the
        whole network."""
        self.networks.append(name)
        # Any plugin naming a bridge makes it (bridge itself, or a plugin
        # installed under another type); none deletes it on DEL.
        self.bridges += [p["bridge"] for p in plugins if isinstance(p.get("bridge"), str)]
        path = self.cni_conf_dir / f"{name}.conflist"
        path.write_text(json.dumps({"cniVersion": cni_version, "name": name, "plugins": plugins}, indent=2))
        return path

    def bridge_plugin(self, bridge: str, subnet: str) -> dict[str, Any]:
        """Debian's bridge plugin on a bridge of the test's, with no address
        on the host side (isGateway false), no masquerade and no default
        route: traffic stays between the containers on it."""
        if len(bridge) > 15:
            raise ValueError(f"bridge name {bridge!r} is longer than an interface name may be")
        return {
            "type": "bridge",
            "bridge": bridge,
            "isGateway": False,
            "ipMasq": False,
            "ipam": {"type": "host-local", "dataDir": str(self.ipam_dir), "ranges": [[{"subnet": subnet}]]},
        }

    def install_plugin(self, executable: str, plugin_type: str | None = None) -> str:
        """Make an executable (e.g. the venv's ``docknet-cni``) a CNI plugin of
        ours, searched before Debian's; returns its ``type`` for a conflist."""
        plugin_type = plugin_type or os.path.basename(executable)
        (self.cni_plugin_dir / plugin_type).symlink_to(os.path.abspath(executable))
        return plugin_type

    def add_recorder_plugin(self, plugin_type: str) -> Path:
        """A CNI plugin in our plugin directory that appends every call (the
        CNI_* environment and the config on stdin) to a JSON-lines file and
        answers as a pass-through link of a chain: ADD returns prevResult,
        DEL and CHECK succeed. Returns the file's path."""
        log = self.dir / f"{plugin_type}-calls.jsonl"
        plugin = self.cni_plugin_dir / plugin_type
        plugin.write_text(RECORDER_PLUGIN.format(python=sys.executable, log=str(log)))
        plugin.chmod(0o755)
        return log

    def run(self, name: str, argv: list[str], network: str, detach: bool = True,
            mounts: list[str] | None = None, env: dict[str, str] | None = None,
            options: list[str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """podman run on our root filesystem; detached, stdout is the
        container's id; attached, its output. mounts are extra ``-v``
        specifications, env the container's extra environment, options any
        other ``podman run`` options."""
        # /run and /tmp of their own: the containers share one root
        # filesystem, and DPDK names its runtime directory in /run after the
        # pid, which is small and the same in every container.
        args = ["run", "--name", name, "--network", network, "--cgroup-parent", self.cgroup_parent,
                "--tmpfs", "/run", "--tmpfs", "/tmp"]
        for m in self.host_mounts() + (mounts or []):
            args += ["-v", m]
        for key, value in (env or {}).items():
            args += ["--env", f"{key}={value}"]
        args += options or []
        if detach:
            args.append("-d")
        # --rootfs is a switch: the first argument after the options is then
        # the root filesystem's path instead of an image.
        proc = self.podman(*args, "--rootfs", str(self.rootfs), *argv, timeout=timeout, check=False)
        self._note_netns(name)
        if proc.returncode != 0:
            raise PodmanError(f"podman run {name}: exit {proc.returncode}: {proc.stderr.strip()}\n"
                              f"{self.logs(name)}")
        return proc

    def inspect(self, name: str) -> dict[str, Any]:
        return json.loads(self.podman("container", "inspect", name).stdout)[0]

    def address(self, name: str, network: str) -> str:
        return self.inspect(name)["NetworkSettings"]["Networks"][network]["IPAddress"]

    def logs(self, name: str) -> str:
        proc = self.podman("logs", name, check=False)
        return proc.stdout + proc.stderr

    def wait_for_output(self, name: str, text: str, timeout: float = 30) -> str:
        """The container's logs once they contain text; PodmanError with the
        logs if it exits or the time runs out first."""
        deadline = time.monotonic() + timeout
        while True:
            out = self.logs(name)
            if text in out:
                return out
            state = self.inspect(name)["State"]
            if not state.get("Running") or time.monotonic() > deadline:
                raise PodmanError(f"{name} never printed {text!r} (state {state.get('Status')}, "
                                  f"exit {state.get('ExitCode')}):\n{out}")
            time.sleep(0.1)

    def remove(self, name: str) -> None:
        self.podman("rm", "--force", "--time", "0", name)

    def _note_netns(self, name: str) -> None:
        proc = self.podman("container", "inspect", "--format", "{{.NetworkSettings.SandboxKey}}", name, check=False)
        key = proc.stdout.strip()
        if proc.returncode == 0 and key.startswith("/run/netns/"):
            self.netns_seen.add(key)

    # -- cleanup -----------------------------------------------------------

    def _our_mounts(self) -> list[str]:
        mounts = []
        with open("/proc/self/mountinfo") as f:
            for line in f:
                target = line.split()[4]
                if target.startswith(str(self.dir) + "/") or target in self.netns_seen:
                    mounts.append(target)
        return mounts

    def _our_cgroups(self) -> list[Path]:
        return [p for p in CGROUP_ROOT.glob(f"*{self.cgroup_parent}") if p.is_dir()]

    def _our_cni_cache(self) -> list[Path]:
        if not CNI_CACHE.is_dir():
            return []
        return [p for n in self.networks for p in CNI_CACHE.glob(f"{n}-*")]

    def _links(self) -> set[str]:
        return {os.path.basename(p) for p in Path("/sys/class/net").iterdir()}

    def leftovers(self) -> dict[str, list[str]]:
        """Everything of ours still on the machine (empty after close)."""
        found = {
            "bridges": sorted(set(self.bridges) & self._links()),
            "netns": sorted(n for n in self.netns_seen if os.path.exists(n)),
            "mounts": self._our_mounts(),
            "cgroups": [str(p) for p in self._our_cgroups()],
            "cni_cache": [str(p) for p in self._our_cni_cache()],
            "dir": [str(self.dir)] if self.dir.exists() else [],
        }
        return {k: v for k, v in found.items() if v}

    def close(self) -> None:
        """Remove every container (podman's teardown calls CNI DEL and
        deletes the network namespace), then whatever podman and the plugins
        leave: bridges, cached CNI results, cgroups, mounts, our directory."""
        if self.dir.exists():
            self.podman("rm", "--all", "--force", "--time", "0", timeout=120, check=False)
        for bridge in set(self.bridges) & self._links():
            subprocess.run(["ip", "link", "del", bridge], capture_output=True)
        for ns in self.netns_seen:
            if os.path.exists(ns):
                subprocess.run(["umount", "-l", ns], capture_output=True)
                with contextlib.suppress(OSError):
                    os.unlink(ns)
        for path in self._our_cni_cache():
            with contextlib.suppress(OSError):
                path.unlink()
        for cg in self._our_cgroups():
            for d in sorted((p for p in cg.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)) + [cg]:
                with contextlib.suppress(OSError):
                    d.rmdir()
        for target in sorted(self._our_mounts(), key=len, reverse=True):
            subprocess.run(["umount", "-l", target], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> PodmanRuntime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

