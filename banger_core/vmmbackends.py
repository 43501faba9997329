"""VMM back-ends: Firecracker-compatible programs that plugins register.

A real ``firecracker`` binary is the core's default back-end. Other
Firecracker-API VMMs (the simulator ``banger-fcsim``, the QEMU-backed
``banger-fcqemu``, or a third party's) are distributions that register a
:class:`VMMBackend` through the ``banger_vmm_backends`` hook: the core then
names them in ``banger doctor`` and ``banger daemon status`` and asks them
whether the host can run them. The core drives every back-end the same way,
through Firecracker's command line and HTTP API.

Which one the daemon runs follows one rule (:func:`choose_vmm`): a program
named by ``[firecracker] binary`` / ``BANGER_FIRECRACKER_BIN``, else the
registered back-end named by ``[firecracker] backend``, else ``firecracker``
from PATH or an installed runtime, else one error listing the choices.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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


#: Where an installed Firecracker runtime lives (``STATE_DIR/runtime/firecracker``).
RUNTIME_PROGRAM = Path("runtime") / FIRECRACKER


@dataclass(frozen=True)
class VMMChoice:
    """Which VMM program the daemon runs, and why.

    :param program: a path when found, else the name it was asked for.
    :param backend: the back-end's name (``"firecracker"`` for a real one
        or any program no plugin registered).
    :param source: which rule chose it: ``"[firecracker] binary"`` (or the
        file/variable that set it), ``"[firecracker] backend"``, ``"PATH"``,
        ``"runtime"``; empty when nothing was found.
    :param problem: when nothing usable was chosen, one line saying why.
    :param fix: then, the choices (:func:`choices_text`).
    """

    program: str
    backend: str
    source: str
    found: bool
    problem: str = ""
    fix: str = ""

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form (``daemon status``)."""
        return {
            "backend": self.backend,
            "program": self.program,
            "source": self.source,
            "found": self.found,
            "problem": self.problem,
            "fix": self.fix,
        }


def locate(program: str) -> str | None:
    """The executable ``program`` names: a path as given, else next to Python, else on PATH."""
    from banger_core import system

    if "/" in program:
        return program if os.access(program, os.X_OK) and Path(program).is_file() else None
    beside = Path(sys.executable).parent / program
    if os.access(beside, os.X_OK) and beside.is_file():
        return str(beside)
    return system.which(program)


def choices_text(backends: Iterable[VMMBackend]) -> str:
    """The ways to choose a VMM, for an error message."""
    names = ", ".join(sorted(b.name for b in backends)) or "none registered"
    return (
        "set [firecracker] binary = PATH (or BANGER_FIRECRACKER_BIN), or "
        f"[firecracker] backend = NAME (registered back-ends: {names}), or install "
        "firecracker on PATH (github.com/firecracker-microvm/firecracker releases)"
    )


def choose_vmm(
    binary: str,
    backend: str,
    backends: Iterable[VMMBackend],
    *,
    state_dir: Path,
    binary_source: str = "[firecracker] binary",
) -> VMMChoice:
    """Apply the selection rule (docs/user-guide.md, "Choosing the VMM").

    1. a program named by ``[firecracker] binary`` / ``BANGER_FIRECRACKER_BIN``;
    2. else the registered back-end named by ``[firecracker] backend``;
    3. else ``firecracker`` from PATH, or an installed runtime
       (``STATE_DIR/runtime/firecracker``);
    4. else nothing: ``problem`` says so and ``fix`` lists the choices.
    """
    registered = list(backends)
    fix = choices_text(registered)
    if binary:
        path = locate(binary)
        known = backend_for(path or binary, registered)
        if path is None:
            problem = f"{binary!r} not found ({binary_source})"
            return VMMChoice(
                binary, known.name if known else FIRECRACKER, binary_source, False, problem, fix
            )
        return VMMChoice(path, known.name if known else FIRECRACKER, binary_source, True)
    if backend and backend != FIRECRACKER:
        source = "[firecracker] backend"
        chosen = next((b for b in registered if b.name == backend), None)
        if chosen is None:
            problem = f"[firecracker] backend = {backend!r} is not a registered VMM back-end"
            return VMMChoice("", backend, source, False, problem, fix)
        path = locate(chosen.program)
        if path is None:
            problem = f"{chosen.program!r} of back-end {chosen.name!r} not found"
            return VMMChoice(chosen.program, chosen.name, source, False, problem, fix)
        return VMMChoice(path, chosen.name, source, True)
    from banger_core import system

    on_path = system.which(FIRECRACKER)
    if on_path:
        return VMMChoice(on_path, FIRECRACKER, "PATH", True)
    runtime = state_dir / RUNTIME_PROGRAM
    if os.access(runtime, os.X_OK) and runtime.is_file():
        return VMMChoice(str(runtime), FIRECRACKER, "runtime", True)
    return VMMChoice(FIRECRACKER, FIRECRACKER, "", False, "no VMM found", fix)


def choose_for(settings: Any, backends: Iterable[VMMBackend]) -> VMMChoice:
    """:func:`choose_vmm` with the effective settings (and where ``binary`` was set)."""
    origin = settings.origins.get(("firecracker", "binary"), "")
    source = origin if origin.startswith("$") else "[firecracker] binary"
    return choose_vmm(
        settings.get("firecracker", "binary"),
        settings.get("firecracker", "backend"),
        backends,
        state_dir=settings.paths.state_dir,
        binary_source=source,
    )
