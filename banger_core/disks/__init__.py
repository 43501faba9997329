"""Per-VM disks: the root disk (dm-snapshot, reflink or sparse clone of an image)."""
