"""vm cp through the CLI on the simulated host: trees, modes and symlinks both ways."""

from __future__ import annotations

import hashlib
import os
import pty
import stat
import subprocess
from pathlib import Path

import pytest

from pytest_banger.simhost import console_script

pytestmark = [pytest.mark.net, pytest.mark.slow]


def make_tree(root: Path) -> Path:
    tree = root / "tree"
    (tree / "sub" / "deeper").mkdir(parents=True)
    (tree / "run.sh").write_text("#!/bin/sh\necho hi\n")
    os.chmod(tree / "run.sh", 0o755)
    (tree / "secret").write_text("private\n")
    os.chmod(tree / "secret", 0o600)
    (tree / "sub" / "data.bin").write_bytes(os.urandom(300_000))
    (tree / "sub" / "deeper" / "grüße.txt").write_text("ü\n")
    os.chmod(tree / "sub", 0o750)
    (tree / "link").symlink_to("sub/data.bin")
    (tree / "dangling").symlink_to("/nowhere/at/all")
    return tree


def listing(tree: Path) -> dict[str, tuple]:
    out = {}
    for path in sorted(tree.rglob("*")):
        st = path.lstat()
        rel = str(path.relative_to(tree))
        if path.is_symlink():
            out[rel] = ("link", os.readlink(path))
        elif path.is_dir():
            out[rel] = ("dir", stat.S_IMODE(st.st_mode))
        else:
            out[rel] = ("file", stat.S_IMODE(st.st_mode), path.read_bytes())
    return out


def test_cp_tree_both_ways(host, tmp_path):
    host.cli("vm", "create", "cp1", "--cpus", "1", "--memory", "256")
    tree = make_tree(tmp_path)
    host.cli("vm", "cp", str(tree), "cp1:/tmp")  # into an existing directory
    modes = host.cli(
        "vm",
        "exec",
        "cp1",
        "--",
        "stat",
        "-c",
        "%a %F %N",
        "/tmp/tree/run.sh",
        "/tmp/tree/secret",
        "/tmp/tree/sub",
        "/tmp/tree/link",
    ).stdout
    assert modes.splitlines() == [
        "755 regular file '/tmp/tree/run.sh'",
        "600 regular file '/tmp/tree/secret'",
        "750 directory '/tmp/tree/sub'",
        "777 symbolic link '/tmp/tree/link' -> 'sub/data.bin'",
    ]
    # and back, under a new name (the parent exists, the name does not)
    host.cli("vm", "cp", "cp1:/tmp/tree", str(tmp_path / "back"))
    assert listing(tmp_path / "back") == listing(tree)
    # a relative guest path is under /root; a single file keeps its mode
    host.cli("vm", "cp", str(tree / "run.sh"), "cp1:script.sh")
    assert host.cli("vm", "exec", "cp1", "--", "/root/script.sh").stdout == "hi\n"
    host.cli("vm", "cp", "cp1:script.sh", str(tmp_path))
    assert stat.S_IMODE((tmp_path / "script.sh").stat().st_mode) == 0o755


def test_several_sources_go_into_one_directory_like_cp(host, tmp_path):
    one, two = tmp_path / "one.txt", tmp_path / "two"
    one.write_text("1\n")
    (two / "inner").mkdir(parents=True)
    (two / "inner" / "x").write_text("x\n")
    host.cli("vm", "exec", "cp1", "--", "mkdir", "-p", "/tmp/many")
    host.cli("vm", "cp", str(one), str(two), "cp1:/tmp/many")
    found = host.cli("vm", "exec", "cp1", "--", "find", "/tmp/many", "-type", "f").stdout
    assert sorted(found.split()) == ["/tmp/many/one.txt", "/tmp/many/two/inner/x"]
    back = tmp_path / "back-many"
    back.mkdir()
    host.cli("vm", "cp", "cp1:/tmp/many/one.txt", "cp1:/tmp/many/two", str(back))
    assert (back / "one.txt").read_text() == "1\n"
    assert (back / "two" / "inner" / "x").read_text() == "x\n"
    # Several sources need an existing directory, on either side; nothing is copied otherwise.
    refused = host.cli("vm", "cp", str(one), str(two), "cp1:/tmp/nodir", check=False)
    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        "banger: error: target cp1:/tmp/nodir is not a directory in the guest "
        "(several sources go into an existing directory)"
    )
    missing = tmp_path / "nodir"
    refused = host.cli(
        "vm", "cp", "cp1:/tmp/many/one.txt", "cp1:/etc/hostname", str(missing), check=False
    )
    assert refused.stderr.strip() == (
        f"banger: error: target {missing} is not a directory "
        "(several sources go into an existing directory)"
    )
    assert not missing.exists()
    assert "/tmp/nodir" not in host.cli("vm", "exec", "cp1", "--", "ls", "/tmp").stdout.split()


def test_cp_errors_are_one_line(host, tmp_path):
    cases = [
        (
            ["vm", "cp", str(tmp_path / "missing"), "cp1:/tmp"],
            f"banger: error: {tmp_path / 'missing'}: no such file or directory",
        ),
        (
            ["vm", "cp", "cp1:/nope/file", str(tmp_path)],
            "banger: error: vm cp: /nope/file does not exist in the guest",
        ),
        (
            ["vm", "cp", str(tmp_path), "cp1:/nope/dir/x"],
            "banger: error: vm cp: destination directory /nope/dir does not exist in the guest",
        ),
        (
            ["vm", "cp", "cp1:/etc/hostname", str(tmp_path / "no" / "where")],
            f"banger: error: destination directory {tmp_path / 'no'} does not exist",
        ),
        (
            ["vm", "cp", "a", "b"],
            "banger: error: neither 'a' nor 'b' names a VM: write VM:PATH on one side",
        ),
    ]
    for args, message in cases:
        result = host.cli(*args, check=False)
        assert result.returncode == 1, args
        assert result.stderr.strip() == message
    assert not (tmp_path / "no").exists()
    # no progress bar when stderr is not a terminal
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(3 << 20))
    result = host.cli("vm", "cp", str(big), "cp1:/tmp/big.bin")
    assert result.stderr == ""
    digest = host.cli("vm", "exec", "cp1", "--", "sha256sum", "/tmp/big.bin").stdout.split()[0]
    assert digest == hashlib.sha256(big.read_bytes()).hexdigest()


def test_progress_bar_on_a_terminal(host, tmp_path):
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(4 << 20))
    master, slave = pty.openpty()
    try:
        result = subprocess.run(
            [console_script("banger"), "vm", "cp", str(big), "cp1:/tmp/b2"],
            env=host.env,
            stdout=subprocess.PIPE,
            stderr=slave,
            timeout=120,
            check=False,
        )
        os.close(slave)
        slave = -1
        shown = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the terminal's other side is closed
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)
    assert result.returncode == 0
    text = shown.decode()
    assert "big.bin -> cp1:/tmp/b2 [" in text and "100.0% 4.0/4.0 MiB" in text, text


def test_a_copy_larger_than_the_guest_disk_leaves_nothing_behind(host, tmp_path):
    host.cli("vm", "exec", "cp1", "--", "mkdir", "-p", "/mnt/small")
    host.cli(
        "vm", "exec", "cp1", "--", "mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", "/mnt/small"
    )
    tree = tmp_path / "big"
    tree.mkdir()
    (tree / "a.txt").write_text("fits\n")
    (tree / "huge.bin").write_bytes(os.urandom(3 << 20))
    result = host.cli("vm", "cp", str(tree), "cp1:/mnt/small", check=False)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("banger: error: vm cp: writing /mnt/small/big/huge.bin:")
    assert lines[0].endswith("no space left on the guest's disk; nothing of this copy was kept")
    assert host.cli("vm", "exec", "cp1", "--", "ls", "-A", "/mnt/small").stdout == ""
    host.cli("vm", "exec", "cp1", "--", "umount", "/mnt/small")


def test_included_ssh_config_follows_vms(host):
    included = host.state_dir / "ssh" / "config"
    assert "Host cp1 cp1.vm" in included.read_text()
    host.cli("vm", "delete", "--force", "cp1")
    assert "Host cp1 " not in included.read_text()
