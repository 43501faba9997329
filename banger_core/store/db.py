"""Opening the store: connection settings and schema migrations.

SQLite settings are connection-scoped, so they are given to the pool as
``pragmas`` and applied by peewee to *every* connection it opens, not run
once after the first connect (the Go system learnt this the hard way).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import peewee
from playhouse.pool import PooledSqliteDatabase

from banger_core.errors import BangerError
from banger_core.store.models import ALL_MODELS, database_proxy

SQLITE_PRAGMAS: dict[str, object] = {
    "journal_mode": "wal",
    "busy_timeout": 5000,
    "foreign_keys": 1,
    "synchronous": 1,  # NORMAL: durable with WAL, fast
    "temp_store": 2,  # MEMORY
}


def _v1(db: peewee.Database) -> None:
    db.create_tables(ALL_MODELS)


def _v2(db: peewee.Database) -> None:
    """Images record their kernel's capabilities (older rows: empty, i.e. unknown)."""
    columns = {c.name for c in db.get_columns("images")}
    if "kernel_caps" not in columns:  # a store made at v1 by an older banger
        db.execute_sql("ALTER TABLE images ADD COLUMN kernel_caps TEXT NOT NULL DEFAULT '{}'")


def _v3(db: peewee.Database) -> None:
    """Images carry plugins' build artifacts (the work seed became the workdisk plugin's)."""
    columns = {c.name for c in db.get_columns("images")}
    if "artifacts" not in columns:
        db.execute_sql("ALTER TABLE images ADD COLUMN artifacts TEXT NOT NULL DEFAULT '{}'")
    db.execute_sql(
        "UPDATE images SET artifacts = json_object('work-seed', work_seed), "
        "work_seed = NULL WHERE work_seed IS NOT NULL"
    )


def _v4(db: peewee.Database) -> None:
    """VMs and images record their owner's uid; existing ones become root's (uid 0),
    so they keep working for root and are not opened to socket_group members."""
    for table in ("vms", "images"):
        if not db.table_exists(table):  # a partial store: the table comes with today's schema
            continue
        columns = {c.name for c in db.get_columns(table)}
        if "owner_uid" not in columns:
            db.execute_sql(f"ALTER TABLE {table} ADD COLUMN owner_uid INTEGER NOT NULL DEFAULT 0")


# Each entry moves the schema from version N-1 to N; never edit a shipped one.
MIGRATIONS: list[Callable[[peewee.Database], None]] = [_v1, _v2, _v3, _v4]
SCHEMA_VERSION = len(MIGRATIONS)


def schema_version(db: peewee.Database) -> int:
    """The schema version recorded in the database (``PRAGMA user_version``)."""
    return int(db.execute_sql("PRAGMA user_version").fetchone()[0])


def migrate(db: peewee.Database) -> int:
    """Apply pending migrations in one transaction each; return the new version."""
    current = schema_version(db)
    if current > SCHEMA_VERSION:
        raise BangerError(
            f"store {db.database} has schema version {current}, newer than this banger "
            f"({SCHEMA_VERSION}); upgrade banger"
        )
    for version in range(current + 1, SCHEMA_VERSION + 1):
        with db.atomic():
            MIGRATIONS[version - 1](db)
            db.execute_sql(f"PRAGMA user_version = {version}")
    return SCHEMA_VERSION


def open_store(path: Path) -> PooledSqliteDatabase:
    """Open (creating and migrating if needed) the store at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = PooledSqliteDatabase(
        str(path),
        pragmas=SQLITE_PRAGMAS,
        max_connections=256,
        stale_timeout=300,
        check_same_thread=False,
    )
    database_proxy.initialize(db)
    with db.connection_context():
        migrate(db)
    return db
