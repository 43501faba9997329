"""banger-fcsim: a faithful Firecracker simulator (API, process, and a namespace guest).

See ``docs/simulator.md``. The entry point is :func:`banger_fcsim.main.main`;
the Firecracker API layer it shares with ``banger-fcqemu`` is ``banger_vmmkit``.
"""
