"""Unit tests of banger-boot: config drive format, finding it, applying it."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from banger_guest import boot
from banger_guest.guestconfig_format import encode_config, write_config_drive

BOOT_PY = Path(boot.__file__)

CONFIG = {
    "version": 1,
    "hostname": "myvm",
    "ssh": {"authorized_keys": ["ssh-ed25519 AAAAC3Nza banger", ""]},
    "network": {"nameservers": ["172.30.0.1", "172.30.0.2"]},
    "mounts": [{"device": "/dev/vdb", "target": "/root", "fstype": "ext4", "options": "defaults"}],
    "files": [{"path": "/etc/motd", "content": "hello\n", "mode": "0640"}],
    "agent": {"vsock_port": 2048},
    "plugins": {"dns": {"anything": [1, 2]}},
}


def drive(tmp_path: Path, doc: object, name: str = "vdb") -> Path:
    path = tmp_path / name
    path.write_bytes(boot.MAGIC + json.dumps(doc).encode() + b"\n" + b"\0" * 3000)
    return path


def test_parse_cmdline() -> None:
    args = boot.parse_cmdline("console=ttyS0 banger.config=/dev/vdc root=/dev/vda ro\n")
    assert args == {"console": "ttyS0", "banger.config": "/dev/vdc", "root": "/dev/vda", "ro": ""}


def test_encode_decode_roundtrip(tmp_path: Path) -> None:
    data = encode_config(CONFIG)
    assert data.startswith(b"BANGER-GUEST-CONFIG 1\n")
    assert len(data) % 4096 == 0
    assert boot.decode_config(data) == CONFIG
    path = tmp_path / "cfg"
    write_config_drive(str(path), CONFIG)
    assert boot.read_config_device(str(path)) == CONFIG


def test_decode_ignores_nul_padding_and_accepts_string_version() -> None:
    data = boot.MAGIC + b'{"version": "1.3"}' + b"\0" * 100 + b"garbage"
    assert boot.decode_config(data) == {"version": "1.3"}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"hello world", "not a banger guest-config drive"),
        (b"\0" * 512, "not a banger guest-config drive"),
        (b"BANGER-GUEST-CONFIG 7\n{}", "unsupported guest-config drive format '7'"),
        (boot.MAGIC + b"{not json", "not valid UTF-8 JSON"),
        (boot.MAGIC + b"[1, 2]", "must be a JSON object"),
        (boot.MAGIC + b'{"hostname": "x"}', "no valid 'version'"),
        (boot.MAGIC + b'{"version": 2}', "unsupported guest config version 2"),
        (boot.MAGIC + b'{"version": "2.0"}', "unsupported guest config version '2.0'"),
        (boot.MAGIC + b'{"version": 1, "mounts": {}}', "'mounts' has the wrong type"),
        (boot.MAGIC + b'{"version": 1, "mounts": [{"device": "/dev/vdb"}]}', "mounts[0]"),
        (boot.MAGIC + b'{"version": 1, "files": [{"path": "etc/x"}]}', "absolute 'path'"),
    ],
)
def test_decode_rejects_bad_drives(data: bytes, message: str) -> None:
    with pytest.raises(boot.ConfigFormatError, match=message.replace("[", r"\[")):
        boot.decode_config(data, source="/dev/vdb")


def test_find_config_device_prefers_cmdline(tmp_path: Path) -> None:
    found = boot.find_config_device(
        "root=/dev/vda banger.config=/dev/vdq", [str(drive(tmp_path, CONFIG))]
    )
    assert found == "/dev/vdq"


def test_find_config_device_scans_for_magic(tmp_path: Path) -> None:
    other = tmp_path / "vdb"
    other.write_bytes(b"\0" * 4096)
    missing = tmp_path / "vdz"
    cfg = drive(tmp_path, CONFIG, "vdc")
    candidates = [str(missing), str(other), str(cfg)]
    assert boot.find_config_device("root=/dev/vda ro", candidates) == str(cfg)
    assert boot.find_config_device("", [str(other)]) is None


def test_read_boot_config_reports_unsupported_version(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cmdline = tmp_path / "cmdline"
    cfg = drive(tmp_path, {"version": 2, "hostname": "x"})
    cmdline.write_text(f"root=/dev/vda ro banger.config={cfg}\n")
    doc, ok = boot.read_boot_config(str(cmdline))
    assert (doc, ok) == ({}, False)
    out = capsys.readouterr().out
    assert "banger-boot: error:" in out
    assert "unsupported guest config version 2" in out
    assert "NOT applied" in out


def test_read_boot_config_without_drive(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cmdline = tmp_path / "cmdline"
    cmdline.write_text("root=/dev/vda rw\n")
    assert boot.read_boot_config(str(cmdline), candidates=[]) == ({}, True)
    assert "no guest-config drive found" in capsys.readouterr().out


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_apply_writes_config_into_root(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "guest"
    (root / "etc").mkdir(parents=True)
    applier = boot.Applier(str(root), system=False)
    port = applier.apply(CONFIG)
    assert port == 2048
    assert (root / "etc/hostname").read_text() == "myvm\n"
    assert "127.0.1.1\tmyvm" in (root / "etc/hosts").read_text()
    assert (root / "run/banger/resolv.conf").read_text() == (
        "nameserver 172.30.0.1\nnameserver 172.30.0.2\n"
    )
    assert (root / "etc/resolv.conf").read_text().startswith("nameserver 172.30.0.1")
    assert (root / "root").is_dir()  # mount target created
    assert (root / "etc/motd").read_text() == "hello\n"
    assert _mode(root / "etc/motd") == 0o640
    keys = root / "root/.ssh/authorized_keys"
    assert keys.read_text() == "ssh-ed25519 AAAAC3Nza banger\n"
    assert _mode(keys) == 0o600
    assert _mode(root / "root/.ssh") == 0o700
    assert (root / "run/banger/ssh/authorized_keys").read_text() == keys.read_text()
    assert json.loads((root / "run/banger/agent.json").read_text()) == {"vsock_port": 2048}
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line]
    assert all(line.startswith("banger-boot: ") for line in lines)
    order = [
        "hostname myvm",
        "nameservers",
        "mount /dev/vdb on /root",
        "file /etc/motd",
        "authorized_keys",
    ]
    positions = [next(i for i, line in enumerate(lines) if o in line) for o in order]
    assert positions == sorted(positions)


def test_apply_keeps_resolv_symlink(tmp_path: Path) -> None:
    root = tmp_path / "guest"
    (root / "etc").mkdir(parents=True)
    os.symlink("/run/banger/resolv.conf", root / "etc/resolv.conf")
    doc = {"version": 1, "network": {"nameservers": ["1.2.3.4"]}}
    boot.Applier(str(root), system=False).apply(doc)
    assert os.readlink(root / "etc/resolv.conf") == "/run/banger/resolv.conf"
    assert (root / "run/banger/resolv.conf").read_text() == "nameserver 1.2.3.4\n"


def test_apply_defaults(tmp_path: Path) -> None:
    assert boot.Applier(str(tmp_path), system=False).apply({}) == boot.DEFAULT_AGENT_PORT


def test_mounts_under(tmp_path: Path) -> None:
    info = tmp_path / "mountinfo"
    info.write_text(
        "22 1 0:21 / / rw - ext4 /dev/vda ro\n"
        "23 22 0:22 / /run/banger-vsock rw - ext4 /dev/x rw\n"
        "24 23 0:23 / /run/banger-vsock/inner rw - tmpfs t rw\n"
        "25 22 0:24 / /running rw - tmpfs t rw\n"
        "26 22 0:25 / /run/a\\040b rw - tmpfs t rw\n"
    )
    assert boot.mounts_under("/run", str(info)) == ["/run/banger-vsock", "/run/a b"]


def _standalone(args: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    # -I: isolated mode, no PYTHONPATH, no site-packages: proves the file is standalone.
    return subprocess.run(
        [sys.executable, "-I", str(BOOT_PY), *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        **kw,
    )


def test_boot_is_standalone(tmp_path: Path) -> None:
    cfg = drive(tmp_path, CONFIG)
    proc = _standalone(["--print-config", str(cfg)])
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == CONFIG
    assert BOOT_PY.read_text().startswith("#!/usr/bin/python3\n")


def test_boot_without_mode_refuses() -> None:
    proc = _standalone([])
    assert proc.returncode == 2
    assert "usage" in proc.stderr


def test_print_config_bad_version(tmp_path: Path) -> None:
    proc = _standalone(["--print-config", str(drive(tmp_path, {"version": 3}))])
    assert proc.returncode == 1
    assert "banger-boot: error:" in proc.stdout
    assert "unsupported guest config version 3" in proc.stdout


def test_pid1_mode_starts_the_images_banger_units(tmp_path: Path) -> None:
    """PID-1 mode starts what plugins enabled (systemd's job), knowing none of them."""
    wants = tmp_path / "wants"
    wants.mkdir()
    units = {
        "banger-boot.service": "[Service]\nExecStart=/usr/lib/banger/banger-boot --systemd\n",
        "banger-agent.service": (
            "[Unit]\nAfter=banger-boot.service\n\n[Service]\n"
            "ExecStart=/usr/lib/banger/banger-agent --config /run/banger/agent.json\n"
        ),
        "banger-sync.service": "[Service]\nExecStart=-/usr/bin/env 'a b' c\n",
        "banger-empty.service": "[Service]\nType=oneshot\n",
        "ssh.service": "[Service]\nExecStart=/usr/sbin/sshd -D\n",
    }
    for name, text in units.items():
        (wants / name).write_text(text)
    assert boot.enabled_services(str(wants)) == [
        ("banger-agent", ["/usr/lib/banger/banger-agent", "--config", "/run/banger/agent.json"]),
        ("banger-sync", ["/usr/bin/env", "a b", "c"]),
    ]
    assert boot.enabled_services(str(tmp_path / "missing")) == []
