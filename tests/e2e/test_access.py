"""`[daemon] socket_group` with real unprivileged users created by the test.

Who may do what is docs/security.md's table; these tests drive it as the
users would (the CLI, and raw RPC with the CLI's own checks bypassed).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from banger_core import system
from pytest_banger.simhost import SimulatedHost

from .members import (
    Users,
    banger_as,
    bangerds_of,
    configure_group,
    made_users,
    member_env,
    raw_rpc,
)

pytestmark = [pytest.mark.net, pytest.mark.slow]


@pytest.fixture
def users() -> Iterator[Users]:
    """A group, two members of it and a stranger; removed afterwards."""
    with made_users() as made:
        yield made


def _image_dir(debian_image) -> str:
    return str(Path(debian_image.rootfs).parent)


def _one_line_error(result: system.Result, *needles: str) -> None:
    """A refusal as the quality bar wants it: non-zero, one line, no internal error."""
    assert result.returncode != 0, result
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    assert "internal error" not in result.stderr + result.stdout
    for needle in needles:
        assert needle in lines[0], result.stderr


def test_socket_group_members_use_vms_strangers_are_told_why(debian_image, users):
    member, stranger = users.owner, users.stranger
    with SimulatedHost() as host:
        configure_group(host, users, _image_dir(debian_image))
        host.start()
        host.register_image(debian_image)

        # A member: every VM command works, ssh included (no root, no nsenter).
        listed = banger_as(host, member, "vm", "list")
        assert listed.returncode == 0, listed.stderr
        created = banger_as(host, member, "vm", "create", "team", "--memory", "256")
        assert created.returncode == 0, created.stderr
        ssh = banger_as(host, member, "vm", "ssh", "team", "--", "hostname")
        assert ssh.returncode == 0 and ssh.stdout.strip() == "team", ssh.stderr
        status = banger_as(host, member, "daemon", "status")
        assert status.returncode == 0 and "running" in status.stdout

        # ... but may not make the daemon read arbitrary host files.
        evil = banger_as(
            host,
            member,
            *("image", "register", "evil", "--kernel", "/etc/passwd", "--rootfs", "/etc/passwd"),
        )
        _one_line_error(evil, "'/etc/passwd' is not allowed")
        # The same over the socket directly (the CLI's own checks bypassed).
        raw = raw_rpc(
            host,
            member,
            "image.register",
            {"name": "evil", "kernel": "/etc/shadow", "rootfs": "/etc/shadow"},
        )
        assert raw.startswith("ForbiddenError") and "/etc/shadow" in raw, raw
        assert "evil" not in banger_as(host, member, "image", "list").stdout
        # A file under the allowed directory that the member cannot read: the daemon
        # (root) could, but it reads with the member's permissions.
        secret = Path(_image_dir(debian_image)) / f"secret-{users.owner}"
        secret.write_text("not for members")
        os.chmod(secret, 0o600)
        try:
            # (The CLI refuses it before asking: the daemon's own check, over raw RPC.)
            hidden = raw_rpc(
                host,
                member,
                "image.register",
                {"name": "peek", "kernel": str(secret), "rootfs": str(secret)},
            )
            assert hidden.startswith("ForbiddenError"), hidden
            assert "is not readable by uid" in hidden and "Permission denied" in hidden, hidden
        finally:
            secret.unlink()
        ok = banger_as(
            host,
            member,
            *("image", "register", "mine", "--kernel", str(debian_image.kernel)),
            *("--rootfs", str(debian_image.rootfs), "--initrd", str(debian_image.initrd)),
            *("--work-seed", str(debian_image.work_seed)),
        )
        assert ok.returncode == 0, ok.stderr

        # A stranger: told "permission denied" (not "not running"), no daemon of its own.
        for args in (("vm", "list"), ("daemon", "status")):
            denied = banger_as(host, stranger, *args)
            assert denied.returncode != 0
            assert "permission denied" in denied.stderr, denied.stderr
            assert "not running" not in denied.stdout + denied.stderr
        assert bangerds_of(stranger) == []

        # Another member may not delete the image the first one added; root may list it.
        other = banger_as(host, users.other, "image", "delete", "mine")
        _one_line_error(other, "image.delete refused", f"{users.other} (uid", "belongs to")
        assert banger_as(host, member, "vm", "delete", "--force", "team").returncode == 0
        assert banger_as(host, member, "image", "delete", "mine").returncode == 0


def test_a_member_cannot_stop_or_restart_the_daemon(debian_image, users):
    with SimulatedHost() as host:
        configure_group(host, users, _image_dir(debian_image))
        host.start()
        pid = host.daemon_pid()
        for args in (("daemon", "stop"), ("daemon", "restart")):
            refused = banger_as(host, users.owner, *args)
            _one_line_error(
                refused, "daemon.stop refused for", "only root may stop or restart the daemon"
            )
            assert host.daemon_pid() == pid
            assert "bangerd stopping" not in (host.state_dir / "logs" / "bangerd.log").read_text()
        raw = raw_rpc(host, users.owner, "daemon.stop", {})
        assert raw.startswith("ForbiddenError") and "only root" in raw, raw
        assert host.cli("daemon", "status").returncode == 0 and host.daemon_pid() == pid
        assert bangerds_of(users.owner) == []


def _refused(host: SimulatedHost, user: str, *args: str) -> None:
    result = banger_as(host, user, *args)
    _one_line_error(result, "refused for", "belongs to")


def test_members_use_only_their_own_vms_unless_vms_are_shared(debian_image, users):
    owner, other = users.owner, users.other
    with SimulatedHost() as host:
        configure_group(host, users, _image_dir(debian_image))
        host.start()
        host.register_image(debian_image)
        created = banger_as(host, owner, "vm", "create", "mine", "--memory", "256")
        assert created.returncode == 0, created.stderr
        host.cli("vm", "create", "roots", "--memory", "256")

        # Everyone sees every VM and its owner; the owner uses theirs, not root's.
        listed = banger_as(host, owner, "vm", "list")
        assert owner in listed.stdout and "roots" in listed.stdout, listed
        shown = host.json("vm", "show", "mine")
        assert shown["owner_uid"] == users.uid(owner)
        _refused(host, owner, "vm", "stop", "roots")

        # Another member: every action on it is refused.
        assert "mine" not in banger_as(host, other, "vm", "ssh-config").stdout
        for args in (
            ("vm", "show", "mine"),
            ("vm", "stop", "mine"),
            ("vm", "restart", "mine"),
            ("vm", "kill", "mine"),
            ("vm", "delete", "--force", "mine"),
            ("vm", "set", "mine", "--cpus", "1"),
            ("vm", "logs", "mine"),
            ("vm", "stats", "mine"),
            ("vm", "ssh", "mine", "--", "true"),
            ("vm", "ssh-config", "mine"),
            ("vm", "health", "mine"),
            ("vm", "exec", "mine", "--", "true"),
            ("vm", "ports", "mine"),
            ("vm", "cp", "mine:/etc/hostname", "/tmp"),
        ):
            _refused(host, other, *args)
        for method in ("vm.connect", "vm.agent_connect", "vm.agent", "vm.ssh_info"):
            params = {"ref": "mine", **({"path": "/healthz"} if method == "vm.agent" else {})}
            raw = raw_rpc(host, other, method, params)
            assert raw.startswith("ForbiddenError") and "belongs to" in raw, (method, raw)
        # ... nor the operation that created it.
        op = raw_rpc(host, owner, "vm.create", {"name": "second", "memory": 256})
        op_id = op.split("'id': '")[1].split("'")[0]
        for method in ("operation.status", "operation.cancel"):
            raw = raw_rpc(host, other, method, {"id": op_id})
            assert raw.startswith("ForbiddenError"), (method, raw)
        assert raw_rpc(host, owner, "operation.status", {"id": op_id}).startswith("ok")
        assert host.json("vm", "show", "mine")["state"] == "running"  # nothing changed

        # Root may do anything to anyone's VM.
        assert host.cli("vm", "ssh", "mine", "--", "true").returncode == 0

        # The key a member receives is the VM's own: it opens that VM and no other,
        # even for someone who reaches the other VM's SSH port directly.
        assert banger_as(host, owner, "vm", "ssh", "mine", "--", "true").returncode == 0
        copy = Path(f"/tmp/{owner}-home/.cache/banger/vm-key-{shown['id']}")
        assert copy.stat().st_uid == users.uid(owner) and copy.stat().st_mode & 0o077 == 0

        def ssh_with(key: Path, vm: str) -> system.Result:
            proxy = f"{host.env['PATH'].split(':')[0]}/banger _fdpass {vm}"
            return system.run(
                [
                    *("ssh", "-i", str(key), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes"),
                    *("-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"),
                    *("-o", f"ProxyCommand={proxy}", "-o", "ProxyUseFdpass=yes"),
                    f"root@{vm}",
                    "hostname",
                ],
                check=False,
                timeout=60,
                env=host.env,
            )

        assert ssh_with(copy, "mine").stdout.strip() == "mine"
        stolen = ssh_with(copy, "roots")
        assert stolen.returncode == 255 and "Permission denied" in stolen.stderr, stolen

        # Shared VMs: the other member may use it after the daemon restarts so configured.
        host.cli("daemon", "stop")
        text = host.config_path.read_text().replace("[daemon]\n", "[daemon]\nshared_vms = true\n")
        host.config_path.write_text(text)
        host.start()
        assert "mine" in banger_as(host, other, "vm", "ssh-config").stdout
        ssh = banger_as(host, other, "vm", "ssh", "mine", "--", "hostname")
        assert ssh.returncode == 0 and ssh.stdout.strip() == "mine", ssh.stderr
        for name in ("mine", "roots", "second"):
            host.cli("vm", "delete", "--force", name, check=False)


def test_a_members_cli_never_shows_an_internal_error(debian_image, users):
    member = users.owner
    with SimulatedHost() as host:
        configure_group(host, users, _image_dir(debian_image))
        host.start()
        host.register_image(debian_image)
        nohome = {"home": "/nonexistent"}
        results = []

        def run(*args: str, **kw: str) -> system.Result:
            result = banger_as(host, member, *args, **kw)
            results.append((args, result))
            return result

        # Raw RPC options are typed JSON: "yes" is not true (nothing is created).
        typed = raw_rpc(host, member, "vm.create", {"name": "yes", "options": {"nat": "yes"}})
        assert typed.startswith("ValidationError") and "--nat 'yes' is not allowed" in typed
        assert run("vm", "create", "box", "--memory", "256", **nohome).returncode == 0
        for args in (
            ("vm", "list"),
            ("vm", "show", "box"),
            ("vm", "logs", "box"),
            ("vm", "stats", "box"),
            ("vm", "ssh-config"),
            ("image", "list"),
            ("daemon", "status"),
            ("plugins", "list"),
            ("doctor",),
        ):
            run(*args, **nohome)
        # Without a writable home: ssh works (a private runtime directory holds the key copy).
        ssh = run("vm", "ssh", "box", "--", "hostname", **nohome)
        assert ssh.returncode == 0 and ssh.stdout.strip() == "box", ssh.stderr
        for args in (("vm", "exec", "box", "--", "true"), ("vm", "health", "box")):
            assert run(*args, **nohome).returncode == 0, results[-1]
        # A host file written for a member is written by the member's own process.
        dest = Path(f"/tmp/{member}-dest")
        system.run(["runuser", "-u", member, "--", "mkdir", "-p", str(dest)])
        try:
            copied = run("vm", "cp", "box:/etc/hostname", str(dest), **nohome)
            assert copied.returncode == 0, copied.stderr
            assert (dest / "hostname").stat().st_uid == users.uid(member)
            # ... so it cannot write where the member could not.
            denied = run("vm", "cp", "box:/etc/hostname", "/root/", **nohome)
            assert denied.returncode != 0 and not Path("/root/hostname").exists()
        finally:
            system.run(["rm", "-rf", str(dest)])
        install = run("vm", "ssh-config", "--install", **nohome)
        _one_line_error(install, "cannot add `Include")
        _one_line_error(run("daemon", "stop", **nohome), "only root may stop")

        # With a home: the Include names a file and key the member can read, and a plain
        # shell's `ssh box` (no BANGER_* variables) reaches this daemon through it.
        home = f"/tmp/{member}-home"
        installed = run("vm", "ssh-config", "--install", home=home)
        assert installed.returncode == 0, installed.stderr
        plain = system.run(
            [
                "runuser",
                "-u",
                member,
                "--",
                "env",
                "-i",
                "PATH=/usr/bin:/bin",
                f"HOME={home}",
                "ssh",
                "-F",
                f"{home}/.ssh/config",
                "-o",
                "BatchMode=yes",
                "box",
                "hostname",
            ],
            check=False,
            timeout=60,
        )
        assert plain.returncode == 0 and plain.stdout.strip() == "box", plain.stderr
        # Deleting refreshes the member's own file.
        assert run("vm", "delete", "--force", "box", home=home).returncode == 0
        included = installed.stdout.split("`Include ")[1].split("`")[0]
        assert "box" not in Path(included).read_text()

        # The daemon stopped: the member is told so, and who can start it; no autostart.
        host.cli("daemon", "stop")
        before = sorted(p.name for p in (host.state_dir / "logs").iterdir())
        for args in (("vm", "list"), ("daemon", "start"), ("vm", "create", "again")):
            down = run(*args, **nohome)
            _one_line_error(down, "bangerd is not running", "only root can start it")
        assert bangerds_of(member) == []
        assert sorted(p.name for p in (host.state_dir / "logs").iterdir()) == before
        status = run("daemon", "status", **nohome)
        assert status.returncode == 3 and "not running" in status.stdout

        for args, result in results:
            assert "internal error" not in result.stdout + result.stderr, (args, result)
            assert "Traceback" not in result.stderr, (args, result)


def test_the_state_dirs_ssh_config_keeps_the_daemons_environment(debian_image):
    """The daemon's kept-current file: its ProxyCommand names this daemon's state and config."""
    with SimulatedHost() as host:
        host.start()
        host.register_image(debian_image)
        host.cli("vm", "create", "px", "--memory", "256")
        text = (host.state_dir / "ssh" / "config").read_text()
        assert f"BANGER_STATE_DIR={host.state_dir}" in text
        assert f"BANGER_CONFIG={host.config_path}" in text
        env = [e for e in member_env(None, "root", home="/root") if "PYTHONPATH" not in e]
        plain = system.run(
            [
                *env,
                "ssh",
                "-F",
                str(host.state_dir / "ssh" / "config"),
                "-o",
                "BatchMode=yes",
                "px",
                "hostname",
            ],
            check=False,
            timeout=60,
        )
        assert plain.returncode == 0 and plain.stdout.strip() == "px", plain.stderr
        host.cli("vm", "delete", "--force", "px")
        assert os.path.exists(host.state_dir / "ssh" / "config")
