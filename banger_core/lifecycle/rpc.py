"""The ``vm.*``, ``image.*`` and ``doctor.*`` RPC methods."""

from __future__ import annotations

from typing import Any

from banger_core.daemon.server import RPCCall
from banger_core.errors import ValidationError
from banger_core.images.registry import image_dict


def _ref(params: dict[str, Any]) -> str:
    ref = params.get("ref")
    if not isinstance(ref, str) or not ref:
        raise ValidationError("parameter 'ref' (a VM name or id) is required")
    return ref


def register(daemon: Any, vms: Any, images: Any) -> None:
    """Register the lifecycle methods on ``daemon.server``."""
    ops = daemon.operations

    def create(params: dict[str, Any], call: RPCCall) -> dict[str, Any]:
        # Bad input is refused before an operation exists, so it changes nothing.
        vms.validate_create(dict(params))
        name = params.get("name")
        op = ops.begin("vm.create", str(name), lambda op: vms.create(op, dict(params)))
        return op.as_dict()

    def build(params: dict[str, Any], call: RPCCall) -> dict[str, Any]:
        name = str(params.get("name") or "")
        os_name = str(params.get("os") or "debian")
        images.validate_build(name, os_name)
        op = ops.begin("image.build", name, lambda op: images.build(op, name, os_name))
        return op.as_dict()

    def doctor(params: dict[str, Any], call: RPCCall) -> list[dict[str, Any]]:
        from banger_core.doctor import run_checks

        return [c.as_dict() for c in run_checks(daemon.settings, daemon.hooks)]

    def show(params: dict[str, Any], call: RPCCall) -> dict[str, Any]:
        vm = vms.resolve(_ref(params))
        return {**vm.summary(), "dns_names": daemon.hooks.vm_dns_names(vm)}

    def ssh_config(params: dict[str, Any], call: RPCCall) -> dict[str, Any]:
        refs = params.get("refs") or []
        if not isinstance(refs, list) or not all(isinstance(r, str) and r for r in refs):
            raise ValidationError("parameter 'refs' must be a list of VM names or ids")
        return vms.ssh_config(refs)

    methods = {
        "vm.create": create,
        "vm.list": lambda p, c: vms.list(),
        "vm.show": show,
        "vm.start": lambda p, c: vms.start(_ref(p), c.cancelled.is_set),
        "vm.stop": lambda p, c: vms.stop(_ref(p), force=bool(p.get("force"))),
        "vm.restart": lambda p, c: vms.restart(_ref(p), c.cancelled.is_set),
        "vm.kill": lambda p, c: vms.kill(_ref(p), p.get("signal", "SIGKILL")),
        "vm.delete": lambda p, c: vms.delete(_ref(p), force=bool(p.get("force"))),
        "vm.set": lambda p, c: vms.set(_ref(p), {k: v for k, v in p.items() if k != "ref"}),
        "vm.stats": lambda p, c: vms.stats(_ref(p)),
        "vm.logs": lambda p, c: vms.logs(_ref(p), p.get("log", "console"), p.get("offset"),
                                         int(p.get("limit", 65536))),
        "vm.ssh_info": lambda p, c: vms.ssh_info(_ref(p)),
        "vm.ssh_config": ssh_config,
        "image.build": build,
        "image.register": lambda p, c: images.register(
            str(p.get("name", "")), p.get("kernel", ""), p.get("rootfs", ""), p.get("initrd"),
            p.get("work_seed"), p.get("kernel_config")),
        "image.list": lambda p, c: images.list(),
        "image.show": lambda p, c: image_dict(images.get(str(p.get("ref", "")))),
        "image.delete": lambda p, c: images.delete(str(p.get("ref", ""))),
        "doctor.run": doctor,
    }
    for name, handler in methods.items():
        daemon.server.register(name, handler)
