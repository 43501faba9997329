"""``banger-fcqemu``: Firecracker's command line and HTTP API, booting real kernels under QEMU.

The API layer is the one it shares with the simulator (:mod:`banger_vmmkit.api`
and :mod:`banger_vmmkit.main`); only the guest differs: on ``InstanceStart``
:class:`banger_fcqemu.guest.QemuGuest` runs ``qemu-system-x86_64`` with
the configured kernel, drives and TAPs. See ``docs/fcqemu.md``.
"""
