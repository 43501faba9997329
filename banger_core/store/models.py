"""Store tables. Plugins keep per-VM state in ``VMRecord.plugin_state``."""

from __future__ import annotations

import json
import time
from typing import Any

import peewee

database_proxy = peewee.DatabaseProxy()


class JSONField(peewee.TextField):
    """A JSON document stored as text."""

    def db_value(self, value: Any) -> str:
        return json.dumps(value if value is not None else {}, sort_keys=True)

    def python_value(self, value: str | None) -> Any:
        return json.loads(value) if value else {}


class BaseModel(peewee.Model):
    class Meta:
        database = database_proxy


class Image(BaseModel):
    """A bootable image: kernel, root file system and optional work seed."""

    id = peewee.CharField(primary_key=True, max_length=32)
    name = peewee.CharField(unique=True, max_length=63)
    kernel = peewee.TextField()
    initrd = peewee.TextField(null=True)
    rootfs = peewee.TextField()
    work_seed = peewee.TextField(null=True)  # before v2; now artifacts["work-seed"]
    artifacts = JSONField(default=dict)
    managed = peewee.BooleanField(default=False)
    os = peewee.CharField(default="")
    fingerprint = peewee.CharField(default="")
    created_at = peewee.FloatField(default=time.time)
    kernel_caps = JSONField(default=dict)
    """``banger_core.images.kernelcaps.KernelCaps.to_dict()``; empty when not known."""
    owner_uid = peewee.IntegerField(default=0, constraints=[peewee.SQL("DEFAULT 0")])
    """Who registered or built it (0: root; images older than v4 are root's)."""

    class Meta:
        table_name = "images"


class VMRecord(BaseModel):
    """One VM, running or not."""

    id = peewee.CharField(primary_key=True, max_length=32)
    name = peewee.CharField(unique=True, max_length=63)
    image = peewee.ForeignKeyField(Image, backref="vms", on_delete="RESTRICT")
    cpus = peewee.IntegerField()
    memory_mib = peewee.IntegerField()
    disk_size = peewee.BigIntegerField()
    state = peewee.CharField(default="creating")
    ip = peewee.CharField(unique=True)
    mac = peewee.CharField()
    tap = peewee.CharField(null=True)
    pid = peewee.IntegerField(null=True)
    root_disk = peewee.TextField(default="")
    root_strategy = peewee.CharField(default="")
    plugin_state = JSONField(default=dict)
    last_error = peewee.TextField(default="")
    created_at = peewee.FloatField(default=time.time)
    started_at = peewee.FloatField(null=True)
    updated_at = peewee.FloatField(default=time.time)
    owner_uid = peewee.IntegerField(default=0, constraints=[peewee.SQL("DEFAULT 0")])
    """The uid that created it (0: root; VMs older than v4 are root's)."""

    class Meta:
        table_name = "vms"


ALL_MODELS = [Image, VMRecord]
