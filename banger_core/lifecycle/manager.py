"""The VM manager: create, start, stop, kill, delete, set, and reconcile.

Operations on one VM are serialised by a per-VM lock; different VMs proceed
in parallel. Every step of create and start registers an undo on a
:class:`LifecycleContext`, so a failure (or a cancel) at any stage leaves
nothing behind.
"""

from __future__ import annotations

import builtins
import os
import shutil
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import peewee
from loguru import logger

from banger_core import failpoints, system
from banger_core.access import privileged
from banger_core.disks import rootdisk, space
from banger_core.doctor import preflight
from banger_core.errors import (
    BangerError,
    ConflictError,
    NotFoundError,
    ValidationError,
)
from banger_core.firecracker.transport import choose_transport, vmm_version
from banger_core.guestconfig import GuestConfig
from banger_core.hookcontext import LifecycleContext
from banger_core.images.kernelcaps import KernelCaps, kernel_format
from banger_core.images.kernelformat import check_format
from banger_core.images.registry import image_artifacts
from banger_core.lifecycle import boot, console, states
from banger_core.lifecycle import options as vm_options
from banger_core.lifecycle.hostnet import TAP_PREFIX, HostNetwork
from banger_core.lifecycle.machine import MachineSpec
from banger_core.lifecycle.validation import CREATE_KEYS, SET_KEYS, resolve_create, validate_set
from banger_core.lifecycle.vm import VM, ImageInfo, VMSpec
from banger_core.net import ipam
from banger_core.plugins import raise_failures
from banger_core.store.models import Image, VMRecord
from banger_core.units import did_you_mean

if TYPE_CHECKING:
    from banger_core.config import Settings
    from banger_core.images.registry import ImageService
    from banger_core.plugins import Hooks

RUNNING_STATES = tuple(s.value for s in states.LIVE_STATES)
GUEST_MTU = 1500
"""The guest NIC's MTU (the bridge's and TAPs' default)."""


class VMManager:
    """Drives every VM's lifecycle for the daemon."""

    def __init__(
        self, settings: Settings, hooks: Hooks, images: ImageService, network: HostNetwork
    ) -> None:
        self.settings = settings
        self.paths = settings.paths
        self.hooks = hooks
        self.images = images
        self.net = network
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._alloc_lock = threading.Lock()
        self._key_lock = threading.Lock()
        self._procs: dict[str, Any] = {}
        self._root_strategy: str | None = None
        self.reserve = space.Reserve(self.paths.state_dir / ".reserve")
        # Plugins are fixed for the daemon's life: read their option declarations once.
        self.declared_options = self.hooks.vm_options()
        self.option_defaults = vm_options.defaults(self.declared_options, self.settings)

    # -- records -------------------------------------------------------------
    def _to_vm(self, rec: VMRecord) -> VM:
        image = rec.image
        return VM(
            id=rec.id,
            name=rec.name,
            image=ImageInfo(
                image.id,
                image.name,
                image.kernel,
                image.rootfs,
                image.initrd,
                artifacts=image_artifacts(image),
            ),
            cpus=rec.cpus,
            memory_mib=rec.memory_mib,
            disk_size=rec.disk_size,
            state=rec.state,
            ip=rec.ip,
            mac=rec.mac,
            gateway=self.net.subnet.gateway,
            prefixlen=self.net.subnet.prefixlen,
            dir=self.paths.vms_dir / rec.id,
            run_dir=self.paths.vm_run_dir / rec.id,
            tap=rec.tap,
            pid=rec.pid,
            root_disk=rec.root_disk,
            root_strategy=rec.root_strategy,
            last_error=rec.last_error,
            created_at=rec.created_at,
            started_at=rec.started_at,
            owner_uid=rec.owner_uid,
            plugin_states=dict(rec.plugin_state or {}),
            option_defaults=self.option_defaults,
        )

    def _save(self, vm: VM, **fields: Any) -> None:
        if "state" in fields and fields["state"] != vm.state:
            states.check_transition(vm.name, vm.state, fields["state"])
        for key, value in fields.items():
            setattr(vm, key, value)
        try:
            self._write(vm)
        except peewee.OperationalError as exc:
            # A full state file system must not leave a dead VM listed running:
            # give up the reserve to let this write through.
            if not space.is_disk_full(exc) or not self.reserve.release():
                raise
            logger.error("state file system full: used the reserve to save VM {}", vm.name)
            self._write(vm)

    def _write(self, vm: VM) -> None:
        VMRecord.update(
            state=vm.state,
            tap=vm.tap,
            pid=vm.pid,
            root_disk=vm.root_disk,
            root_strategy=vm.root_strategy,
            plugin_state=vm.plugin_states,
            last_error=vm.last_error,
            started_at=vm.started_at,
            cpus=vm.cpus,
            memory_mib=vm.memory_mib,
            disk_size=vm.disk_size,
            updated_at=time.time(),
        ).where(VMRecord.id == vm.id).execute()

    def resolve(self, ref: str) -> VM:
        """Find a VM by name, id or unique id prefix."""
        if not isinstance(ref, str) or not ref:
            raise ValidationError("a VM name or id is required")
        rec = VMRecord.get_or_none(VMRecord.name == ref) or VMRecord.get_or_none(VMRecord.id == ref)
        if rec is None:
            matches = list(VMRecord.select().where(VMRecord.id.startswith(ref)))
            if len(matches) > 1:
                raise ConflictError(
                    f"VM ref {ref!r} is ambiguous: matches {', '.join(m.name for m in matches)}"
                )
            if not matches:
                names = [r.name for r in VMRecord.select(VMRecord.name)]
                raise NotFoundError(f"no VM {ref!r}{did_you_mean(ref, names)}")
            rec = matches[0]
        return self._to_vm(rec)

    def all(self) -> list[VM]:
        """Every VM as plugins see it, by name."""
        return [self._to_vm(r) for r in VMRecord.select().order_by(VMRecord.name)]

    def save_plugin_state(self, vm: VM, name: str) -> None:
        """Store one plugin's per-VM state (for plugin RPC handlers), under the VM's lock."""
        with self.locked(vm.id):
            current = self.resolve(vm.id)
            current.plugin_states[name] = dict(vm.plugin_state(name))
            VMRecord.update(plugin_state=current.plugin_states, updated_at=time.time()).where(
                VMRecord.id == vm.id
            ).execute()

    def list(self) -> list[dict[str, Any]]:
        """Every VM."""
        return [self._to_vm(r).summary() for r in VMRecord.select().order_by(VMRecord.name)]

    @contextmanager
    def locked(self, vm_id: str) -> Iterator[None]:
        """Serialise operations on one VM."""
        with self._locks_guard:
            lock = self._locks.setdefault(vm_id, threading.Lock())
        with lock:
            yield

    def _locked_vm(self, ref: str) -> tuple[VM, Any]:
        vm = self.resolve(ref)
        return vm, self.locked(vm.id)

    # -- keys ---------------------------------------------------------------------
    def ssh_key(self) -> Path:
        """banger's private key (created on first use); its public half goes into every VM.

        Only root (and the daemon's user) gets it: it opens every VM.
        """
        return self._make_key(self.paths.ssh_dir / "id_ed25519")

    def vm_key(self, vm: VM) -> Path:
        """The VM's own key pair (made at its first boot): what a socket_group member
        who may use the VM receives. It opens that VM only, so a member holding it
        cannot reach another VM even where VM addresses are reachable directly."""
        return self._make_key(vm.dir / "ssh" / "id_ed25519")

    def member_key_text(self, vm: VM) -> str:
        """The VM's own private key, for a member allowed to use it.

        :raise ConflictError: the VM last booted before VMs had keys of their own.
        """
        key = vm.dir / "ssh" / "id_ed25519"
        try:
            return key.read_text()
        except FileNotFoundError:
            raise ConflictError(
                f"VM {vm.name} booted before VMs had keys of their own; restart it "
                f"(`banger vm restart {vm.name}`) to use it as a socket_group member"
            ) from None

    def _make_key(self, key: Path) -> Path:
        """An ed25519 key pair at ``key`` (+ ``.pub``), made once."""
        with self._key_lock:  # concurrent first creates must not race ssh-keygen
            if not key.exists():
                key.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                tmp = key.with_name(key.name + ".new")
                for stale in (tmp, tmp.with_suffix(".new.pub")):
                    stale.unlink(missing_ok=True)
                system.run(
                    ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "banger", "-f", str(tmp)]
                )
                tmp.with_suffix(".new.pub").replace(key.with_suffix(".pub"))
                tmp.replace(key)  # last: the private key's presence means both exist
        return key

    # -- create -----------------------------------------------------------------------
    def validate_create(self, params: dict[str, Any]) -> VMSpec:
        """Check a create request completely, without changing anything."""
        core, given = vm_options.split(params, self.declared_options, CREATE_KEYS, for_create=True)
        spec = resolve_create(core, self.settings, self.images)
        spec.options = vm_options.for_create(given, self.declared_options, self.settings)
        self.hooks.vm_validate(spec)
        if VMRecord.get_or_none(VMRecord.name == spec.name):
            raise ConflictError(f"a VM named {spec.name!r} already exists")
        self.images.get(spec.image)
        return spec

    def create(self, op: Any, params: dict[str, Any], owner_uid: int = 0) -> dict[str, Any]:
        """``vm create`` (runs inside an operation): every stage rolls back on failure."""
        ctx = LifecycleContext(self.settings)
        vm: VM | None = None
        try:
            with op.stage("preflight"):
                spec = self.validate_create(params)
                self.preflight("vm.create", self._option_scopes("vm.create", spec.options))
                image = self.images.get(spec.image)
                self._check_image_files(image)
                self._check_room(spec.name, image)
                key = self.ssh_key()
                failpoints.check("preflight", lambda: op.cancelled)
            vm_id = uuid.uuid4().hex[:12]
            # Held from the moment the row exists: other commands on this VM
            # wait for the create to finish (or roll back) instead of racing it.
            with self.locked(vm_id):
                with op.stage("disks"):
                    vm = self._reserve(vm_id, spec, image, ctx, owner_uid)
                    op.target = vm.name
                    self._make_root_disk(vm, ctx)
                    self.hooks.vm_create(vm, ctx)
                    self._save(vm)
                    failpoints.check("disks", lambda: op.cancelled)
                self._boot(vm, ctx, op, key)
            ctx.commit()
            self.write_ssh_config()
            return self._with_warnings(self._to_vm(VMRecord.get_by_id(vm.id)).summary())
        except BaseException as exc:
            failures = ctx.rollback()
            if vm is not None:
                logger.warning("create of {} failed, rolled back: {}", vm.name, exc)
            if failures and isinstance(exc, BangerError):
                raise BangerError(f"{exc} (rollback also failed: {'; '.join(failures)})")
            raise

    def _check_room(self, name: str, image: Image) -> None:
        """Refuse a create that cannot fit on the state file system (one clear line)."""
        root = (
            64 << 20
            if self.root_strategy() in ("dm-snapshot", "reflink")
            else space.allocated(Path(image.rootfs))
        )
        # Plugins may copy their image artifacts per VM (a seed for a per-VM disk).
        copies = sum(space.allocated(Path(p)) for p in image_artifacts(image).values())
        space.check_room(self.paths.vms_dir, root + copies + space.RESERVE_BYTES, f"VM {name}")

    def _with_warnings(self, summary: dict[str, Any]) -> dict[str, Any]:
        warning = space.overcommit_warning(self.paths.vms_dir)
        if warning:
            logger.warning("{}", warning)
            summary["warnings"] = [warning]
        return summary

    def _reserve(
        self, vm_id: str, spec: VMSpec, image: Image, ctx: LifecycleContext, owner_uid: int = 0
    ) -> VM:
        with self._alloc_lock:
            if VMRecord.get_or_none(VMRecord.name == spec.name):
                raise ConflictError(f"a VM named {spec.name!r} already exists")
            used = {r.ip for r in VMRecord.select(VMRecord.ip)}
            ip = self.net.allocate_ip(used)
            rec = VMRecord.create(
                id=vm_id,
                name=spec.name,
                image=image.id,
                cpus=spec.cpus,
                memory_mib=spec.memory_mib,
                disk_size=spec.disk_size,
                state="creating",
                ip=ip,
                mac=ipam.mac_for_ip(ip),
                plugin_state={"core": {"options": spec.options}} if spec.options else {},
                owner_uid=owner_uid,
            )
        ctx.add_undo(lambda: VMRecord.delete_by_id(rec.id), "store row")
        vm = self._to_vm(rec)
        vm.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        ctx.add_undo(lambda: shutil.rmtree(vm.dir, ignore_errors=True), "VM directory")
        ctx.add_undo(lambda: shutil.rmtree(vm.run_dir, ignore_errors=True), "VM runtime dir")
        return vm

    def root_strategy(self) -> str:
        """The per-VM root disk strategy (probed once: the file system does not change)."""
        if self._root_strategy is None:
            strategy = self.settings.get("storage", "root_disk")
            if strategy == "auto":
                strategy = rootdisk.choose_strategy(self.paths.state_dir)
            self._root_strategy = strategy
        return self._root_strategy

    def _make_root_disk(self, vm: VM, ctx: LifecycleContext) -> None:
        strategy = self.root_strategy()
        if strategy == "dm-snapshot":
            cow = vm.dir / "root.cow"
            rootdisk.prepare_cow(cow, Path(vm.image.rootfs).stat().st_size)
            vm.root_disk = str(cow)
        else:
            dest = vm.dir / "root.ext4"
            rootdisk.create_root_disk(Path(vm.image.rootfs), dest, strategy)
            ctx.add_undo(lambda: rootdisk.remove_root_disk(dest), "root disk")
            vm.root_disk = str(dest)
        vm.root_strategy = strategy

    # -- boot (create and start) ---------------------------------------------------
    def _boot(self, vm: VM, ctx: LifecycleContext, op: Any, key: Path) -> None:
        """Network, VMM, SSH. Registers undos that return the VM to 'stopped'."""
        with op.stage("network"):
            tap = self.net.acquire_tap()
            ctx.add_undo(lambda: self.net.release_tap(tap), f"TAP {tap}")
            # A VM being created stays "creating" until ready, so a daemon that
            # dies mid-create leaves a row that reconcile knows to undo.
            self._save(vm, tap=tap, state="creating" if vm.state == "creating" else "starting")
            failpoints.check("network", lambda: op.cancelled)
        with op.stage("boot"):
            root_path, snapshot = self._activate_root(vm, ctx)
            machine, guest = self._describe(vm, root_path, key, ctx)
            guest.write_drive(vm.guest_config_path)
            proc = boot.boot_vmm(
                vm,
                machine,
                self._binary(),
                start_timeout=self.settings.get("firecracker", "start_timeout"),
            )
            self._procs[vm.id] = proc
            ctx.add_undo(lambda: self._kill_and_forget(vm, proc.pid), f"VMM {proc.pid}")
            if snapshot:  # saved with the PID: reconcile must be able to release it
                vm.plugin_state("core")["snapshot"] = snapshot
            self._save(vm, pid=proc.pid, started_at=time.time())
            failpoints.check("boot", lambda: op.cancelled)
        with op.stage("waiting for SSH", detail=vm.ip):
            boot.wait_for_ssh(
                vm,
                proc.pid,
                self.settings.get("vm", "ssh_timeout_seconds"),
                cancelled=lambda: op.cancelled,
            )
            failpoints.check("waiting for SSH", lambda: op.cancelled)
        ssh_timeout = float(self.settings.get("vm", "ssh_timeout_seconds"))
        for _plugin, check in self.hooks.vm_ready_checks(vm, ctx):
            with op.stage(check.name, detail=check.detail):
                result = check.wait(check.timeout or ssh_timeout, lambda: op.cancelled)
                if isinstance(result, str) and result:
                    logger.debug("VM {}: {}: {}", vm.name, check.name, result)
                failpoints.check(check.name, lambda: op.cancelled)
        with op.stage("ready"):
            ctx.add_undo(lambda: self._stopped_hooks(vm), "plugins' stopped hooks")
            self.hooks.vm_started(vm, ctx)
            failpoints.check("ready", lambda: op.cancelled)
            self._save(vm, state="running", last_error="")

    def _kill_and_forget(self, vm: VM, pid: int) -> None:
        boot.kill_vmm(vm, pid)
        self._reap()
        self._procs.pop(vm.id, None)

    def _activate_root(self, vm: VM, ctx: LifecycleContext) -> tuple[str, dict[str, Any] | None]:
        if vm.root_strategy != "dm-snapshot":
            return vm.root_disk, None
        handles = rootdisk.activate_snapshot(
            f"banger-{vm.id}", Path(vm.image.rootfs), Path(vm.root_disk)
        )
        ctx.add_undo(lambda: rootdisk.deactivate_snapshot(handles), "dm snapshot")
        return str(handles.device_path), handles.to_dict()

    def _describe(
        self, vm: VM, root_path: str, key: Path, ctx: LifecycleContext | None = None
    ) -> tuple[MachineSpec, GuestConfig]:
        machine = MachineSpec(
            vcpus=vm.cpus,
            memory_mib=vm.memory_mib,
            kernel=vm.image.kernel,
            initrd=vm.image.initrd,
            boot_args=list(boot.BASE_BOOT_ARGS),
        )
        machine.use_transport(self.transport_for(vm))
        machine.add_drive("rootfs", root_path, is_root=True)
        config_dev = machine.add_drive("guestcfg", str(vm.guest_config_path), read_only=True)
        machine.boot_args.append(ipam.kernel_ip_arg(vm.ip, vm.gateway, vm.prefixlen, vm.name))
        machine.boot_args.append(f"banger.config={config_dev}")
        assert vm.tap
        machine.add_nic(vm.tap, vm.mac)
        guest = GuestConfig(
            hostname=vm.name,
            authorized_keys=[
                key.with_suffix(".pub").read_text().strip(),
                self.vm_key(vm).with_suffix(".pub").read_text().strip(),
            ],
            nameservers=list(self.net.nameservers),
            address=vm.ip,
            prefixlen=vm.prefixlen,
            gateway=vm.gateway,
            mac=vm.mac,
            mtu=GUEST_MTU,
        )
        self.hooks.vm_configure(vm, machine, guest, ctx)
        return machine, guest

    def transport_for(self, vm: VM) -> str:
        """``mmio`` or ``pci`` for this VM's kernel, ``[firecracker] transport`` and VMM."""
        row = Image.get_or_none(Image.id == vm.image.id)
        caps = KernelCaps.from_dict(row.kernel_caps if row is not None else None)
        return choose_transport(
            caps,
            self.settings.get("firecracker", "transport"),
            vmm_version(self._binary()),
            image=vm.image.name,
        )

    def _binary(self) -> str:
        return self.settings.get("firecracker", "binary") or "firecracker"

    def preflight(self, operation: str = "vm.create", scopes: tuple[str, ...] = ()) -> None:
        """Fail early, with the fix, when the host is not ready for ``operation``."""
        preflight(self.settings, self.hooks, operation, scopes)

    def _option_scopes(self, operation: str, stored: dict[str, dict[str, Any]]) -> tuple[str, ...]:
        """``"<operation> --<option>"`` for every plugin option the VM has on (truthy).

        ``stored`` holds the VM's own values; the others take their defaults.
        A check with ``needed_by=("vm.create --nat",)`` then stops only the
        creates that use NAT.
        """
        scopes = []
        for d in self.declared_options:
            values = stored.get(d.plugin) or {}
            if d.option.key in values:
                value = values[d.option.key]
            else:
                value = d.option.effective_default(self.settings.plugin(d.plugin))
            if value:
                scopes.append(f"{operation} --{d.option.key.replace('_', '-')}")
        return tuple(scopes)

    def _check_image_files(self, image: Image) -> None:
        """The image's own files, its plugins' artifacts included, are all there."""
        files = [("kernel", image.kernel), ("rootfs", image.rootfs)]
        if image.initrd:
            files.append(("initrd", image.initrd))
        files += sorted(
            (f"{name} artifact", path) for name, path in (image.artifacts or {}).items()
        )
        for what, path in files:
            if not Path(path).is_file():
                raise BangerError(
                    f"image {image.name!r}: {what} {path} is missing; fix: build the image "
                    f"again (banger image build) or register it with the file "
                    f"(banger image register)"
                )
        # Released Firecracker loads only an ELF vmlinux: refuse a bzImage before the VMM
        # starts, naming the file, the VMM version and the conversion.
        with open(image.kernel, "rb") as fh:
            fmt = kernel_format(fh.read(4096))
        check_format(image.kernel, fmt, vmm_version(self._binary()), image=image.name)

    # -- start / stop ------------------------------------------------------------------
    def start(self, ref: str, cancelled: Callable[[], bool] = lambda: False) -> dict[str, Any]:
        """Boot a stopped VM and wait for SSH."""
        vm = self.resolve(ref)
        with self.locked(vm.id):
            vm = self.resolve(vm.id)
            if vm.state == "running" and boot.live_pid(vm):
                return vm.summary()
            if vm.state in RUNNING_STATES and states.settle(vm.state, False) == "release":
                # Marked live but its VMM is gone (the watcher has not noticed
                # yet): release the old TAP and run the stopped hooks first.
                vm.last_error = f"VMM {vm.pid} exited"
                self._release(vm)
            if not states.allowed(vm.state, "starting"):
                raise ConflictError(f"VM {vm.name} is {vm.state}; wait for it to finish")
            self.preflight("vm.start", self._option_scopes("vm.start", vm.options))
            self._check_image_files(Image.get_by_id(vm.image.id))
            ctx = LifecycleContext(self.settings)
            op = _InlineOp(cancelled)
            try:
                self._boot(vm, ctx, op, self.ssh_key())
            except BaseException as exc:
                ctx.rollback()
                self._save(vm, state="stopped", pid=None, tap=None, last_error=str(exc))
                raise
            ctx.commit()
            # The stages (SSH, then every ready check) for the CLI's result line.
            return {**self.resolve(vm.id).summary(), "stages": op.stages}

    def stop(self, ref: str, *, force: bool = False) -> dict[str, Any]:
        """Ctrl-Alt-Del, wait the grace period, then forced cleanup."""
        vm = self.resolve(ref)
        with self.locked(vm.id):
            vm = self.resolve(vm.id)
            return self._stop_locked(vm, force=force)

    def _stop_locked(self, vm: VM, *, force: bool = False) -> dict[str, Any]:
        pid = boot.live_pid(vm)
        how = "already stopped"
        if pid:
            self._save(vm, state="stopping")
            failpoints.check("stopping")
            grace = float(self.settings.get("vm", "stop_grace_seconds"))
            graceful = not force and boot.request_shutdown(vm) and self._wait_gone(pid, grace)
            if graceful:
                how = "shut down"
            else:
                boot.kill_vmm(vm, pid)
                how = "killed after grace period" if not force else "killed"
        self._release(vm)
        return {**self.resolve(vm.id).summary(), "how": how}

    def _wait_gone(self, pid: int, timeout: float) -> bool:
        from banger_core.firecracker.launcher import wait_for_exit

        self._reap()
        return wait_for_exit(pid, timeout)

    def kill(self, ref: str, sig: str | int = "SIGKILL") -> dict[str, Any]:
        """Send a signal to the VMM, then clean up once it is gone."""
        signum = _parse_signal(sig)
        vm = self.resolve(ref)
        with self.locked(vm.id):
            vm = self.resolve(vm.id)
            pid = boot.live_pid(vm)
            if pid:
                boot.kill_vmm(vm, pid, signum)
            self._release(vm)
            return self.resolve(vm.id).summary()

    def restart(self, ref: str, cancelled: Callable[[], bool] = lambda: False) -> dict[str, Any]:
        """Stop then start."""
        self.stop(ref)
        return self.start(ref, cancelled)

    def _release(self, vm: VM, *, save: bool = True) -> None:
        """Return host runtime state of a VM whose VMM is gone; mark it stopped."""
        self._reap()
        boot.kill_vmm(vm, None)
        snapshot = vm.plugin_state("core").pop("snapshot", None)
        if snapshot:
            try:
                rootdisk.deactivate_snapshot(rootdisk.SnapshotHandles.from_dict(snapshot))
            except BangerError as exc:
                logger.error("removing dm snapshot of {} failed: {}", vm.name, exc)
        self.net.release_tap(vm.tap)
        failures = self._stopped_hooks(vm)
        self._procs.pop(vm.id, None)
        if save:
            self._save(
                vm,
                state="stopped",
                pid=None,
                tap=None,
                last_error="; ".join(failures) if failures else vm.last_error,
            )

    def _stopped_hooks(self, vm: VM) -> builtins.list[str]:
        failures = self.hooks.vm_stopped(vm)
        for line in failures:
            logger.error("{}", line)
        return failures

    def _reap(self) -> None:
        for proc in list(self._procs.values()):
            if proc.popen is not None:
                proc.popen.poll()

    # -- delete / set --------------------------------------------------------------------
    def delete(self, ref: str, *, force: bool = False) -> dict[str, Any]:
        """Remove a VM and everything it owns; a running VM needs ``force``."""
        vm = self.resolve(ref)
        with self.locked(vm.id):
            vm = self.resolve(vm.id)
            if boot.live_pid(vm):
                if not force:
                    raise ConflictError(f"VM {vm.name} is running; stop it first or use --force")
                self._stop_locked(vm, force=True)
                vm = self.resolve(vm.id)
            elif vm.state in RUNNING_STATES or vm.tap:
                self._release(vm)  # marked live but its VMM is gone
            # Persisted first: a daemon that dies from here on finishes the delete.
            self._save(vm, state="deleting")
            failpoints.check("deleting")
            failures = self._remove(vm)
            self.write_ssh_config()
            raise_failures(failures, f"VM {vm.name} deleted, but cleanup failed")
            return {**vm.summary(), "state": "deleted"}

    def _remove(self, vm: VM) -> builtins.list[str]:
        """Plugins' deleted hooks, the VM's files, then its row."""
        failures = self.hooks.vm_deleted(vm)
        shutil.rmtree(vm.dir, ignore_errors=True)
        shutil.rmtree(vm.run_dir, ignore_errors=True)
        VMRecord.delete_by_id(vm.id)
        return failures

    def set(self, ref: str, params: dict[str, Any]) -> dict[str, Any]:
        """Change cpus, memory or disk size of a stopped VM."""
        vm = self.resolve(ref)
        with self.locked(vm.id):
            vm = self.resolve(vm.id)
            core, given = vm_options.split(
                params, self.declared_options, SET_KEYS, for_create=False
            )
            current = {d.plugin: vm.plugin_options(d.plugin) for d in self.declared_options}
            option_changes = vm_options.for_set(
                given, self.declared_options, current, self.settings
            )
            running = boot.live_pid(vm)
            if running and (
                core or vm_options.requires_stopped(option_changes, self.declared_options)
            ):
                raise ConflictError(f"VM {vm.name} is running; stop it before changing it")
            spec = validate_set(vm, core, allow_empty=bool(given))
            spec.options = option_changes
            self.hooks.vm_validate(spec)
            self.preflight(
                "vm.set",
                tuple(
                    f"vm.set --{key.replace('_', '-')}"
                    for values in option_changes.values()
                    for key in values
                ),
            )
            changes = dict(spec.changes)
            for values in option_changes.values():
                changes.update(values)
            ctx = LifecycleContext(self.settings)
            try:
                self.hooks.vm_set(vm, changes, ctx)
                for key, value in spec.changes.items():
                    setattr(vm, key, value)
                for plugin, values in option_changes.items():
                    vm.options.setdefault(plugin, {}).update(values)
                self._save(vm)
            except BaseException:
                ctx.rollback()
                raise
            result = {**vm.summary(), "changed": sorted(changes)}
            # A plugin option may grow a VM's disks (the work disk's size): say so if overcommitted.
            return self._with_warnings(result) if option_changes else result

    # -- inspection ------------------------------------------------------------------------
    def stats(self, ref: str) -> dict[str, Any]:
        """VMM CPU time and memory from /proc."""
        vm = self.resolve(ref)
        pid = boot.live_pid(vm)
        out: dict[str, Any] = {"name": vm.name, "state": vm.state, "pid": pid}
        if not pid:
            return out
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks = os.sysconf("SC_CLK_TCK")
            out["cpu_seconds"] = round((int(fields[11]) + int(fields[12])) / ticks, 2)
            status = Path(f"/proc/{pid}/status").read_text().splitlines()
            mem = {line.split(":")[0]: line.split()[1] for line in status if line.startswith("Vm")}
            out["rss_bytes"] = int(mem.get("VmRSS", 0)) * 1024
            out["vms_bytes"] = int(mem.get("VmSize", 0)) * 1024
            out["threads"] = int(
                next((line.split()[1] for line in status if line.startswith("Threads")), 0)
            )
            out["uptime"] = round(time.time() - (vm.started_at or time.time()), 1)
        except (OSError, IndexError, ValueError):
            out["pid"] = None
        return out

    def logs(self, ref: str, which: str, offset: int | None, limit: int) -> dict[str, Any]:
        """A chunk of the console or VMM log from ``offset`` (the tail when None)."""
        vm = self.resolve(ref)
        path = {"console": vm.console_log, "vmm": vm.vmm_log}.get(which)
        if path is None:
            raise ValidationError(f"log {which!r} is not one of: console, vmm")
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return {"path": str(path), "data": "", "offset": 0, "running": vm.state == "running"}
        start = max(0, size - limit) if offset is None else min(offset, size)
        with path.open("rb") as fh:
            fh.seek(start)
            data = fh.read(limit)
        return {
            "path": str(path),
            "data": data.decode(errors="replace"),
            "offset": start + len(data),
            "running": bool(boot.live_pid(vm)),
        }

    def ssh_info(self, ref: str, uid: int = 0) -> dict[str, Any]:
        """How the CLI reaches the VM over SSH (with the key itself for other users,
        who cannot read the daemon's files)."""
        vm = self.resolve(ref)
        if not boot.live_pid(vm):
            raise ConflictError(
                f"VM {vm.name} is not running; start it with `banger vm start {vm.name}`"
            )
        member = not privileged(uid)
        key = vm.dir / "ssh" / "id_ed25519" if member else self.ssh_key()
        info = {
            "id": vm.id,
            "name": vm.name,
            "ip": vm.ip,
            "user": "root",
            "key": str(key),
            "daemon_pid": os.getpid(),
        }
        if member:  # they cannot read the daemon's files: the CLI keeps a copy
            info["key_text"] = self.member_key_text(vm)
        return info

    def connect(self, ref: str, port: int) -> tuple[dict[str, Any], int]:
        """A TCP connection to the VM's ``port`` made from the daemon's network
        namespace; returns its description and the connected socket's fd."""
        import socket

        vm = self.resolve(ref)
        if not boot.live_pid(vm):
            raise ConflictError(
                f"VM {vm.name} is not running; start it with `banger vm start {vm.name}`"
            )
        try:
            sock = socket.create_connection((vm.ip, port), timeout=10)
        except OSError as exc:
            raise BangerError(
                f"cannot connect to {vm.name} ({vm.ip}) port {port}: {exc.strerror or exc}"
            ) from None
        sock.settimeout(None)
        return {"name": vm.name, "ip": vm.ip, "port": port}, sock.detach()

    def ssh_config(
        self,
        refs: builtins.list[str] | None = None,
        visible: Callable[[VM], bool] = lambda vm: True,
    ) -> dict[str, Any]:
        """``Host`` blocks for ``refs`` (every VM ``visible`` lets the caller see when
        empty) and the kept-current file's path."""
        from banger_core.lifecycle import sshconfig

        vms = (
            [self.resolve(r) for r in refs]
            if refs
            else [
                vm
                for vm in (self._to_vm(r) for r in VMRecord.select().order_by(VMRecord.name))
                if visible(vm)
            ]
        )
        seen: set[str] = set()
        infos = []
        for vm in vms:
            if vm.id not in seen:
                seen.add(vm.id)
                infos.append({**vm.summary(), "dns_names": self.hooks.vm_dns_names(vm)})
        # The key's path (it exists once any VM was created; no ssh-keygen here).
        key = self.paths.ssh_dir / "id_ed25519"
        netns = self.settings.get("daemon", "netns")
        text = sshconfig.render(infos, key, netns)
        return {
            "text": text,
            "path": str(self.paths.ssh_dir / sshconfig.INCLUDED_NAME),
            "hosts": [{k: info[k] for k in ("id", "name", "ip", "dns_names")} for info in infos],
            "netns": netns,
        }

    def write_ssh_config(self) -> None:
        """Rewrite the file ``vm ssh-config --install`` includes (every VM); never raises."""
        from banger_core.lifecycle import sshconfig

        try:
            info = self.ssh_config()
            sshconfig.write_atomically(Path(info["path"]), info["text"])
        except Exception as exc:
            logger.error("writing the SSH config failed: {}", exc)

    # -- reconcile ---------------------------------------------------------------------------
    def reconcile(self) -> dict[str, Any]:
        """At daemon start: mark dead VMs stopped, finish interrupted creates, clear leftovers."""
        report: dict[str, list[str]] = {"stopped": [], "removed": [], "leftovers": []}
        self.reserve.ensure()
        for rec in list(VMRecord.select()):
            vm = self._to_vm(rec)
            action = self._settle(vm)
            if action == "remove":
                report["removed"].append(vm.name)
            elif action in ("release", "kill_release"):
                report["stopped"].append(vm.name)
            elif action == "adopt":
                report.setdefault("adopted", []).append(vm.name)
        known = {r.id for r in VMRecord.select(VMRecord.id)}
        for parent in (self.paths.vms_dir, self.paths.vm_run_dir):
            for child in parent.iterdir() if parent.exists() else []:
                if child.name not in known:
                    sock = self.paths.vm_run_dir / child.name / "fc.sock"
                    from banger_core.firecracker.launcher import find_vmm_pid

                    pid = find_vmm_pid(sock)
                    if pid:
                        os.kill(pid, signal.SIGKILL)
                    shutil.rmtree(child, ignore_errors=True)
                    report["leftovers"].append(str(child))
        vms = [self._to_vm(r) for r in VMRecord.select()]
        for line in self.hooks.reconcile(vms):
            logger.error("{}", line)
        for vm in vms:
            if vm.state == "running":
                # One plugin failing to re-publish does not stop the others.
                for line in self.hooks.vm_republish(vm, LifecycleContext(self.settings)):
                    logger.error("re-publishing {} failed: {}", vm.name, line)
                self._save(vm)  # plugin state the hooks updated (NAT status, ...)
        self.write_ssh_config()
        logger.info("reconcile: {}", report)
        return report

    def check_crashed(self) -> builtins.list[str]:
        """Settle VMs no operation works on whose VMM died; return their names."""
        gone = []
        self.reserve.ensure()  # given up on a full file system: back once there is room
        live = [st.value for st in states.LIVE_STATES]
        for rec in list(VMRecord.select().where(VMRecord.state.in_(live))):
            with self._locks_guard:
                lock = self._locks.setdefault(rec.id, threading.Lock())
            if not lock.acquire(blocking=False):
                continue  # an operation is working on it
            try:
                vm = self.resolve(rec.id)
                if self._settle(vm) in ("release", "kill_release"):
                    gone.append(vm.name)
                elif console.cap(vm.console_log):  # the guest writes it: keep it bounded
                    logger.info("VM {}: console log cut to its last lines", vm.name)
            except NotFoundError:
                pass
            finally:
                lock.release()
        return gone

    def _settle(self, vm: VM) -> str:
        """Bring one VM nobody works on in line with reality (see :func:`states.settle`)."""
        pid = boot.live_pid(vm)
        action = states.settle(vm.state, pid is not None)
        if action == "keep" and vm.tap and vm.state not in RUNNING_STATES:
            action = "release"  # a stopped VM still holding host state
        if action == "keep":
            if pid != vm.pid:
                self._save(vm, pid=pid)
            return action
        logger.warning(
            "VM {} ({}): VMM {}; {}",
            vm.name,
            vm.state,
            f"{pid} runs" if pid else f"{vm.pid} is gone",
            action,
        )
        if action == "adopt":
            self._save(vm, state="running", pid=pid)
            return action
        if pid and action in ("kill_release", "remove"):
            boot.kill_vmm(vm, pid)
        if action == "remove":
            self._release_quietly(vm, save=False)
            for line in self._remove(vm):
                logger.error("{}", line)
            return action
        if vm.state in RUNNING_STATES and not vm.last_error:
            vm.last_error = f"VMM {vm.pid} exited" if vm.pid else f"{vm.state} was interrupted"
        self._release_quietly(vm)
        return action

    def _release_quietly(self, vm: VM, *, save: bool = True) -> None:
        try:
            self._release(vm, save=save)
        except Exception as exc:
            logger.error("releasing {} failed: {}", vm.name, exc)

    def taps_in_use(self) -> builtins.set[str]:
        """TAPs held by VMs that run (for the pool's adoption at start)."""
        return {
            r.tap
            for r in VMRecord.select()
            if r.tap and r.tap.startswith(TAP_PREFIX) and r.state in RUNNING_STATES
        }


class _InlineOp:
    """Stage recorder for work that is not an operation (``vm start``)."""

    def __init__(self, cancelled: Callable[[], bool]) -> None:
        self._cancelled = cancelled
        self.target = ""
        self.stages: list[dict[str, Any]] = []

    @property
    def cancelled(self) -> bool:
        return self._cancelled()

    @contextmanager
    def stage(self, name: str, detail: str = "") -> Iterator[None]:
        from banger_core.errors import CancelledError

        if self._cancelled():
            raise CancelledError(f"cancelled before {name}")
        started = time.monotonic()
        yield
        elapsed = time.monotonic() - started
        self.stages.append({"name": name, "elapsed": round(elapsed, 3), "detail": detail})
        logger.debug("stage {} took {:.3f}s", name, elapsed)


def _parse_signal(sig: str | int) -> int:
    if isinstance(sig, int) and not isinstance(sig, bool):
        valid = {s.value for s in signal.Signals}
        if sig in valid:
            return sig
    elif isinstance(sig, str):
        name = sig.upper()
        name = name if name.startswith("SIG") else "SIG" + name
        if name in signal.Signals.__members__:
            return signal.Signals[name].value
        if sig.isdigit():
            return _parse_signal(int(sig))
    raise ValidationError(f"signal {sig!r} is not a signal name or number (e.g. SIGTERM, 9)")
