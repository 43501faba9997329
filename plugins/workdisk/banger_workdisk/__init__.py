"""banger-workdisk: each VM's /root lives on its own ext4 work disk."""
