"""User-facing error types.

Every error a user can cause or see is a :class:`BangerError`. The CLI prints
it as one line (no traceback unless ``--debug``); the daemon carries its
``code`` across RPC so the CLI can re-raise the right class.
"""

from __future__ import annotations


class BangerError(Exception):
    """Base class for every error shown to a user as one line."""

    code = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ValidationError(BangerError):
    """Bad input: names the bad value and what is allowed."""

    code = "invalid"


class NotFoundError(BangerError):
    """A named thing (VM, image, plugin, operation) does not exist."""

    code = "not_found"


class UnknownMethodError(NotFoundError):
    """No RPC method of that name is registered (a plugin that adds it is not installed).

    A :class:`NotFoundError`, so code catching that keeps working; tell it from
    a missing VM by class (``except UnknownMethodError``), never by the text.
    """

    code = "unknown_method"


class ConflictError(BangerError):
    """The request clashes with current state (name taken, image in use, VM running)."""

    code = "conflict"


class ConfigError(BangerError):
    """The configuration file or environment is wrong; names file and key."""

    code = "config"


class PluginError(BangerError):
    """A plugin failed to load or misbehaved; names the plugin."""

    code = "plugin"


class CommandError(BangerError):
    """An external program failed; carries its argv, exit code and stderr."""

    code = "command"

    def __init__(self, argv: list[str], returncode: int | None, stderr: str) -> None:
        detail = stderr.strip().splitlines()[-1] if stderr.strip() else "no output"
        status = "timed out" if returncode is None else f"exited {returncode}"
        super().__init__(f"{argv[0]} {status}: {detail}")
        self.argv = argv
        self.returncode = returncode
        self.stderr = stderr


class DaemonError(BangerError):
    """The daemon could not be reached or answered badly."""

    code = "daemon"


class DeniedError(DaemonError):
    """The daemon refused this user (not root, not the daemon's user, not in socket_group)."""

    code = "denied"


class ForbiddenError(BangerError):
    """The caller may not do this (e.g. name a host path outside the allowed directories)."""

    code = "forbidden"


class InternalError(BangerError):
    """A bug: something failed that should have been a clear error."""

    code = "internal"


class CancelledError(BangerError):
    """An operation was cancelled by the user."""

    code = "cancelled"


def plugin_error(exc: BaseException, plugin: str, hook: str) -> BaseException:
    """A plugin hook's exception ``exc`` as the core raises it: naming the plugin (and hook).

    A :class:`BangerError` keeps its class with ``plugin NAME: `` before its
    message; any other exception becomes a :class:`PluginError`.
    """
    if isinstance(exc, BangerError):
        message = str(exc)
        if message.startswith(f"plugin {plugin}") or message.startswith(f"{plugin}:"):
            return exc
        err = type(exc).__new__(type(exc))
        err.__dict__.update(exc.__dict__)
        err.message = f"plugin {plugin}: {message}"
        err.args = (err.message,)
        return err
    if isinstance(exc, Exception):
        return PluginError(f"plugin {plugin}: {hook}: {type(exc).__name__}: {exc}")
    return exc  # KeyboardInterrupt, cancellation: pass through untouched


ERRORS_BY_CODE: dict[str, type[BangerError]] = {
    cls.code: cls
    for cls in (
        BangerError,
        ValidationError,
        NotFoundError,
        UnknownMethodError,
        ConflictError,
        ConfigError,
        PluginError,
        CommandError,
        DaemonError,
        DeniedError,
        InternalError,
        CancelledError,
        ForbiddenError,
    )
}


def error_from_code(code: str, message: str) -> BangerError:
    """Rebuild a user-facing error received over RPC."""
    cls = ERRORS_BY_CODE.get(code, BangerError)
    if cls is CommandError:
        err = BangerError(message)
        err.code = code
        return err
    return cls(message)
