"""banger_guest: what runs inside a banger VM.

* ``boot.py`` — ``banger-boot``, applies the guest-config drive (systemd
  oneshot on a real VM, PID 1 in the Firecracker simulator);
* ``agent.py`` — ``banger-agent``, the HTTP guest agent over vsock;
* ``guestconfig_format.py`` — encode/decode the guest-config drive (host side);
* ``systemd/`` — the units enabled in images;
* ``recipes/`` — image recipes (``debian.toml`` is the default).

The two programs are standalone files, copied into images under
``/usr/lib/banger/``; they use the standard library only.
"""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable


def resource(*parts: str) -> Traversable:
    """Return a file shipped in this package (e.g. ``resource("recipes", "debian.toml")``)."""
    node = files(__name__)
    for part in parts:
        node = node / part
    return node
