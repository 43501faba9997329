"""A cached Debian guest image for tests.

``cached_debian_image()`` builds the default recipe once per fingerprint and
keeps it under ``$BANGER_TEST_IMAGE_CACHE/<fingerprint>/`` (default
``/var/cache/banger-test/images``). A file lock makes parallel test processes
build it only once; a complete cached build is reused in milliseconds.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from banger_core.errors import BangerError, NotFoundError
from banger_core.images.build import BuiltImage, build_image, read_image, remove_tree
from banger_core.images.recipe import InstalledFile, Recipe, default_recipe

DEFAULT_CACHE = "/var/cache/banger-test/images"
KEEP_BUILDS = 3
"""How many fingerprints to keep in the cache (older ones are pruned)."""


def cache_root() -> Path:
    """The cache directory: ``$BANGER_TEST_IMAGE_CACHE`` or the default."""
    return Path(os.environ.get("BANGER_TEST_IMAGE_CACHE") or DEFAULT_CACHE)


@contextlib.contextmanager
def _locked(path: Path, *, blocking: bool = True) -> Iterator[bool]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def _complete(directory: Path, fingerprint: str) -> BuiltImage | None:
    try:
        image = read_image(directory)
    except (NotFoundError, BangerError):
        return None
    return image if image.fingerprint == fingerprint else None


def _artifact_maker() -> tuple[Any, str]:
    """The installed plugins' image-artifact maker, as ``banger image build`` uses it."""
    maker, providers, _files = _plugin_parts()
    return maker, providers


def _plugin_parts() -> tuple[Any, str, list[InstalledFile]]:
    """What the installed plugins add to a build, as ``banger image build`` asks them.

    The artifact maker (``banger_image_artifacts``), which plugins provide
    artifacts, and the files of their ``banger_image_provision`` steps (the
    vsock plugin's guest agent).
    """
    from banger_core.config import load_settings
    from banger_core.images.artifacts import ArtifactCollector
    from banger_core.plugins import Hooks, get_plugin_manager

    hooks = Hooks(get_plugin_manager())
    settings = load_settings(hooks.config_defaults(), files=[])
    hooks.settings = settings
    image = {"name": "debian", "os": "debian"}
    collector = ArtifactCollector(hooks, settings, image)
    steps: list[Any] = []
    hooks.image_provision(image, steps)
    files = [f for step in steps for f in step.installed_files()]
    return collector, ",".join(collector.providers()), files


def image_fingerprint(
    recipe: Recipe,
    providers: str | None = None,
    extra_files: list[InstalledFile] | None = None,
) -> str:
    """The cache key of ``recipe``: its fingerprint (with the plugins' provisioned
    files) and which plugins add artifacts; what the installed plugins say when
    ``providers`` is None."""
    import hashlib

    if providers is None:
        _maker, providers, extra_files = _plugin_parts()
    fingerprint = recipe.fingerprint(recipe.installed_files() + list(extra_files or []))
    if providers:
        fingerprint = hashlib.sha256(f"{fingerprint}\n{providers}".encode()).hexdigest()
    return fingerprint


def cached_image(recipe: Recipe, *, verbose: bool = True) -> BuiltImage:
    """Return a built image for ``recipe``, building it at most once per fingerprint.

    The installed plugins' ``banger_image_artifacts`` run as in a real build
    (the workdisk plugin's work seed); which plugins contribute is part of
    the cache key.
    """
    maker, providers, extra_files = _plugin_parts()
    fingerprint = image_fingerprint(recipe, providers, extra_files)
    root = cache_root()
    directory = root / fingerprint
    image = _complete(directory, fingerprint)
    if image is not None:
        return image
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root / f"{fingerprint}.lock"):
        image = _complete(directory, fingerprint)
        if image is not None:
            return image
        # A build killed outright (SIGKILL, power loss) leaves its staging dir behind.
        if directory.is_dir():
            for stale in directory.glob(".build-*"):
                remove_tree(stale)
        started = time.monotonic()

        def on_stage(name: str) -> None:
            if verbose:
                elapsed = time.monotonic() - started
                print(
                    f"[banger test image {fingerprint[:12]}] {name} (+{elapsed:.1f}s)",
                    file=sys.stderr,
                    flush=True,
                )

        image = build_image(
            recipe,
            directory,
            on_stage=on_stage,
            extra_files=extra_files,
            artifacts=maker,
            fingerprint_extra=providers,
        )
        if verbose:
            print(
                f"[banger test image {fingerprint[:12]}] built in "
                f"{time.monotonic() - started:.1f}s",
                file=sys.stderr,
                flush=True,
            )
    _prune(root, keep=fingerprint)
    return image


def cached_debian_image() -> BuiltImage:
    """Build (once) and return the default Debian image, cached by fingerprint."""
    return cached_image(default_recipe())


def _prune(root: Path, *, keep: str) -> None:
    """Remove cached builds beyond the newest KEEP_BUILDS (never one being built)."""
    try:
        dirs = [d for d in root.iterdir() if d.is_dir() and len(d.name) == 64 and d.name != keep]
    except OSError:
        return
    dirs.sort(key=lambda d: d.stat().st_mtime, reverse=True)
    for old in dirs[KEEP_BUILDS - 1 :]:
        with _locked(root / f"{old.name}.lock", blocking=False) as got:
            if not got:
                continue
            with contextlib.suppress(BangerError, OSError):
                remove_tree(old)
                (root / f"{old.name}.lock").unlink(missing_ok=True)
