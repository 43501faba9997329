"""Host readiness checks: ``banger doctor`` and every operation's preflight.

Every external program banger uses is listed here, so a missing one is
reported with a fix before anything fails half-way. Each operation runs
the checks it depends on before it changes anything (:func:`preflight`):
``vm create``/``vm start`` every ``required`` check, any operation the
checks that name it in ``needed_by``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from banger_core import system
from banger_core.vmmbackends import (
    FIRECRACKER,
    BackendProbe,
    VMMBackend,
    VMMChoice,
    backend_for,
    choose_for,
)

if TYPE_CHECKING:
    from banger_core.plugins import Hooks

BOOT_OPERATIONS = ("vm.create", "vm.start")
"""Operations every failing ``required`` check stops."""

# program -> operations that need it, besides create/start when required
NEEDED_BY: dict[str, tuple[str, ...]] = {
    "e2fsck": ("vm.set --disk-size",),
    "resize2fs": ("vm.set --disk-size",),
    "ssh": ("vm.ssh",),
    "mmdebstrap": ("image.build --os debian",),
}

# program -> (what needs it, Debian package, required for VMs)
PROGRAMS: dict[str, tuple[str, str, bool]] = {
    "ip": ("namespaces for the simulated host", "iproute2", True),
    "mkfs.ext4": ("work disks and images", "e2fsprogs", True),
    "e2fsck": ("growing work disks", "e2fsprogs", True),
    "resize2fs": ("growing work disks", "e2fsprogs", True),
    "losetup": ("the simulator's drives, dm-snapshot", "util-linux", False),
    "cp": ("root disk clones", "coreutils", True),
    "head": ("reading host paths with a socket_group member's permissions", "coreutils", True),
    "ssh": ("banger vm ssh", "openssh-client", False),
    "ssh-keygen": ("banger's SSH key", "openssh-client", True),
    "mmdebstrap": ("banger image build", "mmdebstrap", False),
    "lz4": ("bzImage → vmlinux (image build, image convert-kernel)", "lz4", False),
    "zstd": ("bzImage → vmlinux (zstd kernels), zstd initrds", "zstd", False),
    "dmsetup": ("dm-snapshot root disks", "dmsetup", False),
}


@dataclass
class Check:
    """One readiness check.

    :param name: what is checked (``"program mmdebstrap"``).
    :param ok: whether the host passes.
    :param detail: what was found (a path, "not found", a version).
    :param fix: what to do when it fails; shown by ``doctor`` and in the
        error of an operation the check stops.
    :param required: a failing required check stops ``vm create``/``vm start``.
    :param needed_by: other operations a failing check stops before they
        change anything: an RPC method (``"image.build"``, ``"vm.set"``,
        ``"vm.ssh"``) or a method with one of its options
        (``"vm.set --disk-size"``, ``"image.build --os debian"``).
    :param source: who reported the check: ``"core"`` or the plugin's name
        (set by the core from the hook's caller; a plugin need not set it).
    """

    name: str
    ok: bool
    detail: str = ""
    fix: str = ""
    required: bool = False
    source: str = "core"
    needed_by: tuple[str, ...] = ()

    def blocks(self, operation: str, scopes: tuple[str, ...] = ()) -> bool:
        """Whether this check, failing, stops ``operation`` (with option ``scopes``)."""
        if self.ok:
            return False
        if self.required and operation in BOOT_OPERATIONS:
            return True
        return any(s in self.needed_by for s in (operation, *scopes))

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "name": self.name,
            "ok": self.ok,
            "detail": self.detail,
            "fix": self.fix,
            "required": self.required,
            "source": self.source,
            "needed_by": list(self.needed_by),
        }


@dataclass
class DoctorContext:
    """What checks may look at."""

    settings: Any
    which: Callable[[str], str | None] = field(default=system.which)
    #: True in the preflight of ``vm create``/``vm start``: skip slow probes
    #: (name resolution, network round trips) that only ``banger doctor`` needs.
    preflight: bool = False
    #: The VMM back-ends plugins registered (``banger_vmm_backends``).
    backends: tuple[VMMBackend, ...] = ()

    #: the plugin whose ``banger_doctor_checks`` gets this context ("" for the core)
    plugin_name: str = ""

    @property
    def config(self) -> dict[str, Any]:
        """This plugin's effective ``[plugins.<name>]`` section."""
        from banger_core.hookcontext import plugin_section

        return plugin_section(self.settings, self.plugin_name, own=True) if self.plugin_name else {}

    def plugin_config(self, name: str) -> dict[str, Any]:
        """The effective ``[plugins.<name>]`` section (prefer :attr:`config` for your own).

        :raise banger_core.NotFoundError: no plugin is called ``name``.
        """
        from banger_core.hookcontext import plugin_section

        return plugin_section(self.settings, name, own=name == self.plugin_name)

    def for_plugin(self, name: str) -> DoctorContext:
        """The view plugin ``name``'s checks get (its own :attr:`config`)."""
        return DoctorContext(self.settings, self.which, self.preflight, self.backends, name)


def vmm_kind(path: str, backends: Iterable[VMMBackend] = ()) -> str:
    """Which back-end a VMM binary is: a registered back-end's name, else ``"firecracker"``."""
    backend = backend_for(path, backends)
    return backend.name if backend is not None else FIRECRACKER


def firecracker_check(choice: VMMChoice, backends: Iterable[VMMBackend] = ()) -> Check:
    """Is there a VMM to run, which back-end is it, and can it run here?

    ``choice`` is what the selection rule picked (:func:`choose_vmm`). banger
    drives real Firecracker and every registered back-end (the simulator
    ``banger-fcsim``, ``banger-fcqemu``, a third party's) through the same
    code path; the detail names which one was found and, when the back-end
    has a probe, whether it can run here.
    """
    backends = list(backends)
    if not choice.found:
        return Check("firecracker", False, choice.problem, fix=choice.fix, required=True)
    path = choice.program
    how = "" if choice.source.startswith(("[firecracker] binary", "$")) else choice.source
    if choice.source == "[firecracker] backend":
        how = f"[firecracker] backend = {choice.backend!r}"
    chosen = f"; chosen by {how}" if how else ""
    backend = backend_for(path, backends)
    if backend is None:
        return Check("firecracker", True, f"{path} (Firecracker{chosen})", required=True)
    probe = backend.probe(path) if backend.probe is not None else BackendProbe(True)
    extra = f"; {probe.detail}" if probe.detail else ""
    return Check(
        "firecracker",
        probe.ok,
        f"{path} ({Path(backend.program).name}: {backend.description}{extra}{chosen})",
        fix=probe.fix,
        required=True,
    )


def core_checks(ctx: DoctorContext) -> list[Check]:
    """The core's own checks."""
    settings = ctx.settings
    choice = settings.vmm if settings.vmm is not None else choose_for(settings, ctx.backends)
    checks = [firecracker_check(choice, ctx.backends)]
    checks.append(
        Check(
            "root",
            os.geteuid() == 0,
            "running as root" if os.geteuid() == 0 else "not root",
            fix="run bangerd as root (TAP devices, loop devices)",
            required=True,
        )
    )
    tun = Path("/dev/net/tun")
    checks.append(
        Check(
            "/dev/net/tun",
            tun.exists(),
            "present" if tun.exists() else "missing",
            fix="modprobe tun",
            required=True,
        )
    )
    kvm = Path("/dev/kvm")
    checks.append(
        Check(
            "/dev/kvm",
            kvm.exists(),
            "present" if kvm.exists() else "missing",
            fix="enable KVM (needed by real Firecracker, not by the simulator)",
        )
    )
    checks += [program_check(program, ctx.which) for program in PROGRAMS]
    checks += root_disk_checks(settings)
    checks.append(overcommit_check(settings))
    return checks


def overcommit_check(settings: Any) -> Check:
    """Whether the VMs' thin-provisioned disks could outgrow the free space."""
    from banger_core.disks.space import usage

    u = usage(settings.paths.vms_dir)
    return Check(
        "disk overcommit",
        not u.overcommitted,
        ("overcommitted: " if u.overcommitted else "ok: ") + u.describe(),
        fix="free space on the state file system or delete VMs you do not need",
    )


def root_disk_checks(settings: Any) -> list[Check]:
    """Which per-VM root disk strategy is used, and why each is or is not usable."""
    from banger_core.disks.rootdisk import describe_strategies

    report = describe_strategies(settings.paths.state_dir)
    configured = settings.get("storage", "root_disk")
    chosen = report.chosen if configured == "auto" else configured
    usable = report.available.get(chosen, False)
    checks = [
        Check(
            "root disk strategy",
            usable,
            f"{chosen} ({'auto' if configured == 'auto' else 'configured'}): "
            f"{report.reasons[chosen]}",
            fix='set [storage] root_disk = "auto"',
            required=True,
        )
    ]
    for name, reason in report.reasons.items():
        if name != chosen:
            checks.append(Check(f"root disk {name}", report.available[name], reason))
    return checks


def image_checks(settings: Any) -> list[Check]:
    """Each image's kernel capabilities and the transport it would boot with."""
    from banger_core.errors import BangerError
    from banger_core.firecracker.transport import choose_transport, vmm_version
    from banger_core.images.kernelcaps import KernelCaps
    from banger_core.images.kernelformat import format_problem, version_text
    from banger_core.store.models import Image

    try:
        images = list(Image.select().order_by(Image.name))
    except Exception:  # no store open (doctor outside the daemon)
        return []
    version = vmm_version(settings.get("firecracker", "binary"))
    checks = []
    for image in images:
        caps = KernelCaps.from_dict(image.kernel_caps)
        info = caps.summary()
        transports = info["transports"]
        detail = (
            f"{info['format']}"
            f"{' ' + info['version'] if info.get('version') else ''}; "
            f"config {info['config']}; transports "
            f"{', '.join(transports) if isinstance(transports, list) else transports}; "
            f"virtio_blk {info['virtio_blk']}; virtio_net {info['virtio_net']}; "
            f"vsock {info['vsock']}; ip_pnp {info['ip_pnp']}"
        )
        problem = format_problem(image.kernel, caps.format, version, image=image.name)
        if problem:
            checks.append(
                Check(
                    f"image {image.name} kernel",
                    False,
                    f"{detail}; {problem}",
                    fix=f"banger image convert-kernel {image.name}",
                )
            )
            continue
        detail += f"; Firecracker {version_text(version)} loads {caps.format or 'it'}"
        try:
            chosen = choose_transport(
                caps, settings.get("firecracker", "transport"), version, image=image.name
            )
            checks.append(
                Check(f"image {image.name} kernel", True, f"{detail}; boots with {chosen}")
            )
        except BangerError as exc:
            checks.append(
                Check(
                    f"image {image.name} kernel",
                    False,
                    f"{detail}; {exc}",
                    fix='set [firecracker] transport = "auto", or use a kernel '
                    "with the missing option",
                )
            )
    return checks


def run_checks(settings: Any, hooks: Hooks, *, preflight: bool = False) -> list[Check]:
    """Core checks, each image's kernel, then every plugin's (``preflight``: quick ones only)."""
    backends = tuple(backend for _, backend in hooks.vmm_backends())
    ctx = DoctorContext(settings, preflight=preflight, backends=backends)
    checks = core_checks(ctx) + image_checks(settings)
    for plugin, check in hooks.doctor_checks(ctx):
        check.source = plugin
        checks.append(check)
    return checks


def program_check(program: str, which: Any = system.which) -> Check:
    """The check of one program of :data:`PROGRAMS` (for a command's own preflight)."""
    purpose, package, required = PROGRAMS[program]
    path = which(program)
    return Check(
        f"program {program}",
        bool(path),
        path or "not found",
        fix=f"apt install {package}  (needed for {purpose})",
        required=required,
        needed_by=NEEDED_BY.get(program, ()),
    )


def not_ready_error(failing: list[Check]) -> Exception:
    """One error naming the first failing check, its detail and its fix."""
    from banger_core.errors import BangerError

    first = failing[0]
    more = f" (and {len(failing) - 1} more; run `banger doctor`)" if len(failing) > 1 else ""
    return BangerError(
        f"host not ready: {first.name}: {first.detail}"
        f"{'; fix: ' + first.fix if first.fix else ''}{more}"
    )


def preflight(settings: Any, hooks: Any, operation: str, scopes: tuple[str, ...] = ()) -> None:
    """Run the quick checks and raise, with the fix, when one stops ``operation``.

    :param operation: the RPC method about to run (``"vm.create"``, ``"image.build"``).
    :param scopes: the operation with the options it was given
        (``("vm.set --disk-size",)``), for checks only some uses need.
    """
    failing = [
        c for c in run_checks(settings, hooks, preflight=True) if c.blocks(operation, scopes)
    ]
    if failing:
        raise not_ready_error(failing)
