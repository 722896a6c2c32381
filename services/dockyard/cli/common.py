"""What every command shares: options, settings, running a coroutine with expected errors turned
into one line, the bus connection, and the checks that an app exists."""

from __future__ import annotations

import os
import sys
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer

from dockyard.cli.errors import (
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    CliError,
    UnknownApp,
)
from dockyard.cli.output import err, pipe_closed

if TYPE_CHECKING:
    from dockyard.client import DockyardClient
    from dockyard.settings import Settings

T = TypeVar("T")

DataDir = Annotated[Path | None, typer.Option(
    "--data-dir", help="Data dir (default ./.dockyard or DOCKYARD_DATA_DIR).")]
AsJson = Annotated[bool, typer.Option(
    "--json", help="Print one JSON object (JSON lines for a stream) instead of text.")]
AppArg = Annotated[str, typer.Argument(metavar="APP", help="The app's name.")]
Create = Annotated[bool, typer.Option(
    "--create", help="Set this up for an app that has nothing yet (before its first deploy).")]

# The exceptions a user can cause, by module: an exception can only be raised once its module is
# loaded, so the check imports nothing (a command that never touched the bus never loads nats).
_EXPECTED = {
    "dockyard.settings": ("SettingsError",),
    "dockyard.client": ("ClientError",),
    "dockyard.api_client": ("ApiError",),
    "dockyard.contract.names": ("InvalidName",),
    "dockyard.pipeline.config": ("ConfigError",),
    "dockyard.pipeline.rollback": ("RollbackError",),
    "dockyard.plan.errors": ("PlanError",),
    "dockyard.contract.sinks": ("SinkError",),
    "dockyard.state.maintenance": ("MaintenanceError",),
    "dockyard.state.rollouts": ("NoRollout",),
    "dockyard.contract.plan": ("RolloutError",),
    "dockyard.bus.service": ("UnknownServiceError",),
    "dockyard.bus.auth": ("BusAuthError",),
    "dockyard.bus.embedded": ("NatsServerError",),
    "dockyard.stack": ("StackError",),
    "dockyard.runtime.select": ("UnknownRuntimeError",),
    "dockyard.router.caddy": ("RouterError",),
    "dockyard.store.db": ("StoreError",),
}


def expected_errors() -> tuple[type[BaseException], ...]:
    """The user-caused exception classes of every module loaded so far."""
    found: list[type[BaseException]] = [CliError]
    for module, names in _EXPECTED.items():
        loaded = sys.modules.get(module)
        found += (getattr(loaded, name) for name in names if loaded and hasattr(loaded, name))
    return tuple(found)


def bus_failure(exc: BaseException) -> str | None:
    """A one-line description of a failure of the bus connection (None if it is not one)."""
    errors = sys.modules.get("nats.errors")
    if errors is None or not isinstance(exc, errors.Error):
        return None
    return f"the bus did not answer as expected: {exc}"


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """Print one error line on stderr and exit."""
    err.line(f"error: {message}", style="red")
    raise typer.Exit(code)


def settings_from(data_dir: Path | None = None, **overrides: Any) -> Settings:
    """Settings from the environment and the flags (one error line if unusable)."""
    from dockyard.settings import Settings, SettingsError

    try:
        return Settings.from_env(data_dir=data_dir, **overrides)
    except SettingsError as exc:
        fail(str(exc))


def checked_app(app: str) -> str:
    """An app name usable as a host label and a subject token (one error line if not)."""
    from dockyard.contract.names import InvalidName, check_app

    try:
        return check_app(app)
    except InvalidName as exc:
        fail(str(exc))


def _stdout_is_pipe() -> bool:
    import stat

    try:
        return stat.S_ISFIFO(os.fstat(sys.stdout.fileno()).st_mode)
    except (OSError, ValueError, AttributeError):
        return False


def _on_reader_gone(callback: Callable[[], None]) -> None:
    """Call back (from a daemon thread) once the reader of stdout, a pipe, goes away: a command
    waiting for the next event notices `| head -1` at once, not at its next write."""
    import select
    import threading

    def wait() -> None:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), 0)  # POLLERR: the read end is closed
        while True:
            try:
                if poller.poll():
                    callback()
                    return
            except InterruptedError:
                continue

    threading.Thread(target=wait, name="stdout-reader", daemon=True).start()


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine; expected errors become one line (exit 2), Ctrl-C exit 130 and a closed
    pipe exit 141, all without a traceback."""
    import asyncio

    gone = False

    async def main() -> T:
        if _stdout_is_pipe():
            loop, task = asyncio.get_running_loop(), asyncio.current_task()

            def stop() -> None:
                nonlocal gone
                gone = True
                if task is not None:
                    loop.call_soon_threadsafe(task.cancel)

            _on_reader_gone(stop)
        return await coro

    try:
        return asyncio.run(main())
    except KeyboardInterrupt:
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except BrokenPipeError:
        pipe_closed()
    except asyncio.CancelledError:
        if gone:
            pipe_closed()
        raise
    except typer.Exit:
        raise
    except Exception as exc:
        if isinstance(exc, expected_errors()):
            fail(str(exc), getattr(exc, "code", EXIT_USAGE))
        if (message := bus_failure(exc)) is not None:
            fail(message)
        if isinstance(exc, OSError):  # the machine refused: permissions, a full disk, a path
            fail(str(exc))
        raise


def quiet_logs() -> None:
    """Library logs on stderr, warnings and up (DOCKYARD_LOG_LEVEL to see more)."""
    from dockyard.log_config import configure_logging

    configure_logging(os.environ.get("DOCKYARD_LOG_LEVEL") or "WARNING")


async def with_client(settings: Settings, body: Callable[[DockyardClient], Awaitable[T]]) -> T:
    """Connect to the bus, run body, close.

    Closed at once, never drained: every publish was acknowledged already, and a drain
    interrupted by Ctrl-C or a closed pipe leaves nats-py's gathered tasks complaining."""
    from dockyard.client import DockyardClient

    quiet_logs()
    client = await DockyardClient.connect(settings)
    try:
        return await body(client)
    finally:
        await client.close(at_once=True)


async def require_app(client: DockyardClient, app: str, *, can_create: bool = False) -> None:
    """UnknownApp unless the app has deployments, config, hooks, sinks or a live release."""
    if not await client.app_exists(app):
        raise UnknownApp(app, can_create=can_create)
