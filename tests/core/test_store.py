"""The store: connection settings on every pooled connection, migrations, constraints."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import peewee
import pytest

from banger_core.errors import BangerError
from banger_core.store import SQLITE_PRAGMAS, Image, VMRecord, open_store
from banger_core.store.db import SCHEMA_VERSION, schema_version

EXPECTED = {"journal_mode": "wal", "busy_timeout": 5000, "foreign_keys": 1, "synchronous": 1}


@pytest.fixture
def store(tmp_path: Path):
    db = open_store(tmp_path / "banger.db")
    try:
        yield db
    finally:
        db.close_all()


def pragmas(db) -> dict[str, object]:
    return {name: db.execute_sql(f"PRAGMA {name}").fetchone()[0] for name in EXPECTED}


def make_image(name: str = "debian") -> Image:
    return Image.create(id=f"img-{name}", name=name, kernel="/k", rootfs="/r")


def make_vm(image: Image, name: str = "vm1", ip: str = "172.30.0.2") -> VMRecord:
    return VMRecord.create(
        id=f"vm-{name}",
        name=name,
        image=image,
        cpus=1,
        memory_mib=512,
        disk_size=1 << 30,
        ip=ip,
        mac="02:00:00:00:00:02",
    )


def test_declared_pragmas_cover_the_required_settings() -> None:
    for name, value in EXPECTED.items():
        assert SQLITE_PRAGMAS[name] == value


def test_pragmas_hold_on_a_second_pooled_connection_from_another_thread(store) -> None:
    with store.connection_context():
        first_conn = store.connection()
        assert pragmas(store) == EXPECTED
        seen: dict[str, object] = {}

        def other_thread() -> None:
            # The pool hands each thread its own connection: a new one here.
            with store.connection_context():
                seen["same"] = store.connection() is first_conn
                seen.update(pragmas(store))

        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join()
    assert seen.pop("same") is False
    assert seen == EXPECTED


def test_migrations_set_user_version(store, tmp_path: Path) -> None:
    with store.connection_context():
        assert schema_version(store) == SCHEMA_VERSION >= 1
        assert {"images", "vms"} <= set(store.get_tables())
    raw = sqlite3.connect(tmp_path / "banger.db")
    assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    raw.close()


def test_reopening_keeps_data(tmp_path: Path) -> None:
    db = open_store(tmp_path / "banger.db")
    with db.connection_context():
        make_image()
    db.close_all()
    db = open_store(tmp_path / "banger.db")
    with db.connection_context():
        assert Image.get(Image.name == "debian").rootfs == "/r"
    db.close_all()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "banger.db"
    raw = sqlite3.connect(path)
    raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    raw.commit()
    raw.close()
    with pytest.raises(BangerError, match="newer than this banger") as err:
        open_store(path)
    assert str(path) in str(err.value)
    assert "upgrade banger" in str(err.value)


def test_unique_names(store) -> None:
    with store.connection_context():
        image = make_image()
        with pytest.raises(peewee.IntegrityError), store.atomic():
            make_image()
        make_vm(image)
        with pytest.raises(peewee.IntegrityError), store.atomic():
            make_vm(image, name="vm1", ip="172.30.0.3")


def test_foreign_keys_enforced(store) -> None:
    with store.connection_context():
        image = make_image()
        make_vm(image)
        with pytest.raises(peewee.IntegrityError), store.atomic():
            image.delete_instance()
        assert Image.select().count() == 1
        with pytest.raises(peewee.IntegrityError), store.atomic():
            VMRecord.create(
                id="vm-x",
                name="x",
                image="no-such-image",
                cpus=1,
                memory_mib=1,
                disk_size=1,
                ip="172.30.0.9",
                mac="m",
            )


def test_plugin_state_is_a_json_map(store) -> None:
    with store.connection_context():
        vm = make_vm(make_image())
        assert VMRecord.get_by_id(vm.id).plugin_state == {}
        vm.plugin_state = {"workdisk": {"path": "/x", "size": 3}, "dns": {}}
        vm.save()
        assert VMRecord.get_by_id(vm.id).plugin_state == {
            "workdisk": {"path": "/x", "size": 3},
            "dns": {},
        }


def test_v2_moves_the_work_seed_into_image_artifacts(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = open_store(path)
    db.close_all()
    raw = sqlite3.connect(path)  # make it look like a v2 store with an image and a work seed
    raw.execute("ALTER TABLE images DROP COLUMN artifacts")
    raw.execute(
        "INSERT INTO images (id, name, kernel, rootfs, work_seed, managed, os, "
        "fingerprint, created_at, kernel_caps) VALUES ('i1', 'old', '/k', '/r', "
        "'/seed.ext4', 0, '', '', 0, '{}')"
    )
    raw.execute("PRAGMA user_version = 2")
    raw.commit()
    raw.close()
    db = open_store(path)
    try:
        image = Image.get_by_id("i1")
        assert image.artifacts == {"work-seed": "/seed.ext4"} and image.work_seed is None
        assert schema_version(db) == SCHEMA_VERSION
    finally:
        db.close_all()


def test_v4_makes_existing_vms_and_images_roots(tmp_path: Path) -> None:
    """A store from before owners: its VMs and images become root's (uid 0) and keep working."""
    path = tmp_path / "old.db"
    db = open_store(path)
    db.close_all()
    raw = sqlite3.connect(path)  # make it look like a v3 store with an image and a VM
    raw.execute("ALTER TABLE vms DROP COLUMN owner_uid")
    raw.execute("ALTER TABLE images DROP COLUMN owner_uid")
    raw.execute(
        "INSERT INTO images (id, name, kernel, rootfs, managed, os, fingerprint, created_at, "
        "kernel_caps, artifacts) VALUES ('i1', 'old', '/k', '/r', 0, '', '', 0, '{}', '{}')"
    )
    raw.execute(
        "INSERT INTO vms (id, name, image_id, cpus, memory_mib, disk_size, state, ip, mac, "
        "root_disk, root_strategy, plugin_state, last_error, created_at, updated_at) VALUES "
        "('v1', 'oldvm', 'i1', 1, 256, 0, 'stopped', '172.30.0.5', 'm', '', '', '{}', '', 0, 0)"
    )
    raw.execute("PRAGMA user_version = 3")
    raw.commit()
    raw.close()
    db = open_store(path)
    try:
        assert schema_version(db) == SCHEMA_VERSION == 4
        assert VMRecord.get_by_id("v1").owner_uid == 0
        assert Image.get_by_id("i1").owner_uid == 0
        assert VMRecord.get_by_id("v1").name == "oldvm"
    finally:
        db.close_all()
