"""``banger doctor`` names the VMM it found: Firecracker, the simulator or banger-fcqemu."""

from __future__ import annotations

import pytest

from banger_core.doctor import vmm_kind
from banger_core.plugins import Hooks, get_plugin_manager
from pytest_banger.simhost import console_script


def _firecracker_check(banger_home, binary: str) -> dict:
    banger_home.write_config(f'[firecracker]\nbinary = "{binary}"\n')
    result = banger_home.run("doctor", "--json")
    assert result.stdout, result.stderr
    return next(c for c in result.json() if c["name"] == "firecracker")


@pytest.mark.parametrize(
    ("script", "words"),
    [
        ("banger-fcqemu", "banger-fcqemu: the guest's own kernel under QEMU"),
        ("banger-fcsim", "banger-fcsim: the Firecracker simulator, no real VMs"),
    ],
)
def test_doctor_names_the_vmm(banger_home, script: str, words: str) -> None:
    check = _firecracker_check(banger_home, console_script(script))
    assert check["ok"] and words in check["detail"]
    if script == "banger-fcqemu":
        assert "accelerator " in check["detail"]


def test_doctor_fcqemu_without_qemu_says_how_to_fix(banger_home) -> None:
    banger_home.env_overrides["BANGER_FCQEMU_QEMU"] = "qemu-system-nonexistent"
    check = _firecracker_check(banger_home, console_script("banger-fcqemu"))
    assert not check["ok"] and "qemu-system-nonexistent not found" in check["detail"]
    assert check["fix"] == "apt install qemu-system-x86"


def test_vmm_kind_by_name(tmp_path) -> None:
    backends = [b for _, b in Hooks(get_plugin_manager()).vmm_backends()]
    assert vmm_kind("/usr/bin/firecracker", backends) == "firecracker"
    link = tmp_path / "firecracker"
    link.symlink_to(console_script("banger-fcqemu"))
    assert vmm_kind(str(link), backends) == "fcqemu"
    assert vmm_kind(str(link)) == "firecracker"  # without the plugin, just a Firecracker
