"""Plugins' provisioning steps reach the image builder."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from banger_core import hookimpl
from banger_core.images import build as build_module
from banger_core.images.providers import ProvisionStep, debian_guest_os
from banger_core.plugins import Hooks, get_plugin_manager


class MotdPlugin:
    @hookimpl
    def banger_image_provision(self, image, steps):
        steps.append(ProvisionStep("motd", {"/etc/motd": f"hi {image['name']}\n".encode()}))


def test_steps_flow_into_build_image(monkeypatch, tmp_path: Path):
    seen = {}

    def fake_build_image(recipe, out_dir, **kwargs):
        seen.update(kwargs)
        return SimpleNamespace(out=out_dir)

    monkeypatch.setattr(build_module, "build_image", fake_build_image)
    hooks = Hooks(get_plugin_manager(load_entrypoints=False, extra=[("motd", MotdPlugin())]))
    steps: list = []
    hooks.image_provision({"name": "dev", "os": "debian"}, steps)
    debian_guest_os().build(tmp_path, lambda s: None, None, steps)
    files = seen["extra_files"]
    assert [(f.dest, f.content, f.mode) for f in files] == [("/etc/motd", b"hi dev\n", 0o644)]


def test_extra_files_change_the_fingerprint():
    from banger_core.images.recipe import InstalledFile, default_recipe

    recipe = default_recipe()
    base = recipe.installed_files()
    extra = [InstalledFile("/etc/motd", b"x", 0o644)]
    assert recipe.fingerprint(base) != recipe.fingerprint(base + extra)
