"""banger: disposable, persistent developer microVMs on one Linux host.

Plugins import only what this package re-exports: ``hookimpl`` and the
error types.
"""

from banger_core.errors import BangerError

__version__ = "0.1.0"

__all__ = ["BangerError", "__version__"]

from banger_core.hookspecs import hookimpl
from banger_core.lifecycle.ready import ReadyCheck
from banger_core.rpc.protocol import FDResult

__all__ += ["FDResult", "ReadyCheck", "hookimpl"]
