"""The CLI's own files: where its cache lives, and no problem with them is an internal error."""

from __future__ import annotations

import json
import sys

from banger_core.cli import startup_cache


def cache_files(home) -> list:
    return sorted((home.state_dir / "cache").glob("cli-plugins-*.json"))


def test_the_cache_follows_banger_state_dir(banger_home):
    result = banger_home.run("--help")
    assert result.returncode == 0, result.stderr
    (cache,) = cache_files(banger_home)
    assert json.loads(cache.read_text())["key"]
    assert not (banger_home.root / "cache" / "banger").exists()  # not in XDG_CACHE_HOME


def test_each_python_environment_has_its_own_cache_file(monkeypatch, tmp_path):
    monkeypatch.setenv("BANGER_STATE_DIR", str(tmp_path))
    first = startup_cache.cache_path()
    monkeypatch.setattr(sys, "prefix", "/opt/other-venv")
    second = startup_cache.cache_path()
    assert first.parent == second.parent == tmp_path / "cache"
    assert first != second  # switching environments never overwrites the other's cache


def test_a_damaged_cache_is_a_miss(banger_home):
    assert banger_home.run("--help").returncode == 0
    (cache,) = cache_files(banger_home)
    key = json.loads(cache.read_text())["key"]
    damaged = [
        "{not json",
        json.dumps({"key": key, "commands": "garbage"}),
        json.dumps({"key": key, "commands": {"x": 42}, "subcommands": [7]}),
        json.dumps({"key": key, "options": [{"plugin": "p", "name": "n", "type": "nope"}]}),
    ]
    for text in damaged:
        cache.write_text(text)
        for args in (["--help"], ["vm", "create", "--help"]):
            result = banger_home.run(*args)
            assert result.returncode == 0, (text, args, result.stderr)
            assert result.stderr == "", (text, args)
            assert "Usage: banger" in result.stdout


def test_a_cache_directory_that_is_a_file_is_no_cache(banger_home):
    (banger_home.state_dir / "cache").write_text("not a directory")
    result = banger_home.run("--help")
    assert result.returncode == 0 and result.stderr == ""


def test_an_unusable_state_directory_is_one_clear_line(banger_home, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = banger_home.run("vm", "list", env={"BANGER_STATE_DIR": str(blocker / "state")})
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "internal error" not in lines[0], result.stderr
    assert lines[0].startswith("banger: error: ") and str(blocker) in lines[0]
    assert "Not a directory" in lines[0]
