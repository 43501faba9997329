"""The unit-test helpers plugins get: fake VM, fake context, recording runner."""

from __future__ import annotations

from pathlib import Path

import pytest

from banger_core import BangerError, CommandError, Result, hookimpl
from pytest_banger import FakeRunner, fake_context, fake_vm


class Scratch:
    @hookimpl
    def banger_vm_create(self, vm, ctx) -> None:
        size = vm.plugin_options("scratch")["scratch-size"]
        path = Path(vm.dir) / "scratch.img"
        ctx.runner(["truncate", "-s", str(size), str(path)])
        ctx.add_undo(lambda: path.unlink(missing_ok=True), "remove scratch disk")
        vm.plugin_state("scratch")["path"] = str(path)
        ctx.log.info("made %s", path)


def test_fake_vm_and_context_drive_a_hook(tmp_path: Path) -> None:
    vm = fake_vm("box", tmp_path / "vm", option_defaults={"scratch": {"scratch_size": 1 << 30}})
    ctx = fake_context("scratch", {"mount_point": "/scratch"})
    Scratch().banger_vm_create(vm=vm, ctx=ctx)
    assert ctx.runner.calls == [
        ["truncate", "-s", str(1 << 30), str(tmp_path / "vm" / "scratch.img")]
    ]
    assert ctx.undo_descriptions() == ["plugin scratch: remove scratch disk"]
    assert ctx.config == {"mount_point": "/scratch"}
    assert vm.plugin_state("scratch")["path"].endswith("scratch.img")
    assert ctx.rollback() == []


def test_fake_runner_scripts_failures() -> None:
    runner = FakeRunner({"mkfs.ext4": Result(["mkfs.ext4"], 1, "", "no space")})
    with pytest.raises(CommandError, match="no space"):
        runner(["mkfs.ext4", "x"])
    assert runner(["mkfs.ext4", "x"], check=False).returncode == 1
    assert runner.programs() == ["mkfs.ext4", "mkfs.ext4"]


def test_teardown_context_refuses_undos() -> None:
    ctx = fake_context("scratch", can_undo=False, hook="banger_vm_stopped")
    with pytest.raises(BangerError, match="cannot register undos"):
        ctx.add_undo(lambda: None, "x")


def test_fake_vm_options() -> None:
    vm = fake_vm(
        options={"nat": {"nat": True}}, option_defaults={"nat": {"nat": False}}, state="running"
    )
    assert vm.plugin_options("nat") == {"nat": True}
    assert vm.state == "running"


def test_fake_rpc_call_is_a_plugin_call_over_fake_vms():
    from banger_core import ConflictError, NotFoundError, PluginCall, UnknownMethodError
    from pytest_banger import FakeRPCCall, FakeRunner, fake_vm

    web, api = fake_vm("web", id="aaaa00000001"), fake_vm("api", id="aaaa00000002")
    call = FakeRPCCall("scratch", {"size": "1G"}, vms=[web, api], methods={"x.y": dict})
    assert isinstance(call, PluginCall)
    assert call.config == {"size": "1G"} and call.plugin_name == "scratch"
    assert call.vm("web") is web and call.vm("aaaa00000002") is api
    with pytest.raises(ConflictError, match="ambiguous: web, api"):
        call.vm("aaaa")
    with pytest.raises(NotFoundError, match="no VM 'ghost'"):
        call.vm("ghost")
    assert call.call("x.y", {"a": 1}) == {"a": 1}
    with pytest.raises(UnknownMethodError, match=r"unknown method 'vm\.agent'"):
        call.call("vm.agent")
    assert isinstance(call.runner, FakeRunner) and not call.cancelled.is_set()
    call.daemon.save_plugin_state(web, "scratch")
    assert call.daemon.saved == [("web", "scratch")]
    assert [v.name for v in call.daemon.list_vms()] == ["api", "web"]
