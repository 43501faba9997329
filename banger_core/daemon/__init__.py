"""bangerd: the daemon that owns all host state."""
