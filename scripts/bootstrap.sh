#!/usr/bin/env bash
# Sets up everything aiodocknet needs on a Debian bookworm machine, and does
# nothing that is already done: Debian packages (DPDK 22.11, build tools,
# iproute2), lwIP 2.1.3 sources from Debian's source package, hugepages
# (when root), the virtualenv in .venv and the package with its native
# extension and its test and bench extras (pytest, matplotlib), reinstalled
# only when native sources or pyproject.toml change.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${DOCKNET_VENV:-$ROOT/.venv}
BUILD=$ROOT/build
PYTHON=${PYTHON:-python3}
HUGEPAGES_WANTED=${DOCKNET_HUGEPAGES:-1024}

say() { printf 'bootstrap: %s\n' "$*" >&2; }

# Other users of the machine may hold apt's locks for a while: wait.
APT=(apt-get -o DPkg::Lock::Timeout=600)

as_root() {
	if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
		say "need root for: $*"; return 1; fi
}

# clang and its compiler-rt (libFuzzer, ASan, UBSan) build the fuzz
# harnesses (fuzz/build.sh); llvm gives the sanitizers' symbolizer.
# containernetworking-plugins (below): the kernel CNI plugins (bridge,
# ptp, host-local; /usr/lib/cni) that docknet-cni is chained after.
DEB_PACKAGES=(libdpdk-dev libbpf-dev pkg-config gcc make dpkg-dev xz-utils iproute2
	iputils-ping procps psmisc openssl curl clang libclang-rt-14-dev llvm)
# Podman 4.3 with its CNI backend runs the container tests (tests/test_podman.py).
# runc, not crun: crun 1.8 refuses a hybrid cgroup layout whose v2 root still
# holds a controller (hugetlb on this kind of VM). Without recommends: the
# rootless helpers (slirp4netns, uidmap, fuse-overlayfs) are not used as root.
CONTAINER_PACKAGES=(podman runc conmon containernetworking-plugins)

missing=()
for p in "${DEB_PACKAGES[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
container_missing=()
for p in "${CONTAINER_PACKAGES[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || container_missing+=("$p")
done

enable_deb_src() {
	if grep -rqsE '^(Types:.*deb-src|deb-src )' /etc/apt/sources.list /etc/apt/sources.list.d/; then
		return 1
	fi
	say "enabling deb-src entries (for apt-get source lwip)"
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -e "$f" ] && as_root sed -i -E 's/^Types: deb$/Types: deb deb-src/' "$f"
	done
	if [ -f /etc/apt/sources.list ] && grep -qE '^deb ' /etc/apt/sources.list; then
		grep -E '^deb ' /etc/apt/sources.list | sed 's/^deb /deb-src /' |
			as_root tee -a /etc/apt/sources.list >/dev/null
	fi
	return 0
}

need_lwip=0
[ -f "$BUILD/lwip/src/core/tcp.c" ] || need_lwip=1

updated=0
if [ "$need_lwip" = 1 ] && enable_deb_src; then
	as_root "${APT[@]}" update -q >/dev/null
	updated=1
fi
if [ "${#missing[@]}" -gt 0 ]; then
	say "installing Debian packages: ${missing[*]}"
	[ "$updated" = 1 ] || as_root "${APT[@]}" update -q >/dev/null
	updated=1
	as_root env DEBIAN_FRONTEND=noninteractive "${APT[@]}" install -y -q "${missing[@]}" >/dev/null
fi
if [ "${#container_missing[@]}" -gt 0 ]; then
	say "installing container runtime packages: ${container_missing[*]}"
	[ "$updated" = 1 ] || as_root "${APT[@]}" update -q >/dev/null
	updated=1
	as_root env DEBIAN_FRONTEND=noninteractive "${APT[@]}" install -y -q --no-install-recommends \
		"${container_missing[@]}" >/dev/null
fi

if [ "$need_lwip" = 1 ]; then
	say "fetching lwIP sources (Debian source package)"
	[ "$updated" = 1 ] || as_root "${APT[@]}" update -q >/dev/null
	mkdir -p "$BUILD/lwip-src"
	(cd "$BUILD/lwip-src" && apt-get source -q lwip >/dev/null 2>&1) || {
		say "apt-get source lwip failed: are deb-src entries enabled?"; exit 1; }
	src=$(find "$BUILD/lwip-src" -maxdepth 1 -type d -name 'lwip-2.1.3*' | head -n 1)
	[ -n "$src" ] || { say "lwIP 2.1.3 source tree not found after apt-get source"; exit 1; }
	ln -sfn "$src" "$BUILD/lwip"
fi

# Hugepages make DPDK faster; without them everything runs with --no-huge.
if [ "$(id -u)" -eq 0 ] && [ -d /sys/kernel/mm/hugepages/hugepages-2048kB ]; then
	nr=/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages
	if [ "$(cat $nr)" -lt "$HUGEPAGES_WANTED" ]; then
		echo "$HUGEPAGES_WANTED" >"$nr" 2>/dev/null || true
		say "hugepages reserved: $(cat $nr) x 2 MiB"
	fi
	mkdir -p /dev/hugepages
	if ! grep -qs ' /dev/hugepages hugetlbfs ' /proc/mounts; then
		mount -t hugetlbfs nodev /dev/hugepages 2>/dev/null ||
			say "cannot mount hugetlbfs; DPDK will run with --no-huge"
	fi
else
	say "not root: no hugepages, DPDK will run with --no-huge"
fi

if [ ! -x "$VENV/bin/python" ]; then
	say "creating virtualenv $VENV"
	"$PYTHON" -m venv "$VENV"
	"$VENV/bin/pip" install -q --upgrade pip
fi

# Rebuild and reinstall only when something that goes into the build moved.
stamp=$VENV/.docknet-build
digest=$(cat "$ROOT/pyproject.toml" "$ROOT/setup.py" "$ROOT"/native/*/*.[ch] \
	"$ROOT/native/build.py" "$ROOT"/lwip/*.[ch] "$ROOT"/lwip/*/*.[ch] |
	sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$digest" ] ||
	! ls "$ROOT"/aiodocknet/native/_lib*.so "$ROOT"/aiodocknet/native/_fcpath*.so \
		"$ROOT"/aiodocknet/native/dn_xdp_filter.o >/dev/null 2>&1; then
	say "building aiodocknet (native extensions: DPDK + lwIP, fast-channel path, XDP filter)"
	DOCKNET_LWIP_SRC="$BUILD/lwip" "$VENV/bin/pip" install -q -e "$ROOT[test,bench]"
	# The af_xdp uplink's XDP program (native/switch/dn_xdp.h), loaded by
	# net_af_xdp from beside the extension.
	clang -O2 -g -target bpf -I"/usr/include/$(gcc -dumpmachine)" -I"$ROOT/native/switch" \
		-c "$ROOT/native/switch/dn_xdp_filter.bpf.c" -o "$ROOT/aiodocknet/native/dn_xdp_filter.o"
	echo "$digest" >"$stamp"
fi

# The native bench loops: an extension of the checkout, not of the package
# (bench/native/build.py). It calls into _lib, so it is rebuilt with it.
bench_stamp=$VENV/.docknet-bench
bench_digest=$(cat "$stamp" "$ROOT"/bench/native/*.[ch] "$ROOT/bench/native/build.py" | sha256sum | cut -d' ' -f1)
if [ ! -f "$bench_stamp" ] || [ "$(cat "$bench_stamp")" != "$bench_digest" ] ||
	! ls "$ROOT"/bench/_dnbench*.so >/dev/null 2>&1; then
	say "building the native bench loops (bench._dnbench)"
	(cd "$ROOT" && DOCKNET_LWIP_SRC="$BUILD/lwip" "$VENV/bin/python" bench/native/build.py >/dev/null)
	echo "$bench_digest" >"$bench_stamp"
fi
