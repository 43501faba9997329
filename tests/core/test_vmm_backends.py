"""VMM back-ends are plugins, and one rule chooses the VMM (driven through the CLI).

The rule: a program named by ``[firecracker] binary`` / ``BANGER_FIRECRACKER_BIN``,
else the registered back-end named by ``[firecracker] backend``, else
``firecracker`` from PATH or an installed runtime (``STATE/runtime/firecracker``),
else one error listing the choices. A third party's back-end is registered here
exactly as banger-fcsim and banger-fcqemu register theirs.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from pytest_banger.simhost import console_script

FAKE_VMM = """#!/bin/sh
# Answers like Firecracker's --version; nothing else is needed by these tests.
[ "$1" = "--version" ] && echo "Firecracker v1.16.1" && exit 0
exit 1
"""

TOY_PLUGIN = """
from banger_core import BackendProbe, VMMBackend, hookimpl

PROGRAM = {program!r}


def probe(path):
    return BackendProbe(True, "toy probe ran on " + path.rsplit("/", 1)[-1])


@hookimpl
def banger_vmm_backends():
    return [
        VMMBackend(
            name="toy",
            program=PROGRAM,
            description="a third party's Firecracker-API VMM",
            capabilities=("firecracker-api", "snapshots"),
            probe=probe,
        )
    ]
"""


def _fake_vmm(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(FAKE_VMM)
    path.chmod(0o755)
    return path


@pytest.fixture
def home(banger_home, banger_plugin_site, tmp_path: Path):
    """A banger home with the toy back-end installed (entry point, like pip would)."""
    program = _fake_vmm(tmp_path / "bin" / "toy-vmm")
    banger_plugin_site.add(
        "toy", "banger_toy", TOY_PLUGIN.format(program=str(program)), distribution="banger-toy"
    )
    banger_home.pythonpath.append(banger_plugin_site.path)
    banger_home.program = program  # type: ignore[attr-defined]
    yield banger_home
    banger_home.run("daemon", "stop")


def _vmm_check(home) -> dict:
    result = home.run("doctor", "--json")
    assert result.stdout, result.stderr
    return next(c for c in result.json() if c["name"] == "firecracker")


def _status(home) -> dict:
    started = home.run("daemon", "start")
    assert started.returncode == 0, started.stderr
    result = home.run("daemon", "status", "--json")
    assert result.returncode == 0, result.stderr
    return result.json()["vmm"]


def test_a_registered_backend_named_in_the_config_is_used(home) -> None:
    home.write_config('[firecracker]\nbackend = "toy"\n')
    check = _vmm_check(home)
    assert check["ok"], check
    assert check["detail"] == (
        f"{home.program} (toy-vmm: a third party's Firecracker-API VMM; "
        "toy probe ran on toy-vmm; chosen by [firecracker] backend = 'toy')"
    )
    vmm = _status(home)
    assert vmm["backend"] == "toy" and vmm["program"] == str(home.program)
    assert vmm["source"] == "[firecracker] backend" and vmm["version"] == "1.16.1"
    assert vmm["capabilities"] == ["firecracker-api", "snapshots"]
    text = home.run("daemon", "status").stdout
    assert f"vmm:      toy {home.program} (Firecracker v1.16.1; [firecracker] backend)" in text


def test_the_shipped_backends_are_registered_the_same_way(home) -> None:
    home.write_config('[firecracker]\nbackend = "fcsim"\n')
    vmm = _status(home)
    assert vmm["backend"] == "fcsim" and Path(vmm["program"]).name == "banger-fcsim"
    assert "simulated-guest" in vmm["capabilities"]
    assert "banger-fcsim: the Firecracker simulator" in _vmm_check(home)["detail"]


def test_binary_wins_over_backend_and_the_variable_over_the_file(home, tmp_path: Path) -> None:
    fcsim = console_script("banger-fcsim")
    home.write_config(f'[firecracker]\nbinary = "{fcsim}"\nbackend = "toy"\n')
    vmm = _status(home)
    assert (vmm["backend"], vmm["program"], vmm["source"]) == (
        "fcsim",
        fcsim,
        "[firecracker] binary",
    )
    home.run("daemon", "stop")
    other = _fake_vmm(tmp_path / "elsewhere" / "firecracker")
    home.env_overrides["BANGER_FIRECRACKER_BIN"] = str(other)
    vmm = _status(home)
    assert (vmm["backend"], vmm["program"], vmm["source"]) == (
        "firecracker",
        str(other),
        "$BANGER_FIRECRACKER_BIN",
    )
    assert _vmm_check(home)["detail"] == f"{other} (Firecracker)"


def test_an_unknown_backend_is_one_error_listing_the_choices(home) -> None:
    home.write_config('[firecracker]\nbackend = "nope"\n')
    check = _vmm_check(home)
    assert not check["ok"] and check["required"]
    assert check["detail"] == "[firecracker] backend = 'nope' is not a registered VMM back-end"
    assert check["fix"] == (
        "set [firecracker] binary = PATH (or BANGER_FIRECRACKER_BIN), or "
        "[firecracker] backend = NAME (registered back-ends: fcqemu, fcsim, toy), or install "
        "firecracker on PATH (github.com/firecracker-microvm/firecracker releases)"
    )
    text = home.run("daemon", "status").stdout
    assert (
        "vmm:      nope: [firecracker] backend = 'nope' is not a registered VMM back-end; "
        "set [firecracker] binary = PATH" in text
    )


def test_no_vmm_configured_then_an_installed_runtime(home) -> None:
    bare_path = os.pathsep.join([str(Path(sys.executable).parent), "/usr/bin", "/bin"])
    if shutil.which("firecracker", path=f"{bare_path}:/usr/local/sbin:/usr/sbin:/sbin"):
        pytest.skip("a real firecracker is installed on this machine")
    home.env_overrides["PATH"] = bare_path
    home.write_config("")
    check = _vmm_check(home)
    assert not check["ok"]
    assert check["detail"] == "no VMM found"
    assert check["fix"].startswith("set [firecracker] binary = PATH")
    home.run("daemon", "stop")
    runtime = _fake_vmm(home.state_dir / "runtime" / "firecracker")
    vmm = _status(home)
    assert (vmm["backend"], vmm["program"], vmm["source"]) == (
        "firecracker",
        str(runtime),
        "runtime",
    )
    assert _vmm_check(home)["detail"] == f"{runtime} (Firecracker; chosen by runtime)"


def test_config_show_has_both_keys(home) -> None:
    home.write_config('[firecracker]\nbackend = "toy"\n')
    result = home.run("config", "show", "--json")
    assert result.returncode == 0, result.stderr
    rows = {(r["section"], r["key"]): r for r in result.json()}
    assert rows[("firecracker", "backend")]["value"] == "toy"
    assert ("firecracker", "binary") in rows


def test_the_simulators_own_programs_are_its_checks(home) -> None:
    home.write_config('[firecracker]\nbackend = "fcsim"\n')
    result = home.run("doctor", "--json")
    checks = {(c["name"], c["source"]) for c in result.json()}
    assert ("program ethtool", "fcsim") in checks and ("program ethtool", "core") not in checks
    home.run("daemon", "stop")
    home.write_config('[firecracker]\nbackend = "toy"\n')
    names = [c["name"] for c in home.run("doctor", "--json").json()]
    assert "program ethtool" not in names  # not the simulator: not its programs
