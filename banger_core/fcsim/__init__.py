"""banger-fcsim: a faithful Firecracker simulator (API, process, and a namespace guest).

See ``docs/simulator.md``. The entry point is :func:`banger_core.fcsim.main.main`.
"""
