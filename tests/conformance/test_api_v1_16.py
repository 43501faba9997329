"""The API as Firecracker v1.16.1 serves it: the drift items of issue 16, on every back-end.

Each case cites the upstream file (firecracker-microvm/firecracker @ v1.16.1)
its expected answer is read from. Runs for the back-ends being 1.16.1.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_banger.fcsim import raw_request
from pytest_banger.kernels import synthetic_kernel

from .conftest import Backend

pytestmark = pytest.mark.net

NOT_BEFORE = "The requested operation is not supported before starting the microVM."


@pytest.fixture
def v116(backend: Backend) -> Backend:
    if backend.version != "1.16.1":
        pytest.skip(
            "the v1.16.1 API (the stand-ins emulate the loader, ACPI and PCI of older releases)"
        )
    return backend


def call(sock: Path, method: str, path: str, body: object = None) -> tuple[int, object]:
    """One request; ``(status, parsed JSON body or None)``."""
    raw = None if body is None else (body if isinstance(body, str) else json.dumps(body))
    status, _, data = raw_request(sock, method, path, raw)
    return status, json.loads(data) if data.strip() else None


def boot(backend: Backend, sock: Path) -> None:
    """InstanceStart with a loadable kernel and no drives (panic=0: the VMM keeps running)."""
    kernel = synthetic_kernel(backend.tmp / "vmlinux")
    assert call(sock, "PUT", "/machine-config", {"vcpu_count": 1, "mem_size_mib": 128})[0] == 204
    assert (
        call(
            sock, "PUT", "/boot-source", {"kernel_image_path": str(kernel), "boot_args": "panic=0"}
        )[0]
        == 204
    )
    assert call(sock, "PUT", "/actions", {"action_type": "InstanceStart"}) == (204, None)


def test_mmds_size_limit(v116: Backend) -> None:
    """``--mmds-size-limit``: src/firecracker/src/main.rs, src/vmm/src/mmds/data_store.rs
    (``put_data``/``patch_data``), api_server/parsed_request.rs (413 for MmdsLimitExceeded)."""
    sock = v116.start("--mmds-size-limit", "40")
    too_big = {"latest": {"meta-data": "x" * 40}}
    status, body = call(sock, "PUT", "/mmds", too_big)
    assert (status, body) == (
        413,
        {"fault_message": "MMDS limit exceeded error: The MMDS patch request doesn't fit."},
    )
    assert call(sock, "PUT", "/mmds", {"a": "1"})[0] == 204
    status, body = call(sock, "PATCH", "/mmds", {"b": "y" * 40})
    assert status == 413
    assert call(sock, "GET", "/mmds") == (200, {"a": "1"})  # unchanged


def test_metadata_file_fills_mmds(v116: Backend) -> None:
    """``--metadata FILE``: src/vmm/src/rpc_interface.rs ``build_microvm_from_requests``."""
    meta = v116.tmp / "meta.json"
    meta.write_text(json.dumps({"latest": {"meta-data": {"ami-id": "ami-12345678"}}}))
    sock = v116.start("--metadata", str(meta))
    assert call(sock, "GET", "/mmds") == (
        200,
        {"latest": {"meta-data": {"ami-id": "ami-12345678"}}},
    )
    meta.write_text("{not json")
    res = v116.run("--api-sock", str(v116.tmp / "bad.sock"), "--metadata", str(meta))
    assert res.returncode != 0


def test_balloon_paths_and_fields(v116: Backend) -> None:
    """src/firecracker/src/api_server/request/balloon.rs (paths), src/vmm/src/vmm_config/balloon.rs
    (``free_page_hinting``, ``free_page_reporting``), rpc_interface.rs (pre-boot refusals)."""
    sock = v116.start()
    assert call(sock, "PUT", "/balloon", {"amount_mib": 0, "deflate_on_oom": False})[0] == 204
    assert call(sock, "GET", "/balloon") == (
        200,
        {
            "amount_mib": 0,
            "deflate_on_oom": False,
            "stats_polling_interval_s": 0,
            "free_page_hinting": False,
            "free_page_reporting": False,
        },
    )
    assert call(sock, "GET", "/balloon/foo") == (
        400,
        {"fault_message": "Unrecognized GET request path `foo`."},
    )
    assert call(sock, "GET", "/balloon/hinting") == (
        400,
        {"fault_message": "Unrecognized GET request path `/hinting/`."},
    )
    assert call(sock, "GET", "/balloon/hinting/status") == (400, {"fault_message": NOT_BEFORE})
    assert call(sock, "PATCH", "/balloon/hinting/start") == (400, {"fault_message": NOT_BEFORE})
    assert call(sock, "PATCH", "/balloon/hinting/foo") == (
        400,
        {"fault_message": "Unrecognized PATCH request path `/hinting/foo`."},
    )


def test_free_page_hinting_after_boot(v116: Backend) -> None:
    """src/vmm/src/devices/virtio/balloon/device.rs (``start_hinting``, ``get_hinting_status``,
    ``stop_hinting``; HintingNotEnabled), src/vmm/src/lib.rs (``Balloon: {0}``)."""
    sock = v116.start()
    body = {"amount_mib": 0, "deflate_on_oom": False, "free_page_hinting": True}
    assert call(sock, "PUT", "/balloon", body)[0] == 204
    boot(v116, sock)
    assert call(sock, "GET", "/balloon/hinting/status") == (200, {"host_cmd": 0, "guest_cmd": None})
    assert call(sock, "PATCH", "/balloon/hinting/start") == (204, None)
    assert call(sock, "GET", "/balloon/hinting/status") == (200, {"host_cmd": 2, "guest_cmd": None})
    assert call(sock, "PATCH", "/balloon/hinting/stop") == (204, None)
    assert call(sock, "GET", "/balloon/hinting/status")[1] == {"host_cmd": 1, "guest_cmd": None}

    other = v116.start()
    assert call(other, "PUT", "/balloon", {"amount_mib": 0, "deflate_on_oom": False})[0] == 204
    boot(v116, other)
    assert call(other, "PATCH", "/balloon/hinting/start") == (
        400,
        {
            "fault_message": "Balloon update error: Balloon: Attempting to use hinting when "
            "not enabled"
        },
    )


def test_vm_config_fields(v116: Backend) -> None:
    """src/vmm/src/resources.rs ``impl From<&VmResources> for VmmConfig``: boot-source is
    ``BootSourceConfig::default()`` before PUT, logger/metrics/cpu-config always null,
    ``pmem`` and ``memory-hotplug`` present."""
    sock = v116.start()
    status, config = call(sock, "GET", "/vm/config")
    assert status == 200 and isinstance(config, dict)
    assert config["boot-source"] == {
        "kernel_image_path": "",
        "initrd_path": None,
        "boot_args": None,
    }
    assert config["pmem"] == [] and config["memory-hotplug"] is None
    log = v116.tmp / "fc.log"
    log.touch()
    assert call(sock, "PUT", "/logger", {"log_path": str(log), "level": "Info"})[0] == 204
    metrics = v116.tmp / "metrics.json"
    metrics.touch()
    assert call(sock, "PUT", "/metrics", {"metrics_path": str(metrics)})[0] == 204
    config = call(sock, "GET", "/vm/config")[1]
    assert isinstance(config, dict)
    assert config["logger"] is None and config["metrics"] is None and config["cpu-config"] is None
    assert list(config) == [
        "balloon",
        "drives",
        "boot-source",
        "cpu-config",
        "logger",
        "machine-config",
        "metrics",
        "mmds-config",
        "network-interfaces",
        "vsock",
        "entropy",
        "pmem",
        "memory-hotplug",
    ]


def test_delete_and_patch_pmem(v116: Backend) -> None:
    """src/firecracker/src/api_server/parsed_request.rs (DELETE routes, ``method_to_error``,
    ``InvalidPathMethod``), request/hotplug/mod.rs (``parse_unplug_device``),
    request/pmem.rs (``parse_patch_pmem``), src/vmm/src/rpc_interface.rs (pre-boot),
    src/vmm/src/device_manager/mod.rs (``hot_unplug_device``: PCI only)."""
    sock = v116.start()
    for path in ("/drives/rootfs", "/network-interfaces/eth0", "/pmem/p0"):
        assert call(sock, "DELETE", path) == (400, {"fault_message": NOT_BEFORE})
    assert call(sock, "DELETE", "/drives") == (400, {"fault_message": "The ID cannot be empty."})
    assert call(sock, "DELETE", "/drives/a-b") == (
        400,
        {
            "fault_message": "API Resource IDs can only contain alphanumeric characters and "
            "underscores."
        },
    )
    assert call(sock, "DELETE", "/machine-config") == (
        400,
        {"fault_message": "Invalid request method and/or path: DELETE machine-config."},
    )
    assert call(sock, "PATCH", "/pmem/p0", {"id": "p1"}) == (
        400,
        {"fault_message": "The id from the path does not match the id from the body!"},
    )
    assert call(sock, "PATCH", "/pmem/p0", {"id": "p0"}) == (400, {"fault_message": NOT_BEFORE})
    boot(v116, sock)
    assert call(sock, "DELETE", "/drives/rootfs") == (400, {"fault_message": "PCI is not enabled"})
    assert call(sock, "PATCH", "/pmem/p0", {"id": "p0"}) == (204, None)


def test_flush_metrics_writes_upstreams_groups(v116: Backend) -> None:
    """``FlushMetrics`` writes v1.16.1's metric groups: src/vmm/src/logger/metrics.rs
    ``FirecrackerMetrics`` (and the devices' ``flush_metrics``), in that order."""
    sock = v116.start()
    metrics = v116.tmp / "metrics.json"
    metrics.touch()
    assert call(sock, "PUT", "/metrics", {"metrics_path": str(metrics)})[0] == 204
    boot(v116, sock)
    assert call(sock, "PUT", "/actions", {"action_type": "FlushMetrics"}) == (204, None)
    line = json.loads(metrics.read_text().splitlines()[-1])
    assert list(line) == [
        "utc_timestamp_ms",
        "api_server",
        "balloon",
        "block",
        "deprecated_api",
        "get_api_requests",
        "i8042",
        "uart",
        "latencies_us",
        "logger",
        "mmds",
        "net",
        "patch_api_requests",
        "put_api_requests",
        "seccomp",
        "vcpu",
        "vmm",
        "signals",
        "vsock",
        "entropy",
        "pmem",
        "interrupts",
        "memory_hotplug",
    ]
    assert set(line["api_server"]) == {"process_startup_time_us", "process_startup_time_cpu_us"}
    assert line["vcpu"]["exit_io_in_agg"] == {"min_us": 0, "max_us": 0, "sum_us": 0}
    assert (
        "instance_start" in line["put_api_requests"] or "actions_count" in line["put_api_requests"]
    )
    assert "state" not in line["vmm"]  # no invented keys
