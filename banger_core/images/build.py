"""Build a guest image from a recipe: mmdebstrap → provision → ext4 files.

An image is a directory holding::

    vmlinux          the guest kernel: the ELF vmlinux inside the image's
                     /boot/vmlinuz-* (released Firecracker loads only ELF)
    initrd.img       its initrd (when the kernel package made one)
    rootfs.ext4      the root file system (read-only base for every VM)
    <artifacts>      files plugins made at build time (``banger_image_artifacts``):
                     ``<name>.ext4`` and the like, one per artifact name
    image.json       metadata, written last: its presence marks a complete image

Everything is built in a temp dir under the output directory and moved in
at the end; a failed or cancelled build leaves no partial output. No file
system is ever mounted: ``mkfs.ext4 -d`` turns directories into images.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from banger_core import system
from banger_core.errors import BangerError, CancelledError, CommandError, NotFoundError
from banger_core.images.recipe import InstalledFile, Recipe, installed_files

ArtifactMaker = Callable[[Path, Path, system.Runner], list[Any]]
"""``maker(root tree, staging dir, runner) -> [ImageArtifact]`` (plugins' artifacts)."""

IMAGE_FORMAT = 1
METADATA = "image.json"
KERNEL = "vmlinux"
"""The exported kernel: an ELF vmlinux (decompressed from /boot's bzImage)."""
INITRD = "initrd.img"
ROOTFS = "rootfs.ext4"
ROOT_LABEL = "banger-root"
STAGES = ("bootstrap", "provision", "kernel", "artifacts", "rootfs")
"""Stage names passed to ``on_stage``, in order."""

BOOTSTRAP_TIMEOUT = 1800.0
MKFS_TIMEOUT = 900.0
MIB = 1024 * 1024
DEFAULT_HOSTNAME = "banger"

FSTAB = """\
# banger: the root file system is mounted by the kernel (root=/dev/vda ro|rw).
# Other mounts (the /root work disk, ...) come from the guest-config drive.
"""


@dataclass(frozen=True)
class BuiltImage:
    """A complete image directory and its metadata."""

    directory: Path
    kernel: Path
    initrd: Path | None
    rootfs: Path
    fingerprint: str
    recipe_name: str
    size_bytes: int
    kernel_version: str
    suite: str
    built_at: float
    artifacts: dict[str, Path] = field(default_factory=dict)

    @property
    def work_seed(self) -> Path | None:
        """Deprecated: ``artifacts.get("work-seed")`` (the workdisk plugin's artifact)."""
        return self.artifacts.get("work-seed")

    def to_json(self) -> dict[str, Any]:
        """Metadata as stored in ``image.json`` (file names relative to the directory)."""
        return {
            "format": IMAGE_FORMAT,
            "recipe_name": self.recipe_name,
            "fingerprint": self.fingerprint,
            "suite": self.suite,
            "kernel": self.kernel.name,
            "initrd": self.initrd.name if self.initrd else None,
            "rootfs": self.rootfs.name,
            "artifacts": {name: path.name for name, path in sorted(self.artifacts.items())},
            "kernel_version": self.kernel_version,
            "size_bytes": self.size_bytes,
            "built_at": self.built_at,
        }


def read_image(directory: str | Path) -> BuiltImage:
    """Load a complete image from ``directory`` (its ``image.json`` and files).

    Raises NotFoundError when there is no complete image there.
    """
    d = Path(directory).absolute()
    meta_path = d / METADATA
    try:
        meta = json.loads(meta_path.read_text())
    except FileNotFoundError:
        raise NotFoundError(f"no image in {d} (no {METADATA})") from None
    except (OSError, ValueError) as exc:
        raise BangerError(f"unreadable image metadata {meta_path}: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != IMAGE_FORMAT:
        raise BangerError(f"{meta_path}: unsupported image format {meta.get('format')!r}")
    try:
        artifacts = dict(meta.get("artifacts") or {})
        if meta.get("work_seed"):  # images built before artifacts were plugins'
            artifacts.setdefault("work-seed", meta["work_seed"])
        image = BuiltImage(
            directory=d,
            kernel=d / meta["kernel"],
            initrd=d / meta["initrd"] if meta.get("initrd") else None,
            rootfs=d / meta["rootfs"],
            fingerprint=meta["fingerprint"],
            recipe_name=meta["recipe_name"],
            size_bytes=int(meta["size_bytes"]),
            kernel_version=meta.get("kernel_version", ""),
            suite=meta.get("suite", ""),
            built_at=float(meta.get("built_at", 0)),
            artifacts={str(k): d / str(v) for k, v in artifacts.items()},
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise BangerError(f"{meta_path}: bad image metadata ({exc})") from None
    for path in (image.kernel, image.initrd, image.rootfs, *image.artifacts.values()):
        if path is not None and not path.is_file():
            raise NotFoundError(f"image in {d} is incomplete: {path.name} is missing")
    return image


# --------------------------------------------------------------------------
# build


def build_image(
    recipe: Recipe,
    out_dir: str | Path,
    *,
    on_stage: Callable[[str], None] = lambda s: None,
    runner: system.Runner = system.run,
    cancel: threading.Event | None = None,
    extra_files: list[InstalledFile] | None = None,
    artifacts: ArtifactMaker | None = None,
    fingerprint_extra: str = "",
) -> BuiltImage:
    """Build ``recipe`` into ``out_dir`` and return the image.

    Stages (reported through ``on_stage``): bootstrap, provision, kernel,
    artifacts, rootfs. ``cancel`` is checked between stages (a running
    command finishes first); a cancelled or failed build raises
    (CancelledError / CommandError / BangerError) and leaves nothing behind
    in ``out_dir`` except what was there before. ``extra_files`` (from
    plugins' ``banger_image_provision`` steps) are installed after banger's
    own guest files and count in the fingerprint. ``artifacts(root, dir,
    runner)`` runs plugins' ``banger_image_artifacts`` over the root tree
    before it becomes ``rootfs.ext4``; ``fingerprint_extra`` (which plugins
    contribute artifacts) is mixed into the fingerprint.
    """
    out = Path(out_dir).absolute()
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".build-", dir=out))
    moved: list[Path] = []
    # Snapshot the guest files once: what is installed is what is fingerprinted.
    files = recipe.installed_files() + list(extra_files or [])
    fingerprint = recipe.fingerprint(files)
    if fingerprint_extra:
        fingerprint = hashlib.sha256(f"{fingerprint}\n{fingerprint_extra}".encode()).hexdigest()

    def stage(name: str) -> None:
        if cancel is not None and cancel.is_set():
            raise CancelledError(f"image build of {recipe.name} cancelled before {name}")
        on_stage(name)

    try:
        root = staging / "root"
        stage("bootstrap")
        bootstrap(recipe, root, runner=runner)
        stage("provision")
        provision(root, files)
        stage("kernel")
        kernel, initrd, kernel_version = export_kernel(root, staging)
        stage("artifacts")
        made = artifacts(root, staging, runner) if artifacts is not None else []
        stage("rootfs")
        rootfs = staging / ROOTFS
        rootfs_mib = max(
            recipe.rootfs_min_size_mib,
            _mib(tree_usage(root) * 1.1) + recipe.rootfs_headroom_mib,
        )
        make_ext4(root, rootfs, rootfs_mib, ROOT_LABEL, runner=runner)
        if cancel is not None and cancel.is_set():
            raise CancelledError(f"image build of {recipe.name} cancelled")

        # Publish: drop the old marker, move files in, write the marker last.
        (out / METADATA).unlink(missing_ok=True)
        outputs = [p for p in (kernel, initrd, rootfs) if p is not None]
        outputs += [a.path for a in made]
        for p in outputs:
            os.replace(p, out / p.name)
            moved.append(out / p.name)
        image = BuiltImage(
            directory=out,
            kernel=out / kernel.name,
            initrd=out / initrd.name if initrd else None,
            rootfs=out / ROOTFS,
            artifacts={a.name: out / a.path.name for a in made},
            fingerprint=fingerprint,
            recipe_name=recipe.name,
            size_bytes=(out / ROOTFS).stat().st_size,
            kernel_version=kernel_version,
            suite=recipe.suite,
            built_at=time.time(),
        )
        _write_json_atomic(out / METADATA, image.to_json())
        return image
    except BaseException:
        for p in moved:
            p.unlink(missing_ok=True)
        try:
            remove_tree(staging, runner=runner)
        except BangerError:
            pass  # the original error matters more
        raise
    finally:
        if staging.exists():
            remove_tree(staging, runner=runner)


def host_apt_sources(suite: str, etc: Path = Path("/etc")) -> list[str]:
    """The machine's apt sources files, when the machine runs ``suite``."""
    try:
        release = dict(
            line.split("=", 1)
            for line in (etc / "os-release").read_text().splitlines()
            if "=" in line
        )
    except OSError:
        return []
    if release.get("VERSION_CODENAME", "").strip('"') != suite:
        return []
    files = []
    legacy = etc / "apt/sources.list"
    if legacy.is_file() and any(
        line.strip() and not line.lstrip().startswith("#")
        for line in legacy.read_text().splitlines()
    ):
        files.append(str(legacy))
    parts = etc / "apt/sources.list.d"
    if parts.is_dir():
        files += sorted(str(p) for p in parts.iterdir() if p.suffix in (".list", ".sources"))
    return files


def bootstrap(recipe: Recipe, root: Path, *, runner: system.Runner = system.run) -> None:
    """Run mmdebstrap for ``recipe`` into the directory ``root``.

    When the host runs the recipe's suite, the machine's own apt sources
    files are passed as mirrors, so packages come only from where this
    machine's apt is configured to fetch them. Otherwise no mirror is given
    and mmdebstrap uses deb.debian.org. Standard input is empty so it is
    never read as a sources list.
    """
    argv = ["mmdebstrap", "--mode=root", f"--variant={recipe.variant}", "--quiet"]
    if recipe.packages:
        argv.append("--include=" + ",".join(recipe.packages))
    argv += [recipe.suite, str(root), *host_apt_sources(recipe.suite)]
    try:
        runner(argv, timeout=BOOTSTRAP_TIMEOUT, input="")
    except CommandError as exc:
        raise CommandError(
            exc.argv, exc.returncode, f"bootstrapping {recipe.suite} failed: {_tail(exc.stderr)}"
        ) from None


def _tail(text: str, lines: int = 3) -> str:
    kept = [line for line in text.strip().splitlines() if line.strip()][-lines:]
    return " | ".join(kept) or "no output"


def provision(root: Path, files: list[InstalledFile] | None = None) -> None:
    """Install banger's guest programs, units and SSH setup into ``root``.

    ``files`` defaults to :func:`banger_core.images.recipe.installed_files`.
    """
    for f in installed_files() if files is None else files:
        dest = _inside(root, f.dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(f.content)
        dest.chmod(f.mode)
        if f.dest.startswith("/usr/lib/systemd/system/") and f.dest.endswith(".service"):
            wants = root / "etc/systemd/system/multi-user.target.wants"
            wants.mkdir(parents=True, exist_ok=True)
            link = wants / dest.name
            if link.is_symlink() or link.exists():
                link.unlink()
            link.symlink_to(f.dest)
    ssh_dir = root / "root/.ssh"
    ssh_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    ssh_dir.chmod(0o700)
    (ssh_dir / "authorized_keys").unlink(missing_ok=True)
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    (root / "etc/hostname").write_text(DEFAULT_HOSTNAME + "\n")
    (root / "etc/hostname").chmod(0o644)
    (root / "etc/hosts").write_text(_hosts(DEFAULT_HOSTNAME))
    (root / "etc/fstab").write_text(FSTAB)
    resolv = root / "etc/resolv.conf"
    if resolv.is_symlink() or resolv.exists():
        resolv.unlink()
    resolv.symlink_to("/run/banger/resolv.conf")
    # Mount point for the simulator's vsock directory (the root may be read-only).
    (root / "run/banger-vsock").mkdir(mode=0o755, parents=True, exist_ok=True)


def _hosts(hostname: str) -> str:
    return (
        f"127.0.0.1\tlocalhost\n127.0.1.1\t{hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n"
    )


def _inside(root: Path, guest_path: str) -> Path:
    return root / guest_path.lstrip("/")


_VERSION_RE = re.compile(r"(\d+|\D+)")


def _version_key(name: str) -> list[tuple[int, Any]]:
    return [(0, int(p)) if p.isdigit() else (1, p) for p in _VERSION_RE.findall(name)]


def export_kernel(root: Path, dest: Path) -> tuple[Path, Path | None, str]:
    """Export the newest ``/boot/vmlinuz-*`` from ``root`` as an ELF vmlinux (and its initrd).

    A bzImage is decompressed (:func:`banger_core.images.vmlinux.extract_vmlinux`),
    an ELF copied; either way the result must pass the ported Firecracker
    loader (:func:`banger_core.images.kernelload.check_vmlinux`). The initrd
    is copied unchanged. Returns ``(kernel, initrd or None, version)``.
    """
    from banger_core.images import kernelload
    from banger_core.images.kernelcaps import kernel_format
    from banger_core.images.vmlinux import extract_vmlinux

    kernels = sorted((root / "boot").glob("vmlinuz-*"), key=lambda p: _version_key(p.name))
    if not kernels:
        raise BangerError(
            f"no kernel in the image's /boot: add a kernel package "
            f"(e.g. linux-image-cloud-amd64) to the recipe ({root})"
        )
    src = kernels[-1]
    version = src.name[len("vmlinuz-") :]
    kernel = dest / KERNEL
    with open(src, "rb") as fh:
        fmt = kernel_format(fh.read(4096))
    if fmt == "elf":
        shutil.copyfile(src, kernel)
        try:
            kernelload.check_vmlinux(kernel)
        except kernelload.KernelLoadError as exc:
            raise BangerError(f"kernel {src} does not load on Firecracker: {exc}") from None
    elif fmt == "bzimage":
        extract_vmlinux(src, kernel)
    else:
        raise BangerError(f"{src} is not a kernel image (neither an ELF vmlinux nor a bzImage)")
    initrd_src = root / "boot" / f"initrd.img-{version}"
    initrd: Path | None = None
    if initrd_src.is_file():
        initrd = dest / INITRD
        shutil.copyfile(initrd_src, initrd)
    return kernel, initrd, version


def split_root_home(root: Path, work: Path) -> None:
    """Move the content of ``root/root`` into ``work``; keep /root empty (a plugin's helper)."""
    home = root / "root"
    home.mkdir(mode=0o700, exist_ok=True)
    work.mkdir(mode=0o700)
    st = home.stat()
    os.chown(work, st.st_uid, st.st_gid)
    work.chmod(stat.S_IMODE(st.st_mode))
    for entry in list(home.iterdir()):
        os.rename(entry, work / entry.name)


def tree_usage(path: Path) -> int:
    """Bytes used by the tree at ``path`` (allocated blocks plus inode overhead)."""
    total = 0
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            total += st.st_blocks * 512 + 256
    return total


def count_entries(path: Path) -> int:
    """Number of files, directories and links under ``path``."""
    return sum(len(d) + len(f) for _, d, f in os.walk(path)) + 1


def _mib(n: float) -> int:
    return int(-(-n // MIB))


def make_ext4(
    source: Path,
    image: Path,
    size_mib: int,
    label: str,
    *,
    runner: system.Runner = system.run,
    root_mode: int | None = None,
) -> None:
    """Create ext4 file ``image`` of ``size_mib`` MiB holding the tree ``source``.

    ``root_mode`` sets the permissions of the file system's root directory
    (``mkfs.ext4 -d`` leaves it 0755).
    """
    image.unlink(missing_ok=True)
    with open(image, "wb") as f:
        f.truncate(size_mib * MIB)
    inodes = max(size_mib * MIB // 16384, int(count_entries(source) * 1.3) + 8192)
    runner(
        [
            "mkfs.ext4",
            "-q",
            "-F",
            "-T",
            "default",
            "-m",
            "0",
            "-N",
            str(inodes),
            "-L",
            label,
            "-d",
            str(source),
            str(image),
            f"{size_mib}M",
        ],
        timeout=MKFS_TIMEOUT,
    )
    if root_mode is not None:
        runner(["debugfs", "-w", "-R", f"sif / mode 0{0o40000 | root_mode:o}", str(image)])


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def _mounts_under(path: Path) -> list[str]:
    prefix = str(path).rstrip("/") + "/"
    found = []
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                target = line.split()[4].replace("\\040", " ")
                if target.startswith(prefix) or target == str(path):
                    found.append(target)
    except OSError:
        pass
    return sorted(found, key=len, reverse=True)


def remove_tree(path: Path, *, runner: system.Runner = system.run) -> None:
    """Remove a build tree safely: unmount anything left under it, never cross mounts."""
    if not path.exists():
        return
    for target in _mounts_under(path):
        runner(["umount", "--lazy", target], check=False)
    runner(["rm", "-rf", "--one-file-system", "--", str(path)], check=False, timeout=600)
    if path.exists():
        raise BangerError(f"could not remove build directory {path}")


def stage_names() -> tuple[str, ...]:
    """The stage names of an image build, in order."""
    return STAGES


def as_dict(image: BuiltImage) -> dict[str, Any]:
    """Image fields as plain JSON-friendly values (paths as strings)."""
    out = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(image).items()}
    out["artifacts"] = {k: str(v) for k, v in image.artifacts.items()}
    return out
