"""``banger-fcqemu``: Firecracker's command line and HTTP API, booting real kernels under QEMU.

The API layer is the simulator's (:mod:`banger_core.fcsim.api` and
:mod:`banger_core.fcsim.main`); only the guest differs: on ``InstanceStart``
:class:`banger_core.fcqemu.guest.QemuGuest` runs ``qemu-system-x86_64`` with
the configured kernel, drives and TAPs. See ``docs/fcqemu.md``.
"""
