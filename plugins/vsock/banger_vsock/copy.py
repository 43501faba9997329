"""The CLI side of ``vm cp``: tar streams over the guest agent, a progress bar on a terminal."""

from __future__ import annotations

import os
import posixpath
import re
import sys
import tarfile
import threading
import time
from pathlib import Path
from typing import Any

from banger_core import BangerError, ValidationError
from banger_vsock import protocol as p
from banger_vsock.session import open_agent

_VM_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*$")
PROGRESS_MIN = 1 << 20  # smaller copies show no bar


def split_spec(spec: str) -> tuple[str | None, str]:
    """``VM:PATH`` -> (VM, PATH); a local path -> (None, path)."""
    head, sep, tail = spec.partition(":")
    if sep and _VM_REF.match(head):
        return head, tail
    return None, spec


def guest_path(path: str) -> str:
    """A guest path made absolute (relative ones are under root's home)."""
    if not path:
        return "/root"
    return path if path.startswith("/") else f"/root/{path}"


def local_tree_size(path: Path) -> int:
    """Bytes in regular files under ``path``."""
    if path.is_symlink() or not path.is_dir():
        return path.lstat().st_size if path.is_file() and not path.is_symlink() else 0
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            st = os.lstat(os.path.join(root, name))
            if not os.path.islink(os.path.join(root, name)):
                total += st.st_size
    return total


class Progress:
    """A one-line progress bar on stderr when it is a terminal (silent otherwise)."""

    def __init__(self, label: str, total: int) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self.shown = False
        self.enabled = sys.stderr.isatty() and total >= PROGRESS_MIN
        self._last = 0.0

    def add(self, count: int) -> None:
        """Count ``count`` more bytes; redraw at most 10 times a second."""
        self.done += count
        now = time.monotonic()
        if self.enabled and now - self._last >= 0.1:
            self._last = now
            self._draw()

    def _draw(self) -> None:
        frac = min(1.0, self.done / self.total) if self.total else 1.0
        bar = "#" * int(frac * 30)
        sys.stderr.write(
            f"\r{self.label} [{bar:<30}] {frac * 100:5.1f}% "
            f"{self.done / (1 << 20):.1f}/{self.total / (1 << 20):.1f} MiB"
        )
        sys.stderr.flush()
        self.shown = True

    def finish(self) -> None:
        """Draw the final state and end the line."""
        if self.enabled:
            self.done = max(self.done, self.total)
            self._draw()
            sys.stderr.write("\n")
            sys.stderr.flush()


class _FrameSink:
    """A file-like writer sending ``D`` frames, counting bytes for the progress bar."""

    def __init__(self, conn: p.AgentConnection, progress: Progress) -> None:
        self.conn = conn
        self.progress = progress
        self.buf = bytearray()

    def write(self, data: bytes) -> int:
        self.buf += data
        if len(self.buf) >= 65536:
            self.flush()
        return len(data)

    def flush(self) -> None:
        if self.buf:
            self.conn.send(p.F_DATA, bytes(self.buf))
            self.progress.add(len(self.buf))
            self.buf.clear()


class _FrameSource:
    """A file-like reader over ``D`` frames; keeps the final ``X`` frame."""

    def __init__(self, conn: p.AgentConnection, progress: Progress) -> None:
        self.conn = conn
        self.progress = progress
        self.buf = b""
        self.done = False
        self.exit: dict[str, Any] | None = None

    def read(self, size: int = -1) -> bytes:
        while not self.done and (size < 0 or len(self.buf) < size):
            kind, payload = self.conn.recv()
            if kind == p.F_EXIT:
                self.exit = p.exit_status(payload)
                self.done = True
            elif kind == p.F_DATA:
                if not payload:
                    self.done = True
                self.buf += payload
                self.progress.add(len(payload))
        if size < 0:
            out, self.buf = self.buf, b""
        else:
            out, self.buf = self.buf[:size], self.buf[size:]
        return out

    def finish(self, limit: int) -> None:
        """Read the rest of the stream and the ``X`` frame; at most ``limit`` more bytes.

        A guest that keeps sending after the archive ended is cut off with an
        :class:`~banger_vsock.protocol.AgentError` rather than read forever.
        """
        seen = len(self.buf)
        self.buf = b""
        while self.exit is None:
            if seen > limit:
                raise p.AgentError(f"the agent sent more than {limit} bytes after the archive")
            kind, payload = self.conn.recv()
            seen += len(payload)
            if kind == p.F_EXIT:
                self.exit = p.exit_status(payload)
            elif kind == p.F_DATA and not payload:
                self.done = True


TRAILING_MAX = 1 << 20
"""Bytes read after the archive (tar padding, or the rest after a refusal) before giving up."""


def resolve_local_destination(dest: str) -> tuple[Path, str | None]:
    """Where a tree lands on the host: ``(directory, new top name or None)``."""
    path = Path(dest)
    if path.is_dir():
        return path, None
    if dest.endswith("/"):
        raise ValidationError(f"destination directory {dest} does not exist")
    if not path.parent.is_dir():
        raise ValidationError(f"destination directory {path.parent} does not exist")
    return path.parent, path.name


def _rename(name: str, new_top: str | None) -> str:
    if new_top is None:
        return name
    _top, sep, rest = name.partition("/")
    return new_top + sep + rest


def run_cp(src: str, dst: str) -> None:
    """Copy between the host and a VM (one side ``VM:PATH``)."""
    src_vm, src_path = split_spec(src)
    dst_vm, dst_path = split_spec(dst)
    if src_vm and dst_vm:
        raise ValidationError("copy between two VMs is not supported; copy through the host")
    if not src_vm and not dst_vm:
        raise ValidationError(f"neither {src!r} nor {dst!r} names a VM: write VM:PATH on one side")
    if dst_vm:
        _put(Path(src_path), dst_vm, guest_path(dst_path))
    else:
        assert src_vm
        _get(src_vm, guest_path(src_path), dst_path or ".")


def run_cp_many(sources: list[str], dst: str) -> None:
    """Copy several sources into the existing directory ``dst`` (one source: :func:`run_cp`)."""
    if len(sources) == 1:
        run_cp(sources[0], dst)
        return
    dst_vm, dst_path = split_spec(dst)
    if dst_vm:
        if any(split_spec(src)[0] for src in sources):
            raise ValidationError("copy between two VMs is not supported; copy through the host")
        target = guest_path(dst_path)
        if not _guest_dir(dst_vm, target):
            raise ValidationError(
                f"target {dst_vm}:{target} is not a directory in the guest "
                "(several sources go into an existing directory)"
            )
    else:
        if not all(split_spec(src)[0] for src in sources):
            raise ValidationError(
                f"neither {sources[0]!r} nor {dst!r} names a VM: write VM:PATH on one side"
                if not split_spec(sources[0])[0]
                else "copy between the host and a VM: every source is VM:PATH, or none is"
            )
        if not Path(dst_path or ".").is_dir():
            raise ValidationError(
                f"target {dst} is not a directory (several sources go into an existing directory)"
            )
    for src in sources:
        run_cp(src, dst)


def _guest_dir(vm: str, path: str) -> bool:
    """Whether ``path`` is a directory in the guest (``test -d`` through the agent)."""
    from banger_vsock.session import run_exec

    # stdin stays ours: nothing to forward to `test`.
    devnull = os.open(os.devnull, os.O_RDONLY)
    saved = os.dup(0)
    try:
        os.dup2(devnull, 0)
        return run_exec(vm, ["test", "-d", path], {}, None, False) == 0
    finally:
        os.dup2(saved, 0)
        os.close(saved)
        os.close(devnull)


def _put(source: Path, vm: str, dest: str) -> None:
    if not os.path.lexists(source):
        raise ValidationError(f"{source}: no such file or directory")
    total = local_tree_size(source)
    progress = Progress(f"{source} -> {vm}:{dest}", total)
    with open_agent(vm) as conn:
        try:
            conn.open_stream("/files/put", {"dest": dest})
        except p.AgentError as exc:
            raise BangerError(f"vm cp: {exc}") from None
        error: list[BaseException] = []

        def send() -> None:
            sink = _FrameSink(conn, progress)
            try:
                with tarfile.open(
                    fileobj=sink,
                    mode="w|",  # type: ignore[call-overload]
                    format=tarfile.PAX_FORMAT,
                ) as tar:
                    tar.add(
                        str(source),
                        arcname=source.resolve().name
                        if source.name in ("", ".", "..")
                        else source.name,
                    )
                sink.flush()
                conn.send(p.F_DATA, b"")
            except BaseException as exc:  # the agent may have stopped reading: see its exit
                error.append(exc)

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        kind, payload = conn.recv()
        sender.join(timeout=5)
        info = p.exit_status(payload) if kind == p.F_EXIT else {"error": "unexpected frame"}
    progress.finish()
    if info.get("error"):
        raise BangerError(f"vm cp: {p.guest_text(info['error'])}")
    if error and not isinstance(error[0], OSError):
        raise BangerError(f"vm cp: reading {source}: {error[0]}")


def _size_header(value: str | None) -> int:
    """The agent's ``X-Banger-Size`` (only for the progress bar): 0 unless a sane number."""
    if value and value.isdigit() and len(value) <= 20:
        return int(value)
    return 0


def top_name(source: str) -> str:
    """The top entry the agent sends for ``source`` (its base name; ``root`` for ``/``)."""
    return posixpath.basename(source.rstrip("/")) or "root"


def _get(vm: str, source: str, dest: str) -> None:
    from banger_core import UnsafeArchiveError, extract_tar

    source = posixpath.normpath(source)
    directory, new_top = resolve_local_destination(dest)
    with open_agent(vm) as conn:
        try:
            resp = conn.open_stream("/files/get", {"path": source})
        except p.AgentError as exc:
            raise BangerError(f"vm cp: {exc}") from None
        total = _size_header(resp.headers.get("x-banger-size"))
        progress = Progress(f"{vm}:{source} -> {dest}", total)
        reader = _FrameSource(conn, progress)
        refused: BangerError | None = None
        try:
            # Everything from the guest is hostile: the one safe extractor, whatever
            # tarfile's filters are on this Python, and only under the name asked for.
            extract_tar(reader, directory, expect_top=top_name(source), rename_top=new_top)
        except UnsafeArchiveError as exc:
            refused = exc
        except OSError as exc:
            refused = BangerError(f"writing {exc.filename or dest}: {exc.strerror or exc}")
        try:
            reader.finish(TRAILING_MAX)
        except p.AgentError:
            if refused is None:
                raise
    progress.finish()
    if reader.exit and reader.exit.get("error"):
        raise BangerError(f"vm cp: {p.guest_text(reader.exit['error'])}")
    if refused is not None:
        raise BangerError(f"vm cp: {refused}; nothing was written to {dest}")
