"""run: a one-off command from an app's live release, its output streamed, its exit code kept."""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING, Annotated

import typer

from dockyard.cli import common
from dockyard.cli.common import AppArg, AsJson, DataDir, checked_app, require_app, settings_from
from dockyard.cli.errors import EXIT_INTERRUPTED, CliError
from dockyard.cli.output import err, out

if TYPE_CHECKING:
    from dockyard.client import DockyardClient
    from dockyard.contract.events import LogLine

commands = typer.Typer()
PANEL = "Deploying"

# What `dockyard run` exits with after the command's timeout (as coreutils' `timeout` does).
EXIT_TIMEOUT = 124
# How long past the command's timeout the CLI waits for the run's end (the stop's grace, a
# queue of runs before it) before it gives up saying so.
END_SLACK = 120.0


class NoLiveRelease(CliError):
    """An app with nothing live to run a one-off from."""

    def __init__(self, app: str) -> None:
        super().__init__(f"app {app!r} has no live release to run from: deploy it first")


class RunNotRun(CliError):
    """A run the hook-runner refused or could not start (its reason as it said it)."""


def exit_code_of(code: int) -> int:
    """The CLI's exit code for a run's: 0-255 as is; a signal's death (-N) as a shell says it
    (128+N); anything else 1."""
    if 0 <= code <= 255:
        return code
    if -127 <= code < 0:
        return 128 - code
    return 1


@commands.command("run", rich_help_panel=PANEL, epilog=(
    "Examples:\n\n"
    "  dockyard run shop -- python manage.py migrate --check\n\n"
    "  dockyard run shop --timeout 60 -- sh -c 'echo $DATABASE_URL | wc -c'"))
def run_command(
    app: AppArg,
    argv: Annotated[list[str], typer.Argument(
        metavar="-- CMD [ARGS...]",
        help="The command and its arguments, after `--`, run by `sh -c` quoted as given (one "
             "argument alone is taken as a shell command line).")],
    timeout: Annotated[float, typer.Option(
        "--timeout", min=1, max=24 * 3600,
        help="Stop the command after this many seconds (SIGTERM, then SIGKILL); exit 124.")]
        = 3600.0,
    as_json: AsJson = False,
    data_dir: DataDir = None,
) -> None:
    """Run a one-off command from the app's live release, with that release's config as its
    environment: its output printed as it comes (stdout to stdout, stderr to stderr, redacted),
    the command's exit code passed through. No terminal (TTY) is attached: not interactive."""
    from dockyard.contract.events import RUN_NOT_RUN, new_id
    from dockyard.runtime.base import TIMEOUT_EXIT_CODE

    settings = settings_from(data_dir)
    app = checked_app(app)
    command = shlex.join(argv) if len(argv) > 1 else (argv[0] if argv else "")
    if not command.strip():
        common.fail("no command to run: give one after `--`, e.g. dockyard run APP -- ls")
    run_id = new_id()

    async def on_line(line: LogLine) -> None:
        if as_json:
            out.json(line)
        elif line.stream == "out":
            out.line(line.text)
        elif line.stream == "err":
            err.line(line.text)
        else:
            err.line(line.text, "cyan")

    async def body(client: DockyardClient) -> LogLine:
        await require_app(client, app)
        if await client.live(app) is None:
            raise NoLiveRelease(app)
        end = await client.run(app, command, on_line, limit=timeout, run_id=run_id,
                               wait=timeout + END_SLACK)
        if end.exit_code == RUN_NOT_RUN:
            raise RunNotRun(end.text)
        return end

    try:
        end = common.run(common.with_client(settings, body))
    except typer.Exit as exc:
        if exc.exit_code == EXIT_INTERRUPTED:
            err.line(f"interrupted: run {run_id} goes on until it ends or its timeout "
                     f"({timeout:g}s); its output is no longer shown")
        raise
    if as_json:
        out.json(end)
    code = end.exit_code if end.exit_code is not None else 1
    if code == TIMEOUT_EXIT_CODE:
        err.line(f"error: {end.text}", style="red")
        raise typer.Exit(EXIT_TIMEOUT)
    raise typer.Exit(exit_code_of(code))

