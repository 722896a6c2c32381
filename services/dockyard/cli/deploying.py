"""deploy, cancel, logs, events: requesting deploys and following what they do."""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from dockyard.cli.common import (
    AppArg,
    AsJson,
    DataDir,
    checked_app,
    fail,
    require_app,
    run,
    settings_from,
    with_client,
)
from dockyard.cli.errors import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    DeploymentEnded,
    ProcessNeedsApp,
)
from dockyard.cli.output import Output, err, out

if TYPE_CHECKING:
    import asyncio

    from dockyard.client import DestroyOutcome, DockyardClient, KnownDeployment
    from dockyard.contract.events import AnyEvent, AppLogLine, LogLine, Terminal
    from dockyard.contract.plan import RolloutOverride
    from dockyard.settings import Settings

T = TypeVar("T")
commands = typer.Typer()
PANEL = "Deploying"

DeploymentArg = Annotated[str, typer.Argument(
    metavar="DEPLOYMENT",
    help="A deployment id, a unique prefix of one (4+ characters) or a release number (v7, "
         "with --app).")]
AppOption = Annotated[str | None, typer.Option(
    "--app", help="The deployment's app (needed for a release number like v7).")]


# ------------------------------------------------------------------ what is printed


def line_style(line: LogLine) -> str | None:
    """How a deploy log line is styled on a terminal: Dockyard's own cyan (headings bold),
    stderr yellow, stdout plain."""
    if line.stream == "system":
        return "bold cyan" if line.text.startswith(("=====", "-----")) else "cyan"
    return "yellow" if line.stream == "err" else None


def print_line(line: LogLine, to: Output = out) -> None:
    """One deploy log line, whole."""
    to.line(line.text, line_style(line))


def has_web(switched: AnyEvent | None) -> bool | None:
    """Whether the release a traffic.switched event routed has a web process (None: unknown)."""
    from dockyard.contract.events import TrafficSwitched

    if not isinstance(switched, TrafficSwitched):
        return None
    return any(p.name == "web" for p in switched.data.spec.plan.processes)


def outcome(end: Terminal, app: str, url: str, web: bool | None) -> tuple[str, str, int]:
    """The last line of a followed deploy, its style and the exit code."""
    from dockyard.contract.events import DeploySucceeded

    dep = f"(deployment {end.deployment_id})"
    if isinstance(end, DeploySucceeded):
        if web is False:
            return (f"succeeded: {app} v{end.release} runs, but it has no web process, so no "
                    f"HTTP route: {url} answers 503  {dep}", "green", 0)
        return f"succeeded: {app} v{end.release} is live at {url}  {dep}", "green", 0
    failed = end.data
    code = f", exit code {failed.exit_code}" if failed.exit_code is not None else ""
    return f"{failed.status}: {failed.reason}{code}  {dep}", "red", EXIT_FAILED


def interrupted_lines(deployment_id: str, cancelling: bool) -> list[str]:
    """What Ctrl-C during a followed deploy says."""
    if cancelling:
        return [f"interrupted: cancelling deployment {deployment_id}; it ends `cancelled` and "
                "the live release keeps serving",
                f"watch it end: dockyard logs {deployment_id} --follow"]
    return [f"interrupted: deployment {deployment_id} goes on",
            f"follow it: dockyard logs {deployment_id} --follow",
            f"cancel it: dockyard cancel {deployment_id}"]


# ------------------------------------------------------------------ following a deploy


@dataclass
class _Shown:
    """What a followed deploy showed that its last line needs."""

    switched: AnyEvent | None = None


async def _unless(interrupted: asyncio.Event, work: Awaitable[T]) -> tuple[bool, T | None]:
    """Run work unless Ctrl-C comes first: (True, result), or (False, None) with work cancelled.
    """
    import asyncio

    task = asyncio.ensure_future(work)
    stop = asyncio.ensure_future(interrupted.wait())
    try:
        await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.cancel()
    if task.done():
        return True, task.result()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return False, None


async def follow_deploy(client: DockyardClient, app: str, path: Path | None, *,
                        kind: str = "source", runtime: str | None = None,
                        follow_for: float | None = None, cancel_on_interrupt: bool = False,
                        to_release: int | None = None,
                        rollout: RolloutOverride | None = None) -> int:
    """Request a deploy, print its id at once, follow its log to the end; the exit code.

    Ctrl-C leaves the deploy going (or cancels it, with cancel_on_interrupt) and says how to
    follow it; `follow_for` seconds end the following, not the deploy."""
    import asyncio
    import signal

    from dockyard.client import Followers
    from dockyard.contract.events import new_id

    seen = _Shown()

    async def on_line(line: LogLine) -> None:
        print_line(line)

    async def on_event(event: AnyEvent) -> None:
        if event.type == "dockyard.traffic.switched":
            seen.switched = event
        if event.type in ("dockyard.deploy.queued", "dockyard.traffic.switched"):
            out.line(f"» {event.type.removeprefix('dockyard.')}", style="dim")

    interrupted = asyncio.Event()
    loop = asyncio.get_running_loop()
    dep = new_id()
    watch = await client.watch(app, dep, Followers(on_line=on_line, on_event=on_event))
    loop.add_signal_handler(signal.SIGINT, interrupted.set)
    try:
        source = None
        if path is not None:
            uploaded, source = await _unless(interrupted, client.upload(app, path, dep))
            if not uploaded:
                err.line("interrupted during the upload: nothing was deployed", style="yellow")
                return EXIT_INTERRUPTED
        # Not interruptible: once published, the deploy is on and its id must be shown.
        await client.request_deploy(app, None, kind=kind, runtime=runtime, deployment_id=dep,
                                    source_object=source, to_release=to_release,
                                    rollout=rollout)
        hint = "Ctrl-C cancels it" if cancel_on_interrupt else \
            "Ctrl-C stops following; the deploy goes on"
        out.line(f"deploying {app}: deployment {dep} ({hint})", style="dim")
        try:
            ended, end = await _unless(interrupted, watch.result(follow_for))
        except TimeoutError:
            err.line(f"stopped following after {follow_for:g}s: deployment {dep} goes on; "
                     f"follow it with `dockyard logs {dep} --follow`", style="yellow")
            return EXIT_USAGE
        if not ended or end is None:
            if cancel_on_interrupt:
                await client.cancel(app, dep, reason="cancelled by user (Ctrl-C on deploy)")
            for line in interrupted_lines(dep, cancel_on_interrupt):
                err.line(line, style="yellow")
            return EXIT_INTERRUPTED
    finally:
        loop.remove_signal_handler(signal.SIGINT)
        await watch.close()
    text, style, code = outcome(end, app, client.settings.app_url(app), has_web(seen.switched))
    out.line(text, style=style)
    return code


@commands.command(rich_help_panel=PANEL, epilog=(
    "Examples:\n\n"
    "  dockyard deploy shop ./shop\n\n"
    "  dockyard deploy shop ./shop --timeout 600 --cancel-on-interrupt"))
def deploy(
    app_name: AppArg,
    path: Annotated[Path, typer.Argument(help="The app's source directory.")],
    data_dir: DataDir = None,
    runtime: Annotated[str | None, typer.Option(
        help="docker, process or swarm (default: the stack's).")] = None,
    timeout: Annotated[float | None, typer.Option(
        help="Stop following after N seconds (exit 2; the deploy goes on).")] = None,
    cancel_on_interrupt: Annotated[bool, typer.Option(
        "--cancel-on-interrupt", help="Ctrl-C cancels the deploy (default: it goes on).")] = False,
    canary: Annotated[str | None, typer.Option(
        "--canary", metavar="STEPS",
        help="Canary steps, percent of requests in turn (5,25), over dockyard.toml's.")] = None,
    hold: Annotated[str | None, typer.Option(
        "--hold", metavar="DURATION", help="How long each canary step lasts (60s).")] = None,
    watch: Annotated[str | None, typer.Option(
        "--watch", metavar="DURATION",
        help="Watch window after the switch (5m; 0: none), over dockyard.toml's.")] = None,
    no_rollout: Annotated[bool, typer.Option(
        "--no-rollout", help="Every request at once, whatever dockyard.toml's [rollout] says."
    )] = False,
) -> None:
    """Upload PATH, deploy it as APP, follow its log (exit 0 succeeded, 1 failed)."""
    settings = settings_from(data_dir)
    app = checked_app(app_name)
    rollout = rollout_override(canary, hold, watch, no_rollout)
    if not path.is_dir():
        fail(f"{path} is not a directory")
    if timeout is not None and timeout <= 0:
        fail(f"--timeout must be more than 0 seconds, got {timeout:g}")
    if runtime is not None and runtime not in ("docker", "process", "swarm"):
        fail(f"--runtime must be docker, process or swarm, got {runtime!r}")
    raise typer.Exit(run(with_client(settings, lambda c: follow_deploy(
        c, app, path, runtime=runtime, follow_for=timeout,
        cancel_on_interrupt=cancel_on_interrupt, rollout=rollout))))


def rollout_override(canary: str | None, hold: str | None, watch: str | None,
                     off: bool) -> RolloutOverride | None:
    """The deploy's own rollout from its flags (one line, exit 2, for one that cannot be
    given); None when no flag was given."""
    from dockyard.contract.plan import RolloutError
    from dockyard.plan.rollout_flags import rollout_from_flags

    try:
        return rollout_from_flags(canary, hold, watch, off)
    except RolloutError as exc:
        fail(f"--canary, --hold, --watch: {exc}")


@commands.command(rich_help_panel=PANEL, epilog=(
    "Examples:\n\n"
    "  dockyard rollback shop\n\n"
    "  dockyard rollback shop --to v3"))
def rollback(
    app_name: AppArg,
    to: Annotated[str | None, typer.Option(
        "--to", metavar="RELEASE",
        help="The release to run again: v3 or 3 (default: the one before the live one).")] = None,
    data_dir: DataDir = None,
    timeout: Annotated[float | None, typer.Option(
        help="Stop following after N seconds (exit 2; the rollback goes on).")] = None,
    cancel_on_interrupt: Annotated[bool, typer.Option(
        "--cancel-on-interrupt",
        help="Ctrl-C cancels the rollback (default: it goes on).")] = False,
) -> None:
    """A new release of an earlier release's build and config, followed like a deploy (exit 0
    succeeded, 1 failed). Databases are not rolled back."""
    from dockyard.pipeline.rollback import DATABASE_WARNING, release_number

    settings = settings_from(data_dir)
    app = checked_app(app_name)
    number = None
    if to is not None:
        try:
            number = release_number(to)
        except ValueError as exc:
            fail(f"--to: {exc}")
    if timeout is not None and timeout <= 0:
        fail(f"--timeout must be more than 0 seconds, got {timeout:g}")

    async def body(client: DockyardClient) -> int:
        await require_app(client, app)
        target = await client.rollback_target(app, number)
        err.line(DATABASE_WARNING, style="yellow")
        out.line(f"rolling back {app} to v{target.release} (build {target.spec.build_id}, "
                 f"config version {target.spec.config_version})", style="dim")
        return await follow_deploy(client, app, None, kind="rollback", follow_for=timeout,
                                   cancel_on_interrupt=cancel_on_interrupt,
                                   to_release=target.release)

    raise typer.Exit(run(with_client(settings, body)))


# ------------------------------------------------------------------ destroy

API_FORGETS = 15.0  # seconds the api may take to drop its records after a destroy


def confirmed(app: str, typed: str | None) -> bool:
    """Whether what was typed at the prompt confirms destroying the app (its exact name)."""
    return typed is not None and typed.strip() == app


def _ask(app: str) -> str | None:
    """The confirmation typed on the terminal (None on end of input or Ctrl-C)."""
    import click

    try:
        typed: str = typer.prompt(
            f"This removes {app}'s instances, route, artifacts, config, hooks, sinks and records "
            "for good. Type the app name to confirm", default="", show_default=False)
    except click.exceptions.Abort:
        return None
    return typed


def _api_forgot(settings: Settings, app: str) -> None:
    """Wait (bounded) until the api has dropped the app's records; an api that does not answer
    is not waited for (it drops them when it reads the destroy's end)."""
    import time

    from dockyard.api_client import ApiError, api_get

    deadline = time.monotonic() + API_FORGETS
    while time.monotonic() < deadline:
        try:
            api_get(settings, f"/apps/{app}")
        except ApiError:  # ApiNotFound: forgotten; any other: not answering
            return
        time.sleep(0.2)


@commands.command(rich_help_panel=PANEL, epilog=(
    "Examples:\n\n"
    "  dockyard destroy shop\n\n"
    "  dockyard destroy shop --yes"))
def destroy(
    app_name: AppArg,
    yes: Annotated[bool, typer.Option(
        "--yes", "-y", help="Do not ask: destroy at once (needed without a terminal).")] = False,
    data_dir: DataDir = None,
    timeout: Annotated[float | None, typer.Option(
        help="Stop following after N seconds (exit 2; the destroy goes on).")] = None,
) -> None:
    """Destroy an app: stop its instances, remove its route (its host answers 404), artifacts,
    config, hooks, sinks and records. The name can be deployed again as a new app (v1)."""
    import asyncio
    import sys

    settings = settings_from(data_dir)
    app = checked_app(app_name)
    if timeout is not None and timeout <= 0:
        fail(f"--timeout must be more than 0 seconds, got {timeout:g}")
    run(with_client(settings, lambda client: require_app(client, app)))
    if not yes:
        if not sys.stdin.isatty():
            fail(f"destroying {app} needs confirmation: run it on a terminal, or pass --yes")
        if not confirmed(app, _ask(app)):
            fail(f"not confirmed: {app} was not destroyed")
    async def body(client: DockyardClient) -> DestroyOutcome | None:
        try:
            return await asyncio.wait_for(client.destroy(app), timeout)
        except TimeoutError:  # an OSError: told apart here, before run() sees it
            return None

    outcome = run(with_client(settings, body))
    if outcome is None:
        fail(f"the destroy of {app} did not end within {timeout:g}s; it goes on (follow it "
             f"with: dockyard events --app {app} --follow)")
    if outcome.refused is not None:
        fail(f"{app} was not destroyed: {outcome.refused}")
    _api_forgot(settings, app)
    out.line(f"destroyed {app} (operation {outcome.operation_id})", style="bold")
    for item in outcome.removed:
        out.line(f"  removed {item}")


# ------------------------------------------------------------------ naming a deployment


async def find_deployment(client: DockyardClient, ref: str,
                          app: str | None) -> KnownDeployment:
    """The deployment a reference names (README "Naming a deployment")."""
    from dockyard.cli.refs import release_number, resolve

    if app is not None:
        await require_app(client, app)
    known = await client.known_deployments(app, releases=release_number(ref) is not None)
    return resolve(ref, known, app)


@commands.command(rich_help_panel=PANEL, epilog=(
    "Examples:\n\n"
    "  dockyard cancel 7b699a8c\n\n"
    "  dockyard cancel v4 --app shop"))
def cancel(ref: DeploymentArg, app_name: AppOption = None, data_dir: DataDir = None) -> None:
    """Cancel a queued or running deployment (it ends `cancelled`; the old release serves)."""
    settings = settings_from(data_dir)
    app = checked_app(app_name) if app_name is not None else None

    async def body(client: DockyardClient) -> KnownDeployment:
        found = await find_deployment(client, ref, app)
        if found.ended:
            raise DeploymentEnded(found.id, found.status or "")
        await client.cancel(found.app, found.id)
        return found

    found = run(with_client(settings, body))
    out.line(f"cancel requested for deployment {found.id} of {found.app}: it stops at its next "
             "step and ends `cancelled`")


def app_line_text(line: AppLogLine) -> str:
    """One line of an app's instance output: when, which instance, what it wrote."""
    instance = line.instance[:12] if len(line.instance) == 64 else line.instance
    return f"{line.time:%Y-%m-%dT%H:%M:%S}Z {line.process}[{instance}]: {line.text}"


@commands.command(rich_help_panel=PANEL, epilog=(
    "Examples:\n\n"
    "  dockyard logs shop --process web --follow\n\n"
    "  dockyard logs 7b699a8c --follow\n\n"
    "  dockyard logs v3 --app shop --json"))
def logs(
    ref: Annotated[str, typer.Argument(
        metavar="APP|DEPLOYMENT",
        help="An app's name: its running instances' output. Otherwise a deployment: its id, a "
             "unique prefix of one (4+ characters) or a release number (v7, with --app). A "
             "name of an existing app is the app, unless --app is given or it is a whole "
             "32-digit deployment id.")],
    follow: Annotated[bool, typer.Option(
        "--follow", "-f",
        help="Keep going: a deployment until it ends, an app until Ctrl-C.")] = False,
    process: Annotated[str | None, typer.Option(
        "--process", "-p", help="An app's logs: only this process type's instances (web).")]
        = None,
    lines: Annotated[int, typer.Option(
        "--lines", "-n", min=0, max=10_000,
        help="An app's logs: how many of the last kept lines to print first.")] = 100,
    app_name: AppOption = None,
    as_json: AsJson = False,
    data_dir: DataDir = None,
) -> None:
    """Print an app's running instances' output (the last lines kept by the bus), or a
    deployment's log; with --follow, live."""
    from dockyard.cli.refs import may_name_app

    settings = settings_from(data_dir)
    app = checked_app(app_name) if app_name is not None else None

    async def on_line(line: LogLine) -> None:
        if as_json:
            out.json(line)
        else:
            print_line(line)

    async def on_app_line(line: AppLogLine) -> None:
        if as_json:
            out.json(line)
        else:
            out.line(app_line_text(line), "yellow" if line.stream == "err" else None)

    async def body(client: DockyardClient) -> None:
        if may_name_app(ref, app) and await client.app_exists(ref):
            await client.app_log_lines(ref, on_app_line, process=process, last=lines,
                                       follow=follow)
            return
        if process is not None:
            raise ProcessNeedsApp(ref)
        found = await find_deployment(client, ref, app)
        await client.log_lines(found.id, on_line, follow and not found.ended, app=found.app)

    run(with_client(settings, body))


@commands.command(rich_help_panel=PANEL, epilog=(
    "Examples:\n\n"
    "  dockyard events --app shop\n\n"
    "  dockyard events --follow | jq -r .type"))
def events(
    app_name: Annotated[str | None, typer.Option("--app", help="Only this app's events.")] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new ones.")] = False,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Accepted for symmetry: events are always JSON lines.")] = False,
    data_dir: DataDir = None,
) -> None:
    """Print events as JSON lines (CloudEvents), oldest first, each as soon as it is read."""
    del as_json  # always JSON lines
    settings = settings_from(data_dir)
    app = checked_app(app_name) if app_name is not None else None

    async def on_raw(data: bytes) -> None:
        out.raw(data.decode() + "\n")

    async def body(client: DockyardClient) -> None:
        if app is not None:
            await require_app(client, app)
        await client.raw_events(app, on_raw, follow)

    run(with_client(settings, body))
