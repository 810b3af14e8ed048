"""The Python face of the native core: the compiled modules (``_lib``, cffi
over ``native/``; ``_fcpath``, the stream transports' C path) and one
wrapper per component: the slave stack (``stack``), fast channels
(``fastchan``), DPDK's EAL (``eal``), token buckets (``bucket``) and the
error codes (``errors``)."""
