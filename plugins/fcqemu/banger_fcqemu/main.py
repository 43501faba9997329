"""``banger-fcqemu``: Firecracker's command line and API, booting the guest kernel under QEMU.

Everything but the guest is the simulator's process (:mod:`banger_vmmkit.main`):
same flags, exit codes, log lines and API. See ``docs/fcqemu.md``.
"""

from __future__ import annotations

import sys

from banger_fcqemu.guest import QemuGuest
from banger_vmmkit.main import main as fc_main


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``banger-fcqemu``."""
    return fc_main(
        argv,
        prog="banger-fcqemu",
        title="Firecracker-compatible VMM on QEMU (banger-fcqemu)",
        guest_class=QemuGuest,
    )


if __name__ == "__main__":
    sys.exit(main())
