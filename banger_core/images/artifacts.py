"""Image artifacts: files plugins add to an image while it is built.

A plugin implementing ``banger_image_artifacts`` gets the image's root tree
before it becomes ``rootfs.ext4``; it may move content out of the tree and
write files of its own (a plugin may turn a directory of the tree into an
ext4 image each VM then gets a copy of). Each returned
:class:`ImageArtifact` is published in the image directory, listed in
``image.json`` and the store, and reaches hooks as ``vm.image.artifact(name)``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from banger_core import system
from banger_core.errors import PluginError, plugin_error

_NAME = re.compile(r"^[a-z][a-z0-9-]*$")
RESERVED_FILES = frozenset({"vmlinux", "vmlinuz", "initrd.img", "rootfs.ext4", "image.json"})


@dataclass(frozen=True)
class ImageArtifact:
    """A file a plugin made for an image.

    :param name: how hooks ask for it (``vm.image.artifact("scratch-seed")``):
        lower case, digits, dashes; unique per image.
    :param path: the file, written under ``ctx.out_dir``; it is moved into
        the image directory under its own file name.
    """

    name: str
    path: Path


@dataclass
class ImageBuildContext:
    """What ``banger_image_artifacts`` gets as ``ctx``."""

    plugin_name: str
    out_dir: Path
    config: Mapping[str, Any] = field(default_factory=dict)
    runner: system.Runner = system.run

    @property
    def log(self) -> logging.LoggerAdapter[logging.Logger]:
        """A logger bound to the plugin."""
        from banger_core.hookcontext import plugin_logger

        return plugin_logger(self.plugin_name)

    def make_ext4(
        self,
        source: Path,
        dest: Path,
        *,
        label: str,
        min_size_mib: int = 16,
        root_mode: int | None = None,
    ) -> Path:
        """Make ext4 image ``dest`` holding the tree ``source`` (sized to fit, with headroom).

        No file system is mounted (``mkfs.ext4 -d``). ``root_mode`` sets the
        permissions of the file system's root directory.
        """
        from banger_core.images.build import _mib, make_ext4, tree_usage

        size = max(min_size_mib, _mib(tree_usage(source) * 1.2) + 16)
        make_ext4(source, dest, size, label, runner=self.runner, root_mode=root_mode)
        return dest


def check_artifacts(
    plugin: str, result: Any, out_dir: Path, taken: set[str]
) -> list[ImageArtifact]:
    """Validate what one plugin returned; raise naming the plugin."""
    out: list[ImageArtifact] = []
    for item in result or []:
        if not isinstance(item, ImageArtifact):
            raise PluginError(
                f"plugin {plugin}: banger_image_artifacts returned {item!r}, not an ImageArtifact"
            )
        path = Path(item.path)
        if not _NAME.match(item.name):
            raise PluginError(
                f"plugin {plugin}: image artifact name {item.name!r} must be "
                "lower case letters, digits and dashes"
            )
        if item.name in taken:
            raise PluginError(
                f"plugin {plugin}: image artifact {item.name!r} is already "
                "provided by another plugin"
            )
        if path.parent.resolve() != out_dir.resolve() or not path.is_file():
            raise PluginError(
                f"plugin {plugin}: image artifact {item.name!r} must be a file "
                f"directly in ctx.out_dir ({out_dir}), not {path}"
            )
        if path.name in RESERVED_FILES:
            raise PluginError(
                f"plugin {plugin}: image artifact file name {path.name!r} is reserved"
            )
        taken.add(item.name)
        out.append(ImageArtifact(item.name, path))
    return out


class ArtifactCollector:
    """Calls every plugin's ``banger_image_artifacts`` for one build (the build's callback)."""

    def __init__(self, hooks: Any, settings: Any, image: dict[str, Any]) -> None:
        self.hooks = hooks
        self.settings = settings
        self.image = image

    def providers(self) -> list[str]:
        """Names of the plugins that contribute artifacts (part of the image fingerprint)."""
        return [impl.plugin_name for impl in self.hooks.impls("banger_image_artifacts")]

    def __call__(self, root: Path, out_dir: Path, runner: system.Runner) -> list[ImageArtifact]:
        """Run every provider in plugin order over the root tree ``root``."""
        taken: set[str] = set()
        found: list[ImageArtifact] = []
        for impl in self.hooks.impls("banger_image_artifacts"):
            name = impl.plugin_name
            config = self.settings.plugin(name) if self.settings is not None else {}
            ctx = ImageBuildContext(name, out_dir, config, runner)
            try:
                result = self.hooks.call_one(
                    "banger_image_artifacts", impl, {"image": self.image, "root": root, "ctx": ctx}
                )
            except Exception as exc:
                raise plugin_error(exc, name, "banger_image_artifacts") from exc
            found += check_artifacts(name, result, out_dir, taken)
        return found
