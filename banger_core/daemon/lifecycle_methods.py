"""The ``vm.*``, ``image.*`` and ``doctor.*`` RPC methods."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from banger_core.access import check_host_paths
from banger_core.daemon.policy import CORE_RULES, privileged
from banger_core.doctor import preflight
from banger_core.errors import BangerError, ValidationError
from banger_core.rpc.protocol import PassFd
from banger_core.rpc.schema import Field, with_params

if TYPE_CHECKING:
    from banger_core.daemon.server import RPCCall

MAX_LOG_CHUNK = 4 << 20
READS = {"vm.list", "vm.show", "vm.ssh_config", "vm.stats", "vm.logs", "image.list", "image.show"}
"""Quick reads: served from their own pool, never behind lock waits."""


def register(daemon: Any, vms: Any, images: Any) -> None:
    """Register the lifecycle methods on ``daemon.server``."""
    ops = daemon.operations

    def create(params: dict[str, Any], call: RPCCall) -> dict[str, Any]:
        # Bad input is refused before an operation exists, so it changes nothing.
        vms.validate_create(dict(params))
        name = params.get("name")
        uid = call.peer_uid
        op = ops.begin(
            "vm.create", str(name), lambda op: vms.create(op, dict(params), uid), owner_uid=uid
        )
        return op.as_dict()

    def build(params: dict[str, Any], call: RPCCall) -> dict[str, Any]:
        name = params["name"]
        os_name = params.get("os") or "debian"
        images.validate_build(name, os_name)
        # The host checks the build needs (mmdebstrap for debian), before anything changes.
        preflight(daemon.settings, daemon.hooks, "image.build", (f"image.build --os {os_name}",))
        uid = call.peer_uid
        op = ops.begin(
            "image.build", name, lambda op: images.build(op, name, os_name, uid), owner_uid=uid
        )
        return op.as_dict()

    def register_image(params: dict[str, Any], call: RPCCall) -> dict[str, Any]:
        files = {
            k: params.get(k) for k in ("kernel", "rootfs", "initrd", "work_seed", "kernel_config")
        }
        artifacts = params.get("artifacts") or {}
        if not isinstance(artifacts, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and v for k, v in artifacts.items()
        ):
            raise ValidationError(f"artifacts {artifacts!r} must map names to file paths")
        files.update({f"artifact {k}": v for k, v in artifacts.items()})
        check_host_paths(call.peer_uid, files, daemon.settings.get("daemon", "allowed_image_dirs"))
        return images.register(
            params["name"],
            params["kernel"],
            params["rootfs"],
            params.get("initrd"),
            params.get("work_seed"),
            artifacts=artifacts,
            kernel_config=params.get("kernel_config"),
            owner_uid=call.peer_uid,
        )

    def doctor(params: dict[str, Any], call: RPCCall) -> list[dict[str, Any]]:
        from banger_core.doctor import run_checks

        return [c.as_dict() for c in run_checks(daemon.settings, daemon.hooks)]

    def show(params: dict[str, Any], call: RPCCall) -> dict[str, Any]:
        vm = vms.resolve(params["ref"])
        return {**vm.summary(), "dns_names": daemon.hooks.vm_dns_names(vm)}

    def ssh_config(params: dict[str, Any], call: RPCCall) -> dict[str, Any]:
        info = vms.ssh_config(params.get("refs") or [], visible=_visible(call))
        if not privileged(call.peer_uid):
            # A member cannot read the daemon's files: the CLI writes its own copy of
            # each VM's own key (never the daemon's, which opens every VM).
            info["member"] = True
            for host in info["hosts"]:
                try:
                    host["key_text"] = vms.member_key_text(vms.resolve(host["id"]))
                except BangerError:
                    host["key_text"] = ""  # booted before VMs had keys: left out
        return info

    def _visible(call: RPCCall) -> Any:
        """Whether the caller may see a VM (members: their own, unless VMs are shared)."""
        policy = daemon.policy
        return lambda vm: policy.may_use_vm(call.peer_uid, vm.owner_uid)

    ref = Field.str(required=True, max=255)
    path = Field.str(max=4096, nullable=True)
    size = Field.size()
    # Older clients send a plugin option as a top-level key (``{"KEY": value}``) rather
    # than in ``options``: accept every declared option's key (its own check applies).
    core_keys = {"name", "image", "cpus", "memory", "options", "ref"}
    option_keys = {
        d.option.key: Field.any()
        for d in daemon.hooks.vm_options()
        if d.option.key not in core_keys
    }
    methods = {
        "vm.create": with_params(
            create,
            name=Field.any(required=True),
            image=Field.str(max=255),
            cpus=Field.int(),
            memory=size,
            options=Field.any(),
            **option_keys,
        ),
        "vm.list": with_params(lambda p, c: vms.list()),
        "vm.show": with_params(show, ref=ref),
        "vm.start": with_params(lambda p, c: vms.start(p["ref"], c.cancelled.is_set), ref=ref),
        "vm.stop": with_params(
            lambda p, c: vms.stop(p["ref"], force=p.get("force", False)),
            ref=ref,
            force=Field.bool(),
        ),
        "vm.restart": with_params(lambda p, c: vms.restart(p["ref"], c.cancelled.is_set), ref=ref),
        "vm.kill": with_params(
            lambda p, c: vms.kill(p["ref"], p.get("signal", "SIGKILL")), ref=ref, signal=Field.any()
        ),
        "vm.delete": with_params(
            lambda p, c: vms.delete(p["ref"], force=p.get("force", False)),
            ref=ref,
            force=Field.bool(),
        ),
        "vm.set": with_params(
            lambda p, c: vms.set(p["ref"], {k: v for k, v in p.items() if k != "ref"}),
            ref=ref,
            cpus=Field.int(),
            memory=size,
            options=Field.any(),
            **option_keys,
        ),
        "vm.stats": with_params(lambda p, c: vms.stats(p["ref"]), ref=ref),
        "vm.logs": with_params(
            lambda p, c: vms.logs(p["ref"], p["log"], p.get("offset"), p["limit"]),
            ref=ref,
            log=Field.enum("console", "vmm", default="console"),
            offset=Field.int(min=0, nullable=True),
            limit=Field.int(min=1, max=MAX_LOG_CHUNK, default=65536),
        ),
        "vm.ssh_info": with_params(lambda p, c: vms.ssh_info(p["ref"], c.peer_uid), ref=ref),
        "vm.ssh_config": with_params(ssh_config, refs=Field.list(Field.str(min=1, max=255))),
        "vm.connect": with_params(
            lambda p, c: PassFd(*vms.connect(p["ref"], p["port"])),
            ref=ref,
            port=Field.int(min=1, max=65535, default=22),
        ),
        "image.build": with_params(
            build, name=Field.str(required=True, max=255), os=Field.str(max=64)
        ),
        "image.register": with_params(
            register_image,
            name=Field.str(required=True, max=255),
            kernel=Field.str(required=True, max=4096),
            rootfs=Field.str(required=True, max=4096),
            initrd=path,
            work_seed=path,
            kernel_config=path,
            artifacts=Field.any(),
        ),
        "image.list": with_params(lambda p, c: images.list()),
        "image.show": with_params(lambda p, c: images.show(p["ref"]), ref=ref),
        "image.convert_kernel": with_params(lambda p, c: images.convert_kernel(p["ref"]), ref=ref),
        "image.delete": with_params(lambda p, c: images.delete(p["ref"]), ref=ref),
        "doctor.run": with_params(doctor),
    }
    for name, handler in methods.items():
        daemon.server.register(name, handler, read=name in READS, access=CORE_RULES.get(name))
