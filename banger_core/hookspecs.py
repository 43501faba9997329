"""The hook contract between banger's core and its plugins.

Every hook is prefixed ``banger_`` and grouped by lifecycle phase. Hooks are
called with keyword arguments only, so an implementation may accept fewer
arguments than the spec names (new arguments never break old plugins). Never
give a hookimpl argument a default value: pluggy will not pass it.

Plugins import the marker as ``from banger_core import hookimpl``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import click

    from banger_core.api import DaemonAPI, PluginCall
    from banger_core.doctor import Check, DoctorContext
    from banger_core.guestconfig import GuestConfig
    from banger_core.hookcontext import LifecycleContext
    from banger_core.images.artifacts import ImageArtifact, ImageBuildContext
    from banger_core.images.providers import GuestOS, ProvisionStep
    from banger_core.lifecycle.machine import MachineSpec
    from banger_core.lifecycle.ready import ReadyCheck
    from banger_core.lifecycle.vm import VM, VMSpec
    from banger_core.pluginconfig import Option
    from banger_core.vmmbackends import VMMBackend
    from banger_core.vmoptions import VMOption

PROJECT = "banger"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

#: A handler a plugin adds with :func:`banger_rpc_methods`:
#: ``handler(params, call) -> JSON-able`` (or an ``async def`` returning it).
RPCHandler = Callable[[dict[str, Any], "PluginCall"], Any]

#: A plugin's exception stops the operation (a create or start rolls back
#: completely), the error naming the plugin; a result of the wrong type is
#: ignored and reported.
ABORT = "abort"
#: A plugin's exception or result of the wrong type is reported (one line
#: naming the plugin, the hook and what was wrong) and that plugin's
#: contribution skipped; the other plugins' results are used.
SKIP = "skip"
#: Every plugin is called whatever the others did; each failure is reported
#: (one line naming the plugin and the hook) and the operation goes on.
ISOLATE = "isolate"

#: What the core does when a plugin's implementation misbehaves, per hook. The
#: hook facade (:class:`banger_core.plugins.Hooks`) checks every result
#: against the hookspec's return annotation; a list or mapping keeps its
#: items of the declared type and drops the others (reported). A test fails
#: for a hookspec missing here.
ON_FAILURE: dict[str, str] = {
    "banger_config_defaults": SKIP,
    "banger_cli_commands": SKIP,
    "banger_cli_subcommands": SKIP,
    "banger_daemon_started": ISOLATE,
    "banger_daemon_stopping": ISOLATE,
    "banger_daemon_status": SKIP,
    "banger_rpc_methods": SKIP,
    "banger_doctor_checks": SKIP,
    "banger_vmm_backends": SKIP,
    "banger_vm_validate": ABORT,
    "banger_vm_options": SKIP,
    "banger_vm_create": ABORT,
    "banger_vm_configure": ABORT,
    "banger_vm_set": ABORT,
    "banger_vm_started": ABORT,
    "banger_vm_ready_checks": ABORT,
    "banger_vm_stopped": ISOLATE,
    "banger_vm_deleted": ISOLATE,
    "banger_reconcile": ISOLATE,
    "banger_vm_dns_names": SKIP,
    "banger_guest_os": SKIP,
    "banger_image_provision": ABORT,
    "banger_image_artifacts": ABORT,
}


# --------------------------------------------------------------------------
# Loading: configuration and the command line
# --------------------------------------------------------------------------


@hookspec
def banger_config_defaults() -> dict[str, Option]:
    """Declare the plugin's configuration keys.

    Called once when configuration is loaded, in the daemon and in the CLI.
    The core calls each plugin's implementation separately, so it knows which
    plugin declared which keys; they become the ``[plugins.<name>]`` section.

    :return: a mapping of key name to :class:`banger_core.Option`
        (default value, type, description). Unknown keys in a user's
        ``[plugins.<name>]`` section, and values of the wrong type, are
        reported with the file and key.
    """


@hookspec
def banger_cli_commands() -> list[click.Command]:
    """Add commands to the ``banger`` command line.

    Called every time the CLI starts, so keep the module that implements it
    cheap to import: import daemon-side code inside the command's callback,
    never at module level. Commands talk to the daemon through
    :func:`banger_core.rpc` (usually a method the same plugin
    added with :func:`banger_rpc_methods`).

    :return: click commands or groups. A name that clashes with a core
        command or another plugin's command is refused with an error naming
        both plugins.
    """


@hookspec
def banger_cli_subcommands() -> dict[str, list[click.Command]]:
    """Add commands under the core's command groups (``banger vm <yours>``).

    Called every time the CLI builds that group, with the same rules as
    :func:`banger_cli_commands` (cheap module, daemon work over RPC).

    :return: a mapping of group path (``"vm"``, ``"image"``, ``"daemon"``,
        ``"config"``) to click commands. A name that clashes with a core
        subcommand or another plugin's is refused with a warning naming both.
    """


# --------------------------------------------------------------------------
# Daemon: start-up, shutdown, RPC
# --------------------------------------------------------------------------


@hookspec
def banger_daemon_started(daemon: DaemonAPI) -> None:
    """Start the plugin's long-running services (a DNS server, a watcher).

    Called once in ``bangerd`` after the store is open, reconcile has run and
    the RPC socket listens, in a worker thread (blocking is fine; the daemon
    serves requests only after every implementation returned). Plugins are
    called one at a time: when one raises, the others still start, the
    failure is logged naming the plugin, and ``banger daemon status`` shows
    the daemon as degraded with that line.

    :param daemon: what plugins get of the daemon, :class:`banger_core.DaemonAPI`:
        ``daemon.settings``, ``daemon.plugin_config(name)``, ``daemon.vm(ref)``,
        ``daemon.list_vms()``, ``daemon.save_plugin_state(vm, name)``,
        ``daemon.state_dir`` and ``daemon.runner``.
    """


@hookspec
def banger_daemon_stopping(daemon: DaemonAPI) -> None:
    """Stop what :func:`banger_daemon_started` started.

    Called once when ``bangerd`` shuts down (SIGTERM, ``banger daemon stop``),
    one plugin at a time in reverse setup order; a failure is logged naming
    the plugin. Must not raise for services that never started. Running VMs
    keep running.
    """


@hookspec
def banger_daemon_status(daemon: DaemonAPI) -> dict[str, Any]:
    """Describe the plugin's running services for ``banger daemon status``.

    Called by every ``daemon.status`` request (also while the daemon still
    starts), so it must be quick and must not raise for services that have
    not started yet.

    :param daemon: :class:`banger_core.DaemonAPI`, as in
        :func:`banger_daemon_started`.
    :return: a JSON-able mapping (``{"listeners": ["udp 127.0.0.1:42069"]}``)
        shown under the plugin's name in ``banger daemon status`` and in its
        ``--json`` output (``plugin_services.<name>``); an empty mapping or
        ``None`` shows nothing. A plugin that raises shows ``{"error": ...}``.
    """


@hookspec
def banger_rpc_methods() -> dict[str, RPCHandler]:
    """Add JSON-RPC methods to the daemon.

    Called once at daemon start.

    :return: a mapping of method name (``"vm.ports"``, ``area.verb``) to a
        callable ``handler(params: dict, call: banger_core.RPCCall) -> JSON-able``
        (sync or ``async``). Sync handlers run in a worker thread. ``call``
        gives ``call.vm(ref)`` (a :class:`banger_core.VM` by name, id or unique
        id prefix; :class:`banger_core.NotFoundError` or
        :class:`banger_core.ConflictError` like the core's own commands),
        ``call.config`` (the plugin's section), ``call.daemon``
        (:class:`banger_core.DaemonAPI`), ``call.runner``, ``call.log`` and
        ``call.cancelled`` (an event set when the client went away). Raise a
        :class:`banger_core.BangerError` for user errors; the CLI re-raises it
        with the same class. A name that clashes with a core method or
        another plugin's is refused (logged with both owners).

    Plugins cooperate through methods, never by importing each other:
    ``call.call(method, params)`` runs another registered method (core or
    plugin) in the same worker thread for the same peer (banger-ports asks
    ``vm.show`` for a VM's ``dns_names`` and banger-vsock's ``vm.agent`` for
    the guest's listeners); a method nobody registered raises
    :class:`banger_core.UnknownMethodError` (a ``NotFoundError``: tell it
    from a missing VM by its class, never by the message). A handler may return
    ``banger_core.PassFd(result, fd)``: the reply then carries an open
    file descriptor (``SCM_RIGHTS``; the daemon closes its copy), received
    by the CLI with ``RPCClient.call_with_fd(method, params) -> (result,
    fd)`` (banger-vsock hands the CLI a connected guest-agent stream so
    ``vm exec`` data never passes through the daemon).
    """


# --------------------------------------------------------------------------
# Diagnostics
# --------------------------------------------------------------------------


@hookspec
def banger_doctor_checks(ctx: DoctorContext) -> list[Check]:
    """Report whether the host is ready for what the plugin does.

    Called by ``banger doctor`` and by the preflight of every operation,
    before it changes anything: a failing check with ``required=True``
    stops ``vm create`` and ``vm start``; one whose ``needed_by`` names an
    operation stops that operation (``"vm.set"``, ``"image.build"``), or
    only its uses with an option that is on (``"vm.set --disk-size"``,
    ``"vm.create --nat"``, ``"image.build --os debian"``). The error names
    the check, what was found and its ``fix``.

    :param ctx: this plugin's :class:`banger_core.DoctorContext`:
        ``ctx.config`` (its own section), ``ctx.settings``, ``ctx.which`` and
        ``ctx.preflight``.
    :return: :class:`banger_core.Check` items
        (``Check(name, ok, detail="", fix="", required=False, needed_by=())``;
        the core sets ``source`` to the plugin's name), each with a fix hint
        when it fails. Must be quick and side-effect free.
    """


@hookspec
def banger_vmm_backends() -> list[VMMBackend]:
    """Make Firecracker-compatible VMMs available as back-ends.

    A real ``firecracker`` binary is the core's default; a distribution that
    ships another program speaking Firecracker's command line and HTTP API
    (``banger-fcsim``, ``banger-fcqemu``, a third party's) registers it here.
    Users select one with ``[firecracker] backend = "NAME"`` (``[firecracker]
    binary`` / ``BANGER_FIRECRACKER_BIN`` win over it); ``banger doctor`` and
    ``banger daemon status`` name the back-end in use, and doctor runs its
    probe.

    :return: :class:`banger_core.VMMBackend` items (name, program,
        description, capabilities, and an optional ``probe(path)`` that
        says whether the host can run it).
    """


# --------------------------------------------------------------------------
# VM lifecycle
# --------------------------------------------------------------------------


@hookspec
def banger_vm_validate(spec: VMSpec, ctx: LifecycleContext) -> None:
    """Reject bad input before anything changes.

    Called by ``vm create`` (``spec.is_create``) and ``vm set`` before the
    store or the host is touched.

    :param spec: the requested name, image, cpus, memory and disk size, and
        for ``vm set`` the current VM and the changed fields.
    :param ctx: this plugin's :class:`banger_core.LifecycleContext` (its
        ``ctx.config``, ``ctx.runner``, ``ctx.log``; nothing to undo here, so
        ``ctx.add_undo`` refuses). Implementations written before it existed
        omit the argument and keep working.
    :raise banger_core.ValidationError: one line naming the bad value
        and what is allowed.
    """


@hookspec
def banger_vm_options() -> list[VMOption]:
    """Declare per-VM options for ``vm create`` and ``vm set``.

    Called when the CLI builds ``vm create`` / ``vm set`` (the declarations
    are cached, so ``--help`` shows them without importing the plugin) and
    once when the daemon starts. Each :class:`banger_core.VMOption` becomes a
    flag (``--nat/--no-nat`` for a ``bool``, a repeatable flag for a
    ``list``); the CLI sends only the values the user gave, the daemon type
    checks them, runs the option's ``validator``, and stores the effective
    values of every option with the VM at create. Read them with
    ``vm.plugin_options(<your name>)`` (defaults filled in); ``vm show``
    prints them. A name already used by the core or another plugin is
    refused with a warning naming both.

    :return: :class:`banger_core.VMOption` items.
    """


@hookspec
def banger_vm_create(vm: VM, ctx: LifecycleContext) -> None:
    """Allocate the plugin's persistent per-VM resources (a work disk).

    Called once by ``vm create`` after the core made the VM's directory,
    root disk and network allocation, before the first boot. Register an
    undo for everything you make with ``ctx.add_undo(fn, description)``: if
    any later step fails the core runs the undos in reverse order; undos a
    hook registered before it raised run too. When one plugin's create hook
    raises, the plugins after it are not called and the create rolls back.
    Keep per-VM state in ``vm.plugin_state(<your name>)`` (a dict the core
    stores); read your per-VM options with ``vm.plugin_options(<your name>)``.

    :param ctx: this plugin's :class:`banger_core.LifecycleContext`:
        ``ctx.config``, ``ctx.runner``, ``ctx.log``, ``ctx.add_undo``,
        ``ctx.failpoint``.
    """


@hookspec
def banger_vm_configure(
    vm: VM, machine: MachineSpec, guest: GuestConfig, ctx: LifecycleContext
) -> None:
    """Describe the plugin's part of the machine for this boot.

    Called at every boot (create and start), before the VMM is launched.
    Add drives, NICs or a vsock device to ``machine`` and fragments (mounts,
    files, plugin data) to ``guest``; both are rebuilt from scratch at every
    boot and must be deterministic. ``machine.add_drive(...)`` returns the
    device the guest sees (``/dev/vdb``); it is the only way to learn it, so
    pass that value to ``guest.add_mount``. Because it runs at every start,
    this is also where a plugin installed after the VM was created prepares
    what it needs (register undos for anything made here).
    """


@hookspec
def banger_vm_set(vm: VM, changes: dict[str, Any], ctx: LifecycleContext) -> None:
    """Apply a change to a VM (``vm set``).

    :param changes: the fields the user changed: core fields (``cpus``,
        ``memory_mib``) and plugin options by their key (``scratch_size``
        in bytes, ``nat``), already validated. Options declared with
        ``set_requires_stopped`` (the default) are only changed while the VM
        is stopped.
    Register undos on ``ctx`` like :func:`banger_vm_create`; the new values
    are stored only after every plugin's hook returned.
    """


@hookspec
def banger_vm_started(vm: VM, ctx: LifecycleContext) -> None:
    """Publish a running VM (a DNS record, NAT rules).

    Called after the VMM booted the guest, at every start. Must be
    idempotent: reconcile calls it again for VMs that are still running
    when the daemon starts (then ``ctx.add_undo`` undos are dropped). Undos
    registered during a create or start run if a later stage fails.
    """


@hookspec
def banger_vm_ready_checks(vm: VM, ctx: LifecycleContext) -> list[ReadyCheck]:
    """Say what must answer before a booted VM counts as ready.

    Called by ``vm create`` and ``vm start`` (and ``restart``) after the
    "waiting for SSH" stage and before :func:`banger_vm_started`. The core
    runs each returned check as a stage of its own named ``check.name``
    (shown live by ``vm create``, e.g. ``waiting for agent``, in plugin
    order), calling ``check.wait(timeout, cancelled)``: block until the VM
    answers, at most ``timeout`` seconds (the check's own ``timeout``, else
    ``[vm] ssh_timeout_seconds``), polling ``cancelled()`` (true after
    Ctrl-C). Raise a :class:`banger_core.BangerError` naming what did not
    answer; the create or start then fails and rolls back completely.
    banger-vsock returns one check polling the guest agent's ``/healthz``.

    :return: :class:`banger_core.ReadyCheck` items
        (``ReadyCheck(name, wait, timeout=None, detail="")``).
    """


@hookspec
def banger_vm_stopped(vm: VM, ctx: LifecycleContext) -> None:
    """Release the host runtime state of a VM that is no longer running.

    Called after stop, kill, crash or a failed start. Must be idempotent and
    tolerant of handles that are already gone. The core calls each plugin
    separately, in the reverse of the setup order, so one failure neither
    hides the plugin name nor skips the other plugins. ``ctx.add_undo`` is
    not available here.
    """


@hookspec
def banger_vm_deleted(vm: VM, ctx: LifecycleContext) -> None:
    """Remove the plugin's persistent per-VM resources.

    Called by ``vm delete`` after the VM was stopped (and for a create the
    daemon died in), one plugin at a time in reverse setup order like
    :func:`banger_vm_stopped`. Must tolerate resources that are gone.
    """


@hookspec
def banger_reconcile(vms: list[VM], ctx: LifecycleContext) -> None:
    """Bring the plugin's host state in line with the store.

    Called at daemon start after the core marked dead VMs stopped, one
    plugin at a time in reverse setup order. Remove host leftovers that
    belong to no VM in ``vms`` and restore state for running VMs. Must be
    idempotent.
    """


@hookspec
def banger_vm_dns_names(vm: VM) -> list[str]:
    """Name the DNS names under which a VM can be reached.

    Called by ``vm show`` (its ``dns_names``, which plugins' RPC handlers
    read with ``call.call("vm.show", ...)``: banger-ports names endpoints
    this way), ``vm ssh-config`` (extra ``Host`` aliases) and any plugin that
    wants to show or use a VM's names (through the core's
    ``Hooks.vm_dns_names`` facade), in the daemon. Must be quick: answer
    from memory, never from the network.

    :param vm: the VM.
    :return: fully qualified names without the trailing dot
        (``["web.vm"]``); every plugin's names are collected, in plugin
        order, without duplicates. Return an empty list for a VM you do
        not publish (a stopped one).
    """


# --------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------


@hookspec
def banger_guest_os() -> list[GuestOS]:
    """Offer guest operating systems that ``banger image build`` can build.

    :return: :class:`banger_core.GuestOS` items (name,
        description, build function). The core's own Debian provider is
        always available; a plugin's provider of the same name replaces it.
    """


@hookspec
def banger_image_provision(image: dict[str, str], steps: list[ProvisionStep]) -> None:
    """Add provisioning steps to an image being built.

    Called once when ``banger image build`` starts, before the guest OS is
    bootstrapped.

    :param image: ``{"name": ..., "os": ...}`` of the image being built.
    :param steps: append :class:`banger_core.ProvisionStep`
        items (files to install into the root file system, in order, after
        banger's own guest files). Their content counts in the image's
        fingerprint.
    """


@hookspec
def banger_image_artifacts(
    image: dict[str, Any], root: Path, ctx: ImageBuildContext
) -> list[ImageArtifact]:
    """Add files of the plugin's own to an image being built.

    Called once per ``banger image build`` (and by the test image cache),
    after the guest OS is bootstrapped and provisioned and before ``root``
    becomes the read-only ``rootfs.ext4``. A plugin may move content out of
    the tree (a plugin that gives each VM a disk may move a directory into
    its seed image) and
    write files into ``ctx.out_dir``; ``ctx.make_ext4(source, dest, label=...)``
    turns a directory into an ext4 image, ``ctx.runner`` runs programs. Which
    plugins implement this hook is part of the image's fingerprint. When the
    plugin is disabled, images are built without its artifacts.

    :param image: ``{"name": ..., "os": ...}`` of the image being built.
    :param root: the image's root file system tree (a directory).
    :return: :class:`banger_core.ImageArtifact` items (a name such as
        ``"scratch-seed"`` and a file directly in ``ctx.out_dir``); hooks find
        them as ``vm.image.artifact(name)``.
    """
