"""Recipe loading, validation and fingerprint."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from banger_core.errors import ValidationError
from banger_core.images import recipe as recipe_mod
from banger_core.images.recipe import default_recipe, load_recipe, parse_recipe

GOOD = """\
name = "test-image"
[bootstrap]
suite = "bookworm"
packages = ["openssh-server", "python3"]
"""


def test_default_recipe() -> None:
    r = default_recipe()
    assert r.name == "debian-bookworm"
    assert r.os == "debian"
    assert r.suite == "bookworm"
    assert r.variant == "minbase"
    assert {"openssh-server", "python3", "iproute2", "linux-image-cloud-amd64"} <= set(r.packages)
    assert r.rootfs_min_size_mib >= 512
    assert len(r.fingerprint()) == 64
    assert r.fingerprint() == default_recipe().fingerprint()


def test_defaults_applied() -> None:
    r = parse_recipe(GOOD)
    assert (r.variant, r.rootfs_min_size_mib, r.rootfs_headroom_mib) == (
        "minbase",
        1024,
        512,
    )


def test_installed_files() -> None:
    dests = {f.dest: f for f in default_recipe().installed_files()}
    assert dests["/usr/lib/banger/banger-boot"].mode == 0o755
    assert dests["/usr/lib/banger/banger-boot"].content.startswith(b"#!/usr/bin/python3\n")
    assert "/usr/lib/systemd/system/banger-boot.service" in dests
    # The core bakes only the boot program: the agent is the vsock plugin's.
    assert not [d for d in dests if "agent" in d]
    dropin = dests["/etc/ssh/sshd_config.d/50-banger.conf"].content.decode()
    assert "PermitRootLogin prohibit-password" in dropin
    assert "PasswordAuthentication no" in dropin


def test_fingerprint_changes_with_recipe_text() -> None:
    assert parse_recipe(GOOD).fingerprint() != parse_recipe(GOOD + "\n# comment\n").fingerprint()


def test_fingerprint_changes_with_guest_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    r = parse_recipe(GOOD)
    before = r.fingerprint()
    guest = tmp_path / "banger_guest"
    shutil.copytree(recipe_mod._guest_root(), guest)
    monkeypatch.setattr(recipe_mod, "_guest_root", lambda: guest)
    assert r.fingerprint() == before
    boot = guest / "boot.py"
    boot.write_text(boot.read_text() + "\n# edited\n")
    assert r.fingerprint() != before
    boot.write_text(boot.read_text().replace("\n# edited\n", ""))
    (guest / "systemd" / "extra.service").write_text("[Unit]\n")
    assert r.fingerprint() != before


def test_load_recipe_file(tmp_path: Path) -> None:
    path = tmp_path / "r.toml"
    path.write_text(GOOD)
    r = load_recipe(path)
    assert r.source == str(path)
    assert r.text == GOOD
    with pytest.raises(ValidationError, match="cannot read recipe"):
        load_recipe(tmp_path / "missing.toml")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name = ", "not valid TOML"),
        ('name = "Bad Name"\n[bootstrap]\nsuite = "bookworm"', "name must be"),
        ('[bootstrap]\nsuite = "bookworm"', "name must be"),
        (GOOD + 'colour = "red"\n', "unknown key"),
        (GOOD.replace('name = "test-image"', 'name = "x"\nos = "plan9"'), "os must be one of"),
        (GOOD.replace('suite = "bookworm"', "suite = 12"), "bootstrap.suite"),
        (GOOD.replace('suite = "bookworm"', 'suite = "bookworm"\nvariant = "huge"'), "variant"),
        (GOOD.replace('"python3"]', '"python3", "Bad;pkg"]'), "bad package name"),
        (GOOD.replace('["openssh-server", "python3"]', '"python3"'), "list of package names"),
        (GOOD.replace('"openssh-server", ', ""), "must include openssh-server"),
        (GOOD.replace(', "python3"', ""), "must include python3"),
        (GOOD + "[rootfs]\nmin_size_mib = -5\n", "rootfs.min_size_mib must be an integer"),
        (GOOD + "[rootfs]\nheadroom_mib = true\n", "headroom_mib must be an integer"),
        (GOOD + "[rootfs]\nsize = 3\n", r"\[rootfs\]: unknown key"),
        (GOOD + "[work_seed]\nsize_mib = 64\n", "unknown key"),  # plugins own their artifacts
        ('rootfs = "big"\n' + GOOD, r"\[rootfs\] must be a table"),
    ],
)
def test_validation_errors(text: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        parse_recipe(text, source="r.toml")


def test_python3_minimal_is_enough() -> None:
    parse_recipe(GOOD.replace('"python3"', '"python3-minimal"'))
