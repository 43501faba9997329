"""NAT end to end: the CLI against a daemon on the simulated host with a fake internet.

The host's namespace reaches "the internet" (another namespace) through its
uplink ``bgup0``; the internet has no route back to the VMs' subnet, so a VM
gets answers only when the host masquerades it. FORWARD's policy is DROP, as
Docker sets it.
"""

from __future__ import annotations

import os
import shlex
import signal
from collections.abc import Iterator

import pytest

from pytest_banger import wait_until
from pytest_banger.internet import HOST_ADDRESS, HTTP_ADDRESS
from pytest_banger.simhost import SimulatedHost

pytestmark = [pytest.mark.net, pytest.mark.slow]

FETCH = (
    "import sys, urllib.request\n"
    "try:\n"
    "    print(urllib.request.urlopen(sys.argv[1], timeout=4).read().decode().strip())\n"
    "except Exception as exc:\n"
    "    print('failed', type(exc).__name__); sys.exit(1)\n"
)


def fetch(host: SimulatedHost, vm: str, url: str):
    """Fetch ``url`` from inside ``vm`` (python3 of the guest image)."""
    return host.cli("vm", "ssh", vm, "--", shlex.join(["python3", "-c", FETCH, url]), check=False)


def banger_rules(host: SimulatedHost) -> list[str]:
    out = []
    for table in ("nat", "filter"):
        lines = host.netns_run("iptables", "-t", table, "-S").stdout.splitlines()
        out += [line for line in lines if "banger:" in line]
    return out


@pytest.fixture(scope="module")
def host() -> Iterator[SimulatedHost]:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, TAP and loop devices)")
    from pytest_banger.images import cached_debian_image

    image = cached_debian_image()
    with SimulatedHost(tap_pool_size=2, internet=True) as h:
        # ignored when banger-dns is not installed
        h.add_config(f'[plugins.dns]\nresolv_conf = "{h.internet.resolv_conf}"')
        h.start()
        h.netns_run("iptables", "-P", "FORWARD", "DROP")
        h.register_image(image)
        yield h


def test_guest_reaches_the_internet_through_the_uplink(host):
    host.cli("vm", "create", "n1", "--cpus", "1", "--memory", "256M")
    result = fetch(host, "n1", f"http://{HTTP_ADDRESS}/")
    assert result.returncode == 0, result.stdout + result.stderr
    # the server saw the host's uplink address, not the VM's
    assert result.stdout.strip() == f"client {HOST_ADDRESS}"
    assert f"http {HOST_ADDRESS}" in host.internet.clients()
    show = host.cli("vm", "show", "n1").stdout
    assert "nat.status:" in show and "on via bgup0" in show
    vm_id = host.json("vm", "show", "n1")["id"]
    mine = [r for r in banger_rules(host) if f"banger:{vm_id}" in r]
    assert len(mine) == 3, mine
    forward = host.netns_run("iptables", "-S", "FORWARD").stdout.splitlines()
    assert forward[0] == "-P FORWARD DROP"
    status = host.json("daemon", "status")
    assert status["plugin_services"]["nat"]["uplink"] == "bgup0"
    assert host.netns_run("cat", "/proc/sys/net/ipv4/ip_forward").stdout.strip() == "1"


def test_stop_removes_exactly_that_vms_rules_and_start_restores_them(host):
    host.cli("vm", "create", "n2", "--cpus", "1", "--memory", "256M")
    ids = {name: host.json("vm", "show", name)["id"] for name in ("n1", "n2")}
    host.cli("vm", "stop", "n2")
    rules = banger_rules(host)
    assert not any(f"banger:{ids['n2']}" in r for r in rules)
    assert sum(f"banger:{ids['n1']}" in r for r in rules) == 3
    assert fetch(host, "n1", f"http://{HTTP_ADDRESS}/").returncode == 0
    host.cli("vm", "start", "n2")
    result = fetch(host, "n2", f"http://{HTTP_ADDRESS}/")
    assert result.stdout.strip() == f"client {HOST_ADDRESS}", (
        banger_rules(host),
        host.cli("vm", "show", "n2").stdout,
        result.stderr,
    )


def test_daemon_start_removes_rules_of_vms_that_do_not_run(host):
    # a leftover of a VM that no longer exists, and one of a stopped VM
    host.netns_run(
        "iptables",
        "-t",
        "nat",
        "-A",
        "POSTROUTING",
        "-s",
        "172.30.0.200/32",
        "-m",
        "comment",
        "--comment",
        "banger:deadbeef0000",
        "-j",
        "MASQUERADE",
    )
    n2 = host.json("vm", "show", "n2")["id"]
    host.cli("daemon", "stop")
    host.cli("vm", "kill", "n2", check=False)  # autostarts the daemon: reconcile ran
    rules = banger_rules(host)
    assert not any("deadbeef0000" in r for r in rules), rules
    assert not any(n2 in r for r in rules), rules
    assert fetch(host, "n1", f"http://{HTTP_ADDRESS}/").returncode == 0


def test_no_nat_vm_is_offline_and_vm_set_turns_it_on(host):
    host.cli("vm", "create", "n3", "--no-nat", "--cpus", "1", "--memory", "256M")
    offline = fetch(host, "n3", f"http://{HTTP_ADDRESS}/")
    assert offline.returncode != 0 and "failed" in offline.stdout
    show = host.cli("vm", "show", "n3").stdout
    assert "off (disabled for this VM)" in show
    n3 = host.json("vm", "show", "n3")["id"]
    assert not any(n3 in r for r in banger_rules(host))
    # others stay online
    assert fetch(host, "n1", f"http://{HTTP_ADDRESS}/").returncode == 0
    refused = host.cli("vm", "set", "n3", "--nat", check=False)
    assert refused.returncode != 0 and "stop" in refused.stderr
    host.cli("vm", "stop", "n3")
    host.cli("vm", "set", "n3", "--nat")
    host.cli("vm", "start", "n3")
    assert fetch(host, "n3", f"http://{HTTP_ADDRESS}/").stdout.strip() == f"client {HOST_ADDRESS}"
    host.cli("vm", "delete", "--force", "n3")


def test_per_vm_egress_allow(host):
    bad = host.cli("vm", "create", "n5", "--egress-allow", "nope", check=False)
    assert bad.returncode != 0 and "'nope'" in bad.stderr and "CIDR" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    assert "n5" not in [v["name"] for v in host.json("vm", "list")]
    host.cli(
        "vm",
        "create",
        "n4",
        "--egress-allow",
        f"{HTTP_ADDRESS}/32:80",
        "--cpus",
        "1",
        "--memory",
        "256M",
    )
    assert fetch(host, "n4", f"http://{HTTP_ADDRESS}:80/").returncode == 0
    refused = fetch(host, "n4", f"http://{HTTP_ADDRESS}:8080/")
    assert refused.returncode != 0 and "failed" in refused.stdout
    # n1 has no allow-list: both ports
    assert fetch(host, "n1", f"http://{HTTP_ADDRESS}:8080/").returncode == 0
    # the DNS forwarder (the gateway, not forwarded traffic) is always reachable
    if "dns" in host.json("daemon", "status")["plugins"]:
        out = host.cli("vm", "ssh", "n4", "--", "getent", "hosts", "www.example.test").stdout
        assert out.split()[0] == HTTP_ADDRESS
    host.cli("vm", "delete", "--force", "n4")


def test_a_vmm_that_dies_loses_its_rules(host):
    host.cli("vm", "create", "n6", "--cpus", "1", "--memory", "256M")
    info = host.json("vm", "show", "n6")
    assert any(info["id"] in r for r in banger_rules(host))
    os.kill(info["pid"], signal.SIGKILL)
    wait_until(
        lambda: not any(info["id"] in r for r in banger_rules(host)),
        timeout=20,
        what="the dead VM's rules to go",
    )
    host.cli("vm", "delete", "n6")


def test_egress_allow_list(host):
    host.add_config('[plugins.nat]\nallow = ["203.0.113.10/32:80"]')
    host.cli("daemon", "stop")
    host.start()  # the running VM's rules follow the new policy at reconcile
    assert fetch(host, "n1", f"http://{HTTP_ADDRESS}:80/").returncode == 0
    refused = fetch(host, "n1", f"http://{HTTP_ADDRESS}:8080/")
    assert refused.returncode != 0 and "failed" in refused.stdout
    assert "egress_allow" in host.cli("vm", "show", "n1").stdout


def test_nothing_left_after_delete_and_daemon_stop(host):
    host.cli("vm", "delete", "--force", "n1", "n2")
    assert banger_rules(host) == []
    host.cli("daemon", "stop")
    assert banger_rules(host) == []


def test_without_uplink_nat_is_off_and_doctor_and_vm_show_say_why():
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, TAP and loop devices)")
    from pytest_banger.images import cached_debian_image

    image = cached_debian_image()
    with SimulatedHost(tap_pool_size=1) as h:  # no fake internet: no default route
        h.start()
        h.register_image(image)
        doctor = h.cli("doctor", check=False).stdout
        assert "nat uplink" in doctor and "no IPv4 default route" in doctor
        h.cli("vm", "create", "solo", "--cpus", "1", "--memory", "256M")
        show = h.cli("vm", "show", "solo").stdout
        assert "off: no IPv4 default route" in show
        assert banger_rules(h) == []
        h.cli("vm", "delete", "--force", "solo")
