"""The TAP pool, for real, inside a throwaway network namespace."""

from __future__ import annotations

import threading
import time

import pytest
from pyroute2 import IPRoute

from banger_core.errors import ConflictError, ValidationError
from banger_core.net import host
from banger_core.net.tappool import TapPool

pytestmark = pytest.mark.net


def _taps(netns: str) -> list[str]:
    return host.list_links("bgtap", netns=netns)


def _detach(netns: str, name: str) -> None:
    """Detach a TAP from its bridge and set it down (a stale leftover)."""
    with IPRoute(netns=netns) as ipr:
        index = ipr.link_lookup(ifname=name)[0]
        ipr.link("set", index=index, master=0, state="down")


def test_fill_creates_missing_with_smallest_free_numbers(netns: str, bridge: str) -> None:
    pool = TapPool(bridge, 3, netns=netns)
    try:
        assert pool.fill() == ["bgtap0", "bgtap1", "bgtap2"]
        assert pool.fill() == []
        assert pool.idle() == ["bgtap0", "bgtap1", "bgtap2"]
        assert _taps(netns) == ["bgtap0", "bgtap1", "bgtap2"]
        for name in _taps(netns):
            assert host.bridge_of(name, netns=netns) == bridge
    finally:
        pool.close()
    assert _taps(netns) == []


def test_acquire_release_and_background_refill(netns: str, bridge: str) -> None:
    pool = TapPool(bridge, 2, netns=netns)
    try:
        pool.fill()
        first = pool.acquire()
        assert first == "bgtap0"
        assert pool.in_use() == ["bgtap0"]
        assert pool.wait_idle(10)
        # the refill took the smallest free number, never the in-use one
        assert pool.idle() == ["bgtap1", "bgtap2"]
        assert host.bridge_of(first, netns=netns) == bridge
        second = pool.acquire()
        assert second == "bgtap1"
        assert pool.wait_idle(10)
        assert pool.idle() == ["bgtap2", "bgtap3"]
        # pool full: released taps are deleted
        pool.release(first)
        assert not host.link_exists(first, netns=netns)
        assert pool.in_use() == ["bgtap1"]
        # pool short: a released tap is kept idle
        pool.acquire()
        pool.acquire()  # bgtap2, bgtap3 out; refill creates bgtap0 + bgtap4
        assert pool.wait_idle(10)
        assert pool.idle() == ["bgtap0", "bgtap4"]
        assert pool.last_error is None
    finally:
        pool.close()
    # idle ones deleted, in-use ones left for their VMs
    assert _taps(netns) == ["bgtap1", "bgtap2", "bgtap3"]


def test_release_returns_to_short_pool(netns: str, bridge: str) -> None:
    pool = TapPool(bridge, 2, netns=netns)
    try:
        a = pool.acquire()
        pool.release(a)  # pool below size: kept, not deleted
        assert host.link_exists(a, netns=netns)
        assert a in pool.idle()
        pool.release(a)  # idempotent
        assert pool.in_use() == []
    finally:
        pool.close()
    assert _taps(netns) == []


def test_release_rejects_foreign_names(netns: str, bridge: str) -> None:
    pool = TapPool(bridge, 1, netns=netns)
    with pytest.raises(ValidationError, match="'eth0' does not belong"):
        pool.release("eth0")
    with pytest.raises(ValidationError):
        pool.release("bgtap01")
    pool.close()


def test_adopt_after_restart(netns: str, bridge: str) -> None:
    old = TapPool(bridge, 4, netns=netns)
    old.fill()  # bgtap0..3
    old.close(delete_idle=False)
    host.create_tap("bgtap7", bridge, netns=netns)
    host.create_tap("bgtapx", bridge, netns=netns)  # not a pool name: left alone
    _detach(netns, "bgtap3")

    pool = TapPool(bridge, 2, netns=netns)
    try:
        deleted = pool.adopt({"bgtap1", "bgtap9"})
        assert pool.in_use() == ["bgtap1", "bgtap9"]
        assert pool.idle() == ["bgtap0", "bgtap2"]
        assert deleted == ["bgtap3", "bgtap7"]
        assert _taps(netns) == ["bgtap0", "bgtap1", "bgtap2", "bgtapx"]
        # new names never collide with adopted in-use ones (bgtap9 may not exist yet)
        got = {pool.acquire(), pool.acquire(), pool.acquire()}
        assert got == {"bgtap0", "bgtap2", "bgtap3"}
        assert pool.wait_idle(10)
        assert set(pool.idle()).isdisjoint({"bgtap1", "bgtap9", *got})
    finally:
        pool.close()


def test_adopt_reattaches_idle_taps(netns: str, bridge: str) -> None:
    host.create_tap("bgtap0", bridge, netns=netns)
    _detach(netns, "bgtap0")
    assert host.bridge_of("bgtap0", netns=netns) is None
    pool = TapPool(bridge, 1, netns=netns)
    try:
        assert pool.adopt(set()) == []
        assert pool.idle() == ["bgtap0"]
        assert host.bridge_of("bgtap0", netns=netns) == bridge
    finally:
        pool.close()


def test_concurrent_acquire_never_duplicates(netns: str, bridge: str) -> None:
    pool = TapPool(bridge, 3, netns=netns)
    got: list[str] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            name = pool.acquire()
            with lock:
                got.append(name)
        except BaseException as exc:
            errors.append(exc)

    try:
        pool.fill()
        threads = [threading.Thread(target=worker) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert errors == []
        assert len(got) == len(set(got)) == 8
        assert pool.wait_idle(10)
        assert set(pool.idle()).isdisjoint(got)
        assert sorted(pool.in_use()) == sorted(got)
        for name in got:
            pool.release(name)
        assert len(pool.idle()) == 3
        assert pool.in_use() == []
        assert len(_taps(netns)) == 3
    finally:
        pool.close()
    assert _taps(netns) == []


def test_fill_skips_names_taken_by_non_taps(netns: str, bridge: str) -> None:
    host.ensure_bridge("bgtap0", "172.31.0.1/24", netns=netns)  # a bridge squatting a name
    pool = TapPool(bridge, 1, netns=netns)
    try:
        with pytest.raises(ConflictError, match="not a TAP"):
            pool.fill()
        assert pool.fill() == ["bgtap1"]
    finally:
        pool.close()
    assert _taps(netns) == ["bgtap0"]


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"size": -1}, "size -1"),
        ({"size": 2, "prefix": "averylongprefix"}, "prefix 'averylongprefix'"),
        ({"size": 2, "prefix": "9tap"}, "prefix '9tap'"),
    ],
)
def test_pool_validation(kwargs: dict, fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        TapPool("bgrbr0", **kwargs)


def test_release_of_unknown_or_twice_released_name_deletes(netns: str, bridge: str) -> None:
    pool = TapPool(bridge, 1, netns=netns)
    try:
        a, b = pool.acquire(), pool.acquire()
        assert pool.wait_idle(10)
        pool.release(a)  # pool full: deleted
        assert not host.link_exists(a, netns=netns)
        pool.acquire()  # pool short again
        pool.release(a)  # second release of a deleted tap: must not become idle
        assert a not in pool.idle()
        host.create_tap("bgtap42", bridge, netns=netns)  # a leftover nobody recorded
        pool.release("bgtap42")
        assert not host.link_exists("bgtap42", netns=netns)
        pool.release(b)
    finally:
        pool.close()


def test_release_during_refill_never_leaves_extra_spares(netns: str, bridge: str) -> None:
    pool = TapPool(bridge, 1, netns=netns)
    created = threading.Event()
    proceed = threading.Event()
    real_create = pool._create

    def slow_create(name: str) -> None:
        real_create(name)
        created.set()
        proceed.wait(10)

    try:
        pool.fill()
        pool._create = slow_create  # type: ignore[method-assign]
        taken = pool.acquire()  # starts a refill that blocks after creating its TAP
        assert created.wait(10)
        pool.release(taken)  # the pool is short while the refill is in flight: kept idle
        proceed.set()
        pool._create = real_create  # type: ignore[method-assign]
        assert pool.wait_idle(10)
        deadline = time.monotonic() + 5
        while len(_taps(netns)) > 1 and time.monotonic() < deadline:
            time.sleep(0.1)  # the refill deletes its spare after wait_idle saw a full pool
        assert pool.idle() == [taken]
        assert _taps(netns) == [taken]  # the refill's spare was deleted, not kept
    finally:
        proceed.set()
        pool.close()
