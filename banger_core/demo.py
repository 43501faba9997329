"""``make demo``: build the Debian image and boot a VM (on the simulator without Firecracker).

On a machine without a ``firecracker`` binary this writes a config (only when
the user has none) that runs bangerd and every VM network in the network
namespace ``banger-sim`` with the Firecracker simulator, so the machine's own
interfaces, routes and firewall are never touched. It says so before doing
anything.

``BANGER_VMM=qemu make demo`` boots the image's real kernel instead, through
``banger-fcqemu`` (QEMU; TCG where KVM cannot run it): the daemon is
(re)started with ``BANGER_FIRECRACKER_BIN`` pointing at it, and the VM is
called ``demo-qemu``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from banger_core import system
from banger_core.config import load_settings
from banger_core.paths import config_files

SIM_NETNS = "banger-sim"
VM_NAME = "demo"
VMM_ENV = "BANGER_VMM"
VMM_CHOICES = ("sim", "qemu")


def _banger(*args: str, capture: bool = False, check: bool = True) -> system.Result:
    argv = [_script("banger"), *args]
    if capture:
        return system.run(argv, timeout=1800, check=check)
    proc = system.spawn(argv, new_session=False)
    if proc.wait() != 0:
        raise SystemExit(f"demo: `banger {' '.join(args)}` failed (exit {proc.returncode})")
    return system.Result(argv, 0, "", "")


def _say(text: str) -> None:
    print(f"==> {text}", flush=True)


def configure_simulator() -> None:
    """Point banger at the simulator in its own namespace, unless a VMM is configured already."""
    from banger_core.plugins import Hooks, get_plugin_manager
    from banger_core.vmmbackends import choose_for

    settings = load_settings()
    backends = [b for _, b in Hooks(get_plugin_manager(), settings).vmm_backends()]
    choice = choose_for(settings, backends)
    if choice.found:
        kind = {"fcsim": "the simulator", "fcqemu": "banger-fcqemu (QEMU)"}
        _say(f"using {choice.program}: {kind.get(choice.backend, 'real Firecracker')}")
        return
    target = config_files()[-1]
    _say(
        f"{choice.problem.split(':')[0]}, so banger runs on its Firecracker simulator "
        "(the fcsim back-end, banger-fcsim)."
    )
    _say(
        f"bangerd, its bridge, TAPs and every VM's network live in the network namespace "
        f"'{SIM_NETNS}'; this machine's own network is not touched."
    )
    if target.exists():
        raise SystemExit(
            f'demo: {target} exists; add [daemon] netns = "{SIM_NETNS}" and '
            '[firecracker] backend = "fcsim" to it, then rerun'
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(
        "# Written by `make demo`: run on the Firecracker simulator in a namespace of its own.\n"
        f'[daemon]\nnetns = "{SIM_NETNS}"\n\n'
        '[firecracker]\nbackend = "fcsim"\n'
    )
    _say(f"wrote {target}")


def _script(name: str) -> str:
    exe = Path(sys.executable).parent / name
    return str(exe) if exe.exists() else name


def use_qemu() -> None:
    """Make the daemon run VMs on ``banger-fcqemu`` (restarting it if it runs another VMM)."""
    fcqemu = _script("banger-fcqemu")
    os.environ["BANGER_FIRECRACKER_BIN"] = fcqemu  # the CLI passes it to the daemon it starts
    _say(
        f"BANGER_VMM=qemu: VMs boot their own kernel under QEMU ({fcqemu}); under TCG "
        "(no usable KVM) a boot takes about a minute (more on a busy machine: if `vm create` "
        "times out, raise [vm] ssh_timeout_seconds)."
    )
    checks = json.loads(_banger("doctor", "--json", capture=True, check=False).stdout or "[]")
    vmm = next((c["detail"] for c in checks if c["name"] == "firecracker"), "")
    if "banger-fcqemu" not in vmm:
        _say("restarting the daemon on banger-fcqemu (running VMs keep running)")
        _banger("daemon", "stop")


def main() -> int:
    """Set up, build the image, create a VM and run a command in it."""
    vmm = os.environ.get(VMM_ENV, "sim").strip().lower() or "sim"
    if vmm not in VMM_CHOICES:
        raise SystemExit(f"demo: {VMM_ENV}={vmm!r} is not one of: {', '.join(VMM_CHOICES)}")
    configure_simulator()
    name = VM_NAME
    if vmm == "qemu":
        use_qemu()
        name = f"{name}-qemu"
    _banger("daemon", "start")
    _banger("doctor")
    images = json.loads(_banger("image", "list", "--json", capture=True).stdout)
    if not any(i["name"] == "debian" for i in images):
        _say("building the Debian image (mmdebstrap from this machine's apt sources) ...")
        _banger("image", "build", "debian")
    vms = json.loads(_banger("vm", "list", "--json", capture=True).stdout)
    if not any(v["name"] == name for v in vms):
        _banger("vm", "create", name)
    else:
        _banger("vm", "start", name)
    _say(f"banger vm ssh {name} -- hostname")
    _banger("vm", "ssh", name, "--", "hostname")
    _say(
        f"done. Try: .venv/bin/banger vm ssh {name}   (stop everything: "
        f".venv/bin/banger vm delete --force {name}; .venv/bin/banger daemon stop)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
