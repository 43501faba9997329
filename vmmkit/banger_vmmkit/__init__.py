"""banger-vmmkit: the Firecracker-compatible layer that banger's VMM back-ends share.

One copy of everything a Firecracker stand-in needs apart from its guest:
the process and command line (:mod:`banger_vmmkit.main`), the HTTP API and
its state machine (:mod:`banger_vmmkit.api`, :mod:`banger_vmmkit.serde`,
:mod:`banger_vmmkit.httpserver`), the log (:mod:`banger_vmmkit.log`), the
hybrid vsock (:mod:`banger_vmmkit.vsock`) and the kernel checks
(:mod:`banger_vmmkit.kernelcheck`). ``banger-fcsim`` and ``banger-fcqemu``
import it; neither imports the other. It is a library, not a banger plugin.
"""
