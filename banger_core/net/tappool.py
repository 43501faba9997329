"""A pool of idle, bridge-attached TAP devices kept warm for VM starts.

Creating a TAP and attaching it to the bridge is a few netlink round trips;
the pool does that ahead of time so ``acquire()`` is a set operation. Names
are ``<prefix><n>``; every name is in exactly one of three places (idle, in
use, being created), all guarded by one lock, so an idle name can never be
handed out while a VM holds it. Netlink calls happen outside the lock.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterable

from loguru import logger

from banger_core.errors import BangerError, ConflictError, ValidationError
from banger_core.net import host

_PREFIX_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,9}$")


class TapPool:
    """Keeps ``size`` idle TAP devices attached to ``bridge``.

    ``netns`` selects the network namespace (None: the current one);
    ``owner_uid`` owns every TAP the pool creates (the user Firecracker runs as).
    """

    def __init__(
        self,
        bridge: str,
        size: int,
        prefix: str = "bgtap",
        netns: str | None = None,
        *,
        owner_uid: int = 0,
    ) -> None:
        host.validate_ifname(bridge)
        if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= 1024:
            raise ValidationError(f"TAP pool size {size!r} must be an integer from 0 to 1024")
        if not _PREFIX_RE.match(prefix or ""):
            raise ValidationError(
                f"TAP prefix {prefix!r} must start with a letter and have at most 10 "
                "letters, digits, '_' or '-' (names are <prefix><number>, 15 chars max)"
            )
        self.bridge = bridge
        self.size = size
        self.prefix = prefix
        self.netns = netns
        self.owner_uid = owner_uid
        self._name_re = re.compile(rf"^{re.escape(prefix)}(0|[1-9][0-9]*)$")
        self._lock = threading.Lock()
        self._fill_lock = threading.Lock()  # one fill at a time
        self._idle: set[str] = set()
        self._in_use: set[str] = set()
        self._creating: set[str] = set()
        # Names held by something that is not a TAP: never pick them again.
        self._foreign: set[str] = set()
        self._closed = False
        self._wake = threading.Event()
        self._worker: threading.Thread | None = None
        self.last_error: BaseException | None = None
        """The last error of a background refill (None after a successful one)."""

    # -- introspection ------------------------------------------------------

    def idle(self) -> list[str]:
        """Names of the idle TAPs, in pool order."""
        with self._lock:
            return sorted(self._idle, key=self._number)

    def in_use(self) -> list[str]:
        """Names of the TAPs handed out and not yet released."""
        with self._lock:
            return sorted(self._in_use, key=self._number)

    def owns(self, name: str) -> bool:
        """True when ``name`` has this pool's naming pattern (``<prefix><n>``)."""
        return bool(self._name_re.match(name))

    # -- lifecycle ----------------------------------------------------------

    def fill(self) -> list[str]:
        """Create idle TAPs until ``size`` are idle; return the names created.

        Safe to call at any time and from any thread; concurrent calls are
        serialized. Raises the first creation error (what was created stays).
        """
        created: list[str] = []
        with self._fill_lock:
            while True:
                with self._lock:
                    if self._closed or len(self._idle) >= self.size:
                        return created
                    name = self._reserve_name()
                if not self._create_reserved(name, self._idle, as_spare=True):
                    self._delete_quietly(name)
                    return created
                created.append(name)

    def acquire(self) -> str:
        """Hand out an idle TAP (or create one now if none is idle).

        The TAP is attached to the bridge and up. Starts a background refill.
        """
        with self._lock:
            if self._closed:
                raise BangerError(f"TAP pool on bridge {self.bridge!r} is closed")
            if self._idle:
                name = min(self._idle, key=self._number)
                self._idle.discard(name)
                self._in_use.add(name)
                fresh = False
            else:
                name = self._reserve_name()
                fresh = True
        if fresh:
            self._create_reserved(name, self._in_use)
        self._kick_refill()
        return name

    def _create_reserved(self, name: str, into: set[str], *, as_spare: bool = False) -> bool:
        """Create the reserved TAP ``name`` and move it into ``into`` in one locked step.

        The reservation ends either way. With ``as_spare`` (a refill) returns
        False, adding nothing, when the pool was closed or is already full
        meanwhile (a TAP released during the refill filled it); the caller
        then deletes the new TAP.
        """
        try:
            self._create(name)
        except BaseException:
            with self._lock:
                self._creating.discard(name)
            raise
        with self._lock:
            self._creating.discard(name)
            if as_spare and (self._closed or len(self._idle) >= self.size):
                return False
            into.add(name)
        return True

    def release(self, name: str) -> None:
        """Give back a TAP: keep it idle if the pool is short, else delete it.

        A pool-named TAP the pool does not know as in use is deleted (if it
        exists). Raises :class:`ValidationError` for names that are not this pool's.
        """
        if not self.owns(name):
            raise ValidationError(
                f"TAP {name!r} does not belong to the pool (names are {self.prefix}<number>)"
            )
        with self._lock:
            if name in self._idle or name in self._creating:
                return  # already given back (release is idempotent)
            known = name in self._in_use
            self._in_use.discard(name)
            # A name the pool never handed out (or already deleted) may not
            # exist any more: only delete it, never put it in the idle set.
            keep = known and not self._closed and len(self._idle) < self.size
            if keep:
                self._idle.add(name)
            else:
                # Hold the name until the link is gone so it is not reused meanwhile.
                self._creating.add(name)
        if not keep:
            try:
                host.delete_link(name, netns=self.netns)
            finally:
                with self._lock:
                    self._creating.discard(name)

    def adopt(self, in_use: Iterable[str]) -> list[str]:
        """Take over existing ``<prefix><n>`` links at daemon start.

        Links named in ``in_use`` are recorded as handed out; others become
        idle (re-attached to the bridge and brought up) up to ``size``; the
        rest are deleted. Returns the names deleted.
        """
        in_use_set = {n for n in in_use if self.owns(n)}
        existing = [n for n in host.list_links(self.prefix, netns=self.netns) if self.owns(n)]
        spare = sorted((n for n in existing if n not in in_use_set), key=self._number)
        with self._lock:
            self._in_use |= in_use_set
            self._idle -= in_use_set
            room = max(0, self.size - len(self._idle))
            candidates = [
                n
                for n in spare
                if n not in self._idle and n not in self._creating and n not in self._in_use
            ]
            keep, extra = candidates[:room], candidates[room:]
            self._creating.update(keep)
        ready: list[str] = []
        try:
            for name in keep:
                self._create(name)  # idempotent: re-attach and bring up
                ready.append(name)
        finally:
            with self._lock:
                self._creating.difference_update(keep)
                self._idle.update(ready)
        for name in extra:
            host.delete_link(name, netns=self.netns)
        return extra

    def close(self, delete_idle: bool = True) -> None:
        """Stop refilling; delete idle TAPs when ``delete_idle``. In-use TAPs stay."""
        with self._lock:
            self._closed = True
        self._wake.set()
        worker = self._worker
        if worker is not None:
            worker.join(timeout=30)
        # Taking the fill lock waits for an in-flight synchronous fill.
        with self._fill_lock, self._lock:
            idle = sorted(self._idle, key=self._number)
            if delete_idle:
                self._idle.clear()
        if not delete_idle:
            return
        errors: list[str] = []
        for name in idle:
            try:
                host.delete_link(name, netns=self.netns)
            except BangerError as exc:
                errors.append(str(exc))
        if errors:
            raise BangerError("could not delete idle TAPs: " + "; ".join(errors))

    def __enter__(self) -> TapPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- internals ----------------------------------------------------------

    def _number(self, name: str) -> int:
        return int(name[len(self.prefix) :])

    def _reserve_name(self) -> str:
        """Pick the smallest free ``<prefix><n>`` and mark it as being created.

        Caller holds ``self._lock``.
        """
        taken = self._idle | self._in_use | self._creating | self._foreign
        n = 0
        while f"{self.prefix}{n}" in taken:
            n += 1
        name = f"{self.prefix}{n}"
        host.validate_ifname(name)
        self._creating.add(name)
        return name

    def _create(self, name: str) -> None:
        try:
            host.create_tap(name, self.bridge, owner_uid=self.owner_uid, netns=self.netns)
        except ConflictError:
            with self._lock:
                self._foreign.add(name)
            raise

    def _delete_quietly(self, name: str) -> None:
        try:
            host.delete_link(name, netns=self.netns)
        except BangerError as exc:
            logger.warning("TAP pool: could not delete {}: {}", name, exc)

    def _kick_refill(self) -> None:
        with self._lock:
            if self._closed:
                return
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(
                    target=self._refill_loop, name=f"tappool-{self.bridge}", daemon=True
                )
                self._worker.start()
        self._wake.set()

    def _refill_loop(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._closed:
                return
            try:
                self.fill()
                self.last_error = None
            except Exception as exc:  # keep the worker alive; acquire() still works
                self.last_error = exc
                logger.warning("TAP pool refill on {} failed: {}", self.bridge, exc)

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until ``size`` TAPs are idle and none is being created; True if in time.

        For tests and start-up; the daemon never needs to wait.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self._idle) >= self.size and not self._creating:
                    return True
            time.sleep(0.01)
        return False
