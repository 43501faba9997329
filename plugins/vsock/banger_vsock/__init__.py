"""banger-vsock: every VM's vsock device and the host side of the guest agent protocol.

The protocol itself is documented in ``docs/agent-protocol.md``; this
package is the only host code that speaks it (:mod:`banger_vsock.protocol`).
"""
