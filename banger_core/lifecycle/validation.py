"""Checking create and set requests against what is allowed and what the host has."""

from __future__ import annotations

import os
from typing import Any

from banger_core.errors import ValidationError
from banger_core.lifecycle.vm import VM, VMSpec
from banger_core.units import check_vm_name, format_size, parse_size

CREATE_KEYS = {"name", "image", "cpus", "memory"}
SET_KEYS = {"cpus", "memory"}
MAX_VCPUS = 32  # Firecracker's limit
MIN_MEMORY_MIB = 64


def host_memory_mib() -> int:
    """Total memory of the host in MiB."""
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    return 0


def check_cpus(value: Any) -> int:
    """vCPUs: a positive integer within the host's CPUs and Firecracker's limit."""
    limit = min(os.cpu_count() or 1, MAX_VCPUS)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
        raise ValidationError(
            f"cpus {value!r} is not allowed: use an integer from 1 to {limit} (the host's CPUs)"
        )
    return value


def check_memory(value: Any) -> int:
    """Memory: MiB as an integer or a size string; within the host's memory."""
    limit = host_memory_mib()
    mib = parse_size(value, "memory", default_unit="M") // (1 << 20)
    if not MIN_MEMORY_MIB <= mib <= limit:
        raise ValidationError(
            f"memory {value!r} is not allowed: use {MIN_MEMORY_MIB}M to "
            f"{format_size(limit << 20, limit=True)} (the host's memory)"
        )
    return mib


def _unknown(params: dict[str, Any], allowed: set[str], what: str) -> None:
    extra = sorted(set(params) - allowed)
    if extra:
        raise ValidationError(
            f"unknown {what} parameter(s): {', '.join(extra)} "
            f"(allowed: {', '.join(sorted(allowed))})"
        )


def resolve_create(params: dict[str, Any], settings: Any, images: Any) -> VMSpec:
    """Fill in the daemon's defaults for what the user left out, and check everything."""
    _unknown(params, CREATE_KEYS, "vm.create")
    name = check_vm_name(params.get("name"))
    image = params.get("image") or images.default_name()
    if not isinstance(image, str):
        raise ValidationError(f"image {image!r} must be a name")
    return VMSpec(
        name=name,
        image=image,
        cpus=check_cpus(params.get("cpus", settings.get("vm", "cpus"))),
        memory_mib=check_memory(params.get("memory", settings.get("vm", "memory_mib"))),
        disk_size=0,
    )


def validate_set(vm: VM, params: dict[str, Any], *, allow_empty: bool = False) -> VMSpec:
    """The changes of a ``vm set`` request, checked.

    :param allow_empty: the request changes plugin options only.
    """
    _unknown(params, SET_KEYS, "vm.set")
    changes: dict[str, Any] = {}
    if "cpus" in params:
        changes["cpus"] = check_cpus(params["cpus"])
    if "memory" in params:
        changes["memory_mib"] = check_memory(params["memory"])
    changes = {k: v for k, v in changes.items() if getattr(vm, k) != v}
    if not changes and not params and not allow_empty:
        raise ValidationError("nothing to change: give --cpus, --memory or a plugin's option")
    return VMSpec(
        name=vm.name,
        image=vm.image.name,
        cpus=changes.get("cpus", vm.cpus),
        memory_mib=changes.get("memory_mib", vm.memory_mib),
        disk_size=vm.disk_size,
        is_create=False,
        vm=vm,
        changes=changes,
    )
