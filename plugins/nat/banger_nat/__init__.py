"""banger-nat: running VMs reach the outside world through NAT on the host's uplink.

Per VM, iptables rules tagged with the comment ``banger:<vm-id>`` masquerade
the VM's address out of the uplink and accept forwarding between the bridge
and the uplink (inserted at the top of FORWARD, so a DROP policy as Docker
sets it does not block them). An egress allow-list narrows what a VM may
reach.
"""
