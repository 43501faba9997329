"""The process of a Firecracker-compatible VMM, with Firecracker's command line.

Same flags as ``firecracker`` (``--api-sock``, ``--id``, ``--log-path``,
``--level``, ``--config-file``, ``--no-api``, ...), same exit codes (153 bad
arguments, 152 bad ``--level``, 1 API socket in use, 0 after a guest reboot,
death by SIGTERM/SIGINT). The guest is the back-end's: ``banger-fcsim``
(:mod:`banger_fcsim.main`) and ``banger-fcqemu`` (:mod:`banger_fcqemu.main`)
call :func:`main` with their own guest class.

See ``docs/simulator.md``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import resource
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from banger_vmmkit import emulation
from banger_vmmkit.api import ApiError, Vmm, VmmOptions
from banger_vmmkit.httpserver import HttpServer, Request
from banger_vmmkit.log import Logger, parse_level

EXIT_OK = 0
EXIT_GENERIC = 1
EXIT_BAD_CONFIGURATION = 152
EXIT_ARG_PARSING = 153
EXIT_SIGHUP = 156

VALUE_ARGS = {
    "api-sock",
    "id",
    "log-path",
    "level",
    "module",
    "metrics-path",
    "seccomp-filter",
    "http-api-max-payload-size",
    "mmds-size-limit",
    "config-file",
    "metadata",
    "start-time-us",
    "start-time-cpu-us",
    "parent-cpu-time-us",
    "describe-snapshot",
    "watchdog",
    "watch-pid",
    "emulate-version",
}
FLAG_ARGS = {
    "show-level",
    "show-log-origin",
    "boot-timer",
    "no-seccomp",
    "enable-pci",
    "no-api",
    "version",
    "help",
    "snapshot-version",
    "cleanup",
    "all",
}
ID_RE = re.compile(r"^[A-Za-z0-9-]{1,64}$")

HELP = """{title}, compatible with firecracker v{ver}.

Usage: {prog} [--api-sock PATH] [--id ID] [options]
{extra_usage}
  --api-sock PATH                  API socket (default /run/firecracker.socket)
  --id ID                          instance id, [A-Za-z0-9-]{{1,64}}
  --config-file PATH               configure and boot from a JSON file
  --no-api                         no API socket (needs --config-file)
  --log-path PATH, --level LEVEL, --show-level, --show-log-origin, --module M
  --metrics-path PATH, --boot-timer, --no-seccomp, --seccomp-filter F,
  --enable-pci, --http-api-max-payload-size N, --mmds-size-limit N, --metadata F
  --version                        print the version and exit
  --emulate-version V              behave as Firecracker V: 1.7, 1.8, 1.13, 1.16.1 (default),
                                   main (env BANGER_FC_EMULATE_VERSION; not a firecracker flag)
"""


class ArgError(Exception):
    """Argument parsing error (exit 153)."""


def parse_args(argv: list[str]) -> dict[str, str | bool]:
    """Parse Firecracker-style arguments (``--name value`` or ``--name=value``)."""
    out: dict[str, str | bool] = {}
    i = 0
    while i < len(argv):
        raw = argv[i]
        if not raw.startswith("--"):
            raise ArgError(
                f"Found argument '{raw}' which wasn't expected, or isn't valid in this context."
            )
        name, eq, inline = raw[2:].partition("=")
        if name in out:
            raise ArgError(f"The argument '{name}' was provided more than once.")
        if name in VALUE_ARGS:
            if eq:
                out[name] = inline
            else:
                if i + 1 >= len(argv) or argv[i + 1].startswith("--"):
                    raise ArgError(f"The argument '{name}' requires a value, but none was supplied")
                out[name] = argv[i + 1]
                i += 1
        elif name in FLAG_ARGS and not eq:
            out[name] = True
        else:
            raise ArgError(
                f"Found argument '{name}' which wasn't expected, or isn't valid in this context."
            )
        i += 1
    if out.get("no-api") and "config-file" not in out:
        raise ArgError("Argument 'config-file' required, but not found.")
    if out.get("no-seccomp") and "seccomp-filter" in out:
        raise ArgError(
            "Argument 'no-seccomp' cannot be used together with argument 'seccomp-filter'."
        )
    return out


def _die_by_signal(sig: int) -> None:
    signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, [sig])
    os.kill(os.getpid(), sig)
    time.sleep(1)
    os._exit(128 + sig)


class Simulator:
    """The process: API server + VMM + (after InstanceStart) the guest.

    ``guest_class`` is what InstanceStart boots: the simulated guest
    (``banger_fcsim.guest.Guest``) or another back-end's guest with the same
    interface (``banger-fcqemu`` passes its QEMU guest).
    """

    def __init__(
        self, args: dict[str, str | bool], guest_class: Any, version: str | None = None
    ) -> None:
        self.args = args
        self.version = version or emulation.resolve(None, {})
        self.guest_class = guest_class
        self.instance_id = str(args.get("id", "anonymous-instance"))
        self.api_sock = str(args.get("api-sock", "/run/firecracker.socket"))
        self.logger = Logger(self.instance_id)
        self.vmm = Vmm(
            VmmOptions(
                instance_id=self.instance_id,
                enable_pci=bool(args.get("enable-pci")),
                version=self.version,
                metrics_from_cli="metrics-path" in args,
            ),
            self.logger,
            guest_factory=self._make_guest,
        )
        self.server: HttpServer | None = None
        self.exit_code: int | None = None
        self.done = threading.Event()
        # Reentrant: SIGTERM's handler tears down too, and may interrupt this very
        # thread in the middle of a teardown (e.g. _finish after the guest exited).
        self.tearing_down = threading.RLock()

    def _make_guest(self, vmm: Vmm) -> Any:
        return self.guest_class(vmm, self._guest_exited, self.api_sock)

    # ------------------------------------------------------------------ lifecycle

    def teardown(self) -> None:
        """Remove the guest's host resources (idempotent)."""
        with self.tearing_down:
            guest = self.vmm.guest
            if guest is not None:
                guest.teardown()

    def _guest_exited(self, status: int | None, exit_code: int = EXIT_OK) -> None:
        if status is not None and os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGINT:
            # reboot(POWER_OFF/HALT) in a PID namespace: on x86 Firecracker keeps running
            # with a dead guest (no ACPI power-off).
            self.logger.info(
                "Guest halted; the VMM keeps running (x86 has no power-off).", "fc_vmm"
            )
            return
        self.exit_code = exit_code
        if self.server is not None:
            self.server.call_soon(self._finish)
        else:
            self.done.set()

    def _finish(self) -> None:
        self.logger.info("Vmm is stopping.", "fc_vmm")
        self.teardown()
        self.vmm.write_metrics()
        if self.exit_code == EXIT_OK:
            self.logger.info(f"Firecracker exiting successfully. exit_code={self.exit_code}")
        else:
            self.logger.error(f"Firecracker exiting with error. exit_code={self.exit_code}")
        if self.server is not None:
            self.server.stop()
        self.done.set()

    def install_signals(self) -> None:
        """SIGTERM/SIGINT: clean our host resources, then die by the signal (no socket cleanup)."""

        def on_term(sig: int, _frame: object) -> None:
            with contextlib.suppress(Exception):
                self.teardown()
            _die_by_signal(sig)

        def on_hup(_sig: int, _frame: object) -> None:
            self.logger.error("Received SIGHUP signal, exiting.")
            with contextlib.suppress(Exception):
                self.teardown()
            os._exit(EXIT_SIGHUP)

        signal.signal(signal.SIGTERM, on_term)
        signal.signal(signal.SIGINT, on_term)
        signal.signal(signal.SIGHUP, on_hup)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)

    def configure_from_cli(self) -> int | None:
        """Apply ``--log-path``/``--level``/``--metrics-path``; return an exit code on error."""
        level = None
        if "level" in self.args:
            level = parse_level(str(self.args["level"]))
            if level is None:
                sys.stderr.write(
                    f"Invalid value for --level: {self.args['level']}. Possible values: "
                    "[Off, Error, Warning, Info, Debug, Trace]\n"
                )
                return EXIT_BAD_CONFIGURATION
        fd = None
        if "log-path" in self.args:
            try:
                fd = os.open(
                    str(self.args["log-path"]),
                    os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NONBLOCK | os.O_CLOEXEC,
                    0o644,
                )
            except OSError as exc:
                sys.stderr.write(f"Error: Failed to open the log file: {exc}\n")
                return EXIT_BAD_CONFIGURATION
        self.logger.configure(
            fd,
            level,
            True if self.args.get("show-level") else None,
            True if self.args.get("show-log-origin") else None,
        )
        if "metrics-path" in self.args:
            try:
                self.vmm.init_metrics({"metrics_path": str(self.args["metrics-path"])})
            except ApiError as exc:
                self.logger.error(exc.message)
                return EXIT_BAD_CONFIGURATION
        return None

    def apply_config_file(self, path: str) -> str | None:
        """Configure and boot from ``--config-file``; return an error text or None."""
        try:
            raw = Path(path).read_bytes()
            cfg = json.loads(raw)
        except (OSError, ValueError) as exc:
            return f"Unable to read or parse the configuration file: {exc}"
        if not isinstance(cfg, dict):
            return "The configuration file must hold a JSON object"
        for key in ("boot-source", "drives"):
            if key not in cfg:
                return f"missing field `{key}`"
        order = [
            ("logger", "PUT", "/logger"),
            ("metrics", "PUT", "/metrics"),
            ("machine-config", "PUT", "/machine-config"),
            ("cpu-config", "PUT", "/cpu-config"),
            ("boot-source", "PUT", "/boot-source"),
            ("serial", "PUT", "/serial"),
            ("balloon", "PUT", "/balloon"),
            ("vsock", "PUT", "/vsock"),
            ("entropy", "PUT", "/entropy"),
        ]
        requests: list[tuple[str, str, object]] = []
        for key, method, url in order[:5]:
            if cfg.get(key) is not None:
                requests.append((method, url, cfg[key]))
        for drive in cfg.get("drives") or []:
            requests.append(("PUT", f"/drives/{drive.get('drive_id', '')}", drive))
        for nic in cfg.get("network-interfaces") or []:
            requests.append(("PUT", f"/network-interfaces/{nic.get('iface_id', '')}", nic))
        for key, method, url in order[5:]:
            if cfg.get(key) is not None:
                requests.append((method, url, cfg[key]))
        if cfg.get("mmds-config") is not None:
            requests.append(("PUT", "/mmds/config", cfg["mmds-config"]))
        requests.append(("PUT", "/actions", {"action_type": "InstanceStart"}))
        for method, url, body in requests:
            resp = self.vmm.handle(Request(method, url, json.dumps(body).encode(), {}))
            if resp.status >= 300:
                message = json.loads(resp.body or b"{}").get("fault_message", "")
                return str(message)
        return None

    def load_metadata(self, path: str) -> str | None:
        """``--metadata FILE``: the MMDS data store's first content (None, or the error).

        fc ``src/vmm/src/rpc_interface.rs`` @ v1.16.1
        ``build_microvm_from_requests``: ``put_data`` of the file's JSON, so the
        size limit applies; unreadable or invalid JSON ends the process.
        """
        try:
            text = Path(path).read_text()
        except OSError:
            return "Unable to open or read from the mmds content file"
        try:
            value = json.loads(text)
        except ValueError:
            return "MMDS error: metadata provided not valid json"
        try:
            self.vmm.mmds_put(value)
        except ApiError as exc:
            return exc.message
        self.logger.info("Successfully added metadata to mmds from file")
        return None

    def run(self) -> int:
        """Run until the guest reboots (0) or a fatal startup error."""
        code = self.configure_from_cli()
        if code is not None:
            return code
        self.logger.info(f"Running Firecracker v{self.version}")
        self.install_signals()
        if self.args.get("boot-timer"):
            self.logger.debug("Boot timer device requested (not signalled by simulated guests).")
        try:
            max_payload = int(str(self.args.get("http-api-max-payload-size", 51200)))
        except ValueError:
            sys.stderr.write("Arguments parsing error: invalid --http-api-max-payload-size\n")
            return EXIT_ARG_PARSING
        # fc src/firecracker/src/main.rs @ v1.16.1: the MMDS data store limit is
        # --mmds-size-limit, else --http-api-max-payload-size.
        try:
            self.vmm.opts.mmds_size_limit = int(str(self.args.get("mmds-size-limit", max_payload)))
        except ValueError:
            sys.stderr.write("Arguments parsing error: invalid --mmds-size-limit\n")
            return EXIT_ARG_PARSING
        if "metadata" in self.args:
            err = self.load_metadata(str(self.args["metadata"]))
            if err is not None:
                self.logger.error(err)
                sys.stderr.write(f"Error: {err}\n")
                return EXIT_GENERIC

        listener = None
        if not self.args.get("no-api"):
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                listener.bind(self.api_sock)
                listener.listen(128)
            except OSError:
                listener.close()
                msg = (
                    f"Failed to open the API socket at: {self.api_sock}. "
                    "Check that it is not already used."
                )
                self.logger.error(f"RunWithApiError error: {msg}")
                sys.stderr.write(f"Error: RunWithApiError({msg})\n")
                return EXIT_GENERIC
            os.set_inheritable(listener.fileno(), False)
            self.server = HttpServer(listener, self.vmm.handle, max_payload)
            self.logger.info(f"Listening on API socket ({json.dumps(self.api_sock)}).")
            self.logger.info("API server started.", "fc_api")

        if "config-file" in self.args:
            err = self.apply_config_file(str(self.args["config-file"]))
            if err is not None:
                self.logger.error(f"Building VMM configured from cmdline json failed: {err}")
                sys.stderr.write(f"Error: {err}\n")
                self.teardown()
                return EXIT_GENERIC

        try:
            if self.server is not None:
                self.server.serve_forever()
            else:
                while not self.done.wait(1.0):
                    pass
                self._finish()
        finally:
            if self.server is not None:
                self.server.close()
            self.teardown()
            self.vmm.close()
        return self.exit_code if self.exit_code is not None else EXIT_OK


def main(
    argv: list[str] | None = None,
    *,
    prog: str,
    title: str,
    guest_class: Any,
    extra_usage: str = "",
    extra_modes: Callable[[dict[str, str | bool]], int | None] | None = None,
) -> int:
    """The Firecracker-compatible process: parse Firecracker's arguments, serve its API.

    ``guest_class`` is what InstanceStart boots (``banger-fcsim`` passes its
    simulated guest, ``banger-fcqemu`` its QEMU guest). ``extra_modes``, when
    given, handles a back-end's own modes (the simulator's ``--cleanup`` and
    ``--watchdog``): it returns an exit code, or None to go on as a VMM;
    without it those flags are refused as Firecracker refuses them.
    """
    args_list = sys.argv[1:] if argv is None else argv
    try:
        args = parse_args(args_list)
    except ArgError as exc:
        sys.stdout.write(f"Arguments parsing error: {exc} \n\nFor more information try --help.\n")
        sys.stdout.flush()
        return EXIT_ARG_PARSING
    try:
        flag = args.get("emulate-version")
        version = emulation.resolve(str(flag) if isinstance(flag, str) else None)
    except ValueError as exc:
        sys.stdout.write(f"Arguments parsing error: {exc} \n\nFor more information try --help.\n")
        sys.stdout.flush()
        return EXIT_ARG_PARSING
    if args.get("help"):
        sys.stdout.write(HELP.format(title=title, ver=version, prog=prog, extra_usage=extra_usage))
        return EXIT_OK
    if args.get("version"):
        sys.stdout.write(f"Firecracker v{version}\n")
        return EXIT_OK
    if args.get("enable-pci") and not emulation.has_pci(version):
        # Firecracker before v1.13 has no such flag (its clap parser refuses it).
        sys.stdout.write(
            "Arguments parsing error: Found argument 'enable-pci' which wasn't expected, or "
            "isn't valid in this context. \n\nFor more information try --help.\n"
        )
        sys.stdout.flush()
        return EXIT_ARG_PARSING
    if extra_modes is None and ("watchdog" in args or args.get("cleanup")):
        flag = "watchdog" if "watchdog" in args else "cleanup"
        sys.stdout.write(
            f"Arguments parsing error: Found argument '{flag}' which wasn't expected, or isn't "
            "valid in this context. \n\nFor more information try --help.\n"
        )
        return EXIT_ARG_PARSING
    if extra_modes is not None:
        code = extra_modes(args)
        if code is not None:
            return code
    instance_id = str(args.get("id", "anonymous-instance"))
    if not ID_RE.match(instance_id):
        sys.stderr.write(
            "thread 'main' panicked at src/firecracker/src/main.rs:\n"
            "Invalid instance ID: InvalidChar\n"
            "note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n"
        )
        sys.stderr.flush()
        with contextlib.suppress(OSError, ValueError):
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        _die_by_signal(signal.SIGABRT)
    sim = Simulator(args, guest_class, version)
    code = sim.run()
    sys.stdout.flush()
    return code
