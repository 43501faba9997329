"""Host networking basics: IP allocation, bridge and TAP devices, the TAP pool.

Submodules are imported explicitly (``from banger_core.net import ipam``):
:mod:`~banger_core.net.ipam` is pure Python and cheap, while
:mod:`~banger_core.net.host` and :mod:`~banger_core.net.tappool` pull in
pyroute2, which the CLI must never import.
"""
