"""MMDS served to the simulated guest (issue 16 item 4), as Firecracker v1.16.1 answers it.

Upstream: ``src/vmm/src/mmds/mod.rs`` (``convert_to_response``: V1/V2, tokens,
405/404/401 texts), ``src/vmm/src/mmds/data_store.rs`` (``get_value``:
IMDS listing or JSON by ``Accept``), ``src/vmm/src/mmds/token.rs``
(``/latest/api/token``, TTL 1..21600). The requests are made from the guest's
own network namespace, to the configured address.
"""

from __future__ import annotations

import json
import sys

import pytest

from banger_core.firecracker import FirecrackerClient
from banger_vmmkit import mmds
from pytest_banger import wait_until
from pytest_banger.fcsim import raw_request, tiny_rootfs

from .conftest import NetnsHost, SimRunner
from .test_boot import BOOT_ARGS

pytestmark = pytest.mark.net

DATA = {"latest": {"meta-data": {"ami-id": "ami-12345678", "tags": {"team": "banger"}}}}

CLIENT = """
import json, socket, sys
method, path, headers = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
s = socket.create_connection((sys.argv[4], 80), timeout=10)
req = f"{method} {path} HTTP/1.1\\r\\nHost: mmds\\r\\n"
req += "".join(f"{k}: {v}\\r\\n" for k, v in headers.items()) + "\\r\\n"
s.sendall(req.encode())
data = b""
while b"\\r\\n\\r\\n" not in data:
    data += s.recv(4096)
head, _, body = data.partition(b"\\r\\n\\r\\n")
lines = head.split(b"\\r\\n")
length = int([x.split(b":")[1] for x in lines if x.lower().startswith(b"content-length")][0])
while len(body) < length:
    body += s.recv(4096)
status = int(head.split(b" ")[1])
print(json.dumps({"status": status, "head": head.decode(), "body": body.decode()}))
"""


def boot_with_mmds(
    sim: SimRunner, ns: NetnsHost, version: str, address: str
) -> tuple[str, FirecrackerClient]:
    img = tiny_rootfs(sim.tmp)
    tap = ns.add_tap("tap0")
    _proc, sock = sim.start(None, netns=ns.name)
    client = FirecrackerClient(sock)
    client.put_machine_config(1, 256)
    client.put_boot_source(sim.kernel, BOOT_ARGS)
    client.put_drive("rootfs", img, True, True)
    client.put_network_interface("net1", tap, "06:00:AC:10:00:02")
    body = {"network_interfaces": ["net1"], "version": version, "ipv4_address": address}
    assert raw_request(sock, "PUT", "/mmds/config", json.dumps(body))[0] == 204
    assert raw_request(sock, "PUT", "/mmds", json.dumps(DATA))[0] == 204
    client.instance_start()
    wait_until(lambda: "tiny-boot: ready" in sim.console(), what="guest boot")
    (token,) = sim.note_tokens()
    # The guest netns is mounted in the simulator's mount namespace (it runs under
    # `ip netns exec`): enter that first. "<pid>:<netns>" for guest_http.
    return f"{sim.procs[-1].pid}:bgr-fcsim-{token}", client


def guest_http(guest_ns: str, method: str, path: str, address: str, **headers: str) -> dict:
    from banger_core import system

    pid, netns = guest_ns.split(":", 1)
    res = system.run(
        ["nsenter", "-t", pid, "-m", "ip", "netns", "exec", netns, sys.executable, "-c",
         CLIENT, method, path, json.dumps(headers), address],
        timeout=30,
    )  # fmt: skip
    return json.loads(res.stdout)


def test_mmds_v2_with_session_tokens(test_netns: NetnsHost, sim: SimRunner) -> None:
    ip = "169.254.169.254"
    guest, client = boot_with_mmds(sim, test_netns, "V2", ip)
    got = guest_http(guest, "GET", "/latest/meta-data", ip)
    assert (got["status"], got["body"]) == (401, mmds.NO_TOKEN)
    got = guest_http(guest, "PUT", "/latest/api/token", ip)
    assert (got["status"], got["body"]) == (400, mmds.NO_TTL)
    got = guest_http(guest, "PUT", "/latest/api/token", ip, **{"X-metadata-token-ttl-seconds": "0"})
    assert got["status"] == 400
    assert got["body"] == (
        "Invalid time to live value provided for token: 0. Please provide a value between 1 "
        "and 21600."
    )
    got = guest_http(
        guest, "PUT", "/latest/api/token", ip, **{"X-metadata-token-ttl-seconds": "60"}
    )
    assert got["status"] == 200 and "X-metadata-token-ttl-seconds: 60" in got["head"]
    token = got["body"]
    auth = {"X-metadata-token": token}
    got = guest_http(guest, "GET", "/latest/meta-data", ip, **auth)
    assert (got["status"], got["body"]) == (200, "ami-id\ntags/")
    got = guest_http(guest, "GET", "/latest/meta-data/ami-id", ip, **auth)
    assert (got["status"], got["body"]) == (200, "ami-12345678")
    got = guest_http(guest, "GET", "//latest//meta-data/", ip, Accept="application/json", **auth)
    assert got["status"] == 200
    assert json.loads(got["body"]) == DATA["latest"]["meta-data"]
    got = guest_http(guest, "GET", "/latest/meta-data", ip, **{"X-metadata-token": "forged"})
    assert (got["status"], got["body"]) == (401, mmds.INVALID_TOKEN)
    got = guest_http(guest, "GET", "/nope", ip, **auth)
    assert (got["status"], got["body"]) == (404, "Resource not found: /nope.")
    got = guest_http(guest, "POST", "/latest", ip, **auth)
    assert (got["status"], got["body"]) == (405, mmds.METHOD_NOT_ALLOWED)
    # PATCH /mmds after boot: the guest sees it at once.
    patch = {"latest": {"meta-data": {"ami-id": "ami-87654321"}}}
    assert raw_request(sim.tmp / "fc.sock", "PATCH", "/mmds", json.dumps(patch))[0] == 204
    got = guest_http(guest, "GET", "/latest/meta-data/ami-id", ip, **auth)
    assert got["body"] == "ami-87654321"
    client.close()


def test_mmds_v1_at_a_configured_address(test_netns: NetnsHost, sim: SimRunner) -> None:
    ip = "169.254.170.2"
    guest, client = boot_with_mmds(sim, test_netns, "V1", ip)
    got = guest_http(guest, "GET", "/latest/meta-data/tags/team", ip)
    assert (got["status"], got["body"]) == (200, "banger")
    assert "MMDS V1 served to the guest at 169.254.170.2." in sim.console()
    client.close()
