"""cffi (API mode) build of ``bench._dnbench``: the native benchmark loops.

The loops (dn_bench.c) are benchmark code, so they are not in the service
library: this extension is built into the checkout by
``scripts/bootstrap.sh`` (``python bench/native/build.py``) and used only by
the bench runners. It holds no copy of the stack: the loops call the C API
``aiodocknet.native._lib`` exports (DN_EXPORT), which the runners load with
RTLD_GLOBAL first (``bench/dnbench.py``). Its FFI includes _lib's, so a
``struct dn_stack *`` or ``struct dn_fc *`` from one passes to the other.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
BUILD = ROOT / "build" / "dnbench"


def _lib_build() -> object:
    """native/build.py, whose ffi describes _lib."""
    spec = importlib.util.spec_from_file_location("docknet_native_build", ROOT / "native" / "build.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


_native = _lib_build()

ffi = FFI()
ffi.include(_native.ffi)  # type: ignore[attr-defined]
ffi.cdef(_native.cdef_from_headers([HERE / "dn_bench.h"]))  # type: ignore[attr-defined]
# cffi checks the layout of every type the included FFI declares: the
# module sees _lib's API headers too.
_HEADERS = [Path(h).name for h in _native.API_HEADERS] + ["dn_bench.h"]  # type: ignore[attr-defined]
ffi.set_source(
    "bench._dnbench",
    "\n".join(f'#include "{h}"' for h in _HEADERS),
    sources=[str(HERE / "dn_bench.c")],
    include_dirs=[str(HERE), *(str(ROOT / "native" / c) for c in _native.COMPONENTS)],  # type: ignore[attr-defined]
    extra_compile_args=["-O3", "-std=gnu11", "-D_GNU_SOURCE", "-Wall", "-Wno-unused-parameter",
                        "-fvisibility=hidden"],
)


def main() -> int:
    """Builds in build/dnbench and puts the module beside bench/'s sources."""
    BUILD.mkdir(parents=True, exist_ok=True)
    built = Path(ffi.compile(tmpdir=str(BUILD)))
    for old in (ROOT / "bench").glob("_dnbench*.so"):
        old.unlink()
    shutil.copy2(built, ROOT / "bench" / built.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
