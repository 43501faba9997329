"""banger-dns: every running VM answers to ``<name>.vm``.

An authoritative DNS server for the ``vm.`` zone runs inside ``bangerd``
(asyncio, UDP and TCP) on ``[plugins.dns] listen``; a second listener on the
bridge gateway's port 53 serves guests and forwards every other name to the
host's upstream resolvers.
"""
