"""The daemon side of banger-nat: putting VMs online and taking them off.

Imported by ``bangerd`` only; every command runs in the daemon's network
namespace (where the bridge lives), through :mod:`banger_core.system`.
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path
from typing import Any

from banger_core import Runner, run
from banger_nat import rules
from banger_nat.egress import Egress, parse_all
from banger_nat.uplink import Uplink, find_uplink

NAME = "nat"
IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")

_lock = threading.Lock()  # rule positions: one VM's rules are inserted as one block


def check_config(config: dict[str, Any]) -> None:
    """Log a bad ``[plugins.nat] allow`` at daemon start (VM starts then refuse it)."""
    try:
        parse_all([str(e) for e in config.get("allow") or []], "[plugins.nat] allow")
    except Exception as exc:
        from loguru import logger

        logger.error("plugin nat: {}", exc)


def options(vm: Any) -> dict[str, Any]:
    """The VM's own ``nat`` options (``--nat/--no-nat``, ``--egress-allow``)."""
    return dict(vm.plugin_options(NAME) or {})


def enabled(vm: Any, config: Any) -> bool:
    """NAT for this VM: its own choice (stored at create), else ``[plugins.nat] default``."""
    choice = options(vm).get("nat")
    return bool(config["default"]) if choice is None else bool(choice)


def allow_list(vm: Any, config: Any) -> list[Egress]:
    """``[plugins.nat] allow`` plus the VM's ``--egress-allow`` entries."""
    entries = list(config.get("allow") or [])
    entries += list(options(vm).get("egress_allow") or [])
    return parse_all([str(e) for e in entries], "egress allow")


def uplink(config: Any) -> Uplink:
    """The uplink now (looked up each time: routes change)."""
    return find_uplink(str(config.get("uplink") or ""))


def enable_forwarding() -> None:
    """IPv4 forwarding on, in the daemon's network namespace."""
    if IP_FORWARD.read_text().strip() != "1":
        IP_FORWARD.write_text("1\n")


def publish(vm: Any, config: Any, bridge: str, runner: Runner = run) -> None:
    """Put a running VM online (idempotent); record what was done in its state."""
    state = vm.plugin_state(NAME)
    if not enabled(vm, config):
        with _lock:
            rules.remove(vm.id, runner)
        state.clear()
        state["status"] = "off (disabled for this VM)"
        return
    link = uplink(config)
    if link.name is None:
        with _lock:
            rules.remove(vm.id, runner)
        state.clear()
        state["status"] = f"off: {link.reason}"
        return
    allow = allow_list(vm, config)
    wanted = rules.vm_rules(vm.id, vm.ip, bridge, link.name, allow)
    fingerprint = hashlib.sha256(
        json.dumps([[r.table, r.chain, *r.spec] for r in wanted]).encode()
    ).hexdigest()[:16]
    with _lock:
        enable_forwarding()
        if state.get("rules_hash") != fingerprint or rules.count(vm.id, runner) != len(wanted):
            rules.remove(vm.id, runner)
            try:
                rules.add(wanted, runner)
            except BaseException:
                rules.remove(vm.id, runner)
                raise
    state.clear()
    state.update(status=f"on via {link.name}", rules_hash=fingerprint)
    if allow:
        state["egress_allow"] = [str(e) for e in allow]


def withdraw(vm: Any, runner: Runner = run) -> None:
    """Take a VM offline: remove its rules (none left is fine)."""
    with _lock:
        rules.remove(vm.id, runner)
    state = vm.plugin_state(NAME)
    state.pop("rules_hash", None)
    if "status" in state:
        state["status"] = "off (VM not running)"


def reconcile(vms: list[Any], runner: Runner = run) -> int:
    """Remove the rules of every VM that is not running; return how many went."""
    running = {vm.id for vm in vms if vm.state == "running"}
    with _lock:
        return rules.remove_where(
            lambda tag: tag[len(rules.COMMENT_PREFIX) :] not in running, runner
        )


def describe(config: Any, runner: Runner = run) -> dict[str, Any]:
    """For ``banger daemon status``."""
    link = uplink(config)
    try:
        online = sorted(rules.owners(runner))
    except Exception as exc:
        return {"uplink": link.name or f"none ({link.reason})", "error": str(exc)}
    return {"uplink": link.name or f"none ({link.reason})", "vms online": len(online)}
