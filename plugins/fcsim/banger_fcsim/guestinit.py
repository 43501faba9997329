"""Guest launcher: enter the guest namespaces and exec the guest's init as PID 1.

Run by the simulator as ``python3 guestinit.py SPEC_JSON STATUS_FD`` (standard
library only, so it runs without importing banger). It plays the kernel's
part of booting:

1. die with the simulator (``PR_SET_PDEATHSIG``), join the guest network
   namespace, unshare mount/UTS/IPC/PID namespaces and a time namespace whose
   ``CLOCK_MONOTONIC`` and ``CLOCK_BOOTTIME`` start at zero now (the guest's
   own boot clock: ``/proc/uptime``, ``uptime`` and ``vm health`` count from
   InstanceStart, as on a real VM), make ``/`` private;
2. fork: the child is PID 1 of the new PID namespace. It mounts the root
   drive (ext4, ``ro`` when read-only), a tmpfs ``/dev`` with device nodes
   (``vda``, ``vdb``... for the drives, null, zero, full, random, urandom, tty,
   console = the serial pty, ptmx + a new devpts), ``/proc`` (with
   ``/proc/cmdline`` replaced), ``/sys``, and the vsock directory at
   ``/dev/banger-vsock``; sets the hostname; chroots; execs init with the
   console as stdin/stdout/stderr;
3. the parent reports ``pid <n>`` (host PID of init), ``ready`` (just before
   exec) and ``exit <wait status>`` on STATUS_FD.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import signal
import stat
import sys
import time
from typing import Any

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_NEWTIME = 0x00000080
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
PR_SET_PDEATHSIG = 1

libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def mount(
    src: str | None, target: str, fstype: str | None, flags: int = 0, data: str | None = None
) -> None:
    """mount(2)."""
    _check(
        libc.mount(
            None if src is None else src.encode(),
            target.encode(),
            None if fstype is None else fstype.encode(),
            ctypes.c_ulong(flags),
            None if data is None else data.encode(),
        ),
        f"mount {src} on {target}",
    )


def console_write(fd: int, text: str) -> None:
    """Best-effort console message."""
    try:
        os.write(fd, text.encode())
    except OSError:
        pass


def setup_dev(root: str, spec: dict[str, Any]) -> None:
    """tmpfs /dev with the drive nodes, the usual character devices and devpts."""
    dev = os.path.join(root, "dev")
    mount("tmpfs", dev, "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=755,size=65536k")
    chars = {
        "null": (1, 3, 0o666),
        "zero": (1, 5, 0o666),
        "full": (1, 7, 0o666),
        "random": (1, 8, 0o666),
        "urandom": (1, 9, 0o666),
        "tty": (5, 0, 0o666),
    }
    for name, (major, minor, mode) in chars.items():
        os.mknod(os.path.join(dev, name), mode | stat.S_IFCHR, os.makedev(major, minor))
        os.chmod(os.path.join(dev, name), mode)
    for d in spec["devices"]:
        path = os.path.join(dev, d["name"])
        os.mknod(path, 0o660 | stat.S_IFBLK, os.makedev(d["major"], d["minor"]))
    os.makedirs(os.path.join(dev, "pts"), exist_ok=True)
    mount(
        "devpts",
        os.path.join(dev, "pts"),
        "devpts",
        MS_NOSUID | MS_NOEXEC,
        "newinstance,ptmxmode=0666,mode=620,gid=5",
    )
    os.symlink("pts/ptmx", os.path.join(dev, "ptmx"))
    os.makedirs(os.path.join(dev, "shm"), exist_ok=True)
    mount("tmpfs", os.path.join(dev, "shm"), "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")
    for name, target in (
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ):
        os.symlink(target, os.path.join(dev, name))
    console = os.path.join(dev, "console")
    with open(console, "w"):
        pass
    mount(spec["console"], console, None, MS_BIND)
    vsock_target = os.path.join(dev, spec["vsock_target"].removeprefix("/dev/"))
    os.makedirs(vsock_target, exist_ok=True)
    mount(spec["vsock_dir"], vsock_target, None, MS_BIND)


def boot_clock() -> None:
    """A new time namespace for the guest (our children): its clocks start at zero.

    After ``unshare(CLONE_NEWTIME)`` this process stays in the host's time
    namespace and its children enter the new one, whose offsets may be set
    until the first process enters it (``time_namespaces(7)``). The offsets
    are minus the whole seconds of the host's clocks, so the guest's
    ``CLOCK_MONOTONIC`` / ``CLOCK_BOOTTIME`` (and ``/proc/uptime``) begin
    below one second. A host kernel without time namespaces (before 5.6, or
    no ``CONFIG_TIME_NS``) keeps the host's clocks, as before.
    """
    if libc.unshare(CLONE_NEWTIME) != 0:
        return
    lines = []
    for name, clock in (("monotonic", time.CLOCK_MONOTONIC), ("boottime", time.CLOCK_BOOTTIME)):
        lines.append(f"{name} {-int(time.clock_gettime(clock))} 0\n")
    with open("/proc/self/timens_offsets", "w") as fh:
        fh.write("".join(lines))


def child(spec: dict[str, Any], status_fd: int, console_fd: int) -> None:
    """PID 1 of the guest: build the root, chroot, exec init. Never returns."""
    stuck = spec.get("stuck")
    if stuck:
        # The kernel cannot find its virtio devices: print what it would, then
        # panic (and reboot with panic=N) or sit in the initramfs forever.
        console_write(console_fd, stuck["console"])
        if stuck.get("halt"):
            os._exit(1)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        while True:
            signal.pause()
    root = spec["mountpoint"]
    flags = MS_RDONLY if spec["root_ro"] else 0
    if spec.get("root_dev"):
        try:
            mount(spec["root_dev"], root, spec.get("root_fstype") or "ext4", flags)
        except OSError as exc:
            console_write(
                console_fd,
                f"VFS: Cannot open root device: {exc}\n"
                "Kernel panic - not syncing: VFS: Unable to mount root fs\n",
            )
            os._exit(1)
    else:
        console_write(
            console_fd,
            "Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)\n",
        )
        os._exit(1)
    setup_dev(root, spec)
    proc = os.path.join(root, "proc")
    mount("proc", proc, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    mount(spec["cmdline_file"], os.path.join(proc, "cmdline"), None, MS_BIND)
    mount("sysfs", os.path.join(root, "sys"), "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    hostname = (spec.get("hostname") or "(none)").encode()
    _check(libc.sethostname(hostname, len(hostname)), "sethostname")
    vcpus = int(spec.get("vcpus") or 0)
    if vcpus > 0:
        # The guest sees as many CPUs as the machine config gives it (nproc,
        # /proc/self/status): pin it to that many of the host's CPUs.
        cpus = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, cpus[:vcpus])
    delay = float(spec.get("boot_delay") or 0)
    if delay > 0:
        time.sleep(delay)
    gate = spec.get("boot_gate")
    if gate:
        # A test holds the boot here (the kernel is "still booting") until it opens the gate.
        while not os.path.exists(gate):
            time.sleep(0.05)
    os.chroot(root)
    os.chdir("/")
    init = spec["init"]
    for fd in (0, 1, 2):
        os.dup2(console_fd, fd)
    if console_fd > 2:
        os.close(console_fd)
    env = dict(spec["env"])
    os.write(status_fd, b"ready\n")
    try:
        os.execve(init, [init], env)
    except OSError as exc:
        console_write(2, f"Kernel panic - not syncing: Requested init {init} failed ({exc}).\n")
        os._exit(1)


def main() -> int:
    """Entry point (see the module docstring)."""
    with open(sys.argv[1]) as fh:
        spec = json.load(fh)
    status_fd = int(sys.argv[2])
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != spec["parent_pid"]:
        return 1
    os.set_inheritable(status_fd, False)
    if spec.get("cgroup_procs"):
        # Join the guest's memory cgroup: init and everything it starts inherit it.
        with open(spec["cgroup_procs"], "w") as fh:
            fh.write(str(os.getpid()))
    console_fd = os.open(spec["console"], os.O_RDWR | os.O_NOCTTY)
    netfd = os.open(spec["netns_path"], os.O_RDONLY)
    _check(libc.setns(netfd, CLONE_NEWNET), "setns")
    os.close(netfd)
    _check(libc.unshare(CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWPID), "unshare")
    boot_clock()
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    pid = os.fork()
    if pid == 0:
        try:
            os.setsid()
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            child(spec, status_fd, console_fd)
        except BaseException as exc:
            console_write(console_fd, f"banger-fcsim: guest setup failed: {exc}\n")
        os._exit(1)
    os.close(console_fd)
    os.write(status_fd, f"pid {pid}\n".encode())
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except InterruptedError:
            continue
    os.write(status_fd, f"exit {status}\n".encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
