"""Who may call an RPC method: the rules methods declare (standard library only).

Every method the daemon serves has exactly one rule; the daemon's policy
(:mod:`banger_core.daemon.policy`) checks it against the caller's peer
credentials (``SO_PEERCRED``) before the handler runs. A plugin declares
the rule of a method it adds with :func:`rpc_access`::

    from banger_core import Access, rpc_access, rpc_params, Field

    @rpc_access(Access.VM)                 # members: only VMs they may use
    @rpc_params(ref=Field.str(required=True))
    def health(params, call): ...

A plugin method that declares no rule is served to root (and the daemon's
own user) only: the safe default that keeps older plugins working for the
administrator and never opens them to ``socket_group`` members by accident.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


class Access:
    """The rules a method can declare (plain strings, so they travel as JSON)."""

    ROOT = "root"
    """Root and the daemon's own user only (stopping the daemon, host configuration)."""
    MEMBER = "member"
    """Anyone the daemon accepts on its socket (root and ``socket_group`` members)."""
    VM = "vm"
    """Members only for VMs they may use: their own, or every VM with ``[daemon] shared_vms``.
    The VM is named by the ``ref`` parameter (or each of ``refs``)."""
    IMAGE = "image"
    """Members only for images they registered or built (named by ``ref``)."""
    OPERATION = "operation"
    """Members only for operations they started (named by ``id``)."""

    ALL = (ROOT, MEMBER, VM, IMAGE, OPERATION)


@dataclass(frozen=True)
class Rule:
    """A method's rule and the parameter naming the object it applies to."""

    kind: str
    param: str = ""

    def describe(self) -> str:
        """Who may call, in words (docs/security.md uses the same words)."""
        return {
            Access.ROOT: "root only",
            Access.MEMBER: "root and members",
            Access.VM: "root, and members on VMs they may use",
            Access.IMAGE: "root, and the member who added the image",
            Access.OPERATION: "root, and the member who started the operation",
        }[self.kind]


DEFAULT_PARAM = {Access.VM: "ref", Access.IMAGE: "ref", Access.OPERATION: "id"}


def rule(kind: str, param: str = "") -> Rule:
    """A :class:`Rule`; refuses an unknown kind."""
    if kind not in Access.ALL:
        raise ValueError(f"access rule {kind!r} is not one of {', '.join(Access.ALL)}")
    return Rule(kind, param or DEFAULT_PARAM.get(kind, ""))


def rpc_access(kind: str, *, param: str = "") -> Callable[[F], F]:
    """Declare who may call an RPC handler (one of :class:`Access`).

    :param param: the parameter naming the VM, image or operation the rule
        checks (``ref`` for VMs and images, ``id`` for operations).
    """
    declared = rule(kind, param)

    def mark(handler: F) -> F:
        try:
            handler.__rpc_access__ = declared  # type: ignore[attr-defined]
        except AttributeError:  # a bound method: the caller wraps it first
            raise ValueError("rpc_access needs a function, not a bound method") from None
        return handler

    return mark


def access_of(handler: Any) -> Rule | None:
    """The rule a handler declared with :func:`rpc_access`, if any."""
    found = getattr(handler, "__rpc_access__", None)
    return found if isinstance(found, Rule) else None
