"""cached_image(): one build per fingerprint across concurrent callers, reuse after."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from banger_core import system
from banger_core.images import build as build_mod
from pytest_banger import images as cache

from .fakes import RECIPE, FakeRunner

pytestmark = pytest.mark.skipif(
    not (system.which("mkfs.ext4") and system.which("debugfs")), reason="needs e2fsprogs"
)


@pytest.fixture
def counted_builds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    monkeypatch.setenv("BANGER_TEST_IMAGE_CACHE", str(tmp_path / "cache"))
    calls: list[Path] = []

    def fake_build(recipe: Any, out_dir: Path, **kw: Any) -> build_mod.BuiltImage:
        calls.append(out_dir)
        return build_mod.build_image(recipe, out_dir, runner=FakeRunner(), **kw)

    monkeypatch.setattr(cache, "build_image", fake_build)
    return calls


def test_concurrent_callers_build_once(counted_builds: list[Path]) -> None:
    results: list[build_mod.BuiltImage] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            results.append(cache.cached_image(RECIPE, verbose=False))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert len(counted_builds) == 1
    assert len(results) == 4 and all(r == results[0] for r in results)
    assert results[0].directory == cache.cache_root() / cache.image_fingerprint(RECIPE)
    # later calls reuse it
    assert cache.cached_image(RECIPE, verbose=False) == results[0]
    assert len(counted_builds) == 1


def test_incomplete_cache_is_rebuilt(counted_builds: list[Path]) -> None:
    first = cache.cached_image(RECIPE, verbose=False)
    first.rootfs.unlink()  # damaged cache
    stale = first.directory / ".build-dead"
    (stale / "root").mkdir(parents=True)
    second = cache.cached_image(RECIPE, verbose=False)
    assert len(counted_builds) == 2
    assert second.rootfs.is_file()
    assert not stale.exists()


def test_prune_keeps_recent_builds(counted_builds: list[Path]) -> None:
    root = cache.cache_root()
    root.mkdir(parents=True)
    old = [root / (f"{i:x}" * 64)[:64] for i in range(1, 6)]
    for d in old:
        d.mkdir()
    cache.cached_image(RECIPE, verbose=False)
    left = sorted(d.name for d in root.iterdir() if d.is_dir())
    assert len(left) == cache.KEEP_BUILDS
    assert cache.image_fingerprint(RECIPE) in left
