"""Long-running work as operations: begin, status with named stages, cancel.

``vm.create`` and ``image.build`` return an operation id at once; the CLI
polls ``operation.status`` and shows each stage with its elapsed time.
Cancelling sets the operation's cancel event; the work checks it between
steps (``op.check_cancelled()``) and rolls back.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from loguru import logger

from banger_core.errors import BangerError, CancelledError, NotFoundError

KEEP_FINISHED_SECONDS = 600.0


@dataclass
class Stage:
    """One named step of an operation."""

    name: str
    started: float
    ended: float | None = None
    status: str = "running"  # running | done | failed | cancelled
    detail: str = ""

    def as_dict(self, now: float) -> dict[str, Any]:
        """JSON-ready form with the elapsed time so far."""
        return {
            "name": self.name,
            "status": self.status,
            "detail": self.detail,
            "elapsed": round((self.ended or now) - self.started, 3),
        }


@dataclass
class Operation:
    """A unit of long work running in a thread."""

    id: str
    kind: str
    target: str
    started: float = field(default_factory=time.time)
    ended: float | None = None
    state: str = "running"  # running | succeeded | failed | cancelled
    stages: list[Stage] = field(default_factory=list)
    result: Any = None
    error: dict[str, str] | None = None
    cancel_event: threading.Event = field(default_factory=threading.Event)
    cancel_reason: str = ""
    owner_uid: int = 0
    """The uid that began it: only it (and root) may see or cancel it."""

    @contextmanager
    def stage(self, name: str, detail: str = "") -> Iterator[Stage]:
        """Run a named stage; records its timing and outcome."""
        self.check_cancelled()
        st = Stage(name, time.time(), detail=detail)
        self.stages.append(st)
        try:
            yield st
        except CancelledError:
            st.status = "cancelled"
            raise
        except BaseException:
            st.status = "failed"
            raise
        else:
            st.status = "done"
        finally:
            st.ended = time.time()
            logger.info(
                "{} {}: stage {!r} {} in {:.3f}s",
                self.kind,
                self.target,
                name,
                st.status,
                st.ended - st.started,
            )

    @property
    def cancelled(self) -> bool:
        """Whether the user asked to cancel."""
        return self.cancel_event.is_set()

    def check_cancelled(self) -> None:
        """Raise :class:`CancelledError` when the user cancelled."""
        if self.cancel_event.is_set():
            # The user's words, not the RPC method's: "`banger vm create web` cancelled".
            command = " ".join(["banger", *self.kind.split("."), *filter(None, [self.target])])
            raise CancelledError(f"`{command}` cancelled")

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready status."""
        now = time.time()
        return {
            "id": self.id,
            "kind": self.kind,
            "target": self.target,
            "state": self.state,
            "elapsed": round((self.ended or now) - self.started, 3),
            "stages": [s.as_dict(now) for s in self.stages],
            "result": self.result,
            "error": self.error,
        }


class OperationManager:
    """Starts operations in threads and answers status and cancel requests."""

    def __init__(self) -> None:
        self._ops: dict[str, Operation] = {}
        self._lock = threading.Lock()
        self.error_translators: list[Callable[[BaseException], BangerError | None]] = []

    def begin(
        self, kind: str, target: str, work: Callable[[Operation], Any], owner_uid: int = 0
    ) -> Operation:
        """Start ``work(op)`` in a thread and return the operation at once."""
        op = Operation(id=uuid.uuid4().hex[:12], kind=kind, target=target, owner_uid=owner_uid)
        with self._lock:
            self._prune()
            self._ops[op.id] = op
        thread = threading.Thread(
            target=self._run, args=(op, work), daemon=True, name=f"op-{kind}-{op.id}"
        )
        thread.start()
        return op

    def _run(self, op: Operation, work: Callable[[Operation], Any]) -> None:
        try:
            op.result = work(op)
            op.state = "succeeded"
        except CancelledError as exc:
            message = (
                f"{op.kind} {op.target} cancelled because {op.cancel_reason}"
                if op.cancel_reason
                else str(exc)
            )
            op.state, op.error = "cancelled", {"code": exc.code, "message": message}
        except BangerError as exc:
            op.state, op.error = "failed", {"code": exc.code, "message": str(exc)}
        except Exception as exc:
            known = next((e for e in (t(exc) for t in self.error_translators) if e), None)
            if known is not None:
                logger.error("operation {} {} failed: {}", op.kind, op.id, known)
                op.state, op.error = "failed", {"code": known.code, "message": str(known)}
                return
            logger.exception("operation {} {} crashed", op.kind, op.id)
            op.state = "failed"
            op.error = {"code": "error", "message": f"internal error: {type(exc).__name__}: {exc}"}
        finally:
            op.ended = time.time()
            logger.info("operation {} {} {} {}", op.kind, op.target, op.id, op.state)

    def get(self, op_id: str) -> Operation:
        """Find an operation by id."""
        with self._lock:
            op = self._ops.get(op_id)
        if op is None:
            raise NotFoundError(f"no operation {op_id!r}")
        return op

    def cancel(self, op_id: str) -> Operation:
        """Ask an operation to stop and roll back."""
        op = self.get(op_id)
        op.cancel_event.set()
        return op

    def cancel_all(self, reason: str) -> None:
        """Ask every running operation to stop and roll back, saying why."""
        for op in self.running():
            op.cancel_reason = reason
            op.cancel_event.set()

    def running(self) -> list[Operation]:
        """Operations still in progress."""
        with self._lock:
            return [o for o in self._ops.values() if o.state == "running"]

    def _prune(self) -> None:
        cutoff = time.time() - KEEP_FINISHED_SECONDS
        for op_id in [k for k, o in self._ops.items() if o.ended and o.ended < cutoff]:
            del self._ops[op_id]
