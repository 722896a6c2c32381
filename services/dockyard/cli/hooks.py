"""hooks (show, add, rm): the merged hook plan of an app and its operator hooks."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperGroup

from dockyard.cli.common import (
    AppArg,
    AsJson,
    Create,
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
    from dockyard.client import DockyardClient
    from dockyard.contract.plan import Plan


class _ShowByDefault(TyperGroup):
    """`dockyard hooks APP` means `dockyard hooks show APP`."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["show", *args]
        return super().parse_args(ctx, args)


hooks_app = typer.Typer(cls=_ShowByDefault, no_args_is_help=True,
                        help="The merged hook plan of an app; operator hooks (add, rm).")


def plan_rows(plan: Plan) -> list[list[object]]:
    """The plan's commands as table rows, in the order a deploy runs them."""
    from dockyard.contract.phase import HOOK_PHASES

    return [[phase.value, i, cmd.label, cmd.command, f"{cmd.timeout:g}s", cmd.source]
            for phase in HOOK_PHASES
            for i, cmd in enumerate(plan.commands(phase), start=1)]


@hooks_app.command("show", epilog="Examples:\n\n  dockyard hooks shop\n\n"
                                  "  dockyard hooks show shop --json")
def hooks_show(app_name: AppArg, as_json: AsJson = False, data_dir: DataDir = None) -> None:
    """Print the merged plan, in order, with where each command came from."""
    settings = settings_from(data_dir)
    app = checked_app(app_name)

    async def body(client: DockyardClient) -> tuple[Plan, int | None]:
        await require_app(client, app)
        return await client.plan(app)

    plan, live = run(with_client(settings, body))
    if as_json:
        import msgspec

        out.json({"app": app, "live_release": live, "plan": msgspec.to_builtins(plan)})
        return
    out.line(f"{app}: plan of "
             + (f"the live build (v{live})" if live else "operator hooks only (no release yet)"),
             style="bold")
    out.table(["phase", "#", "label", "command", "timeout", "source"], plan_rows(plan))
    if plan.processes:
        out.line("processes: " + ", ".join(f"{p.name}×{p.scale}" for p in plan.processes))
    for note in plan.notes:
        out.line(f"note: {note}", style="dim")


@hooks_app.command("add", epilog=(
    "Examples:\n\n"
    "  dockyard hooks add shop postdeploy --label 'Warm cache' -- ./bin/warm\n\n"
    "  dockyard hooks add newapp release --label Migrate --timeout 20m --create -- ./migrate"))
def hooks_add(
    app_name: AppArg,
    phase: Annotated[str, typer.Argument(
        help="predeploy, release, postdeploy, after_switch, on_failure.")],
    command: Annotated[list[str], typer.Argument(metavar="-- COMMAND...")],
    label: Annotated[str, typer.Option("--label", "-l", help="Label shown in the deploy log.")],
    timeout: Annotated[str | None, typer.Option(
        help="e.g. 90s, 20m (default: the phase's).")] = None,
    memory: Annotated[str | None, typer.Option(help="e.g. 512M, 1G (default 512M).")] = None,
    create: Create = False,
    data_dir: DataDir = None,
) -> None:
    """Add an operator hook; it runs after the repository's commands of that phase."""
    from dockyard.contract.manifest import OperatorHook
    from dockyard.plan.durations import parse_duration, parse_memory
    from dockyard.plan.errors import PlanError
    from dockyard.plan.operator import validate_hook

    settings = settings_from(data_dir)
    app = checked_app(app_name)
    try:
        hook = validate_hook(OperatorHook(
            phase=phase, label=label, command=" ".join(command),
            timeout=parse_duration(timeout) if timeout else None,
            memory=parse_memory(memory) if memory else None))
    except (ValueError, PlanError) as exc:
        fail(str(exc))

    async def body(client: DockyardClient) -> int:
        if not create:
            await require_app(client, app, can_create=True)
        return len((await client.add_hook(app, hook)).hooks)

    count = run(with_client(settings, body))
    out.line(f"added {phase} hook '{label}' to {app} ({count} operator hook(s))")


@hooks_app.command("rm", epilog="Example:\n\n  dockyard hooks rm shop postdeploy 'Warm cache'")
def hooks_rm(
    app_name: AppArg,
    phase: Annotated[str, typer.Argument(help="The hook's phase.")],
    label: Annotated[str, typer.Argument(help="The hook's label.")],
    data_dir: DataDir = None,
) -> None:
    """Remove an operator hook by phase and label."""
    from dockyard.plan.errors import PlanError
    from dockyard.plan.operator import validate_phase

    settings = settings_from(data_dir)
    app = checked_app(app_name)
    try:
        validate_phase(phase, label)
    except PlanError as exc:
        fail(str(exc))

    async def body(client: DockyardClient) -> None:
        await require_app(client, app)
        await client.remove_hook(app, phase, label)

    run(with_client(settings, body))
    out.line(f"removed {phase} hook '{label}' from {app}")
