"""The CLI's own files for a socket_group member: the private directory, a full daemon queue."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from banger_core.cli import userdir
from banger_core.errors import BangerError, DaemonError
from banger_core.rpc.client import RPCClient


def test_private_dir_prefers_runtime_dir_then_home_then_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    (tmp_path / "run").mkdir()
    assert userdir.private_dir() == tmp_path / "run" / "banger"
    assert (tmp_path / "run" / "banger").stat().st_mode & 0o777 == 0o700
    # No runtime dir and a home that cannot be written (HOME=/nonexistent): /tmp.
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    monkeypatch.setenv("HOME", "/proc/nonexistent")
    monkeypatch.setattr(userdir.tempfile, "gettempdir", lambda: str(tmp_path))
    found = userdir.private_dir()
    assert found == tmp_path / f"banger-{os.getuid()}"
    assert found.stat().st_mode & 0o777 == 0o700


def test_a_planted_tmp_dir_is_refused(tmp_path, monkeypatch):
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setenv("HOME", "/proc/nonexistent")
    monkeypatch.setattr(userdir.tempfile, "gettempdir", lambda: str(tmp_path))
    target = tmp_path / "elsewhere"
    target.mkdir()
    (tmp_path / f"banger-{os.getuid()}").symlink_to(target)
    with pytest.raises(BangerError, match=r"is not a directory \(a symlink or file is there\)"):
        userdir.private_dir()
    (tmp_path / f"banger-{os.getuid()}").unlink()
    planted = tmp_path / f"banger-{os.getuid()}"
    planted.mkdir(mode=0o777)
    if os.geteuid() == 0:  # make it someone else's
        os.chown(planted, 65534, 65534)
        with pytest.raises(BangerError, match="belongs to uid 65534, not to you"):
            userdir.private_dir()
    else:
        assert userdir.private_dir() == planted
        assert planted.stat().st_mode & 0o777 == 0o700  # ours: made private


def test_write_private_replaces_atomically_with_mode_0600(tmp_path):
    path = tmp_path / "key"
    userdir.write_private(path, "one")
    userdir.write_private(path, "two")
    assert path.read_text() == "two" and path.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["key"]


def test_a_full_listen_queue_is_a_clear_error_not_a_crash(tmp_path):
    """A daemon whose queue of new connections stays full: one line, after the timeout."""
    path = tmp_path / "s.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(0)  # never accepts
    fillers = []
    try:
        for _ in range(4):  # fill the (tiny) queue
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.setblocking(False)
            try:
                s.connect(str(path))
            except BlockingIOError:
                s.close()
                break
            fillers.append(s)
        with pytest.raises(DaemonError, match="did not accept a connection"):
            RPCClient(Path(path), timeout=0.3).connect()
    finally:
        for s in fillers:
            s.close()
        listener.close()
