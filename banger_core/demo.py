"""``make demo``: build the Debian image and boot a VM (on the simulator without Firecracker).

On a machine without a ``firecracker`` binary this writes a config (only when
the user has none) that runs bangerd and every VM network in the network
namespace ``banger-sim`` with the Firecracker simulator, so the machine's own
interfaces, routes and firewall are never touched. It says so before doing
anything.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from banger_core import system
from banger_core.config import load_settings
from banger_core.paths import config_files

SIM_NETNS = "banger-sim"
VM_NAME = "demo"


def _banger(*args: str, capture: bool = False) -> system.Result:
    exe = Path(sys.executable).parent / "banger"
    argv = [str(exe if exe.exists() else "banger"), *args]
    if capture:
        return system.run(argv, timeout=1800)
    proc = system.spawn(argv, new_session=False)
    if proc.wait() != 0:
        raise SystemExit(f"demo: `banger {' '.join(args)}` failed (exit {proc.returncode})")
    return system.Result(argv, 0, "", "")


def _say(text: str) -> None:
    print(f"==> {text}", flush=True)


def configure_simulator() -> None:
    """Point banger at the simulator in its own namespace, unless configured already."""
    settings = load_settings()
    binary = settings.get("firecracker", "binary")
    if system.which(binary) or Path(binary).is_file():
        _say(f"using {binary}: {'the simulator' if 'fcsim' in binary else 'real Firecracker'}")
        return
    target = config_files()[-1]
    _say(f"no `{binary}` binary on this machine, so banger runs on its Firecracker simulator "
         f"(banger-fcsim).")
    _say(f"bangerd, its bridge, TAPs and every VM's network live in the network namespace "
         f"'{SIM_NETNS}'; this machine's own network is not touched.")
    if target.exists():
        raise SystemExit(f"demo: {target} exists; add [daemon] netns = \"{SIM_NETNS}\" and "
                         "[firecracker] binary = \"banger-fcsim\" to it, then rerun")
    fcsim = Path(sys.executable).parent / "banger-fcsim"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(
        "# Written by `make demo`: run on the Firecracker simulator in a namespace of its own.\n"
        f'[daemon]\nnetns = "{SIM_NETNS}"\n\n'
        f'[firecracker]\nbinary = "{fcsim if fcsim.exists() else "banger-fcsim"}"\n')
    _say(f"wrote {target}")


def main() -> int:
    """Set up, build the image, create a VM and run a command in it."""
    configure_simulator()
    _banger("daemon", "start")
    _banger("doctor")
    images = json.loads(_banger("image", "list", "--json", capture=True).stdout)
    if not any(i["name"] == "debian" for i in images):
        _say("building the Debian image (mmdebstrap from this machine's apt sources) ...")
        _banger("image", "build", "debian")
    vms = json.loads(_banger("vm", "list", "--json", capture=True).stdout)
    if not any(v["name"] == VM_NAME for v in vms):
        _banger("vm", "create", VM_NAME)
    else:
        _banger("vm", "start", VM_NAME)
    _say(f"banger vm ssh {VM_NAME} -- hostname")
    _banger("vm", "ssh", VM_NAME, "--", "hostname")
    _say(f"done. Try: .venv/bin/banger vm ssh {VM_NAME}   (stop everything: "
         f".venv/bin/banger vm delete --force {VM_NAME}; .venv/bin/banger daemon stop)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
