"""Fakes shared by the image tests: a miniature mmdebstrap."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from banger_core import system
from banger_core.errors import CommandError
from banger_core.images.recipe import parse_recipe
from pytest_banger.kernels import synthetic_kernel

RECIPE = parse_recipe(
    """\
name = "fake"
[bootstrap]
suite = "bookworm"
packages = ["openssh-server", "python3"]
[rootfs]
min_size_mib = 64
headroom_mib = 8
"""
)


def fake_tree(root: Path) -> None:
    """What mmdebstrap would leave, in miniature."""
    for d in ("boot", "etc/ssh/sshd_config.d", "root/.ssh", "usr/bin", "run", "tmp"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "root").chmod(0o700)
    # Debian's kernels: bzImages with an LZ4 (legacy frame) payload, like the 6.1 cloud kernel.
    synthetic_kernel(root / "boot/vmlinuz-6.1.0-9-cloud-amd64", fmt="bzimage", version="6.1.0-9")
    synthetic_kernel(
        root / "boot/vmlinuz-6.1.0-10-cloud-amd64",
        fmt="bzimage",
        compression="lz4",
        version="6.1.0-10-cloud-amd64",
    )
    (root / "boot/initrd.img-6.1.0-10-cloud-amd64").write_bytes(b"new initrd")
    (root / "etc/ssh/ssh_host_ed25519_key").write_text("secret")
    (root / "etc/ssh/sshd_config").write_text("Include /etc/ssh/sshd_config.d/*.conf\n")
    (root / "etc/resolv.conf").write_text("nameserver 10.0.0.1\n")
    (root / "etc/hostname").write_text("buildhost\n")
    (root / "root/.bashrc").write_text("# bashrc\n")
    (root / "usr/bin/python3").write_text("")


class FakeRunner:
    """Fakes mmdebstrap; runs everything else for real; can fail one program."""

    def __init__(self, fail: str | None = None) -> None:
        self.calls: list[list[str]] = []
        self.fail = fail

    def __call__(
        self,
        argv: Sequence[str],
        *,
        check: bool = True,
        timeout: float | None = system.DEFAULT_TIMEOUT,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> system.Result:
        args = [str(a) for a in argv]
        self.calls.append(args)
        if args[0] == self.fail:
            raise CommandError(args, 1, "injected failure")
        if args[0] == "mmdebstrap":
            # mmdebstrap [OPTION...] SUITE TARGET [MIRROR...]
            positional = [a for a in args[1:] if not a.startswith("-")]
            fake_tree(Path(positional[1]))
            return system.Result(args, 0, "", "")
        return system.run(args, check=check, timeout=timeout, input=input, env=env)
