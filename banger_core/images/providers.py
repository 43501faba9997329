"""Guest OS providers: what ``banger image build --os`` can build."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class ProvisionStep:
    """A step a plugin adds to an image build: files to install into the root file system.

    :param files: guest path -> content.
    :param mode: permission bits of every file of the step.
    """

    name: str
    files: dict[str, bytes] = field(default_factory=dict)
    mode: int = 0o644

    def installed_files(self) -> list[Any]:
        """The step's files in the image builder's form."""
        from banger_core.images.recipe import InstalledFile

        return [InstalledFile(dest, content, self.mode) for dest, content in self.files.items()]


@dataclass
class GuestOS:
    """A buildable guest OS.

    :param build: ``build(out_dir, on_stage, cancel, steps, **kwargs) -> BuiltImage``,
        where ``steps`` are the plugins' :class:`ProvisionStep` items. A build
        function that accepts ``artifacts`` and ``fingerprint_extra`` keywords
        gets the plugins' image-artifact maker (pass both on to
        ``build_image``); one that does not builds images without plugin
        artifacts.
    """

    name: str
    description: str
    build: Callable[..., Any]


def debian_guest_os() -> GuestOS:
    """The core's default provider: Debian via mmdebstrap and guest/'s recipe."""

    def build(
        out_dir: Path,
        on_stage: Callable[[str], None],
        cancel: Any,
        steps: list[ProvisionStep],
        artifacts: Any = None,
        fingerprint_extra: str = "",
    ) -> Any:
        from banger_core.images.build import build_image
        from banger_core.images.recipe import default_recipe
        from banger_core.net.namespaces import host_network_runner

        extra = [f for step in steps for f in step.installed_files()]
        return build_image(
            default_recipe(),
            out_dir,
            on_stage=on_stage,
            cancel=cancel,
            extra_files=extra,
            runner=host_network_runner(),
            artifacts=artifacts,
            fingerprint_extra=fingerprint_extra,
        )

    return GuestOS("debian", "Debian bookworm (mmdebstrap minbase, sshd, python3)", build)
