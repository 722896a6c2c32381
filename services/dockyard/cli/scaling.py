"""scale and restart: change how many instances of each process type the live release runs, or
replace them one by one; both follow the operation to its end."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from dockyard.cli.common import (
    AppArg,
    DataDir,
    checked_app,
    fail,
    require_app,
    run,
    settings_from,
    with_client,
)
from dockyard.cli.output import out

if TYPE_CHECKING:
    from dockyard.client import DockyardClient, ScaleEnd
    from dockyard.contract.events import LogLine

commands = typer.Typer()
PANEL = "Deploying"
MAX_SCALE = 20  # dockyard.contract.events.MAX_SCALE (not imported: --help stays fast)

Counts = Annotated[list[str] | None, typer.Argument(
    metavar="PROCESS=COUNT...", help="e.g. web=2 worker=0 (each count 0..20).")]
Process = Annotated[str | None, typer.Argument(
    metavar="[PROCESS]", help="One process type (default: every one).")]
Timeout = Annotated[float | None, typer.Option(
    "--timeout", help="Stop following after this many seconds (exit 2); the operation goes on.")]


def parse_counts(items: list[str]) -> dict[str, int]:
    """`web=2 worker=0` as counts; a one-line error (exit 2) for anything else."""
    counts: dict[str, int] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name or not value.strip().lstrip("-").isdigit():
            fail(f"expected PROCESS=COUNT (e.g. web=2), got {item!r}")
        count = int(value)
        if not 0 <= count <= MAX_SCALE:
            fail(f"{name}={count}: a count must be between 0 and {MAX_SCALE}")
        if name in counts:
            fail(f"{name} is given twice")
        counts[name] = count
    if not counts:
        fail("no process type to scale (e.g. web=2)")
    return counts


def _operate(app_name: str, kind: str, counts: dict[str, int] | None, process: str | None,
             timeout: float | None, data_dir: DataDir) -> None:
    settings = settings_from(data_dir)
    app = checked_app(app_name)

    async def print_line(line: LogLine) -> None:
        out.line(line.text)

    async def body(client: DockyardClient) -> ScaleEnd:
        await require_app(client, app)
        try:
            return await client.scale(app, kind=kind, counts=counts, process=process,
                                      wait=timeout, on_line=print_line)
        except TimeoutError:
            fail(f"still running after {timeout:g}s; it goes on (dockyard ps {app})")

    from dockyard.contract.events import ScaleFailed

    end = run(with_client(settings, body))
    if isinstance(end, ScaleFailed):
        fail(f"{kind} failed: {end.data.reason}", 1)
    formation = ", ".join(f"{k}={v}" for k, v in end.data.formation.items())
    out.line(f"{app} v{end.release}: {formation}")


@commands.command(rich_help_panel=PANEL, epilog=(
    "Examples:\n\n  dockyard scale shop web=2\n\n  dockyard scale shop web=2 worker=0"))
def scale(app_name: AppArg, counts: Counts = None, timeout: Timeout = None,
          data_dir: DataDir = None) -> None:
    """Run COUNT instances of each PROCESS of the live release (kept for later deploys)."""
    _operate(app_name, "scale", parse_counts(counts or []), None, timeout, data_dir)


@commands.command(rich_help_panel=PANEL, epilog=(
    "Examples:\n\n  dockyard restart shop\n\n  dockyard restart shop web"))
def restart(app_name: AppArg, process: Process = None, timeout: Timeout = None,
            data_dir: DataDir = None) -> None:
    """Replace the live release's instances (of one PROCESS, or all): new ones start and pass
    their health check before the old ones stop."""
    _operate(app_name, "restart", None, process, timeout, data_dir)
