"""Guest OS providers: what ``banger image build --os`` can build."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class ProvisionStep:
    """A step a plugin adds to an image build: files to install into the root file system."""

    name: str
    files: dict[str, bytes] = field(default_factory=dict)  # guest path -> content
    mode: int = 0o644


@dataclass
class GuestOS:
    """A buildable guest OS.

    :param build: ``build(out_dir, on_stage, cancel) -> BuiltImage``.
    """

    name: str
    description: str
    build: Callable[..., Any]


def debian_guest_os() -> GuestOS:
    """The core's default provider: Debian via mmdebstrap and guest/'s recipe."""

    def build(out_dir: Path, on_stage: Callable[[str], None], cancel: Any) -> Any:
        from banger_core.images.build import build_image
        from banger_core.images.recipe import default_recipe

        return build_image(default_recipe(), out_dir, on_stage=on_stage, cancel=cancel)

    return GuestOS("debian", "Debian bookworm (mmdebstrap minbase, sshd, python3)", build)
