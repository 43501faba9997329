"""The VM state machine: the states a VM can be in and the one table of allowed moves.

The manager moves VMs only through :func:`check_transition`; reconcile (at
daemon start) and the crash watcher decide what a VM left in any state
becomes with :func:`settle`, from one fact: whether its VMM still runs.
"""

from __future__ import annotations

from enum import StrEnum

from banger_core.errors import ConflictError


class VMState(StrEnum):
    """Where a VM is in its life (stored as the enum's value)."""

    CREATING = "creating"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    ERROR = "error"
    DELETING = "deleting"


S = VMState

TRANSITIONS: dict[VMState, frozenset[VMState]] = {
    S.CREATING: frozenset({S.RUNNING, S.DELETING}),  # rollback deletes the row
    S.STOPPED: frozenset({S.STARTING, S.DELETING, S.STOPPED}),
    S.ERROR: frozenset({S.STARTING, S.DELETING, S.STOPPED}),
    S.STARTING: frozenset({S.RUNNING, S.STOPPED}),
    S.RUNNING: frozenset({S.STOPPING, S.STOPPED, S.STARTING}),  # STARTING: VMM gone, re-boot
    S.STOPPING: frozenset({S.STOPPED, S.RUNNING}),
    S.DELETING: frozenset(),
}
"""Every allowed move; a state not listed as a source may not be left."""

LIVE_STATES = frozenset({S.STARTING, S.RUNNING, S.STOPPING})
"""States in which the VM may own a VMM process and host runtime state."""


def parse(value: str) -> VMState:
    """The state stored as ``value`` (an unknown one counts as ``error``)."""
    try:
        return VMState(value)
    except ValueError:
        return S.ERROR


def allowed(src: str, dst: str) -> bool:
    """Whether a VM may move from ``src`` to ``dst``."""
    return parse(dst) in TRANSITIONS[parse(src)]


def check_transition(name: str, src: str, dst: str) -> None:
    """Raise :class:`ConflictError` naming the VM when ``src -> dst`` is not allowed."""
    if not allowed(src, dst):
        raise ConflictError(f"VM {name} is {src}; it cannot become {dst} from there")


def settle(state: str, vmm_alive: bool) -> str:
    """What a VM nobody is working on becomes, given whether its VMM runs.

    Returns one of:

    ``keep``
        already matches reality.
    ``adopt``
        the VMM runs: mark it ``running`` (a start or stop that was cut off).
    ``release``
        the VMM is gone (or must go): release host state, call the plugins'
        stopped hooks, mark it ``stopped``.
    ``kill_release``
        a VMM runs for a VM that should have none: kill it, then release.
    ``remove``
        a create or delete was cut off: undo everything and drop the row.
    """
    st = parse(state)
    if st in (S.CREATING, S.DELETING):
        return "remove"
    if st in LIVE_STATES:
        if not vmm_alive:
            return "release"
        return "keep" if st is S.RUNNING else "adopt"
    return "kill_release" if vmm_alive else "keep"
