"""Long work as operations: begin, status with named stages, cancel."""

from __future__ import annotations

import threading
import time

import pytest

from banger_core.daemon.operations import OperationManager
from banger_core.errors import NotFoundError, ValidationError


def wait_done(manager: OperationManager, op_id: str, timeout: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = manager.get(op_id).as_dict()
        if status["state"] != "running":
            return status
        time.sleep(0.01)
    raise AssertionError(f"operation {op_id} still running")


def test_begin_returns_at_once_and_reports_stages() -> None:
    manager = OperationManager()
    gate = threading.Event()

    def work(op):
        with op.stage("prepare", detail="disk"):
            pass
        with op.stage("boot"):
            gate.wait(10)
        return {"name": "vm1"}

    op = manager.begin("vm.create", "vm1", work)
    status = op.as_dict()
    assert status["state"] == "running"
    assert (status["kind"], status["target"]) == ("vm.create", "vm1")
    deadline = time.monotonic() + 5
    while len(op.stages) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    running = manager.get(op.id).as_dict()
    assert [(s["name"], s["status"]) for s in running["stages"]] == [
        ("prepare", "done"),
        ("boot", "running"),
    ]
    assert running["stages"][0]["detail"] == "disk"
    assert manager.running() == [op]
    gate.set()
    done = wait_done(manager, op.id)
    assert done["state"] == "succeeded"
    assert done["result"] == {"name": "vm1"}
    assert [s["status"] for s in done["stages"]] == ["done", "done"]
    assert all(s["elapsed"] >= 0 for s in done["stages"])
    assert manager.running() == []


def test_cancel_stops_at_the_next_check() -> None:
    manager = OperationManager()
    in_stage = threading.Event()

    def work(op):
        with op.stage("download"):
            in_stage.set()
            while True:
                op.check_cancelled()
                time.sleep(0.01)

    op = manager.begin("image.build", "debian", work)
    assert in_stage.wait(5)
    manager.cancel(op.id)
    status = wait_done(manager, op.id)
    assert status["state"] == "cancelled"
    assert status["error"]["code"] == "cancelled"
    # The user's command, not the internal method name ("image.build debian cancelled").
    assert status["error"]["message"] == "`banger image build debian` cancelled"
    assert status["stages"][0]["status"] == "cancelled"


def test_cancelled_before_a_stage_never_starts_it() -> None:
    manager = OperationManager()
    gate = threading.Event()

    def work(op):
        gate.wait(5)
        with op.stage("never"):
            pass

    op = manager.begin("vm.create", "x", work)
    manager.cancel(op.id)
    gate.set()
    status = wait_done(manager, op.id)
    assert status["state"] == "cancelled"
    assert status["stages"] == []


def test_failures_are_reported_with_code() -> None:
    manager = OperationManager()

    def bad_input(op):
        with op.stage("validate"):
            raise ValidationError("name 'X' is not a DNS label")

    def crash(op):
        raise RuntimeError("bug")

    status = wait_done(manager, manager.begin("vm.create", "X", bad_input).id)
    assert status["state"] == "failed"
    assert status["error"] == {"code": "invalid", "message": "name 'X' is not a DNS label"}
    assert status["stages"][0]["status"] == "failed"
    status = wait_done(manager, manager.begin("vm.create", "Y", crash).id)
    assert status["error"]["message"] == "internal error: RuntimeError: bug"


def test_unknown_operation() -> None:
    manager = OperationManager()
    with pytest.raises(NotFoundError, match="no operation 'nope'"):
        manager.get("nope")
    with pytest.raises(NotFoundError):
        manager.cancel("nope")
