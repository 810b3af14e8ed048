# cffi_modules and ext_modules are setup() keywords, so the build needs this
# stub; all metadata is in pyproject.toml.
from setuptools import Extension, setup

# The stream transports' per-message path uses CPython's C API, which
# cffi does not offer (native/dn_fcpath.c says why). It carries its own
# copy of the channel code and of the spin policy's: the functions are
# stateless, the layout is the one header's, kept private to it (DN_EXPORT
# empty: dn_export.h). The
# stack it calls through the table _lib gives (dn_stack_calls): lwIP keeps
# its state in globals, so there must be one copy of it.
fcpath = Extension(
    "aiodocknet.native._fcpath",
    sources=["native/fastchan/dn_fcpath.c", "native/stack/dn_lwpath.c", "native/runtime/dn_pollpath.c",
             "native/fastchan/dn_fastchan.c", "native/runtime/dn_spin.c", "native/runtime/dn_crowding.c",
             "native/runtime/dn_error.c"],
    include_dirs=["native/fastchan", "native/stack", "native/shm", "native/runtime"],
    extra_compile_args=["-O3", "-std=gnu11", "-D_GNU_SOURCE", "-Wall", "-Wno-unused-parameter",
                        "-fvisibility=hidden", "-DDN_EXPORT="],
)

setup(cffi_modules=["native/build.py:ffi"], ext_modules=[fcpath])
