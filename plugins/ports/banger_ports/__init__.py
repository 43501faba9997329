"""banger-ports: ``banger vm ports``, the listening sockets of a VM with clickable web endpoints."""
