"""banger: disposable, persistent developer microVMs on one Linux host.

Plugins import only what this package re-exports: ``hookimpl`` and the
error types.
"""

from banger_core.errors import BangerError
from banger_core.rpc.schema import Field, rpc_params

__version__ = "0.1.0"

__all__ = ["BangerError", "Field", "__version__", "rpc_params"]

from banger_core.hookspecs import hookimpl

__all__ += ["hookimpl"]
