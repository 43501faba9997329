"""The JSON-RPC wire format shared by the daemon and the CLI (stdlib only)."""
