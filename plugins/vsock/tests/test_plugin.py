"""The vsock plugin's hooks without a daemon: CIDs, the machine's device, doctor."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from banger_core.config import load_settings
from banger_core.guestconfig import GuestConfig
from banger_core.lifecycle.context import LifecycleContext
from banger_core.lifecycle.machine import MachineSpec
from banger_core.plugins import Hooks, get_plugin_manager
from banger_vsock import plugin
from banger_vsock.doctor import vhost_vsock_check


def _vm(tmp_path: Path, ip: str) -> SimpleNamespace:
    states: dict = {}
    return SimpleNamespace(
        name="box",
        ip=ip,
        prefixlen=24,
        vsock_path=tmp_path / "vsock.sock",
        plugin_states=states,
        plugin_state=lambda name: states.setdefault(name, {}),
    )


def _hooks() -> tuple[Hooks, object]:
    hooks = Hooks(get_plugin_manager(load_entrypoints=False, extra=[("vsock", plugin)]))
    return hooks, load_settings(hooks.config_defaults(), files=[])


def test_cids_are_unique_and_stable_per_address(tmp_path: Path) -> None:
    cids = {plugin.cid_for(_vm(tmp_path, f"172.30.0.{n}")) for n in range(2, 254)}
    assert len(cids) == 252 and min(cids) >= 3
    assert plugin.cid_for(_vm(tmp_path, "10.0.1.7")) == plugin.cid_for(_vm(tmp_path, "10.0.1.7"))


def test_create_and_configure_attach_the_device(tmp_path: Path) -> None:
    hooks, settings = _hooks()
    vm = _vm(tmp_path, "172.30.0.9")
    hooks.vm_create(vm, LifecycleContext(settings))
    assert vm.plugin_state("vsock") == {
        "cid": 12,
        "port": 1024,
        "uds_path": str(tmp_path / "vsock.sock"),
    }
    (tmp_path / "vsock.sock").write_text("stale")  # left by a VMM: must not block the bind
    machine = MachineSpec(vcpus=1, memory_mib=128, kernel="k")
    guest = GuestConfig("box")
    hooks.vm_configure(vm, machine, guest)
    assert machine.vsock is not None
    assert (machine.vsock.guest_cid, machine.vsock.uds_path) == (12, str(tmp_path / "vsock.sock"))
    assert not (tmp_path / "vsock.sock").exists()
    assert guest.document()["agent"] == {"vsock_port": 1024}
    [(name, check)] = hooks.vm_ready_checks(vm, LifecycleContext(settings))
    assert (name, check.name, check.detail) == ("vsock", "waiting for agent", "vsock port 1024")


def test_vm_from_before_the_plugin_gets_a_device_at_next_boot(tmp_path: Path) -> None:
    hooks, _settings = _hooks()
    vm = _vm(tmp_path, "172.30.0.2")
    machine = MachineSpec(vcpus=1, memory_mib=128, kernel="k")
    hooks.vm_configure(vm, machine, GuestConfig("box"))
    assert machine.vsock is not None and vm.plugin_state("vsock")["cid"] == 5


def test_doctor_explains_what_the_simulator_provides(tmp_path: Path) -> None:
    sim = SimpleNamespace(get=lambda s, k: "/usr/bin/banger-fcsim")
    real = SimpleNamespace(get=lambda s, k: "/usr/bin/firecracker")
    missing = str(tmp_path / "vhost-vsock")
    check = vhost_vsock_check(sim, missing)
    assert check.ok and not check.required
    assert "simulator" in check.detail and "CONNECT <port>" in check.detail
    check = vhost_vsock_check(real, missing)
    assert not check.ok and not check.required and "modprobe vhost_vsock" in check.fix
    present = tmp_path / "dev"
    present.write_text("")
    assert vhost_vsock_check(real, str(present)).ok
