"""The worked example in docs/plugins.md (docs/examples/hello_plugin), exercised hook by hook
and end to end through a real daemon."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from banger_core.config import load_settings
from banger_core.errors import ValidationError
from banger_core.plugins import Hooks

from .conftest import EXAMPLE_DIR


@dataclass
class FakeVM:
    name: str
    dir: Path
    plugin_states: dict[str, dict[str, Any]] = field(default_factory=dict)

    def plugin_state(self, name: str) -> dict[str, Any]:
        return self.plugin_states.setdefault(name, {})


@dataclass
class FakeSpec:
    name: str


def test_loads_with_its_hooks(banger_plugin_manager, hello_on_path) -> None:
    pm = banger_plugin_manager(("hello", hello_on_path))
    info = pm.infos["hello"]
    assert info.status == "loaded", info.error
    assert set(info.hooks) == {
        "banger_config_defaults",
        "banger_cli_commands",
        "banger_rpc_methods",
        "banger_daemon_started",
        "banger_doctor_checks",
        "banger_vm_validate",
        "banger_vm_create",
        "banger_vm_deleted",
    }


def test_config_defaults_and_overrides(banger_plugin_manager, hello_on_path, tmp_path) -> None:
    schema = Hooks(banger_plugin_manager(("hello", hello_on_path))).config_defaults()
    cfg = tmp_path / "config.toml"
    cfg.write_text('[plugins.hello]\ngreeting = "ahoy"\n')
    settings = load_settings(schema, files=[cfg])
    assert settings.plugin("hello") == {"greeting": "ahoy", "shout": False}


def test_validate_rejects_goodbye(banger_plugin_manager, hello_on_path) -> None:
    hooks = Hooks(banger_plugin_manager(("hello", hello_on_path)))
    hooks.vm_validate(FakeSpec("fine"))
    with pytest.raises(ValidationError, match="goodbye"):
        hooks.vm_validate(FakeSpec("goodbye-world"))


def test_create_registers_undo_and_delete_is_idempotent(
    banger_plugin_manager, hello_on_path, tmp_path
) -> None:
    from banger_core.lifecycle.context import LifecycleContext

    hooks = Hooks(banger_plugin_manager(("hello", hello_on_path)))
    vm = FakeVM("vm1", tmp_path)
    ctx = LifecycleContext(settings=load_settings(files=[]))
    hooks.vm_create(vm, ctx)
    marker = Path(vm.plugin_state("hello")["marker"])
    assert marker.read_text() == "hello vm1\n"
    assert ctx.rollback() == []
    assert not marker.exists()

    hooks.vm_create(vm, LifecycleContext(settings=load_settings(files=[])))
    assert hooks.vm_deleted(vm) == []
    assert not marker.exists()
    assert hooks.vm_deleted(vm) == []  # again: nothing left, still fine


def test_doctor_check(banger_plugin_manager, hello_on_path) -> None:
    from banger_core.doctor import DoctorContext

    pm = banger_plugin_manager(("hello", hello_on_path))
    settings = load_settings(Hooks(pm).config_defaults(), files=[])
    checks = Hooks(pm).doctor_checks(DoctorContext(settings))
    assert [(plugin, c.name, c.ok) for plugin, c in checks] == [("hello", "hello greeting", True)]


def test_rpc_handler(hello_on_path) -> None:
    from banger_hello import daemon

    assert daemon.greet({"who": "you"}, None) == {"message": "hello you"}
    with pytest.raises(ValidationError):
        daemon.greet({"who": 3}, None)


def test_cli_in_process(banger_plugin_manager, banger_cli, hello_on_path) -> None:
    pm = banger_plugin_manager(("hello", hello_on_path))
    result = banger_cli(["--help"], pm=pm)
    assert result.exit_code == 0
    assert "hello" in result.stdout
    listed = banger_cli(["plugins", "--json"], pm=pm).json()
    assert [p["name"] for p in listed] == ["hello"]


def test_end_to_end_through_the_daemon(banger_home, banger_plugin_site) -> None:
    banger_plugin_site.add("hello", "banger_hello", distribution="banger-hello", version="0.1.0")
    banger_home.pythonpath += [banger_plugin_site.path, EXAMPLE_DIR]
    banger_home.write_config('[plugins.hello]\ngreeting = "ahoy"\nshout = true\n')

    result = banger_home.run("hello", "there")  # starts bangerd on demand
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "AHOY THERE"

    plugins = banger_home.run("plugins", "--json").json()
    hello = next(p for p in plugins if p["name"] == "hello")
    assert hello["distribution"] == "banger-hello"
    assert hello["version"] == "0.1.0"
    assert "banger_rpc_methods" in hello["hooks"]

    status = json.loads(banger_home.run("daemon", "status", "--json").stdout)
    assert "hello" in status["plugins"]
    stopped = banger_home.run("daemon", "stop")
    assert stopped.returncode == 0, stopped.stderr
