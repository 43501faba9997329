"""vm exec, vm health, readiness and the agent channel, through the CLI on the simulated host."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess

import pytest

from banger_core import system
from pytest_banger.simhost import SimulatedHost, console_script

pytestmark = [pytest.mark.net, pytest.mark.slow]

ECHO_ARGS = "import json, sys; sys.stdout.write(json.dumps(sys.argv[1:]))"


def banger(
    host: SimulatedHost, *args: str, input: bytes | None = None, timeout: float = 120
) -> subprocess.CompletedProcess:
    """Run the CLI with bytes in and out (system.run is text only)."""
    return subprocess.run(
        [console_script("banger"), *args],
        input=input,
        env=host.env,
        capture_output=True,
        timeout=timeout,
        check=False,
    )


def test_create_waits_for_ssh_then_agent(host):
    result = host.cli("vm", "create", "c1", "--cpus", "1", "--memory", "256")
    lines = result.stderr.splitlines()
    ssh = next(i for i, line in enumerate(lines) if "waiting for SSH" in line)
    agent = next(i for i, line in enumerate(lines) if "waiting for agent" in line)
    assert ssh < agent, result.stderr
    assert "vsock port 1024" in lines[agent] and "ok" in lines[agent]
    shown = host.json("vm", "show", "c1")
    assert shown["plugins"]["vsock"]["cid"] >= 3
    assert shown["plugins"]["vsock"]["uds_path"].endswith("vsock.sock")


def test_health_answers_while_running(host):
    out = host.cli("vm", "health", "c1").stdout
    assert out.startswith("c1: healthy (agent 2, hostname c1, up ")
    body = host.json("vm", "health", "c1")[0]
    assert body["status"] == "ok" and body["name"] == "c1"


def test_exec_arguments_arrive_exactly(host):
    args = ["two words", "it's", 'say "hi"', "line1\nline2", "grüße ✓", "", "$HOME", "*"]
    result = banger(host, "vm", "exec", "c1", "--", "python3", "-c", ECHO_ARGS, *args)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == args


def test_exec_exit_statuses(host):
    assert banger(host, "vm", "exec", "c1", "--", "true").returncode == 0
    three = banger(host, "vm", "exec", "c1", "--", "sh", "-c", "exit 3")
    assert three.returncode == 3 and three.stderr == b""
    missing = banger(host, "vm", "exec", "c1", "--", "no-such-program", "x")
    assert missing.returncode == 127
    lines = missing.stderr.decode().splitlines()
    assert len(lines) == 1 and "no-such-program: program not found in the guest" in lines[0]
    # found but not runnable: 126, as a shell says (the guide promises it)
    for program in ("/etc/hostname", "/tmp"):
        denied = banger(host, "vm", "exec", "c1", "--", program)
        assert denied.returncode == 126, denied
        lines = denied.stderr.decode().splitlines()
        assert len(lines) == 1 and f"{program}: permission denied in the guest" in lines[0]


def test_exec_stdout_and_stderr_stay_apart(host):
    script = "echo out1; echo err1 >&2; echo out2; echo err2 >&2"
    result = banger(host, "vm", "exec", "c1", "--", "sh", "-c", script)
    assert result.stdout == b"out1\nout2\n"
    assert result.stderr == b"err1\nerr2\n"


def test_exec_pipes_10mb_through_stdin(host):
    data = bytes(range(256)) * (10 * 4096)  # 10 MiB, every byte value
    result = banger(host, "vm", "exec", "c1", "--", "cat", input=data)
    assert result.returncode == 0, result.stderr
    assert len(result.stdout) == len(data) and result.stdout == data
    counted = banger(host, "vm", "exec", "c1", "--", "wc", "-c", input=data)
    assert counted.stdout.strip() == str(len(data)).encode()


def test_exec_env_and_cwd(host):
    result = banger(
        host,
        "vm",
        "exec",
        "c1",
        "--env",
        "GREETING=hello world",
        "--cwd",
        "/tmp",
        "--",
        "sh",
        "-c",
        'echo "$GREETING"; pwd; echo "$HOME"',
    )
    assert result.stdout.decode().splitlines() == ["hello world", "/tmp", "/root"]
    bad = banger(host, "vm", "exec", "c1", "--cwd", "/nope", "--", "true")
    assert bad.returncode == 1
    assert bad.stderr.decode().strip() == (
        "banger: error: vm exec c1: directory /nope does not exist in the guest"
    )
    env = banger(host, "vm", "exec", "c1", "--env", "1BAD", "--", "true")
    assert env.returncode == 1 and "--env '1BAD' is not NAME=VALUE" in env.stderr.decode()


def test_exec_tty_gives_a_terminal(host):
    result = banger(host, "vm", "exec", "c1", "--tty", "--", "sh", "-c", "tty; test -t 0")
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().startswith("/dev/pts/")


def test_ctrl_c_stops_a_remote_sleep(host):
    proc = system.spawn(
        [
            console_script("banger"),
            "vm",
            "exec",
            "c1",
            "--",
            "sh",
            "-c",
            "echo started; exec sleep 300",
        ],
        env=host.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        new_session=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"started\n"
        proc.send_signal(signal.SIGINT)  # what a terminal's Ctrl-C does to the CLI
        assert proc.wait(timeout=30) == 128 + signal.SIGINT
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    still = banger(
        host, "vm", "exec", "c1", "--", "sh", "-c", "for p in /proc/[0-9]*; do cat $p/comm; done"
    )
    assert b"sleep" not in still.stdout.split()


def test_reminder_after_an_ssh_session(host):
    result = banger(host, "vm", "ssh", "c1", input=b"hostname\nexit 0\n")
    assert result.returncode == 0, result.stderr
    assert b"c1\n" in result.stdout
    reminder = [line for line in result.stderr.decode().splitlines() if "still running" in line]
    assert reminder == ["banger: VM c1 is still running; stop it with `banger vm stop c1`"]
    # A command run through ssh is no session: no reminder, ssh's exit status.
    cmd = banger(host, "vm", "ssh", "c1", "--", "exit", "4")
    assert cmd.returncode == 4 and b"still running" not in cmd.stderr


def test_ssh_config_works_with_plain_ssh(host, tmp_path):
    text = host.cli("vm", "ssh-config", "c1").stdout
    assert "Host c1 c1.vm\n" in text and "User root" in text
    config = tmp_path / "ssh_config"
    config.write_text(text)
    out = system.run(["ssh", "-F", str(config), "c1.vm", "hostname"], env=host.env, timeout=60)
    assert out.stdout.strip() == "c1"
    # The daemon keeps an includable file current with every VM.
    included = host.state_dir / "ssh" / "config"
    assert "Host c1 c1.vm" in included.read_text()


def test_exec_works_without_a_guest_network(host):
    banger(host, "vm", "exec", "c1", "--", "ip", "link", "set", "eth0", "down")
    result = banger(host, "vm", "exec", "c1", "--", "cat", "/sys/class/net/eth0/operstate")
    assert result.stdout.strip() == b"down"
    assert banger(host, "vm", "exec", "c1", "--", "true").returncode == 0
    banger(host, "vm", "exec", "c1", "--", "ip", "link", "set", "eth0", "up")


def test_health_fails_clearly_after_stop(host):
    host.cli("vm", "stop", "c1")
    result = host.cli("vm", "health", "c1", check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "c1: error: VM c1 is stopped; the guest agent answers only while it runs "
        "(banger vm start c1)"
    )
    started = host.cli("vm", "start", "c1")
    # start reports what it waited for: SSH, then the agent
    assert re.match(
        r"c1: running \(waiting for SSH \d+\.\d\ds, waiting for agent "
        r"\d+\.\d\ds\)$",
        started.stdout.strip(),
    ), started.stdout
    # start returns only once the agent answered
    assert host.cli("vm", "health", "c1").stdout.startswith("c1: healthy")


def test_exec_cut_off_by_a_killed_vm_exits_255_with_one_line(host):
    """The documented status when the agent's stream breaks before the exit status."""
    proc = subprocess.Popen(
        [console_script("banger"), "vm", "exec", "c1", "--", "sh", "-c", "echo started; sleep 300"],
        env=host.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"started\n"  # the program runs in the guest
        os.kill(host.json("vm", "show", "c1")["pid"], signal.SIGKILL)
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 255
    lines = err.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("banger: error: "), lines
