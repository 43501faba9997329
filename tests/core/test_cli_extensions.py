"""Plugins extend the core's command groups and declare per-VM options for vm create/set."""

from __future__ import annotations

from typing import Any

import click
import pytest

import banger_core
from banger_core import ValidationError, VMOption, hookimpl
from banger_core.lifecycle import options as vm_options
from banger_core.vmoptions import DeclaredOption


class Scratch:
    """Declares options and subcommands like a third-party plugin would."""

    @hookimpl
    def banger_vm_options(self) -> list[VMOption]:
        def positive(value: int) -> int:
            if value < 1:
                raise ValidationError(f"--scratch-count {value} is not allowed: use 1 or more")
            return value

        return [
            VMOption("scratch-size", "size", "1G", "scratch disk size"),
            VMOption("nat", bool, False, "NAT to the internet", config_key="default"),
            VMOption("egress-allow", list, [], "allowed destinations"),
            VMOption("scratch-count", int, 1, "how many", validator=positive, on_set=False),
        ]

    @hookimpl
    def banger_cli_subcommands(self) -> dict[str, list[click.Command]]:
        @click.command("scratch")
        @click.argument("ref")
        def scratch(ref: str) -> None:
            """Show a VM's scratch disk."""
            click.echo(f"scratch of {ref}")

        @click.command("list")
        def clashing() -> None:
            """Tries to replace `vm list`."""

        @click.command("scratch-images")
        def images() -> None:
            """Image-level scratch things."""
            click.echo("images!")

        return {"vm": [scratch, clashing], "image": [images], "nope": [images]}


def test_subcommands_join_core_groups_and_clashes_are_refused(
    banger_plugin_manager, banger_cli
) -> None:
    pm = banger_plugin_manager(("scratch", Scratch()))
    result = banger_cli(["vm", "scratch", "box"], pm=pm)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "scratch of box\n"
    assert (
        "plugin 'scratch': command 'vm list' clashes with banger core; not added" in result.stderr
    )
    assert "command group 'nope' does not exist" in result.stderr
    assert banger_cli(["image", "scratch-images"], pm=pm).stdout == "images!\n"
    # the module-level groups are untouched: a build without the plugin has no `vm scratch`
    plain = banger_cli(["vm", "scratch", "box"], pm=banger_plugin_manager())
    assert plain.exit_code != 0


def test_options_show_in_help(banger_plugin_manager, banger_cli) -> None:
    pm = banger_plugin_manager(("scratch", Scratch()))
    create = banger_cli(["vm", "create", "--help"], pm=pm).stdout
    assert "--scratch-size SIZE" in create
    assert "--nat / --no-nat" in create
    assert "--egress-allow VALUE" in create and "(repeatable)" in create
    assert "[default: False, or [plugins.scratch] default]" in " ".join(create.split())
    set_help = banger_cli(["vm", "set", "--help"], pm=pm).stdout
    assert "--scratch-size" in set_help
    assert "--scratch-count" not in set_help  # on_set=False


def test_cli_sends_only_what_the_user_gave(
    banger_plugin_manager, banger_cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    from banger_core.cli import context, vm_cmds

    sent: list[tuple[str, dict[str, Any]]] = []

    def fake_rpc(method: str, params: dict[str, Any] | None = None, **_: Any) -> Any:
        sent.append((method, dict(params or {})))
        if method == "vm.list":
            return [{"id": "abc", "name": "box"}]
        return {"name": "box", "ip": "10.0.0.2", "state": "stopped", "changed": ["nat"]}

    monkeypatch.setattr(vm_cmds, "rpc", fake_rpc)
    monkeypatch.setattr(context, "rpc", fake_rpc)
    monkeypatch.setattr(vm_cmds, "follow_operation", lambda op, quiet=False: op)
    pm = banger_plugin_manager(("scratch", Scratch()))
    result = banger_cli(
        [
            "vm",
            "create",
            "box",
            "--scratch-size",
            "2G",
            "--no-nat",
            "--egress-allow",
            "a",
            "--egress-allow",
            "b",
        ],
        pm=pm,
    )
    assert result.exit_code == 0, result.stderr
    assert sent[0] == (
        "vm.create",
        {
            "name": "box",
            "options": {"scratch_size": "2G", "nat": False, "egress_allow": ["a", "b"]},
        },
    )
    sent.clear()
    assert banger_cli(["vm", "create", "plain"], pm=pm).exit_code == 0
    assert sent[0] == ("vm.create", {"name": "plain"})
    sent.clear()
    result = banger_cli(["vm", "set", "box", "--nat"], pm=pm)
    assert result.exit_code == 0, result.stderr
    assert ("vm.set", {"ref": "abc", "options": {"nat": True}}) in sent


def _declared() -> list[DeclaredOption]:
    return [DeclaredOption("scratch", o) for o in Scratch().banger_vm_options()]


class _Settings:
    def __init__(self, plugins: dict[str, dict[str, Any]]) -> None:
        self._plugins = plugins

    def plugin(self, name: str) -> dict[str, Any]:
        return dict(self._plugins.get(name, {}))


def test_daemon_side_checks_and_fills_defaults() -> None:
    declared = _declared()
    core, given = vm_options.split(
        {"name": "box", "scratch_size": "2G", "options": {"nat": True}},
        declared,
        {"name"},
        for_create=True,
    )
    assert core == {"name": "box"}
    values = vm_options.for_create(given, declared, _Settings({}))
    assert values == {
        "scratch": {"scratch_size": 2 << 30, "nat": True, "egress_allow": [], "scratch_count": 1}
    }
    # the default comes from the plugin's config when config_key names a key there
    assert (
        vm_options.for_create({}, declared, _Settings({"scratch": {"default": True}}))["scratch"][
            "nat"
        ]
        is True
    )


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"options": {"scratch_size": "lots"}}, "--scratch-size 'lots' is not a size"),
        ({"options": {"nat": "maybe"}}, "--nat 'maybe' is not allowed: use true or false"),
        # Over RPC options are typed JSON: no "yes" for true, no "2" for 2, no lone string.
        ({"options": {"nat": "yes"}}, "--nat 'yes' is not allowed: use true or false"),
        ({"options": {"nat": 1}}, "--nat 1 is not allowed: use true or false"),
        ({"options": {"scratch_count": "2"}}, "--scratch-count '2' is not allowed: use an integer"),
        ({"options": {"scratch_count": True}}, "--scratch-count True is not allowed"),
        ({"options": {"egress_allow": "a"}}, "--egress-allow 'a' is not allowed: use a list"),
        ({"options": {"scratch_size": 2.5}}, "--scratch-size 2.5 is not allowed"),
        ({"options": {"scratch_count": 0}}, "--scratch-count 0 is not allowed: use 1 or more"),
        ({"options": {"egress_allow": [1]}}, "--egress-allow [1] is not allowed"),
        ({"options": {"colour": "red"}}, "unknown VM option 'colour'"),
    ],
)
def test_bad_option_values_are_one_line_errors(params: dict[str, Any], message: str) -> None:
    declared = _declared()
    with pytest.raises(ValidationError, match="^" + message.replace("[", r"\[")):
        _, given = vm_options.split(params, declared, set(), for_create=True)
        vm_options.for_create(given, declared, _Settings({}))


def test_set_keeps_only_changes_and_refuses_create_only_options() -> None:
    declared = _declared()
    current = {
        "scratch": {"scratch_size": 1 << 30, "nat": False, "egress_allow": [], "scratch_count": 1}
    }
    assert vm_options.for_set({"nat": False, "scratch_size": "2G"}, declared, current) == {
        "scratch": {"scratch_size": 2 << 30}
    }
    with pytest.raises(ValidationError, match=r"--scratch-count .* cannot be given to vm set"):
        vm_options.split({"options": {"scratch_count": 2}}, declared, set(), for_create=False)


def test_vm_plugin_options_fill_in_defaults() -> None:
    from pathlib import Path

    vm = banger_core.VM(
        id="1",
        name="box",
        image=banger_core.ImageInfo("i", "debian", "k", "r"),
        cpus=1,
        memory_mib=256,
        disk_size=0,
        state="stopped",
        ip="10.0.0.2",
        mac="m",
        gateway="10.0.0.1",
        prefixlen=24,
        dir=Path("/x"),
        run_dir=Path("/y"),
        plugin_states={"core": {"options": {"scratch": {"nat": True}}}},
        option_defaults={"scratch": {"nat": False, "scratch_size": 1 << 30}},
    )
    opts = vm.plugin_options("scratch")
    assert opts == {"nat": True, "scratch_size": 1 << 30}
    assert opts["scratch-size"] == 1 << 30
    assert vm.summary()["options"] == {"scratch": {"nat": True, "scratch_size": 1 << 30}}
    assert "core" not in vm.summary()["plugins"]


def test_clashing_option_names_are_refused(banger_plugin_manager, banger_cli) -> None:
    class Clash:
        @hookimpl
        def banger_vm_options(self) -> list[VMOption]:
            return [VMOption("cpus", int, 1, "mine"), VMOption("nat", bool, True, "also mine")]

    pm = banger_plugin_manager(("scratch", Scratch()), ("zclash", Clash()))
    result = banger_cli(["vm", "create", "--help"], pm=pm)
    assert "plugin 'zclash': VM option --cpus clashes with banger core; not added" in result.stderr
    assert (
        "plugin 'zclash': VM option --nat clashes with plugin 'scratch'; not added" in result.stderr
    )


def test_public_api_is_importable_from_banger_core() -> None:
    for name in banger_core.__all__:
        assert getattr(banger_core, name) is not None, name


def test_rpc_helper_is_callable_whatever_was_imported_first(monkeypatch) -> None:
    """``banger_core.rpc`` is both the wire-format package and the CLI helper."""
    import banger_core.rpc.client  # noqa: F401  (the subpackage sets banger_core.rpc)
    from banger_core import rpc
    from banger_core.rpc import connect as context

    seen = []
    monkeypatch.setattr(context, "rpc", lambda m, p=None, autostart=True: seen.append((m, p)))
    rpc("x.y", {"a": 1})
    assert seen == [("x.y", {"a": 1})]
