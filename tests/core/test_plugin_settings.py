"""One way to read a plugin's own settings (``.config``) in every hook, validator and RPC
handler; a wrong plugin name is an error, not ``{}``; plugins get a narrow daemon object."""

from __future__ import annotations

from typing import Any

import pytest

from banger_core import (
    Check,
    DoctorContext,
    LifecycleContext,
    NotFoundError,
    Option,
    ValidationError,
    VMOption,
    hookimpl,
)
from banger_core.config import load_settings
from banger_core.plugins import Hooks, get_plugin_manager
from pytest_banger.plugin import BangerHome, PluginSite


def _settings() -> Any:
    settings = load_settings({"tuned": {"level": Option(3)}}, files=[])
    settings.plugin_names = ("tuned", "plain")
    return settings


def test_a_wrong_plugin_name_is_an_error_naming_the_plugins() -> None:
    settings = _settings()
    assert settings.plugin_config("tuned") == {"level": 3}
    assert settings.plugin_config("plain") == {}  # loaded, declares nothing
    with pytest.raises(NotFoundError, match=r"^no plugin 'tunde' \(plugins: plain, tuned\)$"):
        settings.plugin_config("tunde")
    ctx = LifecycleContext(settings).for_plugin("plain")
    assert ctx.config == {} and ctx.plugin_config("tuned") == {"level": 3}
    with pytest.raises(NotFoundError, match="no plugin 'tunde'"):
        ctx.plugin_config("tunde")


def test_doctor_checks_and_validate_get_the_plugins_own_config() -> None:
    seen: dict[str, Any] = {}

    class Tuned:
        @hookimpl
        def banger_doctor_checks(self, ctx: DoctorContext) -> list[Check]:
            return [Check("level", True, f"level {ctx.config['level']}")]

        @hookimpl
        def banger_vm_validate(self, spec: Any, ctx: LifecycleContext) -> None:
            seen["validate"] = dict(ctx.config)

    class Old:  # written before validate had ctx: keeps working
        @hookimpl
        def banger_vm_validate(self, spec: Any) -> None:
            seen["old"] = spec

    pm = get_plugin_manager(load_entrypoints=False, extra=[("tuned", Tuned()), ("old", Old())])
    hooks = Hooks(pm, _settings())
    checks = hooks.doctor_checks(DoctorContext(_settings()))
    assert [(p, c.detail) for p, c in checks] == [("tuned", "level 3")]
    hooks.vm_validate("spec")  # type: ignore[arg-type]
    assert seen == {"validate": {"level": 3}, "old": "spec"}


def test_an_option_validator_may_take_the_plugins_config() -> None:
    def at_most_level(value: int, config: dict[str, Any]) -> int:
        if value > config["level"]:
            raise ValidationError(f"{value} is above the level {config['level']}")
        return value

    option = VMOption("depth", "int", 1, validator=at_most_level)
    assert option.check("2", {"level": 3}) == 2
    with pytest.raises(ValidationError, match=r"^--depth: 5 is above the level 3$"):
        option.check(5, {"level": 3})
    assert VMOption("old", "int", 1, validator=lambda v: v + 1).check(1, {"level": 3}) == 2


PLUGIN = """
import json, os, pathlib
from banger_core import BangerError, Option, ValidationError, hookimpl


@hookimpl
def banger_config_defaults():
    return {"greeting": Option("hello", "what to say")}


@hookimpl
def banger_daemon_started(daemon):
    out = pathlib.Path(os.environ["BANGER_STATE_DIR"], "seen.json")
    out.write_text(json.dumps({"type": type(daemon).__name__, "config": dict(daemon.config),
                               "has_pm": hasattr(daemon, "pm")}))


def show(params, call):
    try:
        call.daemon.plugin_config("grerter")
        typo = "no error"
    except BangerError as exc:
        typo = f"{type(exc).__name__}: {exc}"
    return {"config": dict(call.config), "daemon": type(call.daemon).__name__, "typo": typo}


@hookimpl
def banger_rpc_methods():
    return {"greeter.show": show}


@hookimpl
def banger_vm_validate(spec, ctx):
    if spec.name == "mute":
        greeting = ctx.config["greeting"]
        raise ValidationError(f"{spec.name!r} cannot be created: greeting is {greeting}")
"""


def test_plugins_read_their_settings_one_way_and_get_a_narrow_daemon(
    banger_home: BangerHome, banger_plugin_site: PluginSite
) -> None:
    banger_plugin_site.add("greeter", "banger_greeter", PLUGIN)
    banger_home.pythonpath.append(banger_plugin_site.path)
    banger_home.write_config('[plugins.greeter]\ngreeting = "hi"\n')
    assert banger_home.run("daemon", "start").returncode == 0
    import json

    seen = json.loads((banger_home.state_dir / "seen.json").read_text())
    assert seen == {"type": "PluginDaemon", "config": {"greeting": "hi"}, "has_pm": False}
    from banger_core.rpc.client import RPCClient

    with RPCClient(banger_home.paths.socket, timeout=10) as client:
        shown = client.call("greeter.show")
    assert shown["config"] == {"greeting": "hi"} and shown["daemon"] == "PluginDaemon"
    assert shown["typo"].startswith("NotFoundError: no plugin 'grerter' (plugins: ")
    refused = banger_home.run("vm", "create", "mute")
    assert refused.returncode != 0
    assert "'mute' cannot be created: greeting is hi" in refused.stderr
    assert banger_home.run("daemon", "stop").returncode == 0
