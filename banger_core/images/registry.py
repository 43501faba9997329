"""Images in the store: build, register, list, show, delete."""

from __future__ import annotations

import builtins
import shutil
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loguru import logger

from banger_core.errors import BangerError, ConflictError, NotFoundError, ValidationError
from banger_core.images.kernelcaps import KernelCaps, detect, kernel_format
from banger_core.images.kernelformat import format_summary
from banger_core.images.providers import GuestOS, debian_guest_os
from banger_core.store.models import Image, VMRecord
from banger_core.units import check_vm_name

if TYPE_CHECKING:
    from banger_core.config import Settings
    from banger_core.plugins import Hooks


def image_dict(image: Image, vmm_version: tuple[int, int, int] | None = None) -> dict[str, Any]:
    """JSON-ready form of an image row.

    ``kernel_format`` states the kernel file's format next to the configured
    Firecracker's version (``vmm_version``) and whether that version loads it.
    """
    artifacts = image_artifacts(image)
    caps = KernelCaps.from_dict(image.kernel_caps)
    files = [image.kernel, image.rootfs, image.initrd, *artifacts.values()]
    return {
        "id": image.id,
        "name": image.name,
        "kernel": image.kernel,
        "initrd": image.initrd,
        "rootfs": image.rootfs,
        "artifacts": artifacts,
        "managed": image.managed,
        "os": image.os,
        "fingerprint": image.fingerprint,
        "created_at": image.created_at,
        "owner_uid": image.owner_uid,
        "size": sum(Path(f).stat().st_size for f in files if f and Path(f).exists()),
        "vms": VMRecord.select().where(VMRecord.image == image.id).count(),
        "kernel_caps": caps.summary(),
        "kernel_format": format_summary(caps.format, vmm_version),
    }


def image_artifacts(image: Image) -> dict[str, str]:
    """``{name: path}`` of the files plugins made for the image (older rows: the work seed)."""
    artifacts = dict(image.artifacts or {})
    if image.work_seed:
        artifacts.setdefault("work-seed", image.work_seed)
    return artifacts


def kernel_caps_for(
    kernel: str, *, initrd: str | None, rootfs: str, kernel_config: str | None = None
) -> KernelCaps:
    """Detect a kernel's capabilities; refuse, in one line, a kernel nothing can boot."""
    try:
        caps = detect(kernel, initrd=initrd, rootfs=rootfs, config_file=kernel_config)
    except OSError as exc:
        raise ValidationError(f"kernel {kernel}: {exc.strerror}") from None
    except BangerError as exc:
        raise ValidationError(str(exc)) from None
    problem = caps.boot_problem()
    if problem:
        raise ValidationError(f"kernel {kernel} cannot boot on Firecracker: {problem}")
    if not caps.known:
        logger.warning(
            "kernel {}: no configuration found (no /boot/config-* in the rootfs, "
            "no IKCONFIG); its capabilities are unknown (pass --kernel-config)",
            kernel,
        )
    return caps


class ImageService:
    """Owns the image rows and the managed image files under the state dir."""

    def __init__(
        self,
        settings: Settings,
        hooks: Hooks,
        vmm_version: Callable[[], tuple[int, int, int] | None] = lambda: None,
    ) -> None:
        """``vmm_version``: the configured Firecracker's version (``image show`` states it)."""
        self.settings = settings
        self.hooks = hooks
        self._vmm_version = vmm_version
        self.images_dir: Path = settings.paths.images_dir
        self._lock = threading.Lock()

    # -- lookup ----------------------------------------------------------------
    def get(self, ref: str) -> Image:
        """Find an image by name, id or unique id prefix."""
        image = Image.get_or_none(Image.name == ref) or Image.get_or_none(Image.id == ref)
        if image:
            return image
        matches = list(Image.select().where(Image.id.startswith(ref))) if ref else []
        if len(matches) == 1:
            return matches[0]
        names = ", ".join(sorted(i.name for i in Image.select())) or "none"
        raise NotFoundError(
            f"no image {ref!r} (images: {names}; build one with "
            f"`banger image build {ref or 'debian'}`)"
        )

    def default_name(self) -> str:
        """The configured default image name."""
        return self.settings.get("vm", "default_image")

    def vmm_version(self) -> tuple[int, int, int] | None:
        """The configured Firecracker's version (``[firecracker] binary --version``)."""
        return self._vmm_version()

    def list(self) -> list[dict[str, Any]]:
        """Every image."""
        version = self.vmm_version()
        return [image_dict(i, version) for i in Image.select().order_by(Image.name)]

    def show(self, ref: str) -> dict[str, Any]:
        """One image, its kernel format stated next to the VMM version."""
        return image_dict(self.get(ref), self.vmm_version())

    # -- changes -----------------------------------------------------------------
    def register(
        self,
        name: str,
        kernel: str,
        rootfs: str,
        initrd: str | None = None,
        work_seed: str | None = None,
        artifacts: dict[str, str] | None = None,
        kernel_config: str | None = None,
        owner_uid: int = 0,
    ) -> dict[str, Any]:
        """Record an image made elsewhere; files are used where they are.

        The kernel's capabilities are read (``kernel_config``, else the
        rootfs's ``/boot/config-*``, else IKCONFIG) and a kernel that no
        virtio transport can boot is refused.

        :param artifacts: ``{name: path}`` of plugin artifacts (``work-seed``);
            ``work_seed`` is the older spelling of ``{"work-seed": path}``.
        """
        check_vm_name(name)
        if artifacts is not None and not isinstance(artifacts, dict):
            raise ValidationError(f"artifacts {artifacts!r} must map names to files")
        extra = {str(k): v for k, v in (artifacts or {}).items()}
        if work_seed:
            extra.setdefault("work-seed", work_seed)
        paths = {
            "kernel": kernel,
            "rootfs": rootfs,
            "initrd": initrd,
            "kernel config": kernel_config,
            **{f"artifact {k}": v for k, v in extra.items()},
        }
        for what, value in paths.items():
            if value is None:
                continue
            if not isinstance(value, str) or not Path(value).is_file():
                raise ValidationError(f"{what} {value!r} is not a file")
        if Image.get_or_none(Image.name == name):
            raise ConflictError(f"image {name!r} already exists")
        caps = kernel_caps_for(kernel, initrd=initrd, rootfs=rootfs, kernel_config=kernel_config)
        with self._lock:
            if Image.get_or_none(Image.name == name):
                raise ConflictError(f"image {name!r} already exists")
            image = Image.create(
                id=uuid.uuid4().hex[:12],
                name=name,
                kernel=str(Path(kernel).absolute()),
                rootfs=str(Path(rootfs).absolute()),
                initrd=str(Path(initrd).absolute()) if initrd else None,
                artifacts={k: str(Path(v).absolute()) for k, v in extra.items()},
                managed=False,
                kernel_caps=caps.to_dict(),
                owner_uid=owner_uid,
            )
        logger.info("registered image {} ({})", name, image.id)
        return image_dict(image, self.vmm_version())

    def delete(self, ref: str) -> dict[str, Any]:
        """Remove an image; refused while a VM uses it."""
        image = self.get(ref)
        users = [v.name for v in VMRecord.select().where(VMRecord.image == image.id)]
        if users:
            raise ConflictError(
                f"image {image.name!r} is used by VM(s): {', '.join(users)}; delete them first"
            )
        info = image_dict(image)
        image.delete_instance()
        # Managed images live there; a registered one only has its converted kernel there.
        shutil.rmtree(self.images_dir / image.id, ignore_errors=True)
        logger.info("deleted image {}", image.name)
        return info

    def convert_kernel(self, ref: str) -> dict[str, Any]:
        """Give an image the ELF vmlinux inside its bzImage (``banger image convert-kernel``).

        The vmlinux is written under banger's images directory
        (``<images>/<id>/vmlinux``), checked with the ported Firecracker
        loader, its capabilities read again; then the image row points at it.
        The bzImage itself is left where it is (a managed image's is
        removed). An image whose kernel is already an ELF is left unchanged
        (``converted`` is False). Nothing changes when any step fails.
        """
        from banger_core.images.vmlinux import extract_vmlinux

        image = self.get(ref)
        with self._lock:
            image = Image.get_by_id(image.id)
            old = Path(image.kernel)
            try:
                with open(old, "rb") as fh:
                    fmt = kernel_format(fh.read(4096))
            except OSError as exc:
                raise ValidationError(
                    f"image {image.name!r}: kernel {old}: {exc.strerror}"
                ) from None
            if fmt == "elf":
                return {**image_dict(image, self.vmm_version()), "converted": False}
            directory = self.images_dir / image.id
            made_dir = not directory.exists()
            directory.mkdir(parents=True, exist_ok=True)
            dest = directory / ("vmlinux" if old != directory / "vmlinux" else "vmlinux.elf")
            try:
                extract_vmlinux(old, dest)
                config = KernelCaps.from_dict(image.kernel_caps).config_source
                explicit = config if config and Path(config).is_file() else None
                caps = kernel_caps_for(
                    str(dest), initrd=image.initrd, rootfs=image.rootfs, kernel_config=explicit
                )
            except BangerError as exc:
                dest.unlink(missing_ok=True)
                if made_dir:
                    shutil.rmtree(directory, ignore_errors=True)
                raise ValidationError(str(exc)) from None
            except BaseException:
                dest.unlink(missing_ok=True)
                if made_dir:
                    shutil.rmtree(directory, ignore_errors=True)
                raise
            image.kernel = str(dest)
            image.kernel_caps = caps.to_dict()
            image.save()
            if image.managed and old.parent == directory:
                old.unlink(missing_ok=True)
        logger.info("image {}: kernel {} converted to ELF vmlinux {}", image.name, old, dest)
        return {
            **image_dict(image, self.vmm_version()),
            "converted": True,
            "previous_kernel": str(old),
        }

    def providers(self) -> dict[str, GuestOS]:
        """Guest OS providers by name: the core's Debian plus plugins'."""
        found = {"debian": debian_guest_os()}
        for provider in self.hooks.guest_os():
            found[provider.name] = provider
        return found

    def validate_build(self, name: str, os_name: str) -> GuestOS:
        """Check a build request without changing anything; return the provider."""
        check_vm_name(name)
        provider = self.providers().get(os_name)
        if provider is None:
            raise ValidationError(
                f"unknown guest OS {os_name!r} (known: {', '.join(sorted(self.providers()))})"
            )
        if Image.get_or_none(Image.name == name):
            raise ConflictError(f"image {name!r} already exists")
        return provider

    def build(self, op: Any, name: str, os_name: str, owner_uid: int = 0) -> dict[str, Any]:
        """Build an image (runs inside an operation) and register it."""
        provider = self.validate_build(name, os_name)
        image_id = uuid.uuid4().hex[:12]
        out = self.images_dir / image_id
        stages = StageTracker(op)
        try:
            steps: list[Any] = []
            info = {"name": name, "os": os_name}
            self.hooks.image_provision(info, steps)
            built = self._build_with_artifacts(provider, info, out, stages, op, steps)
            stages.close()
            with op.stage("kernel capabilities"):
                caps = kernel_caps_for(
                    str(built.kernel),
                    rootfs=str(built.rootfs),
                    initrd=str(built.initrd) if built.initrd else None,
                )
            with op.stage("register"), self._lock:
                if Image.get_or_none(Image.name == name):
                    raise ConflictError(f"image {name!r} already exists")
                image = Image.create(
                    id=image_id,
                    name=name,
                    kernel=str(built.kernel),
                    initrd=str(built.initrd) if built.initrd else None,
                    rootfs=str(built.rootfs),
                    artifacts={k: str(v) for k, v in built.artifacts.items()},
                    managed=True,
                    os=os_name,
                    fingerprint=built.fingerprint,
                    kernel_caps=caps.to_dict(),
                    owner_uid=owner_uid,
                )
        except BaseException:
            stages.fail()
            shutil.rmtree(out, ignore_errors=True)
            raise
        return image_dict(image, self.vmm_version())

    def _build_with_artifacts(
        self,
        provider: GuestOS,
        info: dict[str, Any],
        out: Path,
        stages: StageTracker,
        op: Any,
        steps: builtins.list[Any],
    ) -> Any:
        import inspect

        from banger_core.images.artifacts import ArtifactCollector

        collector = ArtifactCollector(self.hooks, self.settings, info)
        try:
            accepts = "artifacts" in inspect.signature(provider.build).parameters
        except (TypeError, ValueError):
            accepts = False
        if not accepts:
            return provider.build(out, stages.enter, op.cancel_event, steps)
        return provider.build(
            out,
            stages.enter,
            op.cancel_event,
            steps,
            artifacts=collector,
            fingerprint_extra=",".join(collector.providers()),
        )


class StageTracker:
    """Turns a builder's ``on_stage(name)`` calls into operation stages."""

    def __init__(self, op: Any) -> None:
        self.op = op
        self._current: Any = None

    def enter(self, name: str) -> None:
        """A new stage begins; the previous one is done."""
        self.close()
        self._current = self.op.stage(name)
        self._current.__enter__()

    def close(self) -> None:
        """Mark the current stage done."""
        if self._current is not None:
            current, self._current = self._current, None
            current.__exit__(None, None, None)

    def fail(self) -> None:
        """Mark the current stage failed."""
        if self._current is not None:
            current, self._current = self._current, None
            err = RuntimeError("failed")
            try:
                current.__exit__(type(err), err, None)
            except RuntimeError:
                pass
