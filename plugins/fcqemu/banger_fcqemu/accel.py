"""Choosing QEMU's accelerator: KVM when it can run a stock kernel, TCG otherwise.

``/dev/kvm`` existing is not enough: on a nested PVM host (the ``kvm_pvm``
module, as on our development machines) KVM_CREATE_VM succeeds but a
standard guest kernel hangs right after decompression. Real hardware
virtualisation shows up as the ``vmx`` (Intel) or ``svm`` (AMD) CPU flag.
``BANGER_FCQEMU_ACCEL=kvm|tcg|auto`` overrides the probe.
"""

from __future__ import annotations

import os
from pathlib import Path

ACCEL_ENV = "BANGER_FCQEMU_ACCEL"
ACCELS = ("auto", "kvm", "tcg")


def hardware_virt(cpuinfo: str) -> bool:
    """True when ``/proc/cpuinfo`` text lists the vmx or svm flag."""
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags = set(line.partition(":")[2].split())
            if flags & {"vmx", "svm"}:
                return True
    return False


def kvm_usable(
    dev: str = "/dev/kvm", sys_module: str = "/sys/module", cpuinfo: str = "/proc/cpuinfo"
) -> tuple[bool, str]:
    """Whether KVM can run a stock guest kernel here, and why (cheap: no VM is made)."""
    if not os.path.exists(dev):
        return False, f"{dev} is missing"
    if not os.access(dev, os.R_OK | os.W_OK):
        return False, f"{dev} is not readable and writable"
    if Path(sys_module, "kvm_pvm").exists():
        return False, "nested PVM host (kvm_pvm): stock kernels hang under its KVM"
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        text = ""
    if not hardware_virt(text):
        return False, "the CPU shows no vmx/svm flag"
    return True, f"{dev} with hardware virtualisation"


def choose_accel(setting: str | None = None) -> tuple[str, str]:
    """Return ``("kvm" | "tcg", reason)`` from ``setting`` (default: the environment)."""
    value = (setting if setting is not None else os.environ.get(ACCEL_ENV, "auto")) or "auto"
    value = value.strip().lower()
    if value not in ACCELS:
        raise ValueError(f"{ACCEL_ENV}={value!r}: expected one of {', '.join(ACCELS)}")
    if value != "auto":
        return value, f"{ACCEL_ENV}={value}"
    ok, why = kvm_usable()
    return ("kvm", why) if ok else ("tcg", why)
