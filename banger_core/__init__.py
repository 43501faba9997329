"""banger: disposable, persistent developer microVMs on one Linux host.

This package is the plugin API. Everything a plugin may use is importable
from ``banger_core`` itself (``from banger_core import hookimpl, VMOption``)
and documented in docs/plugins.md; every other module is internal and may
change. Names are loaded on first use, so ``import banger_core`` stays cheap
for the CLI.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from banger_core.errors import (
    BangerError,
    CancelledError,
    CommandError,
    ConfigError,
    ConflictError,
    DaemonError,
    ForbiddenError,
    NotFoundError,
    PluginError,
    UnknownMethodError,
    ValidationError,
)

__version__ = "0.1.0"

#: public name -> the (internal) module that defines it
_LAZY: dict[str, str] = {
    # hooks
    "hookimpl": "banger_core.hookspecs",
    # per-plugin context of lifecycle hooks, per-VM options
    "LifecycleContext": "banger_core.hookcontext",
    "VMOption": "banger_core.vmoptions",
    # the VM and requests
    "VM": "banger_core.lifecycle.vm",
    "VMSpec": "banger_core.lifecycle.vm",
    "ImageInfo": "banger_core.lifecycle.vm",
    "OptionValues": "banger_core.lifecycle.vm",
    # machine and guest
    "MachineSpec": "banger_core.lifecycle.machine",
    "Drive": "banger_core.lifecycle.machine",
    "NetworkInterface": "banger_core.lifecycle.machine",
    "Vsock": "banger_core.lifecycle.machine",
    "GuestConfig": "banger_core.guestconfig",
    # diagnostics and configuration
    "DoctorContext": "banger_core.doctor",
    "Check": "banger_core.doctor",
    # VMM back-ends
    "VMMBackend": "banger_core.vmmbackends",
    "BackendProbe": "banger_core.vmmbackends",
    "Option": "banger_core.pluginconfig",
    # running programs
    "run": "banger_core.system",
    "which": "banger_core.system",
    "Runner": "banger_core.system",
    "Result": "banger_core.system",
    # the daemon, RPC
    "DaemonAPI": "banger_core.api",
    "PluginCall": "banger_core.api",
    "RPCCall": "banger_core.api",
    # images
    "GuestOS": "banger_core.images.providers",
    "ProvisionStep": "banger_core.images.providers",
    "ImageArtifact": "banger_core.images.artifacts",
    "ImageBuildContext": "banger_core.images.artifacts",
    # the CLI's helpers for plugin commands
    "rpc": "banger_core.rpc.connect",
    "connect": "banger_core.rpc.connect",
    "run_on_vms": "banger_core.cli.refs",
    "emit_json": "banger_core.cli.output",
    "table": "banger_core.cli.output",
    "human_bytes": "banger_core.cli.output",
    "parse_size": "banger_core.units",
    # declared RPC parameters
    "Field": "banger_core.rpc.schema",
    "rpc_params": "banger_core.rpc.schema",
    # who may call an RPC method
    "Access": "banger_core.rpc.access",
    "rpc_access": "banger_core.rpc.access",
    "format_size": "banger_core.units",
    # readiness, handing over descriptors
    "ReadyCheck": "banger_core.lifecycle.ready",
    "PassFd": "banger_core.rpc.protocol",
    # a stopped VM's files, read on the host
    "read_vm_file": "banger_core.disks.readfile",
    # untrusted archives (guest or network supplied)
    "extract_tar": "banger_core.safeextract",
    "ExtractLimits": "banger_core.safeextract",
    "ExtractResult": "banger_core.safeextract",
    "UnsafeArchiveError": "banger_core.safeextract",
}

__all__ = [
    "VM",
    "Access",
    "BackendProbe",
    "BangerError",
    "CancelledError",
    "Check",
    "CommandError",
    "ConfigError",
    "ConflictError",
    "DaemonAPI",
    "DaemonError",
    "DoctorContext",
    "Drive",
    "ExtractLimits",
    "ExtractResult",
    "Field",
    "ForbiddenError",
    "GuestConfig",
    "GuestOS",
    "ImageArtifact",
    "ImageBuildContext",
    "ImageInfo",
    "LifecycleContext",
    "MachineSpec",
    "NetworkInterface",
    "NotFoundError",
    "Option",
    "OptionValues",
    "PassFd",
    "PluginCall",
    "PluginError",
    "ProvisionStep",
    "RPCCall",
    "ReadyCheck",
    "Result",
    "Runner",
    "UnknownMethodError",
    "UnsafeArchiveError",
    "VMMBackend",
    "VMOption",
    "VMSpec",
    "ValidationError",
    "Vsock",
    "__version__",
    "connect",
    "emit_json",
    "extract_tar",
    "format_size",
    "hookimpl",
    "human_bytes",
    "parse_size",
    "read_vm_file",
    "rpc",
    "rpc_access",
    "rpc_params",
    "run",
    "run_on_vms",
    "table",
    "which",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'banger_core' has no attribute {name!r}")
    if name == "rpc":  # also the name of a subpackage, which is callable for this reason
        return importlib.import_module("banger_core.rpc")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


if TYPE_CHECKING:  # what type checkers and IDEs see
    from banger_core.api import DaemonAPI, PluginCall, RPCCall
    from banger_core.cli.output import emit_json, human_bytes, table
    from banger_core.cli.refs import run_on_vms
    from banger_core.disks.readfile import read_vm_file
    from banger_core.doctor import Check, DoctorContext
    from banger_core.guestconfig import GuestConfig
    from banger_core.hookcontext import LifecycleContext
    from banger_core.hookspecs import hookimpl
    from banger_core.images.artifacts import ImageArtifact, ImageBuildContext
    from banger_core.images.providers import GuestOS, ProvisionStep
    from banger_core.lifecycle.machine import Drive, MachineSpec, NetworkInterface, Vsock
    from banger_core.lifecycle.ready import ReadyCheck
    from banger_core.lifecycle.vm import VM, ImageInfo, OptionValues, VMSpec
    from banger_core.pluginconfig import Option
    from banger_core.rpc.access import Access, rpc_access
    from banger_core.rpc.connect import connect, rpc
    from banger_core.rpc.protocol import PassFd
    from banger_core.rpc.schema import Field, rpc_params
    from banger_core.safeextract import (
        ExtractLimits,
        ExtractResult,
        UnsafeArchiveError,
        extract_tar,
    )
    from banger_core.system import Result, Runner, run, which
    from banger_core.units import format_size, parse_size
    from banger_core.vmmbackends import BackendProbe, VMMBackend
    from banger_core.vmoptions import VMOption
