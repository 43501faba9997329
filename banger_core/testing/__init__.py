"""Test support for banger and its plugins (simulated host, cached images)."""
