"""The guest agent ships with the vsock plugin and reaches images through its provision steps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from banger_core.images.recipe import default_recipe
from banger_core.plugins import Hooks
from banger_vsock import plugin
from banger_vsock.guest import AGENT_DEST, UNIT_DEST, agent


def _steps(pm: Any) -> list[Any]:
    steps: list[Any] = []
    Hooks(pm).image_provision({"name": "debian", "os": "debian"}, steps)
    return steps


def test_image_builds_get_the_agent_and_its_unit(banger_plugin_manager) -> None:
    files = {
        f.dest: f for step in _steps(banger_plugin_manager(plugin)) for f in step.installed_files()
    }
    assert set(files) == {AGENT_DEST, UNIT_DEST}
    assert files[AGENT_DEST].mode == 0o755 and files[UNIT_DEST].mode == 0o644
    assert files[AGENT_DEST].content == Path(agent.__file__).read_bytes()
    assert files[AGENT_DEST].content.startswith(b"#!/usr/bin/python3\n")
    assert b"ExecStart=/usr/lib/banger/banger-agent" in files[UNIT_DEST].content


def test_without_the_plugin_an_image_has_no_agent(banger_plugin_manager) -> None:
    assert _steps(banger_plugin_manager()) == []
    core = [f.dest for f in default_recipe().installed_files()]
    assert "/usr/lib/banger/banger-boot" in core and not [d for d in core if "agent" in d]


def test_the_agent_changes_the_image_fingerprint(banger_plugin_manager) -> None:
    recipe = default_recipe()
    files = [f for step in _steps(banger_plugin_manager(plugin)) for f in step.installed_files()]
    assert recipe.fingerprint(recipe.installed_files() + files) != recipe.fingerprint()
