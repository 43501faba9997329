"""How the core calls hooks: through pluggy (wrappers, tryfirst/trylast, tracing), one plugin
at a time, in a documented order, with a per-plugin context."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest

from banger_core import BangerError, LifecycleContext, ValidationError, hookimpl
from banger_core.config import load_settings
from banger_core.pluginconfig import Option
from banger_core.plugins import Hooks, get_plugin_manager

TEARDOWN = ("banger_vm_stopped", "banger_vm_deleted", "banger_reconcile", "banger_daemon_stopping")


class Recorder:
    """A plugin recording each teardown and setup call into a shared log."""

    def __init__(self, name: str, log: list[str], *, fail: str = "") -> None:
        self.name, self.log, self.fail = name, log, fail

    def _note(self, hook: str) -> None:
        self.log.append(f"{self.name}:{hook}")
        if hook == self.fail:
            raise RuntimeError(f"{self.name} broke in {hook}")

    @hookimpl
    def banger_vm_stopped(self, vm: Any) -> None:
        self._note("stopped")

    @hookimpl
    def banger_vm_deleted(self, vm: Any) -> None:
        self._note("deleted")

    @hookimpl
    def banger_reconcile(self, vms: Any) -> None:
        self._note("reconcile")

    @hookimpl
    def banger_daemon_stopping(self, daemon: Any) -> None:
        self._note("daemon_stopping")

    @hookimpl
    def banger_vm_started(self, vm: Any, ctx: LifecycleContext) -> None:
        self._note("started")


class Wrapper:
    """New-style wrappers on every teardown hook."""

    def __init__(self, log: list[str]) -> None:
        self.log = log

    def _wrap(self, hook: str) -> Generator[None, Any, Any]:
        self.log.append(f"wrap-in:{hook}")
        try:
            return (yield)
        finally:
            self.log.append(f"wrap-out:{hook}")

    @hookimpl(wrapper=True)
    def banger_vm_stopped(self, vm: Any) -> Generator[None, Any, Any]:
        return (yield from self._wrap("stopped"))

    @hookimpl(wrapper=True)
    def banger_vm_deleted(self, vm: Any) -> Generator[None, Any, Any]:
        return (yield from self._wrap("deleted"))

    @hookimpl(wrapper=True)
    def banger_reconcile(self, vms: Any) -> Generator[None, Any, Any]:
        return (yield from self._wrap("reconcile"))

    @hookimpl(wrapper=True)
    def banger_daemon_stopping(self, daemon: Any) -> Generator[None, Any, Any]:
        return (yield from self._wrap("daemon_stopping"))


class OldWrapper:
    """An old-style ``hookwrapper=True`` on ``banger_vm_stopped``."""

    def __init__(self, log: list[str]) -> None:
        self.log = log

    @hookimpl(hookwrapper=True)
    def banger_vm_stopped(self, vm: Any) -> Generator[None, Any, None]:
        self.log.append("old-in")
        yield
        self.log.append("old-out")


def _hooks(*plugins: tuple[str, object], settings: Any = None) -> Hooks:
    return Hooks(get_plugin_manager(load_entrypoints=False, extra=plugins), settings)


def test_wrapper_on_each_teardown_hook_runs_around_each_plugin_and_is_traced(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BANGER_TRACE_PLUGINS", "1")
    log: list[str] = []
    hooks = _hooks(
        ("a", Recorder("a", log)),
        ("b", Recorder("b", log)),
        ("w", Wrapper(log)),
        ("old", OldWrapper(log)),
    )
    assert hooks.vm_stopped(object()) == []
    assert hooks.vm_deleted(object()) == []
    assert hooks.reconcile([]) == []
    assert hooks.daemon_stopping(object()) == []
    for hook in ("stopped", "deleted", "reconcile", "daemon_stopping"):
        calls = [
            entry
            for entry in log
            if entry.endswith(f":{hook}") or (hook == "stopped" and entry.startswith("old"))
        ]
        # teardown runs in reverse setup order (b before a), each call wrapped
        expected = [
            f"wrap-in:{hook}",
            f"b:{hook}",
            f"wrap-out:{hook}",
            f"wrap-in:{hook}",
            f"a:{hook}",
            f"wrap-out:{hook}",
        ]
        if hook == "stopped":
            expected = [
                "old-in",
                "wrap-in:stopped",
                "b:stopped",
                "wrap-out:stopped",
                "old-out",
                "old-in",
                "wrap-in:stopped",
                "a:stopped",
                "wrap-out:stopped",
                "old-out",
            ]
        assert calls == expected, hook
    trace = capsys.readouterr().err
    for hook in TEARDOWN:
        assert trace.count(f"{hook} [hook]") == 2, (hook, trace)


def test_setup_order_is_registration_order_and_teardown_its_reverse() -> None:
    log: list[str] = []
    hooks = _hooks(("a", Recorder("a", log)), ("b", Recorder("b", log)), ("c", Recorder("c", log)))
    hooks.vm_started(object(), LifecycleContext(None))
    hooks.vm_stopped(object())
    assert log == ["a:started", "b:started", "c:started", "c:stopped", "b:stopped", "a:stopped"]


def test_entry_points_register_in_name_order(
    banger_plugin_site: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BANGER_PLUGINS", "zeta,alpha,mid")
    source = """
from banger_core import hookimpl
LOG = []

@hookimpl
def banger_vm_validate(spec):
    spec.append(__name__)
"""
    for name in ("zeta", "alpha", "mid"):
        banger_plugin_site.add(name, f"banger_order_{name}", source)
    pm = get_plugin_manager()
    assert pm.order == ["alpha", "mid", "zeta"]
    seen: list[str] = []
    Hooks(pm).vm_validate(seen)
    assert [s.removeprefix("banger_order_") for s in seen if s.startswith("banger_order_")] == [
        "alpha",
        "mid",
        "zeta",
    ]


def test_tryfirst_and_trylast_are_honoured() -> None:
    log: list[str] = []

    class First:
        @hookimpl(tryfirst=True)
        def banger_vm_stopped(self, vm: Any) -> None:
            log.append("first")

    class Last:
        @hookimpl(trylast=True)
        def banger_vm_stopped(self, vm: Any) -> None:
            log.append("last")

    hooks = _hooks(("last", Last()), ("a", Recorder("a", log)), ("first", First()))
    hooks.vm_stopped(object())
    # teardown is the reverse of setup (first, a, last)
    assert log == ["last", "a:stopped", "first"]


def test_a_failing_teardown_plugin_neither_hides_its_name_nor_stops_the_others() -> None:
    log: list[str] = []
    hooks = _hooks(
        ("a", Recorder("a", log)),
        ("b", Recorder("b", log, fail="deleted")),
        ("c", Recorder("c", log)),
    )
    failures = hooks.vm_deleted(object())
    assert failures == ["plugin b: banger_vm_deleted: RuntimeError: b broke in deleted"]
    assert log == ["c:deleted", "b:deleted", "a:deleted"]


def test_create_failure_names_the_plugin_stops_later_plugins_and_its_undo_runs() -> None:
    events: list[str] = []

    class Makes:
        @hookimpl
        def banger_vm_create(self, vm: Any, ctx: LifecycleContext) -> None:
            events.append("a made")
            ctx.add_undo(lambda: events.append("a undone"), "a's thing")

    class Breaks:
        @hookimpl
        def banger_vm_create(self, vm: Any, ctx: LifecycleContext) -> None:
            ctx.add_undo(lambda: events.append("b undone"), "b's half-made thing")
            raise ValueError("disk full")

    class Never:
        @hookimpl
        def banger_vm_create(self, vm: Any, ctx: LifecycleContext) -> None:
            events.append("c ran")

    hooks = _hooks(("a", Makes()), ("b", Breaks()), ("c", Never()))
    ctx = LifecycleContext(None)
    with pytest.raises(BangerError, match=r"^plugin b: banger_vm_create: ValueError: disk full"):
        hooks.vm_create(object(), ctx)
    assert [u.description for u in ctx.undos] == [
        "plugin a: a's thing",
        "plugin b: b's half-made thing",
    ]
    assert ctx.rollback() == []
    assert events == ["a made", "b undone", "a undone"]


def test_user_errors_keep_their_class_and_name_the_plugin() -> None:
    class Picky:
        @hookimpl
        def banger_vm_validate(self, spec: Any) -> None:
            raise ValidationError("name 'x' is not allowed: use y")

    with pytest.raises(ValidationError, match=r"^plugin picky: name 'x' is not allowed"):
        _hooks(("picky", Picky())).vm_validate(object())


def test_each_plugin_gets_its_own_context() -> None:
    seen: dict[str, Any] = {}

    class P:
        def __init__(self, name: str) -> None:
            self.name = name

        @hookimpl
        def banger_vm_create(self, vm: Any, ctx: LifecycleContext) -> None:
            seen[self.name] = (ctx.plugin_name, dict(ctx.config), ctx.runner, ctx.log.extra)

        @hookimpl
        def banger_config_defaults(self) -> dict[str, Option]:
            return {"colour": Option(f"{self.name}-blue", "a colour")}

    hooks = _hooks(("one", P("one")), ("two", P("two")))
    settings = load_settings(hooks.config_defaults(), files=[])
    from banger_core import system

    hooks.vm_create(object(), LifecycleContext(settings))
    assert seen["one"][:2] == ("one", {"colour": "one-blue"})
    assert seen["two"][:2] == ("two", {"colour": "two-blue"})
    assert seen["one"][2] is system.run
    assert seen["two"][3] == {"plugin": "two"}


def test_teardown_contexts_refuse_undos_and_old_impls_without_ctx_still_work() -> None:
    errors: list[str] = []
    old_calls: list[str] = []

    class New:
        @hookimpl
        def banger_vm_stopped(self, vm: Any, ctx: LifecycleContext) -> None:
            try:
                ctx.add_undo(lambda: None, "x")
            except BangerError as exc:
                errors.append(str(exc))

    class Old:
        @hookimpl
        def banger_vm_stopped(self, vm: Any) -> None:
            old_calls.append("old")

    assert _hooks(("new", New()), ("old", Old())).vm_stopped(object()) == []
    assert old_calls == ["old"]
    assert errors == [
        "plugin new: banger_vm_stopped cannot register undos (only create, "
        "configure, set and started can)"
    ]


def test_plugin_failpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = LifecycleContext(None).for_plugin("scratch", "banger_vm_create")
    ctx.failpoint("after-mkfs")  # not armed: nothing happens
    monkeypatch.setenv("BANGER_FAILPOINTS", "scratch.after-mkfs")
    with pytest.raises(BangerError, match=r"scratch\.after-mkfs"):
        ctx.failpoint("after-mkfs")


def test_a_collecting_hook_that_raises_skips_only_that_plugin() -> None:
    class Broken:
        @hookimpl
        def banger_rpc_methods(self) -> dict[str, Any]:
            raise RuntimeError("no")

    class Fine:
        @hookimpl
        def banger_rpc_methods(self) -> dict[str, Any]:
            return {"fine.ping": lambda p, c: "pong"}

    hooks = _hooks(("broken", Broken()), ("fine", Fine()))
    assert [(p, m) for p, m, _ in hooks.rpc_methods()] == [("fine", "fine.ping")]
    assert hooks.problems == ["plugin broken: banger_rpc_methods: RuntimeError: no"]


def test_daemon_started_failure_is_isolated() -> None:
    started: list[str] = []

    class Broken:
        @hookimpl
        def banger_daemon_started(self, daemon: Any) -> None:
            raise RuntimeError("port 53 in use")

    class Fine:
        @hookimpl
        def banger_daemon_started(self, daemon: Any) -> None:
            started.append("fine")

    failures = _hooks(("broken", Broken()), ("fine", Fine())).daemon_started(object())
    assert failures == ["plugin broken: banger_daemon_started: RuntimeError: port 53 in use"]
    assert started == ["fine"]
