"""``docknet-cni``: the CNI plugin that puts a container on DockNet.

A container runtime (Podman, containerd, CRI-O, Multus) runs it with the
CNI environment and a network configuration on stdin. ``ADD`` registers the
container's network namespace with this host's master as an endpoint (its
name, tenant, limits and address come from the runtime's arguments and the
configuration); the container's processes then attach by their namespace
alone, with no secret. Modules: ``errors`` (CNI error objects), ``config``
(environment and configuration, checked), ``result`` (the spec's result),
``master`` (the master's management API), ``commands`` (ADD, DEL, CHECK,
STATUS, GC, VERSION), ``main`` (the executable), ``install`` (``docknet cni install``).
"""

from .main import main

__all__ = ["main"]
