"""The SQLite store (peewee): images, VMs, schema migrations."""

from banger_core.store.db import SQLITE_PRAGMAS, open_store
from banger_core.store.models import Image, VMRecord

__all__ = ["SQLITE_PRAGMAS", "Image", "VMRecord", "open_store"]
