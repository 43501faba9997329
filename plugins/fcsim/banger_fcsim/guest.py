"""Booting the simulated guest on InstanceStart, and tearing it down.

The guest is a set of namespaces: a named network namespace
(``bgr-fcsim-<token>``) whose ``ethN`` are veth peers fed from the VM's TAP
devices, and mount/UTS/IPC/PID namespaces owned by the guest's init (PID 1),
started by :mod:`banger_fcsim.guestinit`. Every host resource is recorded
in a state file before it is made (:mod:`banger_fcsim.state`) and a
watchdog process removes them if the simulator dies by SIGKILL.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import sys
import termios
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import banger_core
import banger_fcsim
import banger_vmmkit
from banger_core import system
from banger_fcsim import guestinit, loopdev, memcg, netdev
from banger_fcsim.mmdsserver import MmdsServer
from banger_fcsim.state import (
    NETNS_PREFIX,
    VETH_PREFIX,
    StateFile,
    cleanup_state,
    hold_netns_lock,
    proc_starttime,
    run_dir,
)
from banger_vmmkit import kernelcheck
from banger_vmmkit.vsock import VsockMuxer

if TYPE_CHECKING:
    from banger_vmmkit.api import Vmm

GUEST_VSOCK_DIR = "/dev/banger-vsock"
INIT_CANDIDATES = ["/usr/lib/banger/banger-boot", "/sbin/init"]
GUEST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def wait_popen(proc: Any, timeout: float) -> bool:
    """Wait up to ``timeout`` for a ``system.spawn`` child; True when it exited (reaped)."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None:
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)
    return True


def env_flag(name: str) -> bool:
    """True when the environment variable is set to a true value."""
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


class Guest:
    """One booted (simulated) guest and the host resources behind it."""

    def __init__(self, vmm: Vmm, on_exit: Callable[[int | None], None], api_sock: str) -> None:
        self.vmm = vmm
        self.on_exit = on_exit
        self.api_sock = api_sock
        self.log = vmm.logger
        self.token = secrets.token_hex(4)
        self.base = run_dir() / self.token
        self.netns = f"{NETNS_PREFIX}{self.token}"
        self.state: StateFile | None = None
        self.loops: list[loopdev.LoopDevice] = []
        self.pumps: list[netdev.FramePump] = []
        self.mmds: MmdsServer | None = None
        self.muxer: VsockMuxer | None = None
        self.helper: Any = None  # Popen from system.spawn
        self.watchdog: Any = None  # Popen from system.spawn
        self.init_pid: int | None = None
        self.pid_known = threading.Event()
        self.ready = threading.Event()
        self.console_master: int | None = None
        self.console_slave: int | None = None
        self.torn_down = False
        self.exited = False
        self.lock = threading.Lock()
        self.boot_delay = float(os.environ.get("BANGER_FCSIM_BOOT_DELAY") or 0)
        self.plan: kernelcheck.BootPlan | None = None

    # ------------------------------------------------------------------ start

    def start(self) -> None:
        """Create everything and start init; returns once the guest's PID 1 exists."""
        self.state = StateFile.create(
            self.token, vm_id=self.vmm.opts.instance_id, api_sock=self.api_sock
        )
        self._spawn_watchdog()
        self.state.add("dirs", str(self.base))
        (self.base / "root").mkdir(parents=True, exist_ok=True)
        vsock_dir = self.base / "vsock"
        vsock_dir.mkdir(exist_ok=True)
        os.chmod(vsock_dir, 0o755)
        cmdline = self.vmm.kernel_cmdline()
        (self.base / "cmdline").write_text(cmdline + "\n")
        plan = self.plan = kernelcheck.plan_boot(self.vmm, self.vmm.opts.version)
        self.log.info(kernelcheck.describe(plan), "fc_vmm")
        # The kernel applies ip= itself only when built with CONFIG_IP_PNP, and
        # only to a NIC it has a driver for ("IP-Config: No network devices
        # available" otherwise, and the boot goes on).
        ipcfg = netdev.parse_ip_arg(cmdline) if plan.ip_pnp and plan.net else None

        self._open_console()
        devices = self._attach_drives()
        self._make_network(ipcfg, guest_nics=plan.net)
        if plan.vsock:
            self._start_vsock(str(vsock_dir))
        cgroup_procs = self._memory_cgroup()
        for pump in self.pumps:
            pump.start()

        root = self.vmm.drives[0] if self.vmm.drives and self.vmm.drives[0].is_root else None
        init = None
        for word in cmdline.split():
            if word.startswith("init="):
                init = word[5:]
        assert self.console_slave is not None
        spec = {
            "parent_pid": os.getpid(),
            "netns_path": f"/run/netns/{self.netns}",
            "root_dev": self.loops[0].path if root is not None else None,
            "root_ro": bool(root and root.read_only),
            "root_fstype": "ext4",
            "mountpoint": str(self.base / "root"),
            "devices": devices,
            "console": os.ttyname(self.console_slave),
            "vsock_dir": str(vsock_dir),
            "vsock_target": GUEST_VSOCK_DIR,
            "cmdline_file": str(self.base / "cmdline"),
            "hostname": ipcfg.hostname if ipcfg else None,
            "init": init or INIT_CANDIDATES[0],
            "env": {
                "HOME": "/",
                "TERM": "linux",
                "PATH": GUEST_PATH,
                "BANGER_GUEST_SIMULATED": "1",
                "BANGER_GUEST_HOST_KERNEL": "1",
                "BANGER_VSOCK_DIR": GUEST_VSOCK_DIR,
            },
            "boot_delay": self.boot_delay,
            "boot_gate": os.environ.get("BANGER_FCSIM_BOOT_GATE") or None,
            "vcpus": self.vmm.machine["vcpu_count"],
            "cgroup_procs": cgroup_procs,
            "stuck": self._stuck(plan, cmdline),
        }
        spec_path = self.base / "spec.json"
        spec_path.write_text(json.dumps(spec))
        rfd, wfd = os.pipe()
        try:
            self.helper = system.spawn(
                [sys.executable, guestinit.__file__, str(spec_path), str(wfd)],
                pass_fds=[wfd],
                new_session=False,
            )
        finally:
            os.close(wfd)
        self.state.add("procs", {"pid": self.helper.pid, "start": proc_starttime(self.helper.pid)})
        threading.Thread(
            target=self._monitor, args=(rfd,), name="guest-monitor", daemon=True
        ).start()
        if not self.pid_known.wait(10):
            raise RuntimeError("the guest's init did not start")
        if self.init_pid is None:
            raise RuntimeError("the guest's init did not start")

    def _memory_cgroup(self) -> str | None:
        """Limit the guest to mem_size_mib; the path init's launcher joins, or None."""
        assert self.state is not None
        group, how, mounted = memcg.create(
            self.token, int(self.vmm.machine["mem_size_mib"]), private_dir=self.base / "memcg"
        )
        self.log.info(f"Guest memory: {how}.", "fc_vmm")
        if group is None:
            return None
        self.state.add("cgroups", {"group": str(group), "mount": mounted})
        return str(memcg.procs_file(group))

    def _stuck(self, plan: kernelcheck.BootPlan, cmdline: str) -> dict[str, Any] | None:
        """How a guest that cannot find its devices ends (None: it boots)."""
        if plan.discovery_problem is None:
            return None
        has_initrd = self.vmm.initrd_fd is not None
        panic = 0  # the kernel's default: stay in the panic loop
        for word in cmdline.split():
            if word.startswith("panic="):
                with contextlib.suppress(ValueError):
                    panic = int(word[6:])
        console = kernelcheck.stuck_console(plan, "/dev/vda", has_initrd)
        return {"console": console, "halt": not has_initrd and panic > 0}

    def _spawn_watchdog(self) -> None:
        assert self.state is not None
        roots = [
            str(Path(str(pkg.__file__)).resolve().parent.parent)
            for pkg in (banger_core, banger_vmmkit, banger_fcsim)
        ]
        pythonpath = os.pathsep.join(p for p in (*roots, os.environ.get("PYTHONPATH")) if p)
        with open(os.devnull, "wb") as devnull:
            self.watchdog = system.spawn(
                [
                    sys.executable,
                    "-m",
                    "banger_fcsim.main",
                    "--watchdog",
                    str(self.state.path),
                    "--watch-pid",
                    str(os.getpid()),
                ],
                stdout=devnull,
                stderr=devnull,
                env={"PYTHONPATH": pythonpath},
                new_session=True,
            )

    def _open_console(self) -> None:
        master, slave = os.openpty()
        attrs = termios.tcgetattr(slave)
        attrs[3] &= ~(termios.ECHO | termios.ECHONL)  # lflag: do not echo serial input
        termios.tcsetattr(slave, termios.TCSANOW, attrs)
        os.set_inheritable(master, False)
        os.set_inheritable(slave, False)
        self.console_master, self.console_slave = master, slave
        threading.Thread(target=self._console_pump, name="serial", daemon=True).start()

    def _console_pump(self) -> None:
        master = self.console_master
        while master is not None:
            try:
                data = os.read(master, 65536)
            except OSError:
                return
            if not data:
                return
            out = self.vmm.serial_fd if self.vmm.serial_fd is not None else 1
            with contextlib.suppress(OSError):
                os.write(out, data)

    def _attach_drives(self) -> list[dict[str, int | str]]:
        assert self.state is not None
        devices: list[dict[str, int | str]] = []
        for index, drive in enumerate(self.vmm.drives):
            assert drive.fd is not None
            loop = loopdev.attach(drive.fd, drive.path, drive.read_only)
            self.loops.append(loop)
            self.state.add("loops", {"dev": loop.path, "backing": os.path.realpath(drive.path)})
            devices.append(
                {"name": "vd" + chr(ord("a") + index), "major": loop.major, "minor": loop.minor}
            )
        return devices

    def _make_network(self, ipcfg: netdev.IpConfig | None, *, guest_nics: bool = True) -> None:
        """The guest netns with one veth per NIC (none when the kernel has no virtio_net)."""
        assert self.state is not None
        self.state.set("netns", self.netns)
        self._netns_lock = hold_netns_lock(self.netns)  # liveness for other installations
        system.run(["ip", "netns", "add", self.netns], timeout=15)
        netdev.ip("link", "set", "lo", "up", netns=self.netns)
        for index, nic in enumerate(self.vmm.nets if guest_nics else []):
            host_if = f"{VETH_PREFIX}{self.token}{index}"
            guest_if = f"eth{index}"
            self.state.add("veths", host_if)
            netdev.ip(
                "link",
                "add",
                host_if,
                "type",
                "veth",
                "peer",
                "name",
                guest_if,
                "netns",
                self.netns,
            )
            mac = nic.config.get("guest_mac")
            if mac:
                netdev.ip("link", "set", guest_if, "address", mac, netns=self.netns)
            mtu = nic.config.get("mtu")
            if mtu:
                netdev.ip("link", "set", host_if, "mtu", str(mtu))
                netdev.ip("link", "set", guest_if, "mtu", str(mtu), netns=self.netns)
            with contextlib.suppress(OSError):
                Path(f"/proc/sys/net/ipv6/conf/{host_if}/disable_ipv6").write_text("1")
            # The host end only carries frames for the pump: like a TAP's
            # inside of Firecracker, it must not answer the guest's ARP for
            # the gateway (the guest would send to its MAC and bypass the
            # bridge) nor route what arrives on it.
            for key, value in (("arp_ignore", "8"), ("forwarding", "0")):
                with contextlib.suppress(OSError):
                    Path(f"/proc/sys/net/ipv4/conf/{host_if}/{key}").write_text(value)
            netdev.tx_offload_off(host_if)
            netdev.tx_offload_off(guest_if, self.netns)
            netdev.ip("link", "set", host_if, "up")
            assert nic.tap_fd is not None
            self.pumps.append(netdev.FramePump(nic.tap_fd, host_if))
        self._start_mmds(guest_nics)
        if ipcfg is not None:
            dev = ipcfg.device or "eth0"
            if dev in {f"eth{i}" for i in range(len(self.vmm.nets))}:
                netdev.ip(
                    "addr", "add", f"{ipcfg.client}/{ipcfg.prefixlen}", "dev", dev, netns=self.netns
                )
                netdev.ip("link", "set", dev, "up", netns=self.netns)
                if ipcfg.gateway:
                    netdev.ip(
                        "route",
                        "add",
                        "default",
                        "via",
                        ipcfg.gateway,
                        "dev",
                        dev,
                        netns=self.netns,
                    )

    def _start_mmds(self, guest_nics: bool) -> None:
        """Serve MMDS in the guest when ``PUT /mmds/config`` named one of its NICs."""
        cfg = self.vmm.mmds_config
        if not cfg or not guest_nics:
            return
        if not set(cfg["network_interfaces"]) & {n.iface_id for n in self.vmm.nets}:
            return
        address = cfg["ipv4_address"]
        netdev.ip("addr", "add", f"{address}/32", "dev", "lo", netns=self.netns)
        self.mmds = MmdsServer(self.netns, address, self.vmm, self.log)
        self.mmds.start()
        self.log.info(f"MMDS {cfg['version']} served to the guest at {address}.", "fc_vmm")

    def _start_vsock(self, vsock_dir: str) -> None:
        vs = self.vmm.vsock
        if vs is None or vs.listener is None:
            return
        self.muxer = VsockMuxer(vs.listener, vs.uds_path, vsock_dir)
        self.muxer.bind_guest_side()
        self.muxer.start()

    def _monitor(self, rfd: int) -> None:
        status: int | None = None
        with os.fdopen(rfd, "rb") as fh:
            for raw in fh:
                word, _, arg = raw.decode(errors="replace").strip().partition(" ")
                if word == "pid":
                    self.init_pid = int(arg)
                    if self.state is not None:
                        with contextlib.suppress(OSError):
                            self.state.add(
                                "procs",
                                {"pid": self.init_pid, "start": proc_starttime(self.init_pid)},
                            )
                    self.pid_known.set()
                elif word == "ready":
                    self.ready.set()
                    if self.muxer is not None:
                        self.muxer.activate()
                elif word == "exit":
                    status = int(arg)
        self.pid_known.set()
        if self.helper is not None:
            wait_popen(self.helper, 5)
        self.exited = True
        if not self.torn_down:
            self.on_exit(status)

    # ------------------------------------------------------------------ runtime

    def ctrl_alt_del(self) -> None:
        """What Linux does on Ctrl-Alt-Del with ``C-A-D`` soft: SIGINT to PID 1."""
        if env_flag("BANGER_FCSIM_IGNORE_CTRL_ALT_DEL"):
            self.log.info(
                "Guest ignores Ctrl-Alt-Del (BANGER_FCSIM_IGNORE_CTRL_ALT_DEL).", "fc_vmm"
            )
            return
        if self.init_pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.init_pid, signal.SIGINT)

    def _guest_pids(self) -> list[int]:
        if self.init_pid is None:
            return []
        try:
            target = os.readlink(f"/proc/{self.init_pid}/ns/pid")
        except OSError:
            return []
        pids = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{entry}/ns/pid") == target:
                        pids.append(int(entry))
        return pids

    def pause(self) -> None:
        """Freeze the guest: stop its processes, its NIC queues and vsock."""
        for pid in self._guest_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
        for pump in self.pumps:
            pump.pause()
        if self.muxer is not None:
            self.muxer.pause()

    def resume(self) -> None:
        """Undo :meth:`pause`."""
        for pid in self._guest_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        for pump in self.pumps:
            pump.resume()
        if self.muxer is not None and self.ready.is_set():
            self.muxer.activate()

    # ------------------------------------------------------------------ teardown

    def teardown(self) -> None:
        """Remove everything this guest made (idempotent, safe from a signal handler)."""
        with self.lock:
            if self.torn_down:
                return
            self.torn_down = True
        for pid in (self.init_pid, self.helper.pid if self.helper else None):
            if pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        if self.helper is not None:
            wait_popen(self.helper, 5)
        if self.mmds is not None:
            self.mmds.stop()
        if self.muxer is not None:
            self.muxer.stop()
        for pump in self.pumps:
            pump.stop()
        for loop in self.loops:
            loop.close()
        for fd in (self.console_slave, self.console_master):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.console_master = self.console_slave = None
        if self.state is not None:
            deadline = time.monotonic() + 10
            while not cleanup_state(self.state.path, force=True) and time.monotonic() < deadline:
                time.sleep(0.05)
        if self.watchdog is not None:
            wait_popen(self.watchdog, 3)
