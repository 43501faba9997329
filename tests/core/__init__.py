"""Tests of banger's core: plugin framework, config, store, daemon and CLI."""
