"""Every vm command, driven through the CLI against a daemon on the simulated host."""

from __future__ import annotations

import json

import pytest

from tests.e2e.helpers import assert_nothing_left, links

pytestmark = [pytest.mark.net, pytest.mark.slow]


def test_create_shows_stages_and_ssh_answers(host):
    result = host.cli("vm", "create", "web", "--cpus", "1", "--memory", "256")
    for stage in ("preflight", "disks", "network", "boot", "waiting for SSH"):
        assert stage in result.stderr
    assert "VM web is ready at 172.30.0." in result.stdout
    assert "banger vm ssh web" in result.stdout
    # From the normal shell: the CLI enters the daemon's namespace itself.
    assert host.cli("vm", "ssh", "web", "--", "hostname").stdout.strip() == "web"
    assert host.cli("vm", "ssh", "web", "--", "nproc").stdout.strip() == "1"
    # ssh's semantics: the words become one command line for the guest's shell...
    ssh = host.cli("vm", "ssh", "web", "--", "echo", "$HOME;", "uname").stdout
    assert ssh.splitlines() == ["/root", "Linux"]
    # ...while vm exec passes argv exactly.
    exe = host.cli("vm", "exec", "web", "--", "echo", "$HOME;", "uname").stdout
    assert exe.splitlines() == ["$HOME; uname"]
    shown = host.json("vm", "show", "web")
    assert shown["state"] == "running"
    assert shown["cpus"] == 1 and shown["memory_mib"] == 256
    assert shown["root_strategy"] in ("reflink", "sparse-copy", "dm-snapshot")
    assert shown["plugins"]["workdisk"]["size"] == 8 << 30
    text = host.cli("vm", "show", "web").stdout
    assert "root disk:" in text and shown["root_strategy"] in text
    assert shown["tap"] and shown["tap"] in links(host, "bgtap")


def test_work_disk_survives_stop_and_start(host):
    host.cli("vm", "ssh", "web", "--", "sh", "-c", "'echo kept > /root/note.txt; sync'")
    out = host.cli("vm", "stop", "web").stdout
    assert out.startswith("web: stopped (shut down)")
    assert host.json("vm", "show", "web")["pid"] is None
    assert host.cli("vm", "start", "web").stdout.startswith("web: running")
    assert host.cli("vm", "ssh", "web", "--", "cat", "/root/note.txt").stdout.strip() == "kept"
    # /root is the work disk, sized as asked (8G by default).
    df = host.cli("vm", "ssh", "web", "--", "df", "-B1", "--output=size", "/root").stdout
    assert int(df.split()[-1]) > 7 << 30


def test_list_json_and_table(host):
    vms = host.json("vm", "list")
    assert [v["name"] for v in vms] == ["web"]
    table = host.cli("vm", "list").stdout.splitlines()
    assert table[0].split()[:3] == ["NAME", "ID", "STATE"]
    assert table[1].split()[0] == "web"


def test_logs_and_stats(host):
    logs = host.cli("vm", "logs", "web")
    assert "banger-boot" in logs.stdout
    assert "console.log" in logs.stderr
    vmm = host.cli("vm", "logs", "web", "--vmm")
    assert "firecracker.log" in vmm.stderr
    stats = host.json("vm", "stats", "web")
    assert stats["pid"] and stats["rss_bytes"] > 0 and stats["cpu_seconds"] >= 0


def test_set_requires_stopped_and_never_shrinks(host):
    busy = host.cli("vm", "set", "web", "--cpus", "2", check=False)
    assert busy.returncode == 1 and "running; stop it" in busy.stderr
    host.cli("vm", "stop", "web")
    out = host.cli("vm", "set", "web", "--cpus", "2", "--memory", "512", "--disk-size", "10G")
    assert "updated (cpus, disk_size, memory_mib)" in out.stdout
    shown = host.json("vm", "show", "web")
    assert (shown["cpus"], shown["memory_mib"]) == (2, 512)
    assert shown["options"]["workdisk"]["disk_size"] == 10 << 30
    shrink = host.cli("vm", "set", "web", "--disk-size", "4G", check=False)
    assert shrink.returncode == 1
    assert "--disk-size 4G is smaller than the current 10G; disks only grow" in shrink.stderr
    bad = host.cli("vm", "set", "web", "--cpus", "0", check=False)
    assert "cpus 0 is not allowed" in bad.stderr
    host.cli("vm", "start", "web")
    df = host.cli("vm", "ssh", "web", "--", "df", "-B1", "--output=size", "/root").stdout
    assert int(df.split()[-1]) > 9 << 30
    assert host.cli("vm", "ssh", "web", "--", "nproc").stdout.strip() == "2"


def test_restart_and_kill(host):
    assert host.cli("vm", "restart", "web").stdout.startswith("web: running")
    out = host.cli("vm", "kill", "web", "--signal", "SIGKILL").stdout
    assert out.startswith("web: stopped")
    shown = host.json("vm", "show", "web")
    assert shown["state"] == "stopped" and shown["tap"] is None
    bad = host.cli("vm", "kill", "web", "--signal", "SIGNOPE", check=False)
    assert "signal 'SIGNOPE' is not a signal name or number" in bad.stderr


def test_multi_ref_commands_report_in_order(host):
    # --name is the NAME argument's alias (the original's smoke scripts use it).
    host.cli("vm", "create", "--name", "api", "--memory", "256")
    web_id = host.json("vm", "show", "web")["id"]
    result = host.cli("vm", "start", "nope", web_id[:6], "web", "api", check=False)
    assert result.returncode == 1
    assert result.stderr.splitlines() == ["nope: error: no such VM (VMs: api, web)"]
    # a VM that had to boot also says what it waited for: "web: running (waiting for ...)"
    assert [line.split(" (")[0] for line in result.stdout.splitlines()] == [
        "web: running",
        "api: running",
    ]
    stopped = host.cli("vm", "stop", "api", "web", "api").stdout.splitlines()
    assert [line.split(":")[0] for line in stopped] == ["api", "web"]


def test_bad_input_is_one_line_and_changes_nothing(host):
    before = host.json("vm", "list")
    cases = {
        ("vm", "create", "Bad_Name"): "VM name 'Bad_Name' is not valid",
        ("vm", "create", "x1", "--cpus", "0"): "cpus 0 is not allowed: use an integer from 1",
        ("vm", "create", "x1", "--memory", "lots"): "memory 'lots' is not a size",
        ("vm", "create", "x1", "--disk-size", "1P"): "--disk-size '1P' is not a size",
        ("vm", "create", "x1", "--memory", "100T"): "memory '100T' is not allowed",
        ("vm", "create", "x1", "--image", "nope"): "no image 'nope'",
        ("vm", "create", "web"): "a VM named 'web' already exists",
        ("vm", "show", "ghost"): "no VM 'ghost' (VMs: api, web)",
        ("vm", "show", "wbe"): "no VM 'wbe' (did you mean 'web'? VMs: api, web)",
        ("vm", "create", "x1", "--name", "x2"): "two names given: 'x1' and --name 'x2'",
        ("vm", "create", "--memory", "256"): "give the VM's name: banger vm create NAME",
    }
    for args, message in cases.items():
        result = host.cli(*args, check=False)
        assert result.returncode != 0, args
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], (args, result.stderr)
    assert host.json("vm", "list") == before


def test_delete_refuses_running_then_force(host):
    host.cli("vm", "start", "web")
    refused = host.cli("vm", "delete", "web", check=False)
    assert "running; stop it first or use --force" in refused.stderr
    assert (
        "image 'debian' is used by VM(s)"
        in host.cli("image", "delete", "debian", check=False).stderr
    )
    host.cli("vm", "delete", "--force", "web", "api")
    assert_nothing_left(host)


def test_help_shows_defaults(host):
    # click wraps help to the widest option, which plugins' options change
    help_text = " ".join(host.cli("vm", "create", "--help").stdout.split())
    for default in ("default: debian", "default: 2", "default: 1024M", "default: 8G"):
        assert default in help_text


def test_images_list_show(host):
    images = host.json("image", "list")
    assert [i["name"] for i in images] == ["debian"]
    shown = host.json("image", "show", "debian")
    assert shown["artifacts"]["work-seed"] and shown["kernel"]
    dup = host.cli(
        "image",
        "register",
        "debian",
        "--kernel",
        shown["kernel"],
        "--rootfs",
        shown["rootfs"],
        check=False,
    )
    assert "image 'debian' already exists" in dup.stderr


def test_daemon_status_shows_network(host):
    status = json.loads(host.cli("daemon", "status", "--json").stdout)
    assert status["services"]["network"]["bridge"] == "bgbr0"
    assert "workdisk" in status["plugins"]
