"""Configuration: layering, validation naming file and key, plugin sections, ``config show``."""

from __future__ import annotations

from pathlib import Path

import pytest

from banger_core.config import load_settings
from banger_core.errors import ConfigError
from banger_core.paths import SYSTEM_CONFIG, Paths, config_files
from banger_core.pluginconfig import Option

PLUGIN = """
from banger_core import hookimpl
from banger_core.pluginconfig import Option

@hookimpl
def banger_config_defaults():
    return {"port": Option(5353, "UDP port"), "zone": Option("vm", "DNS zone")}
"""


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_config_files_default_locations(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("BANGER_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert config_files() == [SYSTEM_CONFIG, tmp_path / "xdg" / "banger" / "config.toml"]
    monkeypatch.setenv("BANGER_CONFIG", str(tmp_path / "only.toml"))
    assert config_files() == [tmp_path / "only.toml"]


def test_state_dir_from_env(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("BANGER_STATE_DIR", str(tmp_path))
    paths = Paths.from_env()
    assert paths.state_dir == tmp_path
    assert paths.socket == tmp_path / "run" / "bangerd.sock"
    assert paths.db == tmp_path / "banger.db"


def test_layering_later_file_wins_and_origins(tmp_path) -> None:
    system = write(tmp_path / "system.toml", "[vm]\ncpus = 4\nmemory_mib = 2048\n")
    user = write(tmp_path / "user.toml", "[vm]\ncpus = 8\n")
    settings = load_settings(files=[system, user])
    assert settings.get("vm", "cpus") == 8
    assert settings.get("vm", "memory_mib") == 2048
    assert settings.get("vm", "default_image") == "debian"
    assert settings.origins[("vm", "cpus")] == str(user)
    assert settings.origins[("vm", "memory_mib")] == str(system)
    assert ("vm", "default_image") not in settings.origins


def test_missing_file_is_fine(tmp_path) -> None:
    assert load_settings(files=[tmp_path / "absent.toml"]).get("vm", "cpus") == 2


@pytest.mark.parametrize(
    "text, message",
    [
        ("[nope]\nx = 1\n", "unknown section [nope]"),
        ("[vm]\ncpu = 1\n", "unknown key vm.cpu"),
        ('[vm]\ncpus = "two"\n', "vm.cpus: expected integer, got str"),
        ("[vm]\ncpus = true\n", "vm.cpus: expected integer, got boolean"),
        ('[daemon]\nlog_level = "loud"\n', "daemon.log_level: 'loud' is not one of"),
        ('[plugins]\ndisabled = "dns"\n', "plugins.disabled: expected list, got str"),
        ("[plugins]\nenabled = []\n", "unknown key plugins.enabled"),
        ("vm = 3\n", "[vm] must be a table"),
        ("[vm\n", "invalid TOML"),
    ],
)
def test_errors_name_file_and_key(tmp_path, text: str, message: str) -> None:
    cfg = write(tmp_path / "config.toml", text)
    with pytest.raises(ConfigError) as err:
        load_settings(files=[cfg])
    assert str(cfg) in str(err.value)
    assert message in str(err.value)


def test_plugin_sections_get_declared_defaults(tmp_path) -> None:
    schema = {"dns": {"port": Option(5353, "UDP port"), "zone": Option("vm", "zone")}}
    settings = load_settings(schema, files=[])
    assert settings.plugin("dns") == {"port": 5353, "zone": "vm"}
    cfg = write(tmp_path / "c.toml", "[plugins.dns]\nport = 53\n[plugins.absent]\nx = 1\n")
    settings = load_settings(schema, files=[cfg])
    assert settings.plugin("dns") == {"port": 53, "zone": "vm"}
    assert settings.origins[("plugins.dns", "port")] == str(cfg)
    assert settings.plugin("absent") == {}  # not installed: ignored, not an error


def test_plugin_section_errors_name_file_and_key(tmp_path) -> None:
    schema = {"dns": {"port": Option(5353, "UDP port")}}
    cfg = write(tmp_path / "c.toml", "[plugins.dns]\nprot = 53\n")
    with pytest.raises(ConfigError, match=r"c\.toml: unknown key plugins\.dns\.prot"):
        load_settings(schema, files=[cfg])
    cfg = write(tmp_path / "c.toml", '[plugins.dns]\nport = "53"\n')
    with pytest.raises(ConfigError, match=r"c\.toml: plugins\.dns\.port: expected integer"):
        load_settings(schema, files=[cfg])


def test_plugins_disabled_and_plugin_tables_together(tmp_path) -> None:
    schema = {"dns": {"port": Option(5353, "UDP port")}}
    cfg = write(tmp_path / "c.toml", '[plugins]\ndisabled = ["nat"]\n[plugins.dns]\nport = 1\n')
    settings = load_settings(schema, files=[cfg])
    assert settings.get("plugins", "disabled") == ["nat"]
    assert settings.plugin("dns") == {"port": 1}


def test_env_overrides_log_level(monkeypatch, tmp_path) -> None:
    cfg = write(tmp_path / "c.toml", '[daemon]\nlog_level = "warning"\n')
    monkeypatch.setenv("BANGER_LOG_LEVEL", "DEBUG")
    settings = load_settings(files=[cfg])
    assert settings.get("daemon", "log_level") == "debug"
    assert settings.origins[("daemon", "log_level")] == "$BANGER_LOG_LEVEL"
    monkeypatch.setenv("BANGER_LOG_LEVEL", "chatty")
    with pytest.raises(ConfigError, match=r"\$BANGER_LOG_LEVEL: 'chatty' is not one of"):
        load_settings(files=[cfg])


def test_config_show_cli(banger_home, banger_plugin_site) -> None:
    banger_plugin_site.add("tcfg", "banger_tcfg", PLUGIN)
    banger_home.pythonpath.append(banger_plugin_site.path)
    banger_home.write_config("[vm]\ncpus = 6\n[plugins.tcfg]\nport = 53\n")
    rows = banger_home.run("config", "show", "--json", env={"BANGER_LOG_LEVEL": "debug"}).json()
    by_key = {(r["section"], r["key"]): r for r in rows}
    assert by_key[("vm", "cpus")] == {
        "section": "vm",
        "key": "cpus",
        "value": 6,
        "source": str(banger_home.config),
    }
    assert by_key[("vm", "memory_mib")]["source"] == "default"
    assert by_key[("daemon", "log_level")]["value"] == "debug"
    assert by_key[("daemon", "log_level")]["source"] == "$BANGER_LOG_LEVEL"
    assert by_key[("plugins.tcfg", "port")]["value"] == 53
    assert by_key[("plugins.tcfg", "port")]["source"] == str(banger_home.config)
    assert by_key[("plugins.tcfg", "zone")] == {
        "section": "plugins.tcfg",
        "key": "zone",
        "value": "vm",
        "source": "default",
    }
    table = banger_home.run("config", "show")
    assert table.returncode == 0
    line = next(ln for ln in table.stdout.splitlines() if ln.startswith("vm.cpus "))
    assert line.split() == ["vm.cpus", "6", str(banger_home.config)]


def test_config_show_reports_bad_config_in_one_line(banger_home) -> None:
    banger_home.write_config('[vm]\ncpus = "many"\n')
    result = banger_home.run("config", "show")
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        f"banger: error: {banger_home.config}: vm.cpus: expected integer, got str"
    ]


def test_limits_are_shown_in_human_sizes() -> None:
    from banger_core import format_size

    assert format_size(8 << 30) == "8G"  # exact sizes stay exact
    assert format_size(1536 << 20) == "1536M"
    assert format_size(264212084 << 10) == "264212084K"
    assert format_size(264212084 << 10, limit=True) == "251G"  # rounded down: all allowed
    assert format_size((3 << 30) + 5, limit=True) == "3072M"
    assert format_size(1234567, limit=True) == "1205K"
    assert format_size(999, limit=True) == "999"
