"""Extracting untrusted tar streams without ever writing outside the destination.

Every archive that comes from a guest or the network (``vm cp`` from a VM,
and later OCI layers, folder sync, runtime downloads) is extracted with
:func:`extract_tar`. Standard library only and cheap to import (the CLI
uses it). It does not rely on :mod:`tarfile`'s extraction filters, which
Debian 12's Python 3.11.2 does not have: tarfile only parses headers here.

How it stays inside the destination:

- every path component is opened relative to a directory descriptor with
  ``O_NOFOLLOW | O_DIRECTORY``, so no symlink is ever followed, including
  one an earlier extraction planted in the same destination;
- files are created with ``O_CREAT | O_EXCL | O_NOFOLLOW`` under a
  temporary name and renamed over the final name, so an existing entry
  (a symlink, a hard link to a file elsewhere) is replaced, never written
  through;
- absolute names, ``..``, device files, FIFOs and hard links whose target
  is not a regular file this same extraction wrote are refused; symlinks
  are recreated as symlinks (never followed while extracting);
- setuid, setgid and sticky bits are dropped and owners are not restored:
  files belong to whoever extracts;
- total bytes, member count, name lengths and metadata headers (pax and
  GNU long names) are capped (:class:`ExtractLimits`), checked on the raw stream
  before :mod:`tarfile` buffers anything.

A refusal raises :class:`UnsafeArchiveError` naming the member, and the
extraction is undone: entries it created are removed and entries it
replaced are put back (existing directories it merged into stay).
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from banger_core.errors import BangerError

__all__ = ["ExtractLimits", "ExtractResult", "UnsafeArchiveError", "extract_tar"]

BLOCK = 512
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_META_TYPES = {b"x", b"g", b"L", b"K"}  # pax headers, GNU long name / long link
_REFUSED_TYPES = {
    tarfile.CHRTYPE: "a character device",
    tarfile.BLKTYPE: "a block device",
    tarfile.FIFOTYPE: "a FIFO",
}


class UnsafeArchiveError(BangerError):
    """An archive member was refused (or the archive is malformed); names the member."""

    code = "invalid"


@dataclass(frozen=True)
class ExtractLimits:
    """Caps for one extraction; the defaults suit a ``vm cp`` of a whole tree."""

    max_bytes: int = 64 << 30
    """Total bytes of file content (and of the raw stream, with headers)."""
    max_members: int = 1_000_000
    """Archive members."""
    max_name: int = 4096
    """Bytes in a member's path (and a link's target)."""
    max_component: int = 255
    """Bytes in one path component."""
    max_meta: int = 1 << 20
    """Bytes in one pax or GNU long-name header."""


@dataclass
class ExtractResult:
    """What an extraction wrote."""

    members: int = 0
    bytes: int = 0
    paths: list[str] = field(default_factory=list)
    """Relative paths of the entries written, in archive order."""


# --------------------------------------------------------------------------
# the raw stream: caps checked before tarfile buffers anything


class _GuardedStream:
    """A reader passing a tar stream through while checking each header block.

    tarfile reads a pax header or GNU long name whole into memory, however
    large its size field says it is; this wrapper refuses one over
    ``max_meta`` and caps the total stream before tarfile asks for it.
    """

    def __init__(self, raw: IO[bytes] | Any, limits: ExtractLimits) -> None:
        self.raw = raw
        self.limits = limits
        self.pos = 0
        self.next_header = 0
        self.header = b""
        self.ended = False
        self.zeros = 0
        self.limit = limits.max_bytes + (limits.max_members + 2) * 3 * BLOCK + 2 * limits.max_meta

    def read(self, size: int = -1) -> bytes:
        """Read up to ``size`` bytes from the stream, checking headers as they pass."""
        if size is None or size < 0:
            size = 1 << 16
        data = self.raw.read(size)
        if not data:
            return b""
        if self.pos + len(data) > self.limit:
            raise UnsafeArchiveError(
                f"archive stream is larger than the limit of {self.limits.max_bytes} bytes"
            )
        self._inspect(data)
        self.pos += len(data)
        return bytes(data)

    def _inspect(self, data: bytes) -> None:
        start = self.pos
        end = start + len(data)
        while not self.ended and self.next_header < end:
            offset = max(0, self.next_header - start)
            need = BLOCK - len(self.header)
            self.header += data[offset : offset + need]
            if len(self.header) < BLOCK:
                return
            header, self.header = self.header, b""
            if header == b"\0" * BLOCK:  # two of them end the archive
                self.next_header += BLOCK
                self.zeros += 1
                self.ended = self.zeros >= 2
                continue
            self.zeros = 0
            kind = header[156:157]
            size = _header_size(header)
            if kind in _META_TYPES and size > self.limits.max_meta:
                raise UnsafeArchiveError(
                    f"archive has a {size}-byte metadata header (pax or long name); "
                    f"at most {self.limits.max_meta} allowed"
                )
            if kind == b"S":
                raise UnsafeArchiveError(
                    "archive has an old-style GNU sparse member, which is not supported"
                )
            data_size = 0 if kind in (b"1", b"2", b"3", b"4", b"5", b"6") else size
            self.next_header += BLOCK + -(-data_size // BLOCK) * BLOCK


def _header_size(header: bytes) -> int:
    field_ = header[124:136]
    if field_[:1] in (b"\x80", b"\xff"):  # base-256 (GNU): large sizes
        if field_[:1] == b"\xff":
            raise UnsafeArchiveError("malformed archive: a header has a negative size")
        return int.from_bytes(field_[1:], "big")
    text = field_.split(b"\0", 1)[0].strip() or b"0"
    try:
        return int(text, 8)
    except ValueError:
        raise UnsafeArchiveError(
            f"malformed archive: a header has a bad size field {text[:12]!r}"
        ) from None


# --------------------------------------------------------------------------
# names


def _components(name: str, limits: ExtractLimits) -> list[str]:
    """A member name as validated components (``.`` dropped); refuses what could escape."""
    if "\0" in name:
        raise ValueError("it contains a NUL byte")
    if len(name.encode("utf-8", "surrogateescape")) > limits.max_name:
        raise ValueError(f"its name is longer than {limits.max_name} bytes")
    if name.startswith("/"):
        raise ValueError("it is an absolute path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if not parts:
        raise ValueError("it names no file")
    for part in parts:
        if part == "..":
            raise ValueError("it contains '..'")
        if len(part.encode("utf-8", "surrogateescape")) > limits.max_component:
            raise ValueError(f"a component is longer than {limits.max_component} bytes")
    return parts


# --------------------------------------------------------------------------
# the extraction


class _Extraction:
    """The state of one :func:`extract_tar` call (and what to undo on refusal)."""

    def __init__(self, dest: Path, limits: ExtractLimits) -> None:
        self.limits = limits
        self.root = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self.created: list[tuple[tuple[str, ...], bool]] = []  # (path, is_dir)
        self.created_files: set[tuple[str, ...]] = set()
        self.replaced: list[tuple[tuple[str, ...], str]] = []  # (path, backup name)
        self.files: dict[tuple[str, ...], tuple[int, int]] = {}  # path -> (st_dev, st_ino)
        self.dirs: list[tuple[tuple[str, ...], int, float | None]] = []  # deferred modes and times
        self.result = ExtractResult()

    def close(self) -> None:
        os.close(self.root)

    # -- walking ---------------------------------------------------------------
    @contextlib.contextmanager
    def parent(self, parts: tuple[str, ...], *, create: bool) -> Iterator[int]:
        """A descriptor of the directory holding ``parts`` (made when ``create``)."""
        fd = os.dup(self.root)
        try:
            for i in range(len(parts) - 1):
                nxt = self._open_dir(fd, parts[: i + 1], create=create)
                os.close(fd)
                fd = nxt
            yield fd
        finally:
            os.close(fd)

    def _open_dir(self, fd: int, sub: tuple[str, ...], *, create: bool) -> int:
        """Open the directory ``sub[-1]`` under ``fd`` without following a symlink."""
        name = sub[-1]
        try:
            return os.open(name, _DIR_FLAGS, dir_fd=fd)
        except FileNotFoundError:
            if not create:
                raise
            os.mkdir(name, 0o700, dir_fd=fd)
            self.created.append((sub, True))
            self.dirs.append((sub, 0o755, None))
            return os.open(name, _DIR_FLAGS, dir_fd=fd)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise ValueError(
                    f"{'/'.join(sub)} exists in the destination and is not a directory "
                    "(a symlink or a file): it is not followed"
                ) from None
            raise

    # -- placing entries -------------------------------------------------------
    def _temp_name(self, final: str) -> str:
        return f".{final[:200]}.banger-{secrets.token_hex(6)}"

    def _install(self, dirfd: int, parts: tuple[str, ...], temp: str) -> None:
        """Rename ``temp`` over ``parts[-1]``, keeping what it replaces for an undo."""
        final = parts[-1]
        try:
            st = os.stat(final, dir_fd=dirfd, follow_symlinks=False)
        except FileNotFoundError:
            st = None
        if st is not None:
            if stat.S_ISDIR(st.st_mode):
                os.unlink(temp, dir_fd=dirfd)
                raise ValueError(f"{'/'.join(parts)} is a directory in the destination")
            self.files.pop(parts, None)
            if parts in self.created_files:  # an earlier member of this archive: no backup
                os.rename(temp, final, src_dir_fd=dirfd, dst_dir_fd=dirfd)
                return
            backup = self._temp_name(final)
            os.rename(final, backup, src_dir_fd=dirfd, dst_dir_fd=dirfd)
            self.replaced.append((parts, backup))
        os.rename(temp, final, src_dir_fd=dirfd, dst_dir_fd=dirfd)
        if st is None:
            self.created.append((parts, False))
            self.created_files.add(parts)

    def directory(self, parts: tuple[str, ...], mode: int, mtime: float | None) -> None:
        """Make (or enter) the directory ``parts``."""
        with self.parent(parts, create=True) as dirfd:
            try:
                os.mkdir(parts[-1], 0o700, dir_fd=dirfd)
                self.created.append((parts, True))
            except FileExistsError:
                pass
            os.close(self._open_dir(dirfd, parts, create=False))
        self.dirs.append((parts, mode, mtime))

    def regular(
        self,
        parts: tuple[str, ...],
        source: IO[bytes],
        size: int,
        mode: int,
        mtime: float | None,
        progress: Callable[[int], None] | None,
    ) -> None:
        """Write a regular file of ``size`` bytes from ``source``."""
        with self.parent(parts, create=True) as dirfd:
            temp = self._temp_name(parts[-1])
            fd = os.open(temp, _FILE_FLAGS, 0o600, dir_fd=dirfd)
            try:
                written = 0
                while True:
                    chunk = source.read(1 << 16)
                    if not chunk:
                        break
                    written += len(chunk)
                    if written > size:
                        raise ValueError("it holds more data than its header says")
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fd, view) :]
                    if progress is not None:
                        progress(len(chunk))
                if written != size:
                    raise ValueError("the archive ended inside it")
                os.fchmod(fd, mode)
                _set_mtime(fd, mtime)
                st = os.fstat(fd)
            except BaseException:
                os.close(fd)
                os.unlink(temp, dir_fd=dirfd)
                raise
            os.close(fd)
            self._install(dirfd, parts, temp)
            self.files[parts] = (st.st_dev, st.st_ino)

    def symlink(self, parts: tuple[str, ...], target: str) -> None:
        """Recreate a symlink (its target is kept as is and never followed here)."""
        with self.parent(parts, create=True) as dirfd:
            temp = self._temp_name(parts[-1])
            os.symlink(target, temp, dir_fd=dirfd)
            self._install(dirfd, parts, temp)

    def hardlink(self, parts: tuple[str, ...], target: tuple[str, ...]) -> None:
        """Link ``parts`` to ``target``, a regular file this extraction wrote."""
        known = self.files.get(target)
        if known is None:
            raise ValueError(
                f"it is a hard link to {'/'.join(target)!r}, which is not a regular file "
                "this archive wrote"
            )
        with self.parent(target, create=False) as srcfd:
            st = os.stat(target[-1], dir_fd=srcfd, follow_symlinks=False)
            if (st.st_dev, st.st_ino) != known or not stat.S_ISREG(st.st_mode):
                raise ValueError(f"its link target {'/'.join(target)!r} changed during extraction")
            with self.parent(parts, create=True) as dirfd:
                temp = self._temp_name(parts[-1])
                os.link(
                    target[-1],
                    temp,
                    src_dir_fd=srcfd,
                    dst_dir_fd=dirfd,
                    follow_symlinks=False,
                )
                self._install(dirfd, parts, temp)
        self.files[parts] = known

    # -- the end ---------------------------------------------------------------
    def finish(self) -> None:
        """Drop the backups of replaced entries; set directories' modes and times."""
        for parts, backup in self.replaced:
            with contextlib.suppress(OSError), self.parent(parts, create=False) as dirfd:
                os.unlink(backup, dir_fd=dirfd)
        for parts, mode, mtime in reversed(self.dirs):
            with contextlib.suppress(OSError), self.parent(parts, create=False) as dirfd:
                fd = os.open(parts[-1], _DIR_FLAGS, dir_fd=dirfd)
                try:
                    os.fchmod(fd, mode)
                    _set_mtime(fd, mtime)
                finally:
                    os.close(fd)

    def undo(self) -> None:
        """Remove what this extraction created and put back what it replaced."""
        for parts, is_dir in reversed(self.created):
            with contextlib.suppress(OSError), self.parent(parts, create=False) as dirfd:
                if is_dir:
                    os.rmdir(parts[-1], dir_fd=dirfd)
                else:
                    os.unlink(parts[-1], dir_fd=dirfd)
        for parts, backup in reversed(self.replaced):
            with contextlib.suppress(OSError), self.parent(parts, create=False) as dirfd:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(parts[-1], dir_fd=dirfd)
                os.rename(backup, parts[-1], src_dir_fd=dirfd, dst_dir_fd=dirfd)


def _set_mtime(fd: int, mtime: float | None) -> None:
    """Set a descriptor's times; an out-of-range time from the archive is ignored."""
    if mtime is not None:
        with contextlib.suppress(OverflowError, OSError, ValueError):
            os.utime(fd, (mtime, mtime))


def _rename_top(parts: list[str], expect_top: str | None, new_top: str | None) -> list[str]:
    if expect_top is not None and parts[0] != expect_top:
        raise ValueError(f"it is outside the requested {expect_top!r}")
    if new_top is not None:
        parts = [new_top, *parts[1:]]
    return parts


def extract_tar(
    stream: IO[bytes] | Any,
    dest: str | os.PathLike[str],
    *,
    limits: ExtractLimits | None = None,
    expect_top: str | None = None,
    rename_top: str | None = None,
    symlinks: bool = True,
    progress: Callable[[int], None] | None = None,
) -> ExtractResult:
    """Extract the uncompressed tar ``stream`` (read sequentially) into the directory ``dest``.

    ``expect_top``: every member's first path component must be this name
    (a ``vm cp`` of ``/tmp/a`` may only write ``a`` and below);
    ``rename_top``: that first component is written under this name instead.
    ``symlinks=False`` refuses symlink members. ``progress`` is called with
    the byte count of each chunk of file content written. A compressed
    stream is decompressed by the caller (``gzip.GzipFile(fileobj=...)``).

    Raises :class:`UnsafeArchiveError` naming the refused member (nothing
    of this extraction is left behind), ``OSError`` when writing fails (also
    undone), ``FileNotFoundError`` when ``dest`` is not an existing directory.
    """
    limits = limits or ExtractLimits()
    for top in (expect_top, rename_top):
        if top is not None and (top in ("", ".", "..") or "/" in top or "\0" in top):
            raise UnsafeArchiveError(f"top-level name {top!r} is not a plain file name")
    guarded = _GuardedStream(stream, limits)
    job = _Extraction(Path(dest), limits)
    ok = False
    try:
        try:
            tar = tarfile.open(fileobj=guarded, mode="r|")  # type: ignore[call-overload]  # noqa: SIM115
        except tarfile.ReadError as exc:
            raise UnsafeArchiveError(f"not a tar archive ({exc})") from None
        with tar:
            _extract_members(tar, job, limits, expect_top, rename_top, symlinks, progress)
        ok = True
    except tarfile.TarError as exc:
        raise UnsafeArchiveError(f"malformed archive: {exc}") from None
    finally:
        try:
            if ok:
                job.finish()
            else:
                job.undo()
        finally:
            job.close()
    return job.result


def _extract_members(
    tar: tarfile.TarFile,
    job: _Extraction,
    limits: ExtractLimits,
    expect_top: str | None,
    rename_top: str | None,
    symlinks: bool,
    progress: Callable[[int], None] | None,
) -> None:
    result = job.result
    for member in tar:
        label = member.name
        try:
            result.members += 1
            if result.members > limits.max_members:
                raise ValueError(f"the archive has more than {limits.max_members} members")
            parts = tuple(_rename_top(_components(member.name, limits), expect_top, rename_top))
            mtime = float(member.mtime) if isinstance(member.mtime, (int, float)) else None
            if member.type in _REFUSED_TYPES:
                raise ValueError(f"it is {_REFUSED_TYPES[member.type]}")
            if member.isdir():
                job.directory(parts, member.mode & 0o777, mtime)
            elif member.isreg():
                if result.bytes + member.size > limits.max_bytes:
                    raise ValueError(
                        f"the archive holds more than the limit of {limits.max_bytes} bytes"
                    )
                source = tar.extractfile(member)
                assert source is not None
                job.regular(parts, source, member.size, member.mode & 0o777, mtime, progress)
                result.bytes += member.size
            elif member.issym():
                if not symlinks:
                    raise ValueError("it is a symlink, and symlinks are not allowed here")
                if "\0" in member.linkname or len(member.linkname.encode()) > limits.max_name:
                    raise ValueError("its link target is too long or holds a NUL byte")
                job.symlink(parts, member.linkname)
            elif member.islnk():
                try:
                    target = _rename_top(
                        _components(member.linkname, limits), expect_top, rename_top
                    )
                except ValueError as exc:
                    raise ValueError(f"its hard link target {member.linkname!r}: {exc}") from None
                job.hardlink(parts, tuple(target))
            else:
                raise ValueError(f"its type {member.type!r} is not a file, directory or link")
            result.paths.append("/".join(parts))
        except ValueError as exc:
            raise UnsafeArchiveError(f"refusing archive member {label!r}: {exc}") from None
