"""The plugin manager: entry points, failures reported per plugin, switches, ``banger plugins``."""

from __future__ import annotations

import types

import pytest

from banger_core import hookimpl
from banger_core.plugins import Hooks, failure_lines, get_plugin_manager

GOOD = """
from banger_core import hookimpl

@hookimpl
def banger_vm_started(vm):
    vm.append("good")

@hookimpl
def banger_rpc_methods():
    return {}
"""

BROKEN_IMPORT = """
raise RuntimeError("boom at import")
"""

MISSPELLED = """
from banger_core import hookimpl

@hookimpl
def banger_vm_strated(vm):
    pass
"""

BAD_ARGS = """
from banger_core import hookimpl

@hookimpl
def banger_vm_started(vm, not_an_argument):
    pass
"""


def names(pm, status: str = "loaded") -> set[str]:
    return {i.name for i in pm.infos.values() if i.status == status}


def test_loads_entry_points(banger_plugin_site, monkeypatch) -> None:
    banger_plugin_site.add(
        "tgood", "banger_tgood", GOOD, distribution="banger-tgood", version="1.2.3"
    )
    # only this plugin: the installed ones (dns, nat) would get the fake VM too
    monkeypatch.setenv("BANGER_PLUGINS", "tgood")
    pm = get_plugin_manager()
    info = pm.infos["tgood"]
    assert (info.status, info.distribution, info.version) == ("loaded", "banger-tgood", "1.2.3")
    assert info.entry_point == "tgood = banger_tgood"
    assert info.hooks == ["banger_rpc_methods", "banger_vm_started"]
    calls: list[str] = []
    Hooks(pm).vm_started(calls)
    assert "good" in calls


def test_import_failure_is_one_line_and_others_keep_working(banger_plugin_site) -> None:
    banger_plugin_site.add("tgood", "banger_tgood", GOOD)
    banger_plugin_site.add(
        "tbroken", "banger_tbroken", BROKEN_IMPORT, distribution="banger-tbroken"
    )
    pm = get_plugin_manager()
    assert "tgood" in names(pm)
    assert pm.infos["tbroken"].status == "failed"
    [line] = [ln for ln in failure_lines(pm) if "tbroken" in ln]
    assert "\n" not in line
    assert "'tbroken'" in line and "banger-tbroken" in line
    assert "tbroken = banger_tbroken" in line
    assert "RuntimeError: boom at import" in line


def test_misspelled_hook_is_reported(banger_plugin_site) -> None:
    banger_plugin_site.add("tgood", "banger_tgood", GOOD)
    banger_plugin_site.add("ttypo", "banger_ttypo", MISSPELLED)
    pm = get_plugin_manager()
    assert pm.infos["ttypo"].status == "failed"
    assert "banger_vm_strated" in pm.infos["ttypo"].error
    assert "tgood" in names(pm)
    assert pm.get_plugin("ttypo") is None


def test_unknown_hook_argument_is_reported(banger_plugin_manager) -> None:
    module = types.ModuleType("bad_args")
    exec(BAD_ARGS, module.__dict__)
    pm = banger_plugin_manager(("badargs", module))
    assert pm.infos["badargs"].status == "failed"
    assert "not_an_argument" in pm.infos["badargs"].error


def test_disabled_by_argument_and_env(banger_plugin_site, monkeypatch) -> None:
    banger_plugin_site.add("tgood", "banger_tgood", GOOD)
    banger_plugin_site.add("tother", "banger_tother", GOOD)
    pm = get_plugin_manager(disabled=["tgood"])
    assert pm.infos["tgood"].status == "disabled"
    assert "tother" in names(pm)

    monkeypatch.setenv("BANGER_DISABLE_PLUGINS", "tother, tgood")
    pm = get_plugin_manager()
    assert {"tgood", "tother"} <= names(pm, "disabled")

    monkeypatch.delenv("BANGER_DISABLE_PLUGINS")
    monkeypatch.setenv("BANGER_PLUGINS", "tother")
    pm = get_plugin_manager()
    assert names(pm) == {"tother"}
    assert "tgood" in names(pm, "disabled")


def test_extra_plugins_and_disabled_extra(banger_plugin_manager) -> None:
    class Plugin:
        @hookimpl
        def banger_vm_stopped(self, vm):
            raise RuntimeError("cannot release")

    class Other:
        @hookimpl
        def banger_vm_stopped(self, vm):
            vm.append("other")

    pm = banger_plugin_manager(("a", Plugin()), ("b", Other()))
    seen: list[str] = []
    failures = Hooks(pm).vm_stopped(seen)
    assert seen == ["other"]  # one plugin's failure does not skip the other
    assert failures == ["plugin a: banger_vm_stopped: RuntimeError: cannot release"]
    pm = banger_plugin_manager(("a", Plugin()), ("b", Other()), disabled=["a"])
    assert Hooks(pm).vm_stopped([]) == []


def test_trace_plugins(banger_plugin_manager, monkeypatch, capsys) -> None:
    monkeypatch.setenv("BANGER_TRACE_PLUGINS", "1")

    class Plugin:
        @hookimpl
        def banger_vm_started(self, vm):
            pass

    pm = banger_plugin_manager(("traced", Plugin()))
    pm.hook.banger_vm_started(vm="x")
    assert "banger_vm_started" in capsys.readouterr().err


@pytest.fixture
def site_home(banger_home, banger_plugin_site):
    banger_plugin_site.add(
        "tgood", "banger_tgood", GOOD, distribution="banger-tgood", version="1.2.3"
    )
    banger_plugin_site.add(
        "tbroken", "banger_tbroken", BROKEN_IMPORT, distribution="banger-tbroken"
    )
    banger_home.pythonpath.append(banger_plugin_site.path)
    return banger_home


def test_banger_plugins_json(site_home) -> None:
    result = site_home.run("plugins", "--json")
    assert result.returncode == 0, result.stderr
    by_name = {p["name"]: p for p in result.json()}
    good = by_name["tgood"]
    assert (good["distribution"], good["version"], good["status"]) == (
        "banger-tgood",
        "1.2.3",
        "loaded",
    )
    assert good["hooks"] == ["banger_rpc_methods", "banger_vm_started"]
    assert by_name["tbroken"]["status"] == "failed"
    # The broken plugin is one warning line on stderr, and the command still works.
    warnings = [ln for ln in result.stderr.splitlines() if "tbroken" in ln]
    assert len(warnings) == 1 and warnings[0].startswith("banger: warning: plugin 'tbroken'")


def test_banger_plugins_table(site_home) -> None:
    result = site_home.run("plugins")
    assert result.returncode == 0
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["NAME", "DISTRIBUTION", "VERSION", "STATUS", "HOOKS/PROBLEM"]
    good = next(r for r in rows if r.startswith("tgood"))
    assert "banger-tgood" in good and "1.2.3" in good and "rpc_methods, vm_started" in good
    broken = next(r for r in rows if r.startswith("tbroken"))
    assert "failed" in broken and "RuntimeError: boom at import" in broken


def test_disabled_in_config_file(site_home) -> None:
    site_home.write_config('[plugins]\ndisabled = ["tgood", "tbroken"]\n')
    result = site_home.run("plugins", "--json")
    by_name = {p["name"]: p for p in result.json()}
    assert by_name["tgood"]["status"] == "disabled"
    assert by_name["tbroken"]["status"] == "disabled"
    assert "tbroken" not in result.stderr


def test_env_switches_in_cli(site_home) -> None:
    result = site_home.run("plugins", "--json", env={"BANGER_PLUGINS": "tgood"})
    by_name = {p["name"]: p for p in result.json()}
    assert by_name["tgood"]["status"] == "loaded"
    assert by_name["tbroken"]["status"] == "disabled"
    result = site_home.run("plugins", "--json", env={"BANGER_DISABLE_PLUGINS": "tgood"})
    assert {p["name"]: p for p in result.json()}["tgood"]["status"] == "disabled"


OLD_STYLE = """
from banger_core import hookimpl
from banger_core.errors import ValidationError
from banger_core.pluginconfig import Option

@hookimpl
def banger_config_defaults():
    return {"x": Option(1, "x")}
"""


def test_old_documented_paths_work_and_warn(banger_plugin_site, monkeypatch) -> None:
    banger_plugin_site.add("oldstyle", "banger_oldstyle", OLD_STYLE)
    monkeypatch.setenv("BANGER_PLUGINS", "oldstyle")
    with pytest.warns(DeprecationWarning) as record:
        pm = get_plugin_manager()
    assert pm.infos["oldstyle"].status == "loaded"
    messages = [str(w.message) for w in record]
    assert (
        "plugin oldstyle: banger_oldstyle.py:3 imports banger_core.errors; import from "
        "banger_core itself (the old path works through this release)"
    ) in messages
    assert any("banger_core.pluginconfig" in m for m in messages)
    assert Hooks(pm).config_defaults()["oldstyle"]["x"].default == 1
