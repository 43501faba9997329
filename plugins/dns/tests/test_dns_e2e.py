"""DNS end to end: the CLI against a daemon on the simulated host with a fake internet.

The host's resolv.conf (``[plugins.dns] resolv_conf``) names the fake
internet's DNS server, which the guests' forwarder asks for names outside
``vm.``.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_banger import wait_until
from pytest_banger.internet import HOST_ADDRESS, HTTP_ADDRESS
from pytest_banger.simhost import SimulatedHost

pytestmark = [pytest.mark.net, pytest.mark.slow]

QUERY = """
import json, socket, struct, sys
from dnslib import DNSRecord
name, qtype, server, port, over = sys.argv[1:6]
data = DNSRecord.question(name, qtype).pack()
try:
    if over == "udp":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3)
        s.sendto(data, (server, int(port))); raw = s.recv(65535)
    else:
        s = socket.create_connection((server, int(port)), timeout=3)
        s.sendall(struct.pack("!H", len(data)) + data)
        n = struct.unpack("!H", s.recv(2))[0]; raw = b""
        while len(raw) < n: raw += s.recv(n - len(raw))
except OSError as exc:
    print(json.dumps({"error": type(exc).__name__})); sys.exit(0)
reply = DNSRecord.parse(raw)
print(json.dumps({"rcode": reply.header.rcode, "answers": [str(r.rdata) for r in reply.rr]}))
"""

NOERROR, NXDOMAIN = 0, 3


def query(
    host: SimulatedHost,
    name: str,
    qtype: str = "A",
    *,
    server: str = "127.0.0.1",
    port: int = 42069,
    over: str = "udp",
) -> dict:
    """Ask the daemon's listener from inside the host's namespace."""
    out = host.netns_run(sys.executable, "-c", QUERY, name, qtype, server, str(port), over)
    return json.loads(out.stdout)


def listening(host: SimulatedHost) -> list[str]:
    """Sockets bound to the DNS ports in the host's namespace."""
    out = host.netns_run("ss", "-Hlnut").stdout
    return [line for line in out.splitlines() if ":42069 " in line or ":53 " in line]


@pytest.fixture(scope="module")
def host() -> Iterator[SimulatedHost]:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, TAP and loop devices)")
    from pytest_banger.images import cached_debian_image

    image = cached_debian_image()
    with SimulatedHost(tap_pool_size=2, internet=True) as h:
        resolved = h.root / "resolved"
        resolved.mkdir()
        (resolved / "resolv.conf").write_text("nameserver 203.0.113.53\n")
        fake = h.root / "fake-resolvectl"
        fake.write_text(f'#!/bin/sh\necho "$@" >> {h.root}/resolvectl.log\n')
        fake.chmod(0o755)
        h.add_config(
            f'[plugins.dns]\nresolv_conf = "{h.internet.resolv_conf}"\n'
            f'resolvectl = "{fake}"\nresolved_dir = "{resolved}"'
        )
        h.start()
        h.register_image(image)
        yield h


def test_records_for_running_vms(host):
    host.cli("vm", "create", "c1", "--cpus", "1", "--memory", "256M")
    host.cli("vm", "create", "c2", "--cpus", "1", "--memory", "256M")
    ips = {name: host.json("vm", "show", name)["ip"] for name in ("c1", "c2")}
    for over in ("udp", "tcp"):
        assert query(host, "c1.vm", over=over) == {"rcode": NOERROR, "answers": [ips["c1"]]}
    assert query(host, "C2.VM")["answers"] == [ips["c2"]]
    assert query(host, "c3.vm")["rcode"] == NXDOMAIN
    assert query(host, "c1.vm", "AAAA") == {"rcode": NOERROR, "answers": []}
    assert query(host, "example.com")["rcode"] == 5  # REFUSED on the host's listener
    listing = host.cli("dns", "list").stdout
    assert "c1.vm" in listing and ips["c2"] in listing
    records = host.json("dns", "list")["records"]
    assert [(r["name"], r["address"]) for r in records] == [
        ("c1.vm", ips["c1"]),
        ("c2.vm", ips["c2"]),
    ]
    assert "dns names:" in host.cli("vm", "show", "c1").stdout
    assert host.json("vm", "show", "c1")["dns_names"] == ["c1.vm"]
    status = host.cli("daemon", "status").stdout
    assert "udp 127.0.0.1:42069" in status and "172.30.0.1:53" in status
    listeners = host.json("daemon", "status")["plugin_services"]["dns"]["listeners"]
    assert "tcp 127.0.0.1:42069" in listeners


def test_guests_resolve_vms_and_the_internet(host):
    ips = {name: host.json("vm", "show", name)["ip"] for name in ("c1", "c2")}
    out = host.cli("vm", "ssh", "c1", "--", "getent", "hosts", "c2.vm").stdout
    assert out.split()[0] == ips["c2"]
    out = host.cli("vm", "ssh", "c1", "--", "getent", "hosts", "www.example.test").stdout
    assert out.split()[0] == HTTP_ADDRESS
    # the forwarder asked the host's upstream, from the host's own address
    assert f"dns {HOST_ADDRESS} www.example.test" in host.internet.clients()
    assert host.cli("vm", "ssh", "c1", "--", "cat", "/etc/resolv.conf").stdout.split() == [
        "nameserver",
        "172.30.0.1",
    ]


def test_records_follow_stop_start_and_a_daemon_restart(host):
    ip = host.json("vm", "show", "c1")["ip"]
    host.cli("vm", "stop", "c1")
    assert query(host, "c1.vm")["rcode"] == NXDOMAIN
    assert host.json("vm", "show", "c1")["dns_names"] == []
    host.cli("vm", "start", "c1")
    assert query(host, "c1.vm")["answers"] == [ip]
    host.cli("daemon", "stop")
    assert listening(host) == []
    host.start()
    assert query(host, "c1.vm")["answers"] == [ip]  # rebuilt from the running VMs


def test_a_vmm_that_dies_loses_its_record(host):
    pid = host.json("vm", "show", "c2")["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: query(host, "c2.vm")["rcode"] == NXDOMAIN, timeout=15, what="c2.vm to go")


def test_garbage_through_the_daemon_listener_does_not_stop_it(host):
    script = (
        "import random, socket\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "rng = random.Random(1)\n"
        "for _ in range(2000):\n"
        "    s.sendto(rng.randbytes(rng.randrange(1, 700)), ('127.0.0.1', 42069))\n"
    )
    host.netns_run(sys.executable, "-c", script)
    ip = host.json("vm", "show", "c1")["ip"]
    wait_until(
        lambda: query(host, "c1.vm").get("answers") == [ip],
        timeout=15,
        what="an answer after garbage",
    )


LONG_NAMES = """
import socket, struct
labels = [b"a" * 63] * 4 + [b"vm"]
qname = b"".join(bytes([len(lab)]) + lab for lab in labels) + b"\\0"
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
for i in range(1000):
    s.sendto(struct.pack("!HHHHHH", i, 0x0100, 1, 0, 0, 0) + qname + b"\\0\\1\\0\\1",
             ("172.30.0.1", 53))
    s.recv(512)  # the server's FORMERR: one at a time, so none is lost
print("sent")
"""


def test_a_guest_flooding_names_over_255_bytes_costs_a_counter_not_the_log(host):
    """The real guest's python3 sends 1,000 bad queries to its resolver (the daemon)."""
    log = host.state_dir / "logs" / "bangerd.log"
    before = log.stat().st_size
    out = host.cli("vm", "exec", "c1", "--", "python3", "-c", LONG_NAMES).stdout
    assert out == "sent\n"
    grown = log.read_bytes()[before:].decode(errors="replace")
    assert "ERROR" not in grown and "Traceback" not in grown
    assert grown.count("malformed packet") <= 2
    assert len(grown) < 20_000, f"the log grew by {len(grown)} bytes"
    dns = host.json("daemon", "status")["plugin_services"]["dns"]
    assert dns["malformed_packets"] >= 1000
    ip = host.json("vm", "show", "c1")["ip"]
    assert query(host, "c1.vm")["answers"] == [ip]


def test_doctor_says_whether_vm_names_resolve_from_the_host(host):
    out = host.cli("doctor", check=False).stdout
    assert "dns .vm from the host" in out
    assert "dns listeners" in out


def test_dns_setup_with_systemd_resolved_and_undo(host):
    log = host.root / "resolvectl.log"
    out = host.cli("dns", "setup").stdout
    assert "~vm" in out
    assert log.read_text().splitlines() == [
        "dns bgbr0 172.30.0.1",
        "domain bgbr0 ~vm",
        "default-route bgbr0 false",
    ]
    host.cli("dns", "setup", "--undo")
    assert log.read_text().splitlines()[-1] == "revert bgbr0"


def test_dns_setup_without_resolved_prints_the_lines(host):
    resolved = host.root / "resolved"
    (resolved / "resolv.conf").unlink()
    out = host.cli("dns", "setup").stdout
    assert "server=/vm/127.0.0.1#42069" in out
    assert "nameserver 172.30.0.1" in out


def test_nothing_left_after_delete_and_daemon_stop(host):
    host.cli("vm", "delete", "--force", "c1", "c2")
    assert host.json("dns", "list")["records"] == []
    host.cli("daemon", "stop")
    assert listening(host) == []
    assert list(Path(host.state_dir, "vms").iterdir()) == []
