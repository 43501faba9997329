"""pytest fixtures for banger and its plugins (registered as the ``banger`` pytest plugin).

Installing banger makes these fixtures available to every pytest run; none
is autouse, so a test gets one only by naming it:

``banger_home``
    A private banger installation in ``tmp_path``: ``BANGER_STATE_DIR`` and
    ``BANGER_CONFIG`` point into it, ``home.run("plugins", "--json")`` runs
    the real ``banger`` command against it. As root, its config puts the
    daemon's network (bridge, TAP pool) in a network namespace of its own
    (``[daemon] netns``), so the machine's interfaces are never touched. Any
    daemon started there (by the ``daemon`` fixture or by ``banger daemon
    start``) is stopped by PID when the test ends, whatever the outcome, and
    the namespace is deleted.
``daemon``
    A running ``bangerd`` in ``banger_home``; ``daemon.rpc("daemon.status")``.
``plugin_manager``
    Builds a plugin manager from plugin objects, without entry points:
    ``pm = plugin_manager(MyPlugin())``.
``plugin_site``
    Makes a throwaway installed distribution (a ``.dist-info`` with a
    ``banger`` entry point) so the real discovery path finds your plugin,
    in this process and in ``banger_home``'s subprocesses.
``banger_cli``
    Runs the CLI in this process with a given plugin manager and captures
    its output: ``result = banger_cli(["plugins", "--json"], pm=pm)``.
``banger_hostile_agent``
    ``banger_hostile_agent(host, vm)`` replaces a running simulated VM's
    guest agent with a scripted hostile one
    (:mod:`pytest_banger.hostile_agent`); put back afterwards.
``sim_host``
    A started :class:`pytest_banger.simhost.SimulatedHost`: a daemon
    in its own network namespace running VMs on the Firecracker simulator
    (root only). Everything it made is removed afterwards.

This module is imported by every pytest session where banger is installed,
so it imports nothing heavy at module level.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

# Environment switches that would make a test depend on the caller's shell.
_SCRUBBED_ENV = (
    "BANGER_PLUGINS",
    "BANGER_DISABLE_PLUGINS",
    "BANGER_TRACE_PLUGINS",
    "BANGER_LOG_LEVEL",
    "BANGER_FIRECRACKER_BIN",
    "BANGER_DAEMON_STARTED_BY",
)
_SOCKET_PATH_MAX = 100  # AF_UNIX paths are limited to 108 bytes
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0


def _script(name: str) -> list[str]:
    """The console script ``name`` next to this interpreter, else ``python -m``."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return [str(candidate)]
    module = {"banger": "banger_core.cli.main", "bangerd": "banger_core.daemon.main"}[name]
    return [sys.executable, "-m", module]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours still "exists": reap it if it is ours.
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    return True


def _looks_like_bangerd(pid: int) -> bool:
    """Whether ``pid`` runs bangerd (so a recycled PID is never killed)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return False
    return b"bangerd" in cmdline or b"banger_core.daemon.main" in cmdline


def stop_pid(pid: int, timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM ``pid``, then SIGKILL it if it has not exited within ``timeout``."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not _pid_alive(pid):
                return
            time.sleep(0.02)


@dataclass
class CommandResult:
    """What one ``banger`` invocation printed and returned."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        """``stdout`` parsed as JSON."""
        return json.loads(self.stdout)


@dataclass
class BangerHome:
    """A private banger state dir and config file, and a way to run ``banger`` there."""

    root: Path
    state_dir: Path
    config: Path
    netns: str = ""
    pythonpath: list[Path] = field(default_factory=list)
    env_overrides: dict[str, str] = field(default_factory=dict)
    _pids: set[int] = field(default_factory=set)

    @property
    def paths(self) -> Any:
        """The :class:`banger_core.paths.Paths` of this home."""
        from banger_core.paths import Paths

        return Paths(state_dir=self.state_dir, run_dir=self.state_dir / "run")

    def base_config(self) -> dict[str, dict[str, str]]:
        """Settings every config of this home carries (unless the text sets them)."""
        if not self.netns:
            return {}
        return {"daemon": {"netns": self.netns}, "network": {"bridge": "bgbr0"}}

    def write_config(self, text: str) -> Path:
        """Replace the config file's contents (TOML), keeping :meth:`base_config`."""
        self.config.write_text(_merge_base(text, self.base_config()))
        return self.config

    def env(self, **extra: str) -> dict[str, str]:
        """Environment for a ``banger``/``bangerd`` process using this home."""
        env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED_ENV}
        env["BANGER_STATE_DIR"] = str(self.state_dir)
        env["BANGER_CONFIG"] = str(self.config)
        env["XDG_CACHE_HOME"] = str(self.root / "cache")  # the CLI's start-up cache
        if self.pythonpath:
            parts = [str(p) for p in self.pythonpath]
            if env.get("PYTHONPATH"):
                parts.append(env["PYTHONPATH"])
            env["PYTHONPATH"] = os.pathsep.join(parts)
        env.update(self.env_overrides)
        env.update(extra)
        return env

    def run(
        self, *args: str, env: dict[str, str] | None = None, timeout: float = 60.0
    ) -> CommandResult:
        """Run ``banger *args`` as a user would and return what it printed."""
        return self.run_argv(_script("banger") + list(args), env=env, timeout=timeout)

    def run_argv(
        self, argv: Sequence[str], *, env: dict[str, str] | None = None, timeout: float = 60.0
    ) -> CommandResult:
        """Run any program with this home's environment (``env`` adds to it)."""
        from banger_core import system

        full_env = self.env(**(env or {}))
        # system.run layers env over os.environ; blank the scrubbed switches.
        for key in _SCRUBBED_ENV:
            full_env.setdefault(key, "")
        try:
            result = system.run(list(argv), check=False, timeout=timeout, env=full_env)
        finally:
            self.track_daemon()
        return CommandResult(list(argv), result.returncode, result.stdout, result.stderr)

    def track_daemon(self) -> int | None:
        """Remember the PID of a daemon running in this home so teardown stops it."""
        try:
            pid = int(self.paths.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        if _looks_like_bangerd(pid):
            self._pids.add(pid)
        return pid

    def stop_daemons(self) -> None:
        """Stop, by PID, every daemon this home has seen."""
        self.track_daemon()
        for pid in sorted(self._pids):
            if _pid_alive(pid) and _looks_like_bangerd(pid):
                stop_pid(pid)
        self._pids.clear()

    def cleanup(self) -> None:
        """Stop the daemons, then delete the network namespace."""
        self.stop_daemons()
        if self.netns:
            from banger_core import system
            from banger_core.net.namespaces import delete_netns

            delete_netns(self.netns, runner=lambda argv, **kw: system.run(argv, check=False))


def _merge_base(text: str, base: dict[str, dict[str, str]]) -> str:
    """Add ``base``'s keys to TOML ``text`` where the text does not set them."""
    import tomllib

    try:
        data = tomllib.loads(text) if text.strip() else {}
    except tomllib.TOMLDecodeError:
        return text  # a test of bad config: leave it exactly as written
    lines = text.splitlines()
    prepend: list[str] = []
    for section, keys in base.items():
        missing = {k: v for k, v in keys.items() if k not in data.get(section, {})}
        if not missing:
            continue
        assignments = [f"{k} = {json.dumps(v)}" for k, v in missing.items()]
        header = f"[{section}]"
        if header in (ln.strip() for ln in lines):
            at = next(i for i, ln in enumerate(lines) if ln.strip() == header)
            lines[at + 1 : at + 1] = assignments
        else:
            prepend += [header, *assignments]
    return "\n".join(prepend + lines) + "\n"


@dataclass
class DaemonHandle:
    """A running ``bangerd`` started by the ``daemon`` fixture."""

    home: BangerHome
    proc: Any  # subprocess.Popen
    output: Path

    @property
    def pid(self) -> int:
        """The daemon's PID."""
        return int(self.proc.pid)

    @property
    def socket(self) -> Path:
        """The RPC socket."""
        return self.home.paths.socket

    def rpc(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """Call one RPC method over the real socket."""
        from banger_core.rpc.client import RPCClient

        with RPCClient(self.socket, timeout=30.0) as client:
            return client.call(method, params)

    def stop(self) -> int | None:
        """Stop the daemon (SIGTERM, then SIGKILL) and return its exit code."""
        if self.proc.poll() is None:
            stop_pid(self.pid)
        with contextlib.suppress(Exception):
            self.proc.wait(timeout=5)
        return self.proc.returncode


def start_daemon(home: BangerHome, *args: str, timeout: float = START_TIMEOUT) -> DaemonHandle:
    """Start ``bangerd`` in ``home`` and wait until it answers ``daemon.status``."""
    from banger_core import system
    from banger_core.errors import DaemonError
    from banger_core.rpc.client import RPCClient

    home.paths.log_dir.mkdir(parents=True, exist_ok=True)
    output = home.paths.log_dir / "bangerd.test-output"
    env = home.env()
    for key in _SCRUBBED_ENV:
        env.setdefault(key, "")
    with open(output, "ab") as fh:
        proc = system.spawn(_script("bangerd") + list(args), stdout=fh, stderr=fh, env=env)
    home._pids.add(proc.pid)
    handle = DaemonHandle(home, proc, output)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"bangerd exited with {proc.returncode}: "
                f"{output.read_text(errors='replace').strip()}"
            )
        if handle.socket.exists():
            try:
                with RPCClient(handle.socket, timeout=5.0) as client:
                    client.call("daemon.status")
                return handle
            except DaemonError:
                pass
        time.sleep(0.02)
    handle.stop()
    raise RuntimeError(
        f"bangerd did not answer within {timeout:.0f}s: "
        f"{output.read_text(errors='replace').strip()}"
    )


@pytest.fixture
def banger_home(tmp_path: Path) -> Iterator[BangerHome]:
    """A private banger state dir and config; daemons started there are stopped afterwards."""
    root = tmp_path
    own_tmp = None
    if len(str(root / "state" / "run" / "bangerd.sock")) > _SOCKET_PATH_MAX:
        own_tmp = Path(tempfile.mkdtemp(prefix="banger-"))
        root = own_tmp
    state = root / "state"
    state.mkdir()
    config = root / "config.toml"
    netns = f"bgr-test-{secrets.token_hex(4)}" if os.geteuid() == 0 else ""
    home = BangerHome(root=root, state_dir=state, config=config, netns=netns)
    home.write_config("")
    try:
        yield home
    finally:
        home.cleanup()
        if own_tmp is not None:
            shutil.rmtree(own_tmp, ignore_errors=True)


@pytest.fixture
def banger_daemon(banger_home: BangerHome) -> Iterator[DaemonHandle]:
    """A running ``bangerd`` in ``banger_home``, stopped by PID afterwards."""
    handle = start_daemon(banger_home)
    try:
        yield handle
    finally:
        handle.stop()
        banger_home.stop_daemons()


@pytest.fixture
def banger_plugin_manager() -> Callable[..., Any]:
    """Factory: ``plugin_manager(plugin, ("name", plugin), disabled=[...])``.

    Plugins are registered as ``extra`` plugins (entry points are not loaded
    unless ``load_entrypoints=True``); a bare object is named after its
    ``__name__`` or class.
    """
    from banger_core.plugins import get_plugin_manager

    def build(
        *plugins: object, load_entrypoints: bool = False, disabled: Iterable[str] = ()
    ) -> Any:
        extra = []
        for plugin in plugins:
            if isinstance(plugin, tuple):
                extra.append(plugin)
            else:
                name = getattr(plugin, "__name__", None) or type(plugin).__name__.lower()
                extra.append((name, plugin))
        return get_plugin_manager(load_entrypoints=load_entrypoints, extra=extra, disabled=disabled)

    return build


@dataclass
class PluginSite:
    """A directory of throwaway installed distributions with ``banger`` entry points."""

    path: Path
    _added: list[str] = field(default_factory=list)

    def add(
        self,
        name: str,
        module: str,
        source: str | None = None,
        *,
        distribution: str | None = None,
        version: str = "0.0.1",
        target: str | None = None,
    ) -> Path:
        """Install a distribution whose ``banger`` entry point ``name`` loads ``module``.

        :param source: the module's code (written to ``<module>.py``); omit it
            when ``module`` is already importable (e.g. via ``pythonpath``).
        :param target: the entry point's value; defaults to ``module``.
        """
        dist = distribution or f"banger-test-{name}"
        if source is not None:
            (self.path / f"{module}.py").write_text(source)
        info = self.path / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir(exist_ok=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        (info / "entry_points.txt").write_text(f"[banger]\n{name} = {target or module}\n")
        self._added.append(module)
        importlib.invalidate_caches()
        return info


@pytest.fixture
def banger_plugin_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PluginSite]:
    """A throwaway site directory on ``sys.path`` for fake installed plugins.

    Add it to ``banger_home.pythonpath`` to make subprocesses see it too.
    """
    path = tmp_path / "site"
    path.mkdir()
    monkeypatch.syspath_prepend(str(path))
    site = PluginSite(path)
    try:
        yield site
    finally:
        for module in site._added:
            sys.modules.pop(module, None)
        importlib.invalidate_caches()


@dataclass
class CliResult:
    """Exit code and captured output of an in-process CLI run."""

    exit_code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        """``stdout`` parsed as JSON."""
        return json.loads(self.stdout)


@pytest.fixture
def banger_cli() -> Callable[..., CliResult]:
    """Run ``banger`` in this process: ``banger_cli(["plugins"], pm=pm, env={...})``."""
    from click.testing import CliRunner

    from banger_core.cli.main import main

    def run(
        args: Sequence[str], *, pm: Any = None, env: dict[str, str | None] | None = None
    ) -> CliResult:
        runner = CliRunner()
        with runner.isolation(env=env) as (out, err, _):
            code = main(list(args), pm=pm)
            sys.stdout.flush()
            sys.stderr.flush()
        return CliResult(code, out.getvalue().decode(), err.getvalue().decode())

    return run


@pytest.fixture
def banger_sim_host() -> Iterator[Any]:
    """A started simulated host (root only); closed, with all it made, afterwards."""
    if os.geteuid() != 0:
        pytest.skip("the simulated host needs root (network namespaces, TAP devices)")
    from pytest_banger.simhost import SimulatedHost

    with SimulatedHost() as host:
        host.start()
        yield host


@pytest.fixture
def banger_hostile_agent() -> Iterator[Callable[..., Any]]:
    """``banger_hostile_agent(host, vm)``: a scripted hostile agent in place of ``vm``'s own.

    Returns a :class:`pytest_banger.hostile_agent.HostileAgent`; every
    one taken is closed (the real agent put back) when the test ends.
    """
    from pytest_banger.hostile_agent import HostileAgent

    taken: list[HostileAgent] = []

    def take(host: Any, vm: str) -> HostileAgent:
        agent = HostileAgent.take_over(host, vm)
        taken.append(agent)
        return agent

    yield take
    for agent in taken:
        agent.close()


# -- deprecated names ----------------------------------------------------------
# The first release named these fixtures without the ``banger_`` prefix; those
# names keep working through this release and warn. They are removed next.


def _deprecated(old: str, new: str) -> Any:
    def fixture(request: pytest.FixtureRequest) -> Any:
        import warnings

        warnings.warn(
            f"the pytest fixture {old!r} is deprecated; use {new!r}",
            DeprecationWarning,
            stacklevel=2,
        )
        return request.getfixturevalue(new)

    fixture.__name__ = old
    fixture.__doc__ = f"Deprecated alias of ``{new}``."
    return pytest.fixture(name=old)(fixture)


daemon = _deprecated("daemon", "banger_daemon")
plugin_manager = _deprecated("plugin_manager", "banger_plugin_manager")
plugin_site = _deprecated("plugin_site", "banger_plugin_site")
sim_host = _deprecated("sim_host", "banger_sim_host")
