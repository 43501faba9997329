"""The daemon's authorization policy: one table, consulted for every RPC call.

The RPC server accepts a connection from root, the daemon's own user and
members of ``[daemon] socket_group`` (see ``RPCServer.allowed``). Which of
them may call which method is decided here, from the peer credentials the
kernel reports (``SO_PEERCRED``), before the handler runs:

- :data:`CORE_RULES` gives every core method its rule (docs/security.md
  shows the same table; a test keeps the two equal);
- a plugin's method carries the rule it declared with
  :func:`banger_core.rpc.access.rpc_access`, or :data:`PLUGIN_DEFAULT`;
- a method with no rule at all is refused to everyone (a test fails when a
  core method lacks one).

Refusals are :class:`~banger_core.errors.ForbiddenError`, one line naming
the method, the object and why.
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Callable
from typing import Any

from banger_core.errors import ForbiddenError, NotFoundError
from banger_core.rpc.access import Access, Rule, rule

CORE_RULES: dict[str, Rule] = {
    "daemon.status": rule(Access.MEMBER),
    "daemon.version": rule(Access.MEMBER),
    "daemon.methods": rule(Access.MEMBER),
    "daemon.stop": rule(Access.ROOT),
    "plugins.list": rule(Access.MEMBER),
    "config.show": rule(Access.MEMBER),
    "operation.status": rule(Access.OPERATION),
    "operation.cancel": rule(Access.OPERATION),
    "doctor.run": rule(Access.MEMBER),
    "vm.create": rule(Access.MEMBER),
    "vm.list": rule(Access.MEMBER),
    "vm.ssh_config": rule(Access.VM, "refs"),
    "vm.show": rule(Access.VM),
    "vm.start": rule(Access.VM),
    "vm.stop": rule(Access.VM),
    "vm.restart": rule(Access.VM),
    "vm.kill": rule(Access.VM),
    "vm.delete": rule(Access.VM),
    "vm.set": rule(Access.VM),
    "vm.stats": rule(Access.VM),
    "vm.logs": rule(Access.VM),
    "vm.ssh_info": rule(Access.VM),
    "vm.connect": rule(Access.VM),
    "image.list": rule(Access.MEMBER),
    "image.show": rule(Access.MEMBER),
    "image.build": rule(Access.MEMBER),
    "image.register": rule(Access.MEMBER),
    "image.delete": rule(Access.IMAGE),
    "image.convert_kernel": rule(Access.IMAGE),
}
"""Every core RPC method and who may call it."""

PLUGIN_DEFAULT = rule(Access.ROOT)
"""The rule of a plugin method that declares none (older plugins keep working for root)."""

ROOT_ONLY_WHY = {
    "daemon.stop": "only root may stop or restart the daemon",
}


def privileged(uid: int) -> bool:
    """Root or the daemon's own user: may do everything."""
    return uid in (0, os.geteuid())


def user_name(uid: int) -> str:
    """``name (uid N)`` for messages; the bare uid when it has no account."""
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


class Policy:
    """Checks calls against their rules; knows VM, image and operation owners.

    :param owners: ``owners(kind, ref)`` returns ``(display name, owner uid)``
        of the VM, image or operation ``ref`` names, or raises
        :class:`NotFoundError` (the handler then reports the missing object).
    :param shared_vms: ``[daemon] shared_vms``: members may use every VM.
    """

    def __init__(
        self, owners: Callable[[str, str], tuple[str, int]], *, shared_vms: bool = False
    ) -> None:
        self.owners = owners
        self.shared_vms = shared_vms

    def may_use_vm(self, uid: int, owner_uid: int) -> bool:
        """Whether ``uid`` may see and act on a VM owned by ``owner_uid``."""
        return privileged(uid) or uid == owner_uid or self.shared_vms

    def reads_store(self, access: Rule | None, uid: int) -> bool:
        """Whether checking this call looks up an owner (the server then runs it off-loop)."""
        return (
            access is not None
            and not privileged(uid)
            and access.kind in (Access.VM, Access.IMAGE, Access.OPERATION)
        )

    def check(self, method: str, access: Rule | None, params: dict[str, Any], uid: int) -> None:
        """Raise :class:`ForbiddenError` when ``uid`` may not call ``method`` with ``params``."""
        if access is None:
            raise ForbiddenError(
                f"{method} declares no access rule, so nobody may call it "
                "(a bug in whatever added it: declare one with rpc_access)"
            )
        if privileged(uid) or access.kind == Access.MEMBER:
            return
        if access.kind == Access.ROOT:
            why = ROOT_ONLY_WHY.get(method, f"only root may call {method}")
            raise ForbiddenError(f"{method} refused for {user_name(uid)}: {why}")
        value = params.get(access.param)
        refs = value if isinstance(value, list) else [value]
        for ref in refs:
            if not isinstance(ref, str) or not ref:
                continue  # the schema or the handler reports it
            try:
                name, owner = self.owners(access.kind, ref)
            except NotFoundError:
                continue  # the handler says "no such ..." itself
            if access.kind == Access.VM and self.may_use_vm(uid, owner):
                continue
            if owner == uid:
                continue
            what = {Access.VM: "VM", Access.IMAGE: "image", Access.OPERATION: "operation"}[
                access.kind
            ]
            extra = " and [daemon] shared_vms is off" if access.kind == Access.VM else ""
            raise ForbiddenError(
                f"{method} refused for {user_name(uid)}: {what} {name} belongs to "
                f"{user_name(owner)}{extra}"
            )
