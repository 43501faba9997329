"""Plugins' provisioning steps reach the image builder."""

from __future__ import annotations

from pathlib import Path

import pytest

from banger_core import hookimpl, system
from banger_core.images import recipe as recipe_module
from banger_core.images.providers import ProvisionStep, debian_guest_os
from banger_core.net import namespaces
from banger_core.plugins import Hooks, get_plugin_manager
from tests.images.fakes import RECIPE, FakeRunner

needs_e2fs = pytest.mark.skipif(
    not (system.which("mkfs.ext4") and system.which("debugfs")), reason="needs e2fsprogs"
)


def debugfs(image: Path, request: str) -> str:
    return system.run(["debugfs", "-R", request, str(image)]).stdout


class MotdPlugin:
    @hookimpl
    def banger_image_provision(self, image, steps):
        steps.append(ProvisionStep("motd", {"/etc/motd": f"hi {image['name']}\n".encode()}))


@needs_e2fs
def test_steps_flow_into_build_image(monkeypatch, tmp_path: Path):
    """A plugin's step ends up as a file in the built image's root file system.

    The Debian provider runs its whole pipeline for real; only mmdebstrap is
    a miniature (tests/images/fakes.py), so no package is downloaded.
    """
    monkeypatch.setattr(recipe_module, "default_recipe", lambda: RECIPE)
    monkeypatch.setattr(namespaces, "host_network_runner", FakeRunner)
    hooks = Hooks(get_plugin_manager(load_entrypoints=False, extra=[("motd", MotdPlugin())]))
    steps: list = []
    hooks.image_provision({"name": "dev", "os": "debian"}, steps)
    image = debian_guest_os().build(tmp_path / "img", lambda s: None, None, steps)
    assert debugfs(image.rootfs, "cat /etc/motd") == "hi dev\n"
    assert "Mode:  0644" in debugfs(image.rootfs, "stat /etc/motd")
    # The step counts in the fingerprint: the same recipe without it differs.
    assert image.fingerprint != RECIPE.fingerprint()


def test_extra_files_change_the_fingerprint():
    from banger_core.images.recipe import InstalledFile, default_recipe

    recipe = default_recipe()
    base = recipe.installed_files()
    extra = [InstalledFile("/etc/motd", b"x", 0o644)]
    assert recipe.fingerprint(base) != recipe.fingerprint(base + extra)
