"""Every operation runs the checks it depends on before it changes anything."""

from __future__ import annotations

import shutil

import pytest

from banger_core import system
from pytest_banger.simhost import SimulatedHost, console_script
from tests.e2e.helpers import assert_nothing_left, without_programs

pytestmark = [pytest.mark.net, pytest.mark.slow]


def restart_without(host: SimulatedHost, *programs: str) -> None:
    """Restart the host's daemon on a view of the machine without ``programs``."""
    host.cli("daemon", "stop")
    argv = without_programs([console_script("banger"), "daemon", "start"], *programs)
    system.run(argv, env=host.env, timeout=120)


def test_missing_programs_stop_only_the_operations_that_need_them(debian_image, tmp_path):
    with SimulatedHost() as host:
        host.start()
        host.register_image(debian_image)
        host.cli("vm", "create", "box", "--memory", "256")
        host.cli("vm", "stop", "box")
        before = host.json("vm", "show", "box")

        # No mmdebstrap: image build is refused up front, naming the fix.
        restart_without(host, "mmdebstrap")
        build = host.cli("image", "build", "fresh", check=False)
        assert build.returncode == 1
        assert build.stderr.splitlines() == [
            "banger: error: host not ready: program mmdebstrap: not found; "
            "fix: apt install mmdebstrap  (needed for banger image build)"
        ]
        assert [i["name"] for i in host.json("image", "list")] == ["debian"]

        # No e2fsck/resize2fs: growing the work disk is refused, other changes are not.
        restart_without(host, "e2fsck", "resize2fs")
        grow = host.cli("vm", "set", "box", "--disk-size", "10G", check=False)
        assert grow.returncode == 1
        assert "box: error: host not ready: program e2fsck: not found; fix: apt install" in (
            grow.stderr
        )
        assert host.json("vm", "show", "box")["options"] == before["options"]
        assert "updated (cpus)" in host.cli("vm", "set", "box", "--cpus", "1").stdout

        host.cli("daemon", "restart")
        host.cli("vm", "delete", "box")
        assert_nothing_left(host)


def test_vm_ssh_without_ssh_says_how_to_install_it(image_host, tmp_path):
    host = image_host
    argv = without_programs([console_script("banger"), "vm", "ssh", "box", "--", "true"], "ssh")
    result = system.run(argv, env=host.env, check=False)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "banger: error: host not ready: program ssh: not found; "
        "fix: apt install openssh-client  (needed for banger vm ssh)"
    ]


def test_an_image_file_deleted_after_register_is_a_preflight_error(image_host, tmp_path):
    """The work seed (a plugin's artifact) went missing: a clear error, not a `cp` failure."""
    host = image_host
    shown = host.json("image", "show", "debian")
    seed = tmp_path / "work-seed.ext4"
    shutil.copyfile(shown["artifacts"]["work-seed"], seed)
    host.cli(
        "image",
        "register",
        "seedless",
        "--kernel",
        shown["kernel"],
        "--rootfs",
        shown["rootfs"],
        "--artifact",
        f"work-seed={seed}",
        *(["--initrd", shown["initrd"]] if shown.get("initrd") else []),
    )
    seed.unlink()
    before = host.json("vm", "list")
    result = host.cli("vm", "create", "orphan", "--image", "seedless", check=False)
    assert result.returncode == 1
    assert (
        f"banger: error: image 'seedless': work-seed artifact {seed} is missing; "
        "fix: build the image again (banger image build) or register it with the file "
        "(banger image register)"
    ) in result.stderr.splitlines()
    assert host.json("vm", "list") == before
    host.cli("image", "delete", "seedless")


@pytest.fixture(scope="module")
def image_host(debian_image):
    with SimulatedHost(tap_pool_size=1) as h:
        h.start()
        h.register_image(debian_image)
        yield h
