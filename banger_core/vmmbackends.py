"""VMM back-ends: Firecracker-compatible programs that plugins register.

A real ``firecracker`` binary is the core's default back-end. Other
Firecracker-API VMMs (the simulator ``banger-fcsim``, the QEMU-backed
``banger-fcqemu``, or a third party's) are distributions that register a
:class:`VMMBackend` through the ``banger_vmm_backends`` hook: the core then
names them in ``banger doctor`` and ``banger daemon status`` and asks them
whether the host can run them. The core drives every back-end the same way,
through Firecracker's command line and HTTP API.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

#: The name the core's own back-end (a real Firecracker binary) goes by.
FIRECRACKER = "firecracker"


@dataclass(frozen=True)
class BackendProbe:
    """What a back-end says about the host it would run on.

    :param ok: the back-end can run VMs here.
    :param detail: one line for ``banger doctor`` (``"accelerator kvm"``).
    :param fix: what to do when ``ok`` is False.
    """

    ok: bool
    detail: str = ""
    fix: str = ""


@dataclass(frozen=True)
class VMMBackend:
    """A Firecracker-compatible VMM a plugin makes available.

    :param name: what users select it by (``[firecracker] backend = "NAME"``);
        lowercase letters, digits and ``-``.
    :param program: the executable: a name looked up next to the Python
        interpreter and on ``PATH`` (a console script such as
        ``"banger-fcsim"``), or an absolute path.
    :param description: a few words for ``banger doctor``, which shows
        ``PATH (PROGRAM: DESCRIPTION; PROBE DETAIL)`` (``"the guest's own
        kernel under QEMU"``).
    :param capabilities: what it can do, as words (``"real-kernel"``,
        ``"kvm"``, ``"snapshots"``); shown by ``banger daemon status``.
    :param probe: given the program's resolved path, whether the host can
        run it (quick and side-effect free); None: nothing to check.

    Its version is learnt as Firecracker's: ``PROGRAM --version`` prints
    ``Firecracker vX.Y.Z``; the core uses it to choose device transports.
    """

    name: str
    program: str
    description: str
    capabilities: tuple[str, ...] = ()
    probe: Callable[[str], BackendProbe] | None = field(default=None, compare=False)


def program_names(path: str) -> set[str]:
    """The names a program goes by: its own and, for a symlink, its target's."""
    return {Path(path).name, Path(os.path.realpath(path)).name}


def backend_for(path: str, backends: Iterable[VMMBackend]) -> VMMBackend | None:
    """The registered back-end whose program ``path`` is (by file name), or None."""
    names = program_names(path)
    for backend in backends:
        if Path(backend.program).name in names:
            return backend
    return None
