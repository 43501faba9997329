"""banger_core.safeextract: hostile tar streams never write outside the destination.

Every test builds the archive a hostile guest (or server) would send and
checks what lands on disk, on any Python (no reliance on tarfile filters).
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
import time
from pathlib import Path

import pytest

from banger_core.safeextract import ExtractLimits, UnsafeArchiveError, extract_tar


class Stream:
    """A non-seekable reader (like the agent's frames)."""

    def __init__(self, data: bytes) -> None:
        self.buf = io.BytesIO(data)
        self.read_bytes = 0

    def read(self, size: int = -1) -> bytes:
        data = self.buf.read(size)
        self.read_bytes += len(data)
        return data


def archive(*entries: tuple) -> Stream:
    """Entries: ("file", name, bytes[, mode]), ("dir", name[, mode]), ("sym", name, target),
    ("hard", name, target), ("fifo", name), ("chr", name)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for entry in entries:
            kind, name = entry[0], entry[1]
            info = tarfile.TarInfo(name)
            info.mtime = 1_700_000_000
            if kind == "file":
                data = entry[2]
                info.size = len(data)
                info.mode = entry[3] if len(entry) > 3 else 0o644
                tar.addfile(info, io.BytesIO(data))
                continue
            if kind == "dir":
                info.type = tarfile.DIRTYPE
                info.mode = entry[2] if len(entry) > 2 else 0o755
            elif kind == "sym":
                info.type = tarfile.SYMTYPE
                info.linkname = entry[2]
            elif kind == "hard":
                info.type = tarfile.LNKTYPE
                info.linkname = entry[2]
            elif kind == "fifo":
                info.type = tarfile.FIFOTYPE
            elif kind == "chr":
                info.type = tarfile.CHRTYPE
                info.devmajor, info.devminor = 1, 3
            tar.addfile(info)
    return Stream(out.getvalue())


def snapshot(root: Path) -> dict[str, tuple]:
    """Everything under ``root``: kind, mode and content (symlinks not followed)."""
    out: dict[str, tuple] = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        rel = str(path.relative_to(root))
        if path.is_symlink():
            out[rel] = ("link", os.readlink(path))
        elif path.is_dir():
            out[rel] = ("dir", stat.S_IMODE(st.st_mode))
        else:
            out[rel] = ("file", stat.S_IMODE(st.st_mode), path.read_bytes(), st.st_ino)
    return out


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    """A destination and a directory outside it that must stay untouched."""
    dest, outside = tmp_path / "dest", tmp_path / "outside"
    dest.mkdir()
    outside.mkdir()
    (outside / "precious").write_text("keep me\n")
    return dest, outside


def test_a_tree_round_trips(dirs):
    dest, _ = dirs
    result = extract_tar(
        archive(
            ("dir", "top", 0o750),
            ("file", "top/run.sh", b"#!/bin/sh\n", 0o755),
            ("file", "top/secret", b"s", 0o600),
            ("dir", "top/sub"),
            ("sym", "top/link", "sub/../run.sh"),
            ("sym", "top/dangling", "/nowhere"),
            ("hard", "top/sub/same", "top/run.sh"),
            ("file", "top/implicit/dir/f", b"x"),
        ),
        dest,
    )
    assert result.members == 8 and result.bytes == 12
    top = dest / "top"
    assert stat.S_IMODE(top.stat().st_mode) == 0o750
    assert stat.S_IMODE((top / "run.sh").stat().st_mode) == 0o755
    assert stat.S_IMODE((top / "secret").stat().st_mode) == 0o600
    assert os.readlink(top / "link") == "sub/../run.sh"
    assert os.readlink(top / "dangling") == "/nowhere"
    assert (top / "sub" / "same").stat().st_ino == (top / "run.sh").stat().st_ino
    assert (top / "implicit" / "dir" / "f").read_bytes() == b"x"
    assert (top / "run.sh").stat().st_mtime == 1_700_000_000
    assert not [p for p in top.rglob(".*banger-*")]  # no temporary names left


def test_a_symlink_planted_by_an_earlier_copy_is_not_followed(dirs):
    dest, outside = dirs
    before = snapshot(outside)
    extract_tar(archive(("dir", "top"), ("sym", "top/s", str(outside))), dest)
    with pytest.raises(UnsafeArchiveError) as err:
        extract_tar(archive(("dir", "top"), ("file", "top/s/evil.txt", b"PWNED")), dest)
    assert "'top/s/evil.txt'" in str(err.value) and "not followed" in str(err.value)
    assert snapshot(outside) == before
    # a directory entry over the planted symlink is refused as well
    with pytest.raises(UnsafeArchiveError, match="'top/s'"):
        extract_tar(archive(("dir", "top/s"), ("file", "top/s/evil.txt", b"x")), dest)
    assert snapshot(outside) == before


def test_a_symlink_in_the_same_archive_is_not_followed(dirs):
    dest, outside = dirs
    before = snapshot(outside)
    with pytest.raises(UnsafeArchiveError, match="'top/s/precious'"):
        extract_tar(
            archive(("sym", "top/s", str(outside)), ("file", "top/s/precious", b"PWNED")), dest
        )
    assert snapshot(outside) == before
    assert list(dest.iterdir()) == []  # undone: not even the symlink stays


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("/tmp/abs-evil", "absolute path"),
        ("../evil", "'..'"),
        ("top/../../evil", "'..'"),
        ("", "names no file"),
    ],
)
def test_names_that_leave_the_destination_are_refused(dirs, name, why):
    dest, _ = dirs
    with pytest.raises(UnsafeArchiveError) as err:
        extract_tar(archive(("file", "top/ok", b"1"), ("file", name, b"PWNED")), dest)
    assert f"refusing archive member {name!r}" in str(err.value) and why in str(err.value)
    assert list(dest.iterdir()) == []
    assert not Path("/tmp/abs-evil").exists()


def test_hard_links_must_point_at_a_file_this_archive_wrote(dirs):
    dest, outside = dirs
    before = snapshot(outside)
    cases = [
        (("hard", "top/h", str(outside / "precious")), "absolute path"),
        (("hard", "top/h", "../outside/precious"), "'..'"),
        (("hard", "top/h", "top/never-written"), "not a regular file this archive wrote"),
    ]
    for entry, why in cases:
        # the hard-link-then-same-name attack: the link, then content for it
        stream = archive(("dir", "top"), entry, ("file", "top/h", b"PWNED"))
        with pytest.raises(UnsafeArchiveError) as err:
            extract_tar(stream, dest)
        assert "'top/h'" in str(err.value) and why in str(err.value)
        assert snapshot(outside) == before
    # a hard link to a directory the archive made is refused too
    with pytest.raises(UnsafeArchiveError, match="not a regular file"):
        extract_tar(archive(("dir", "top/d"), ("hard", "top/h", "top/d")), dest)


def test_existing_links_in_the_destination_are_replaced_never_written_through(dirs):
    dest, outside = dirs
    (dest / "top").mkdir()
    os.link(outside / "precious", dest / "top" / "hard")
    (dest / "top" / "sym").symlink_to(outside / "precious")
    extract_tar(
        archive(("file", "top/hard", b"new content"), ("file", "top/sym", b"new too")), dest
    )
    assert (outside / "precious").read_text() == "keep me\n"
    assert (dest / "top" / "hard").read_bytes() == b"new content"
    assert not (dest / "top" / "sym").is_symlink()
    assert (dest / "top" / "sym").read_bytes() == b"new too"


@pytest.mark.parametrize(("kind", "what"), [("fifo", "a FIFO"), ("chr", "a character device")])
def test_devices_and_fifos_are_refused(dirs, kind, what):
    dest, _ = dirs
    with pytest.raises(UnsafeArchiveError, match=f"'top/dev': it is {what}"):
        extract_tar(archive(("dir", "top"), (kind, "top/dev")), dest)
    assert list(dest.iterdir()) == []


def test_setuid_setgid_and_sticky_bits_are_dropped(dirs):
    dest, _ = dirs
    extract_tar(archive(("file", "suid", b"x", 0o6755), ("dir", "sticky", 0o1777)), dest)
    assert stat.S_IMODE((dest / "suid").stat().st_mode) == 0o755
    assert stat.S_IMODE((dest / "sticky").stat().st_mode) == 0o777


def test_caps_on_members_bytes_and_names(dirs):
    dest, _ = dirs
    many = archive(*[("file", f"f{i}", b"x") for i in range(11)])
    with pytest.raises(UnsafeArchiveError, match="more than 10 members"):
        extract_tar(many, dest, limits=ExtractLimits(max_members=10))
    big = archive(("file", "a", b"x" * 600), ("file", "b", b"x" * 600))
    with pytest.raises(UnsafeArchiveError, match="'b': the archive holds more than the limit"):
        extract_tar(big, dest, limits=ExtractLimits(max_bytes=1000))
    with pytest.raises(UnsafeArchiveError, match="longer than 255 bytes"):
        extract_tar(archive(("file", "x" * 256, b"")), dest)
    with pytest.raises(UnsafeArchiveError, match="longer than 100 bytes"):
        extract_tar(archive(("file", "a/" * 60, b"")), dest, limits=ExtractLimits(max_name=100))
    assert list(dest.iterdir()) == []


def test_a_huge_metadata_header_is_refused_before_it_is_buffered(dirs):
    dest, _ = dirs
    # A pax header claiming 1 GiB, followed by 2 MiB: tarfile alone would buffer it all.
    info = tarfile.TarInfo("././@PaxHeader")
    info.type = tarfile.XHDTYPE
    info.size = 1 << 30
    header = info.tobuf(format=tarfile.USTAR_FORMAT)
    stream = Stream(header + b"9" * (2 << 20))
    started = time.monotonic()
    with pytest.raises(UnsafeArchiveError, match="1073741824-byte metadata header"):
        extract_tar(stream, dest)
    assert stream.read_bytes < (1 << 20) + 65536
    assert time.monotonic() - started < 5


def test_top_name_is_checked_and_renamed(dirs):
    dest, _ = dirs
    with pytest.raises(UnsafeArchiveError, match=r"'\.bashrc': it is outside the requested 'a'"):
        extract_tar(
            archive(("file", "a/x", b"1"), ("file", ".bashrc", b"evil")), dest, expect_top="a"
        )
    assert list(dest.iterdir()) == []
    extract_tar(
        archive(("dir", "a"), ("file", "a/x", b"1"), ("hard", "a/y", "a/x")),
        dest,
        expect_top="a",
        rename_top="b",
    )
    assert (dest / "b" / "x").read_bytes() == b"1"
    assert (dest / "b" / "y").stat().st_ino == (dest / "b" / "x").stat().st_ino


def test_a_refusal_puts_back_what_it_replaced(dirs):
    dest, _ = dirs
    (dest / "top").mkdir()
    (dest / "top" / "keep").write_text("old\n")
    before = snapshot(dest)
    with pytest.raises(UnsafeArchiveError):
        extract_tar(
            archive(
                ("file", "top/keep", b"new"),
                ("file", "top/newdir/new", b"new"),
                ("fifo", "top/pipe"),
            ),
            dest,
        )
    assert snapshot(dest) == before


def test_a_refusal_after_a_name_repeats_leaves_nothing(dirs):
    dest, _ = dirs
    with pytest.raises(UnsafeArchiveError):
        extract_tar(
            archive(("file", "f", b"one"), ("file", "f", b"two"), ("fifo", "p")),
            dest,
        )
    assert list(dest.iterdir()) == []


def test_garbage_and_truncated_streams_are_one_clear_error(dirs):
    dest, _ = dirs
    with pytest.raises(UnsafeArchiveError, match=r"not a tar archive|malformed"):
        extract_tar(Stream(b"not a tar stream at all" * 100), dest)
    whole = archive(("file", "f", b"x" * 5000)).buf.getvalue()
    with pytest.raises(UnsafeArchiveError, match=r"'f'|malformed"):
        extract_tar(Stream(whole[:2048]), dest)
    assert list(dest.iterdir()) == []


def test_no_reliance_on_tarfile_filters(dirs, monkeypatch):
    """Debian 12's Python 3.11.2 has no extraction filters: behave the same without them."""
    dest, outside = dirs
    for name in ("data_filter", "tar_filter", "fully_trusted_filter"):
        monkeypatch.delattr(tarfile, name, raising=False)
    with pytest.raises(UnsafeArchiveError):
        extract_tar(archive(("sym", "s", str(outside)), ("file", "s/precious", b"PWNED")), dest)
    assert (outside / "precious").read_text() == "keep me\n"
