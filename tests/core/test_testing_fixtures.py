"""The shipped pytest fixtures (pytest_banger.plugin) clean up after failing tests."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

from banger_core.firecracker.launcher import wait_for_exit

INNER = """
import os
from pathlib import Path

OUT = Path({out!r})


def test_fixture_daemon_then_fail(banger_daemon):
    (OUT / "fixture.pid").write_text(str(banger_daemon.pid))
    (OUT / "fixture.netns").write_text(banger_daemon.home.netns)
    assert False, "deliberate failure"


def test_cli_daemon_then_fail(banger_home):
    result = banger_home.run("daemon", "start")
    assert result.returncode == 0, result.stderr
    (OUT / "cli.pid").write_text(banger_home.paths.pid_file.read_text().strip())
    raise RuntimeError("deliberate error")
"""


def test_daemons_stopped_by_pid_even_when_tests_fail(tmp_path: Path, banger_home) -> None:
    inner_dir = tmp_path / "inner"
    inner_dir.mkdir()
    (inner_dir / "test_inner.py").write_text(textwrap.dedent(INNER.format(out=str(tmp_path))))
    result = banger_home.run_argv(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(inner_dir),
            str(inner_dir / "test_inner.py"),
        ],
        timeout=120,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "2 failed" in result.stdout, result.stdout
    for name in ("fixture.pid", "cli.pid"):
        pid = int((tmp_path / name).read_text())
        assert wait_for_exit(pid, 5.0), f"daemon {pid} from {name} still runs"
    netns = (tmp_path / "fixture.netns").read_text()
    if netns:
        assert not Path("/run/netns", netns).exists()
