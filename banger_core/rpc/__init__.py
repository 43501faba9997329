"""The JSON-RPC wire format shared by the daemon and the CLI (stdlib only).

``banger_core.rpc`` is also the public helper plugin commands call,
``rpc(method, params)`` (see :func:`banger_core.rpc.connect.rpc`): the name
is both this package and that function, so the package itself is callable.
"""

from __future__ import annotations

import sys
import types
from typing import Any


class _CallableModule(types.ModuleType):
    def __call__(
        self, method: str, params: dict[str, Any] | None = None, *, autostart: bool = True
    ) -> Any:
        """Call one daemon method and return its result (starts the daemon if needed)."""
        from banger_core.rpc.connect import rpc

        return rpc(method, params, autostart=autostart)


sys.modules[__name__].__class__ = _CallableModule
