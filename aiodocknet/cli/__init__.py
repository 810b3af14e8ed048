"""The ``docknet`` command (``main``) and what only it needs: the management
API client and the network namespaces ``docknet run`` makes."""

from .main import main

__all__ = ["main"]
