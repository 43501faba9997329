"""A misbehaving plugin is named, never fatal: every hook, a wrong result and an exception.

For each hookspec a plugin ``bad`` returns garbage (or raises) next to a plugin
``good`` that behaves. The facade must report one line naming ``bad``, the hook
and what was wrong, and then do what the hook's ``ON_FAILURE`` policy says:
``abort`` raises (naming the plugin), ``skip`` keeps the good plugin's results,
``isolate`` calls everyone and returns the failure. A hookspec without a row in
``CALLS`` fails ``test_every_hook_has_a_misbehaviour_test``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import pytest

from banger_core import (
    BangerError,
    Check,
    DoctorContext,
    GuestConfig,
    GuestOS,
    ImageArtifact,
    LifecycleContext,
    MachineSpec,
    Option,
    ReadyCheck,
    VMMBackend,
    VMOption,
    VMSpec,
    hookimpl,
    hookspecs,
)
from banger_core.config import load_settings
from banger_core.hookcheck import conform
from banger_core.images.artifacts import ArtifactCollector
from banger_core.plugins import Hooks, get_plugin_manager
from pytest_banger.fakes import FakeRunner, fake_vm

HOOKS = sorted(n for n in dir(hookspecs) if n.startswith("banger_"))


def _good_artifact(ctx: Any) -> list[ImageArtifact]:
    path = ctx.out_dir / "good.bin"
    path.write_bytes(b"x")
    return [ImageArtifact("good", path)]


#: what the well-behaved plugin returns from each hook that returns something
GOOD: dict[str, Callable[..., Any]] = {
    "banger_config_defaults": lambda **_: {"colour": Option("blue")},
    "banger_cli_commands": lambda **_: [click.Command("goodcmd")],
    "banger_cli_subcommands": lambda **_: {"vm": [click.Command("goodsub")]},
    "banger_daemon_status": lambda **_: {"up": True},
    "banger_rpc_methods": lambda **_: {"good.ping": lambda params, call: "pong"},
    "banger_doctor_checks": lambda **_: [Check("good check", True)],
    "banger_vm_options": lambda **_: [VMOption("good-flag", "bool", False)],
    "banger_vm_ready_checks": lambda **_: [ReadyCheck("good ready", lambda t, c: None)],
    "banger_vm_dns_names": lambda **_: ["good.vm"],
    "banger_guest_os": lambda **_: [GuestOS("goodos", "a good OS", lambda *a, **k: None)],
    "banger_image_artifacts": lambda ctx, **_: _good_artifact(ctx),
    "banger_vmm_backends": lambda **_: [VMMBackend("goodvmm", "/bin/true", "a good VMM")],
}


def _plugin(hook: str, behaviour: Callable[..., Any], calls: list[str]) -> object:
    """A plugin implementing only ``hook`` (its arguments by keyword) with ``behaviour``."""
    spec_args = list(getattr(hookspecs, hook).__code__.co_varnames)
    spec_args = spec_args[: getattr(hookspecs, hook).__code__.co_argcount]
    namespace: dict[str, Any] = {}
    args = ", ".join(spec_args)
    exec(  # the implementation must name the hookspec's arguments for pluggy
        f"def {hook}(self{', ' if args else ''}{args}):\n"
        f"    self.calls.append({hook!r})\n"
        f"    return self.behaviour({', '.join(f'{a}={a}' for a in spec_args)})\n",
        namespace,
    )
    cls = type(f"Plugin_{hook}", (), {hook: hookimpl(namespace[hook])})
    plugin = cls()
    plugin.calls = calls  # type: ignore[attr-defined]
    plugin.behaviour = behaviour  # type: ignore[attr-defined]
    return plugin


def _raise(**_: Any) -> Any:
    raise RuntimeError("boom")


class _Daemon:
    settings = None


def _settings() -> Any:
    return load_settings({}, files=[])


def _ctx() -> LifecycleContext:
    return LifecycleContext(_settings(), runner=FakeRunner())


def _artifacts(hooks: Hooks, tmp: Path) -> Any:
    root = tmp / "root"
    out = tmp / "out"
    root.mkdir(exist_ok=True)
    out.mkdir(exist_ok=True)
    return ArtifactCollector(hooks, None, {"name": "img", "os": "debian"})(root, out, FakeRunner())


#: how the core calls each hook (through the facade), and how to read the good plugin's part
CALLS: dict[str, Callable[[Hooks, Path], Any]] = {
    "banger_config_defaults": lambda h, _: h.config_defaults(),
    "banger_cli_commands": lambda h, _: [c.name for _, c in h.cli_commands()],
    "banger_cli_subcommands": lambda h, _: [(g, c.name) for _, g, c in h.cli_subcommands()],
    "banger_daemon_started": lambda h, _: h.daemon_started(_Daemon()),  # type: ignore[arg-type]
    "banger_daemon_stopping": lambda h, _: h.daemon_stopping(_Daemon()),  # type: ignore[arg-type]
    "banger_daemon_status": lambda h, _: h.daemon_status(_Daemon()),  # type: ignore[arg-type]
    "banger_rpc_methods": lambda h, _: [(p, m) for p, m, _ in h.rpc_methods()],
    "banger_doctor_checks": lambda h, _: [
        (p, c.name, c.ok) for p, c in h.doctor_checks(DoctorContext(_settings()))
    ],
    "banger_vm_validate": lambda h, _: h.vm_validate(VMSpec("web", "debian", 1, 256, 0)),
    "banger_vm_options": lambda h, _: [(d.plugin, d.option.name) for d in h.vm_options()],
    "banger_vm_create": lambda h, _: h.vm_create(fake_vm("web"), _ctx()),
    "banger_vm_configure": lambda h, _: h.vm_configure(
        fake_vm("web"), MachineSpec(1, 256, "/k"), GuestConfig(hostname="web"), _ctx()
    ),
    "banger_vm_set": lambda h, _: h.vm_set(fake_vm("web"), {"cpus": 2}, _ctx()),
    "banger_vm_started": lambda h, _: h.vm_started(fake_vm("web"), _ctx()),
    "banger_vm_ready_checks": lambda h, _: [
        (p, c.name) for p, c in h.vm_ready_checks(fake_vm("web"), _ctx())
    ],
    "banger_vm_stopped": lambda h, _: h.vm_stopped(fake_vm("web")),
    "banger_vm_deleted": lambda h, _: h.vm_deleted(fake_vm("web")),
    "banger_reconcile": lambda h, _: h.reconcile([fake_vm("web")]),
    "banger_vm_dns_names": lambda h, _: h.vm_dns_names(fake_vm("web")),
    "banger_guest_os": lambda h, _: [g.name for g in h.guest_os()],
    "banger_image_provision": lambda h, _: h.image_provision({"name": "img", "os": "debian"}, []),
    "banger_image_artifacts": lambda h, tmp: [a.name for a in _artifacts(h, tmp)],
    "banger_vmm_backends": lambda h, _: [(p, b.name) for p, b in h.vmm_backends()],
}


def test_every_hook_has_a_policy_and_a_misbehaviour_test() -> None:
    assert set(hookspecs.ON_FAILURE) == set(HOOKS), "add the new hook to hookspecs.ON_FAILURE"
    assert set(CALLS) == set(HOOKS), "add the new hook to CALLS in this test"
    assert set(hookspecs.ON_FAILURE.values()) <= {
        hookspecs.ABORT,
        hookspecs.SKIP,
        hookspecs.ISOLATE,
    }


def _hooks(hook: str, bad: Callable[..., Any], calls: list[str]) -> Hooks:
    good = _plugin(hook, GOOD.get(hook, lambda **_: None), calls)
    pm = get_plugin_manager(
        load_entrypoints=False,
        extra=[("bad", _plugin(hook, bad, [])), ("good", good)],
    )
    return Hooks(pm, _settings())


def _good_part(hook: str, tmp_path: Path) -> Any:
    """What the facade returns with only the good plugin installed."""
    pm = get_plugin_manager(
        load_entrypoints=False,
        extra=[("good", _plugin(hook, GOOD.get(hook, lambda **_: None), []))],
    )
    return CALLS[hook](Hooks(pm, _settings()), tmp_path / "alone")


@pytest.mark.parametrize("hook", HOOKS)
def test_a_wrong_result_is_named_and_never_fatal(hook: str, tmp_path: Path) -> None:
    calls: list[str] = []
    reported: list[str] = []
    hooks = _hooks(hook, lambda **_: 42, calls)
    hooks.report = reported.append
    (tmp_path / "alone").mkdir()
    result = CALLS[hook](hooks, tmp_path)
    assert calls == [hook], "the good plugin still ran"
    line = f"plugin bad: {hook}: returned 42 (int), expected "
    assert any(p.startswith(line) for p in hooks.problems), hooks.problems
    assert reported == hooks.problems
    if hook == "banger_doctor_checks":
        # doctor shows the bad plugin as a failing check that blocks nothing
        assert ("good", "good check", True) in result
        assert ("bad", "plugin bad", False) in result
    elif hook == "banger_daemon_status":
        assert result["good"] == {"up": True}
        assert "returned 42 (int)" in result["bad"]["error"]
    elif hookspecs.ON_FAILURE[hook] == hookspecs.ISOLATE:
        assert result == []  # a wrong result is no failure of the operation
    else:
        assert result == _good_part(hook, tmp_path)


@pytest.mark.parametrize("hook", HOOKS)
def test_an_exception_follows_the_hooks_policy(hook: str, tmp_path: Path) -> None:
    calls: list[str] = []
    hooks = _hooks(hook, _raise, calls)
    (tmp_path / "alone").mkdir()
    policy = hookspecs.ON_FAILURE[hook]
    if policy == hookspecs.ABORT:
        with pytest.raises(BangerError) as info:
            CALLS[hook](hooks, tmp_path)
        assert str(info.value) == f"plugin bad: {hook}: RuntimeError: boom"
        assert calls == [], "plugins after the failing one are not called"
        return
    result = CALLS[hook](hooks, tmp_path)
    assert calls == [hook], "the good plugin still ran"
    line = f"plugin bad: {hook}: RuntimeError: boom"
    if policy == hookspecs.ISOLATE:
        assert result == [line]
    elif hook == "banger_doctor_checks":
        assert ("bad", "plugin bad", False) in result
        assert ("good", "good check", True) in result
        assert hooks.problems == [line]
    elif hook == "banger_daemon_status":
        assert result == {"bad": {"error": "RuntimeError: boom"}, "good": {"up": True}}
        assert hooks.problems == [line]
    else:
        assert hooks.problems == [line]
        assert result == _good_part(hook, tmp_path)


def test_bad_items_are_dropped_and_good_ones_kept() -> None:
    kept, problems = conform(
        "banger_vm_options", [VMOption("ok", "bool", False), "nope", VMOption("ok2")]
    )
    assert [o.name for o in kept] == ["ok", "ok2"]
    assert problems == ["item 1: 'nope' (str) is not VMOption; skipped"]
    kept, problems = conform(
        "banger_cli_subcommands", {"vm": [click.Command("a")], "image": "b", 3: []}
    )
    assert list(kept) == ["vm"]
    assert problems == [
        "'image': 'b' (str) is not list[click.Command]; skipped",
        "key 3 (int) is not str; skipped",
    ]
    kept, problems = conform("banger_rpc_methods", {"x.y": "not callable"})
    assert kept == {} and problems == ["'x.y': 'not callable' (str) is not callable; skipped"]


def test_none_means_nothing_and_is_never_a_problem() -> None:
    for hook in HOOKS:
        assert conform(hook, None) == (None, [])


def test_the_same_problem_is_reported_once() -> None:
    reported: list[str] = []
    hooks = _hooks("banger_vm_dns_names", lambda **_: 42, [])
    hooks.report = reported.append
    for _ in range(3):
        assert hooks.vm_dns_names(fake_vm("web")) == ["good.vm"]
    assert len(reported) == 1 and hooks.problems == reported
