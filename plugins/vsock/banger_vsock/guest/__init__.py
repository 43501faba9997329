"""The vsock plugin's guest side: what it puts into every image it builds.

* ``agent.py``: ``banger-agent``, the guest agent (standard library only,
  copied into the image as ``/usr/lib/banger/banger-agent``; see
  docs/agent-protocol.md);
* ``banger-agent.service``: its systemd unit (enabled), which banger-boot's
  PID-1 mode also honours in the simulator.

They reach images through the plugin's ``banger_image_provision`` steps
(:func:`provision_steps`), so an image built without the plugin has no agent,
and the agent's bytes are part of the image's fingerprint.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from banger_core import ProvisionStep

HERE = Path(__file__).resolve().parent
AGENT_DEST = "/usr/lib/banger/banger-agent"
UNIT_DEST = "/usr/lib/systemd/system/banger-agent.service"


def provision_steps() -> list[ProvisionStep]:
    """The agent (mode 0755) and its unit (0644), as image provisioning steps."""
    from banger_core import ProvisionStep

    return [
        ProvisionStep("banger-agent", {AGENT_DEST: (HERE / "agent.py").read_bytes()}, mode=0o755),
        ProvisionStep(
            "banger-agent unit",
            {UNIT_DEST: (HERE / "banger-agent.service").read_bytes()},
            mode=0o644,
        ),
    ]
