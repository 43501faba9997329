"""The authorization policy: every method has a rule, docs/security.md shows the same
table, and the rules mean what they say (real users drive them in tests/e2e/test_access.py)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from banger_core.daemon.policy import CORE_RULES, PLUGIN_DEFAULT, Policy
from banger_core.daemon.server import RPCServer
from banger_core.errors import ForbiddenError, NotFoundError
from banger_core.rpc.access import Access, access_of, rpc_access, rule
from banger_core.rpc.client import RPCClient

from .conftest import EXAMPLE_DIR
from .test_rpc_server import serving

SECURITY_DOC = Path(__file__).resolve().parents[2] / "docs" / "security.md"
ROW = re.compile(r"^\| `(?P<method>[a-z_]+\.[a-z_]+)` \| (?P<who>[^|]+?) \|", re.M)
MEMBER = 54321 if os.geteuid() != 54321 else 54322
OTHER = MEMBER + 1


def documented_rules() -> dict[str, str]:
    """``{method: who}`` from docs/security.md's table of RPC methods."""
    return {m["method"]: m["who"].strip() for m in ROW.finditer(SECURITY_DOC.read_text())}


@pytest.fixture
def home_with_hello(banger_home, banger_plugin_site):
    banger_plugin_site.add("hello", "banger_hello", distribution="banger-hello")
    banger_home.pythonpath += [banger_plugin_site.path, EXAMPLE_DIR]
    return banger_home


def test_every_method_the_daemon_serves_has_its_documented_rule(home_with_hello, banger_daemon):
    methods = {m["name"]: m for m in banger_daemon.rpc("daemon.methods")}
    assert set(CORE_RULES) <= set(methods)
    documented = documented_rules()
    for name, method in methods.items():
        assert method["access"] in Access.ALL, f"{name} has no access rule"
        if name == "hello.greet":
            continue  # the example plugin, documented in docs/plugins.md
        assert name in documented, f"{name} is missing from docs/security.md"
        assert documented[name] == rule(method["access"]).describe(), name
    # A plugin method that declares no rule is root-only (the example plugin declares none).
    assert methods["hello.greet"]["access"] == Access.ROOT == PLUGIN_DEFAULT.kind
    # The bundled plugins declare theirs.
    for name in ("vm.health", "vm.agent", "vm.agent_connect", "vm.ports"):
        if name in methods:
            assert methods[name]["access"] == Access.VM, name


def test_every_cli_command_is_in_the_security_doc():
    import click

    from banger_core.cli.main import build_cli

    group, _obj = build_cli(None, ["vm", "list"], use_cache=False)
    text = SECURITY_DOC.read_text()

    def walk(cmd: click.Command, path: list[str]):
        if isinstance(cmd, click.Group):
            for name, sub in cmd.commands.items():
                yield from walk(sub, [*path, name])
        elif not cmd.hidden:
            yield " ".join(path)

    missing = [p for p in walk(group, []) if f"`banger {p}" not in text]
    assert missing == []


def _owners(table: dict[str, tuple[str, int]]):
    def owners(kind: str, ref: str) -> tuple[str, int]:
        if ref not in table:
            raise NotFoundError(f"no {kind} {ref!r}")
        return table[ref]

    return owners


def test_rules_mean_what_they_say():
    policy = Policy(_owners({"web": ("web", MEMBER), "op1": ("vm.create web", MEMBER)}))
    vm_rule, root_rule = CORE_RULES["vm.stop"], CORE_RULES["daemon.stop"]
    policy.check("vm.stop", vm_rule, {"ref": "web"}, MEMBER)  # the owner
    policy.check("vm.stop", vm_rule, {"ref": "web"}, 0)  # root
    with pytest.raises(ForbiddenError, match=r"vm.stop refused for uid \d+: VM web belongs to"):
        policy.check("vm.stop", vm_rule, {"ref": "web"}, OTHER)
    # A missing VM is the handler's to report ("no VM ..."), not a refusal.
    policy.check("vm.stop", vm_rule, {"ref": "nope"}, OTHER)
    # Every ref of a list is checked.
    with pytest.raises(ForbiddenError):
        policy.check("vm.ssh_config", CORE_RULES["vm.ssh_config"], {"refs": ["web"]}, OTHER)
    with pytest.raises(ForbiddenError, match="only root may stop or restart the daemon"):
        policy.check("daemon.stop", root_rule, {}, MEMBER)
    policy.check("daemon.stop", root_rule, {}, 0)
    with pytest.raises(ForbiddenError, match=r"operation vm\.create web belongs to"):
        policy.check("operation.cancel", CORE_RULES["operation.cancel"], {"id": "op1"}, OTHER)
    # Shared VMs: any member may use any VM; operations stay their starter's.
    shared = Policy(policy.owners, shared_vms=True)
    shared.check("vm.stop", vm_rule, {"ref": "web"}, OTHER)
    with pytest.raises(ForbiddenError):
        shared.check("operation.cancel", CORE_RULES["operation.cancel"], {"id": "op1"}, OTHER)


def test_a_method_without_a_rule_is_refused_to_everyone(tmp_path):
    server = RPCServer(tmp_path / "s.sock")
    server.policy = Policy(_owners({}))
    server.register("test.norule", lambda p, c: "served")
    server.register("test.ruled", lambda p, c: "served", access=rule(Access.MEMBER))
    with serving(server), RPCClient(tmp_path / "s.sock", timeout=10) as client:
        assert client.call("test.ruled") == "served"
        with pytest.raises(ForbiddenError, match=r"test\.norule declares no access rule"):
            client.call("test.norule")


def test_rpc_access_declares_a_rule():
    @rpc_access(Access.VM)
    def handler(params, call):
        return None

    assert access_of(handler) == rule(Access.VM, "ref")
    assert access_of(lambda p, c: None) is None
    with pytest.raises(ValueError, match="not one of"):
        rpc_access("everyone")
