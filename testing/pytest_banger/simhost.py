"""A simulated host: bangerd in a network namespace of its own, VMs on the Firecracker simulator.

Everything it makes (the namespace, the daemon, VMM processes, the state
directory) is removed by :meth:`SimulatedHost.close`, also after a failure.
Plugin authors use it through the ``sim_host`` fixture. ``vmm="banger-fcqemu"``
boots the guests' real kernels under QEMU instead (slow under TCG: raise
``ssh_timeout`` and ``stop_grace``).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from banger_core import system
from banger_core.net.namespaces import delete_netns


def console_script(name: str) -> str:
    """The console script ``name`` next to this interpreter, else from PATH."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else (system.which(name) or name)


class SimulatedHost:
    """One private banger installation running on the simulator."""

    def __init__(
        self,
        *,
        subnet: str = "172.30.0.0/24",
        tap_pool_size: int = 2,
        extra_config: str = "",
        env: dict[str, str] | None = None,
        internet: bool = False,
        vmm: str = "banger-fcsim",
        ssh_timeout: float = 60.0,
        stop_grace: float = 5.0,
    ) -> None:
        token = secrets.token_hex(3)
        self.vmm = console_script(vmm) if "/" not in vmm else vmm
        self.tap_pool_size = tap_pool_size
        # Short paths: AF_UNIX socket paths are limited to 108 bytes.
        self.root = Path(tempfile.mkdtemp(prefix=f"bgr-{token}-", dir="/tmp"))
        self.netns = f"bgr-test-{token}"
        self.state_dir = self.root / "state"
        self.config_path = self.root / "config.toml"
        self.fcsim_run_dir = self.root / "fcsim"
        self.config_path.write_text(
            "[daemon]\n"
            f'netns = "{self.netns}"\n'
            'log_level = "debug"\n'
            "[firecracker]\n"
            f'binary = "{self.vmm}"\n'
            "[vm]\n"
            f"stop_grace_seconds = {stop_grace}\n"
            f"ssh_timeout_seconds = {ssh_timeout}\n"
            "[network]\n"
            'bridge = "bgbr0"\n'
            f'subnet = "{subnet}"\n'
            f"tap_pool_size = {tap_pool_size}\n" + extra_config
        )
        self.env = {
            **os.environ,
            "BANGER_STATE_DIR": str(self.state_dir),
            "BANGER_CONFIG": str(self.config_path),
            "BANGER_FCSIM_RUN_DIR": str(self.fcsim_run_dir),
            "XDG_CACHE_HOME": str(self.root / "cache"),
            "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
            **(env or {}),
        }
        #: With ``internet=True``: a :class:`~pytest_banger.internet.FakeInternet`
        #: behind the host's uplink (``bgup0``, default route), made by :meth:`start`.
        self.internet = None
        self._internet_started = False
        if internet:
            from pytest_banger.internet import FakeInternet

            self.internet = FakeInternet(self.netns, self.root)
        for var in (
            "BANGER_PLUGINS",
            "BANGER_DISABLE_PLUGINS",
            "BANGER_FIRECRACKER_BIN",
            "BANGER_LOG_LEVEL",
            "BANGER_DAEMON_STARTED_BY",
        ):
            if env is None or var not in env:
                self.env.pop(var, None)

    # -- driving it ----------------------------------------------------------
    def cli(
        self,
        *args: str,
        check: bool = True,
        timeout: float = 300.0,
        env: dict[str, str] | None = None,
    ) -> system.Result:
        """Run ``banger ARGS`` against this host; raises on failure when ``check``."""
        return system.run(
            [console_script("banger"), *args],
            check=check,
            timeout=timeout,
            env={**self.env, **(env or {})},
        )

    def json(self, *args: str) -> Any:
        """Run a ``--json`` command and parse its output."""
        return json.loads(self.cli(*args, "--json").stdout)

    def install_plugin(
        self,
        name: str,
        module: str,
        source_dir: str | Path,
        *,
        distribution: str | None = None,
        version: str = "0.0.1",
        restart: bool = True,
    ) -> None:
        """Make the plugin in ``source_dir`` (holding package ``module``) installed for this host.

        Writes a throwaway distribution with a ``banger`` entry point ``name``
        and puts it and ``source_dir`` on the host's ``PYTHONPATH``, so the CLI
        and ``bangerd`` find it the way they find a pip-installed plugin; then
        restarts the daemon if it runs (plugins load at daemon start).
        """
        site = self.root / "site"
        dist = distribution or f"banger-test-{name}"
        info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir(parents=True, exist_ok=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        (info / "entry_points.txt").write_text(f"[banger]\n{name} = {module}\n")
        paths = [str(site), str(Path(source_dir).absolute())]
        old = self.env.get("PYTHONPATH", "")
        self.env["PYTHONPATH"] = ":".join(
            [p for p in paths if p not in old.split(":")] + ([old] if old else [])
        )
        if restart and self.daemon_pid():
            self.cli("daemon", "stop")
            self.start()

    def add_config(self, text: str) -> None:
        """Append TOML to the host's config file (takes effect at the next daemon start)."""
        with self.config_path.open("a") as fh:
            fh.write("\n" + text + "\n")

    def start(self) -> SimulatedHost:
        """Start the daemon (it enters the host's namespace itself).

        With a fake internet, its namespace and uplink are made first (once).
        """
        if self.internet is not None and not self._internet_started:
            self.internet.start()
            self._internet_started = True
        self.cli("daemon", "start")
        return self

    def daemon_pid(self) -> int | None:
        """The daemon's PID, if it runs."""
        pid_file = self.state_dir / "run" / "bangerd.pid"
        try:
            return int(pid_file.read_text())
        except (OSError, ValueError):
            return None

    def netns_run(self, *argv: str, check: bool = True, timeout: float = 60.0) -> system.Result:
        """Run a command inside the simulated host's network namespace."""
        return system.run(
            ["ip", "netns", "exec", self.netns, *argv], check=check, timeout=timeout, env=self.env
        )

    def register_image(self, image: Any, name: str = "debian") -> None:
        """Register a built image (``banger_core.images.build.BuiltImage``)."""
        args = [
            "image",
            "register",
            name,
            "--kernel",
            str(image.kernel),
            "--rootfs",
            str(image.rootfs),
        ]
        for artifact, path in sorted(getattr(image, "artifacts", {}).items()):
            args += ["--artifact", f"{artifact}={path}"]
        if image.initrd:
            args += ["--initrd", str(image.initrd)]
        self.cli(*args)

    # -- cleaning up ---------------------------------------------------------
    def vmm_pids(self) -> list[int]:
        """PIDs of every VMM process started for this host."""
        from banger_core.firecracker.launcher import find_vmm_pid

        pids = []
        vm_run = self.state_dir / "run" / "vms"
        for child in vm_run.iterdir() if vm_run.exists() else []:
            pid = find_vmm_pid(child / "fc.sock")
            if pid:
                pids.append(pid)
        return pids

    def close(self) -> None:
        """Stop the daemon and every VMM, remove the namespace and files."""
        from banger_core.firecracker.launcher import wait_for_exit

        pid = self.daemon_pid()
        if pid:
            _signal(pid, signal.SIGTERM)
            if not wait_for_exit(pid, 15):
                _signal(pid, signal.SIGKILL)
                wait_for_exit(pid, 5)
        for vmm in self.vmm_pids():
            _signal(vmm, signal.SIGTERM)  # the simulator cleans up on SIGTERM
        deadline = time.monotonic() + 15
        for vmm in self.vmm_pids():
            if not wait_for_exit(vmm, max(0.1, deadline - time.monotonic())):
                _signal(vmm, signal.SIGKILL)
                wait_for_exit(vmm, 5)
        system.run(
            [console_script("banger-fcsim"), "--cleanup", "--all"],
            check=False,
            timeout=60,
            env=self.env,
        )
        if self.internet is not None:
            self.internet.close()
        delete_netns(self.netns, runner=lambda argv, **kw: system.run(argv, check=False))
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> SimulatedHost:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
