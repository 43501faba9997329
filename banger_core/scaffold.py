"""``banger plugins new NAME``: write a ready-to-install plugin distribution.

The result is a directory ``banger-NAME/`` with a pyproject (the ``banger``
entry point), a hook module using only :mod:`banger_core`'s public API, a
README, unit tests using the fake VM and context, and one end-to-end test on
the simulated host. ``pip install -e banger-NAME`` and ``pytest`` in it work
as generated.
"""

from __future__ import annotations

import re
from pathlib import Path

from banger_core.errors import ConflictError, ValidationError

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,30}$")

PYPROJECT = """\
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "banger-{dash}"
version = "0.1.0"
description = "banger plugin: {name}"
readme = "README.md"
requires-python = ">=3.11"
dependencies = ["banger>=0.1"]

[project.optional-dependencies]
test = ["pytest>=8", "pytest-banger>=0.1"]

[project.entry-points.banger]
{name} = "banger_{name}"

[tool.setuptools]
packages = ["banger_{name}"]

[tool.pytest.ini_options]
testpaths = ["tests"]
markers = ["slow: boots a VM on banger's simulated host"]
"""

MODULE = '''\
"""banger-{dash}: a banger plugin.

It declares a per-VM option (``vm create --{dash}-note TEXT``), writes a note
file into each VM's directory when the VM is created (with an undo), puts
the note into the guest at ``/etc/{name}-note``, adds ``banger vm {dash} REF``
and the RPC method ``{name}.show``, and removes its file on delete.

Import only from ``banger_core`` itself (the documented API). This module is
loaded by the CLI too: keep it cheap to import.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from banger_core import hookimpl

if TYPE_CHECKING:
    import click

    from banger_core import (
        VM,
        GuestConfig,
        LifecycleContext,
        MachineSpec,
        Option,
        RPCCall,
        VMOption,
    )

NAME = "{name}"


def note_path(vm: VM) -> Path:
    """The VM's note file."""
    return Path(vm.dir) / "{name}-note.txt"


@hookimpl
def banger_config_defaults() -> dict[str, Option]:
    from banger_core import Option

    return {{"default_note": Option("hello from {name}", "the note of a new VM")}}


@hookimpl
def banger_vm_options() -> list[VMOption]:
    from banger_core import VMOption

    return [VMOption("{dash}-note", "str", "hello from {name}", "a note for the VM",
                     config_key="default_note")]


@hookimpl
def banger_vm_create(vm: VM, ctx: LifecycleContext) -> None:
    path = note_path(vm)
    path.write_text(vm.plugin_options(NAME)["{name}_note"] + "\\n")
    ctx.add_undo(lambda: path.unlink(missing_ok=True), f"remove {{path}}")
    vm.plugin_state(NAME)["note"] = str(path)


@hookimpl
def banger_vm_configure(vm: VM, machine: MachineSpec, guest: GuestConfig,
                        ctx: LifecycleContext) -> None:
    path = note_path(vm)
    if path.exists():
        guest.add_file("/etc/{name}-note", path.read_text())


@hookimpl
def banger_vm_deleted(vm: VM, ctx: LifecycleContext) -> None:
    note_path(vm).unlink(missing_ok=True)


@hookimpl
def banger_rpc_methods() -> dict[str, Any]:
    return {{"{name}.show": show}}


def show(params: dict[str, Any], call: RPCCall) -> dict[str, Any]:
    """``{name}.show``: ``{{"ref": "box"}}`` -> the VM's note."""
    from banger_core import ValidationError

    ref = params.get("ref")
    if not isinstance(ref, str) or not ref:
        raise ValidationError("{name}.show: 'ref' (a VM name or id) is required")
    vm = call.vm(ref)
    return {{"name": vm.name, "note": vm.plugin_options(NAME)["{name}_note"]}}


@hookimpl
def banger_cli_subcommands() -> dict[str, list[click.Command]]:
    import click

    @click.command("{dash}")
    @click.argument("ref")
    def command(ref: str) -> None:
        """Show a VM's {name} note."""
        from banger_core import rpc

        click.echo(rpc("{name}.show", {{"ref": ref}})["note"])

    return {{"vm": [command]}}
'''

README = """\
# banger-{dash}

A [banger](https://example.invalid/banger) plugin. It adds `--{dash}-note` to
`banger vm create`, puts the note into the guest at `/etc/{name}-note`, and
adds `banger vm {dash} REF`.

## Install

    banger plugins install ./banger-{dash} --restart

## Develop

    pip install -e '.[test]'
    pytest -m "not slow"   # unit tests: fake VM and context, milliseconds
    pytest -m slow         # end to end on banger's simulated host (root)
"""

UNIT_TEST = '''\
"""Unit tests of banger-{dash}'s hooks with banger's fake VM and context."""

from __future__ import annotations

from pathlib import Path

import banger_{name} as plugin
from banger_core import GuestConfig, MachineSpec
from pytest_banger import fake_context, fake_vm


def test_option_is_declared() -> None:
    (option,) = plugin.banger_vm_options()
    assert option.name == "{dash}-note" and option.check("hi") == "hi"


def test_create_writes_the_note_with_an_undo(tmp_path: Path) -> None:
    vm = fake_vm("box", tmp_path, options={{"{name}": {{"{name}_note": "hi"}}}})
    ctx = fake_context("{name}")
    plugin.banger_vm_create(vm=vm, ctx=ctx)
    assert (tmp_path / "{name}-note.txt").read_text() == "hi\\n"
    assert ctx.undo_descriptions() == [f"plugin {name}: remove {{tmp_path / '{name}-note.txt'}}"]
    assert ctx.rollback() == []
    assert not (tmp_path / "{name}-note.txt").exists()


def test_configure_puts_the_note_into_the_guest(tmp_path: Path) -> None:
    vm = fake_vm("box", tmp_path)
    (tmp_path / "{name}-note.txt").write_text("hi\\n")
    guest = GuestConfig("box")
    plugin.banger_vm_configure(vm=vm, machine=MachineSpec(vcpus=1, memory_mib=128, kernel="k"),
                               guest=guest, ctx=fake_context("{name}"))
    assert guest.files == [{{"path": "/etc/{name}-note", "content": "hi\\n", "mode": "0644"}}]
'''

E2E_TEST = '''\
"""banger-{dash} end to end: the real CLI and daemon on banger's simulated host (root)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_banger import cached_debian_image

pytestmark = pytest.mark.slow


def test_note_reaches_the_guest(banger_sim_host) -> None:
    host = banger_sim_host
    host.install_plugin("{name}", "banger_{name}", Path(__file__).resolve().parents[1])
    host.register_image(cached_debian_image())
    host.cli("vm", "create", "box", "--{dash}-note", "ahoy", "--memory", "256")
    assert host.cli("vm", "ssh", "box", "--", "cat", "/etc/{name}-note").stdout == "ahoy\\n"
    assert host.cli("vm", "{dash}", "box").stdout == "ahoy\\n"
'''


def check_name(name: str) -> str:
    """A plugin name: lower case letters, digits and underscores, starting with a letter."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValidationError(
            f"plugin name {name!r} is not allowed: use lower case letters, "
            "digits and underscores, starting with a letter (e.g. 'scratch')"
        )
    return name


def files(name: str) -> dict[str, str]:
    """``{relative path: content}`` of the distribution for plugin ``name``."""
    values = {"name": name, "dash": name.replace("_", "-")}
    return {
        "pyproject.toml": PYPROJECT.format(**values),
        f"banger_{name}/__init__.py": MODULE.format(**values),
        "README.md": README.format(**values),
        "tests/test_unit.py": UNIT_TEST.format(**values),
        "tests/test_e2e.py": E2E_TEST.format(**values),
    }


def write(name: str, parent: Path) -> Path:
    """Write ``banger-<name>/`` under ``parent``; refuse to overwrite anything."""
    check_name(name)
    root = Path(parent) / f"banger-{name.replace('_', '-')}"
    if root.exists():
        raise ConflictError(f"{root} already exists; choose another name or directory")
    for rel, content in files(name).items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return root
