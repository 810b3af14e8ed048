#!/usr/bin/env bash
# Builds the fuzz harnesses into build/fuzz/ with clang's libFuzzer,
# AddressSanitizer and UndefinedBehaviorSanitizer, from this tree's own
# sources (native/, lwip/ with the project's lwipopts.h) and lwIP's core
# from build/lwip (scripts/bootstrap.sh fetches it) - not from the
# installed extension, so what is fuzzed is what is in the tree now.
# Objects are rebuilt only when a source or header is newer.
#
#   fuzz/build.sh            all harnesses
#   fuzz/build.sh stack      one of them (stack, framering)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LWIP=${DOCKNET_LWIP_SRC:-$ROOT/build/lwip}
OUT=$ROOT/build/fuzz
CC=${CC:-clang}

command -v "$CC" >/dev/null || { echo "fuzz/build.sh: $CC not found (scripts/bootstrap.sh installs clang)" >&2; exit 2; }
[ -f "$LWIP/src/core/tcp.c" ] || { echo "fuzz/build.sh: lwIP sources not in $LWIP (run scripts/bootstrap.sh)" >&2; exit 2; }

# UBSan findings stop the run like ASan's do. Alignment is left out:
# lwIP reads protocol headers in place at the 2-byte offsets Ethernet gives
# them (ETH_PAD_SIZE 0), which x86-64 and aarch64 allow and the project
# relies on.
SAN=(-fsanitize=address,undefined -fno-sanitize-recover=all -fno-sanitize=alignment)
CFLAGS=(-g -O1 -fno-omit-frame-pointer -std=gnu11 -D_GNU_SOURCE -Wall
	-Wno-unused-parameter -Wno-address-of-packed-member
	-I"$ROOT/native/runtime" -I"$ROOT/native/shm" -I"$ROOT/native/stack"
	-I"$ROOT/native/fastchan" -I"$ROOT/lwip" -I"$LWIP/src/include" -I"$ROOT/fuzz"
	-DMEMP_MEM_MALLOC=1)

# lwIP's core files: the same list the extension is built from.
mapfile -t LWIP_CORE < <(python3 - "$ROOT/native/build.py" <<'PY'
import ast, sys
tree = ast.parse(open(sys.argv[1]).read())
for node in tree.body:
    if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "LWIP_CORE":
        for name in ast.literal_eval(node.value):
            print("src/core/" + name)
print("src/netif/ethernet.c")
PY
)

mkdir -p "$OUT/obj"
newest_header=$(ls -t "$ROOT"/native/*/*.h "$ROOT"/lwip/*.h "$ROOT"/lwip/*/*.h "$ROOT"/fuzz/*.h "$0" | head -n 1)

# compile SOURCE [extra flags...] -> prints the object's path
compile() {
	local src=$1; shift
	local obj=$OUT/obj/$(echo "${src#"$ROOT"/}" | tr '/' '_').o
	if [ ! -f "$obj" ] || [ "$src" -nt "$obj" ] || [ "$newest_header" -nt "$obj" ]; then
		"$CC" "${CFLAGS[@]}" "${SAN[@]}" -fsanitize=fuzzer-no-link "$@" -c "$src" -o "$obj"
	fi
	echo "$obj"
}

# link NAME OBJECTS...
link() {
	local name=$1; shift
	"$CC" -fsanitize=fuzzer "${SAN[@]}" "$@" -o "$OUT/fuzz_$name"
	echo "built $OUT/fuzz_$name"
}

build_stack() {
	local objs=() f
	# lwIP's own warnings (window scaling makes some of its comparisons
	# constant) are not this project's to fix.
	for f in "${LWIP_CORE[@]}"; do objs+=("$(compile "$LWIP/$f" -w)"); done
	objs+=("$(compile "$ROOT/native/stack/dn_netif.c")")
	objs+=("$(compile "$ROOT/lwip/dn_hooks.c")")
	# dn_stack.c's sys_now() reads the real clock; the harness supplies
	# lwIP's, driven by the input.
	objs+=("$(compile "$ROOT/native/stack/dn_stack.c" -Dsys_now=dn_stack_sys_now)")
	objs+=("$(compile "$ROOT/native/runtime/dn_error.c")")
	objs+=("$(compile "$ROOT/native/fastchan/dn_fastchan.c")")
	objs+=("$(compile "$ROOT/fuzz/dn_fuzzlink.c")")
	objs+=("$(compile "$ROOT/fuzz/fuzz_stack.c")")
	link stack "${objs[@]}"
}

build_framering() {
	link framering "$(compile "$ROOT/fuzz/fuzz_framering.c")"
}

targets=("$@")
[ "${#targets[@]}" -gt 0 ] || targets=(stack framering)
for t in "${targets[@]}"; do
	case $t in
	stack) build_stack ;;
	framering) build_framering ;;
	control) ;;	# Python (atheris): nothing to build
	*) echo "fuzz/build.sh: no harness $t" >&2; exit 2 ;;
	esac
done
