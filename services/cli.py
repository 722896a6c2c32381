"""The `dockyard` command line (typer + rich)."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar

import click
import typer
from typer.core import TyperGroup
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from dockyard.bus.service import SERVICES, UnknownServiceError, start_service
from dockyard.client import ClientError, DockyardClient, Followers, check_app
from dockyard.log_config import configure_logging
from dockyard.pipeline.config import ConfigError, parse_assignments
from dockyard.schemas.manifest import OperatorHook
from dockyard.schemas.events import AnyEvent, DeployFailed, DeploySucceeded, LogLine
from dockyard.settings import Settings, SettingsError

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Dockyard: build, release, gate on postdeploy, switch traffic.")
config_app = typer.Typer(no_args_is_help=True, help="Config vars of an app (a change makes a release).")
class _ShowByDefault(TyperGroup):
    """`dockyard hooks APP` means `dockyard hooks show APP`."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["show", *args]
        return super().parse_args(ctx, args)


hooks_app = typer.Typer(cls=_ShowByDefault, no_args_is_help=True,
                        help="The merged hook plan of an app; operator hooks (add, rm).")
notify_app = typer.Typer(no_args_is_help=True, help="Where an app's events are delivered.")
app.add_typer(config_app, name="config")
app.add_typer(hooks_app, name="hooks")
app.add_typer(notify_app, name="notify")

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)
T = TypeVar("T")

DataDir = Annotated[Path | None, typer.Option("--data-dir", help="Data dir (default ./.dockyard "
                                               "or DOCKYARD_DATA_DIR).")]

STATUS_STYLE = {"succeeded": "green", "cancelled": "yellow"}


def fail(message: str, code: int = 2) -> None:
    """Print an error and exit."""
    err.print(f"[red]error:[/red] {escape(message)}")
    raise typer.Exit(code)


def settings_from(data_dir: Path | None = None, **overrides: Any) -> Settings:
    """Settings from the environment and the flags."""
    try:
        return Settings.from_env(data_dir=data_dir, **overrides)
    except SettingsError as exc:
        fail(str(exc))
        raise  # unreachable


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine, turning expected errors into clean messages."""
    try:
        return asyncio.run(coro)
    except (ClientError, SettingsError, ConfigError, UnknownServiceError) as exc:
        fail(str(exc))
        raise  # unreachable
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


async def with_client(settings: Settings, body: Callable[[DockyardClient], Awaitable[T]]) -> T:
    """Connect, run body, close."""
    client = await DockyardClient.connect(settings)
    try:
        return await body(client)
    finally:
        await client.close()


# ------------------------------------------------------------------ running


async def _serve_forever(stop: Callable[[], Awaitable[None]]) -> None:
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    await stopping.wait()
    await stop()


async def _runtime_said(asked: str) -> str:
    from dockyard.runtime.select import resolve

    chosen = await resolve(asked)
    if asked != "auto":
        return chosen
    why = "a Docker engine answers" if chosen == "docker" else "no Docker engine answers"
    return f"{chosen} (auto: {why})"


@app.command()
def up(
    data_dir: DataDir = None,
    http_port: Annotated[int | None, typer.Option(help="Port the apps answer on.")] = None,
    runtime: Annotated[str | None, typer.Option(help="auto, docker or process.")] = None,
) -> None:
    """Start the embedded bus, the proxy and one of each service."""
    from dockyard.stack import StackError, start_stack

    settings = settings_from(data_dir, http_port=http_port, runtime=runtime)
    configure_logging()

    async def main() -> None:
        try:
            stack = await start_stack(settings)
        except StackError as exc:
            fail(str(exc))
        out.print(f"[bold]Dockyard is up[/bold] (data dir {settings.data_dir})")
        out.print(f"  bus:  {stack.settings.nats_url}")
        out.print(f"  runtime: {await _runtime_said(settings.runtime)}")
        out.print(f"  apps: {settings.app_url('<app>')}")
        api_url = settings.data_dir / "api.url"
        if api_url.exists():
            out.print(f"  api:  {api_url.read_text().strip()}")
        out.print("Press Ctrl-C to stop.")
        await _serve_forever(stack.stop)

    run(main())


@app.command()
def service(
    name: Annotated[str, typer.Argument(help=f"One of: {', '.join(SERVICES)}.")],
    data_dir: DataDir = None,
) -> None:
    """Run one service alone against the bus (DOCKYARD_NATS_URL or the data dir's)."""
    if name not in SERVICES:
        fail(f"unknown service {name!r}: choose one of {', '.join(SERVICES)}")
    settings = settings_from(data_dir)
    configure_logging()

    async def main() -> None:
        running = await start_service(name, settings)
        await _serve_forever(running.stop)

    run(main())


# ------------------------------------------------------------------ deploying


def _print_line(line: LogLine) -> None:
    if line.stream == "system":
        style = "bold cyan" if line.text.startswith(("=====", "-----")) else "cyan"
        out.print(line.text, style=style, markup=False, highlight=False)
    elif line.stream == "err":
        out.print(line.text, style="yellow", markup=False)
    else:
        out.print(line.text, markup=False)


def _print_event(event: AnyEvent) -> None:
    if event.type in ("dockyard.deploy.queued", "dockyard.traffic.switched"):
        out.print(f"» {event.type.removeprefix('dockyard.')}", style="dim")


async def _follow_and_report(client: DockyardClient, app: str,
                             go: Callable[[Followers], Awaitable[DeploySucceeded | DeployFailed]]
                             ) -> int:
    async def on_line(line: LogLine) -> None:
        _print_line(line)

    async def on_event(event: AnyEvent) -> None:
        _print_event(event)

    end = await go(Followers(on_line=on_line, on_event=on_event))
    settings = client.settings
    if isinstance(end, DeploySucceeded):
        out.print(f"[green]succeeded[/green]: {app} v{end.release} is live at "
                  f"{settings.app_url(app)}  (deployment {end.deployment_id})")
        return 0
    code = f", exit code {end.exit_code}" if end.exit_code is not None else ""
    out.print(f"[red]{end.status}[/red]: {escape(end.reason)}{code}  (deployment {end.deployment_id})")
    return 1


@app.command()
def deploy(
    app_name: Annotated[str, typer.Argument(metavar="APP")],
    path: Annotated[Path, typer.Argument(help="The app's source directory.")],
    data_dir: DataDir = None,
    runtime: Annotated[str | None, typer.Option(help="docker or process (default: the stack's).")] = None,
    timeout: Annotated[float | None, typer.Option(help="Give up following after N seconds.")] = None,
) -> None:
    """Upload PATH, deploy it as APP and follow the deploy log (exit 0 on success, 1 on failure)."""
    settings = settings_from(data_dir)
    if not path.is_dir():
        fail(f"{path} is not a directory")
    check = _checked(app_name)

    async def body(client: DockyardClient) -> int:
        return await _follow_and_report(
            client, check,
            lambda f: client.deploy(check, path, f, runtime=runtime, timeout=timeout))

    raise typer.Exit(run(with_client(settings, body)))


def _checked(app_name: str) -> str:
    try:
        return check_app(app_name)
    except ClientError as exc:
        fail(str(exc))
        raise


@app.command()
def cancel(
    deployment_id: Annotated[str, typer.Argument(metavar="DEPLOYMENT")],
    app_name: Annotated[str, typer.Option("--app", help="The deployment's app.")],
    data_dir: DataDir = None,
) -> None:
    """Cancel a queued or running deployment (it ends `cancelled`; the old release keeps serving)."""
    settings = settings_from(data_dir)
    check = _checked(app_name)
    run(with_client(settings, lambda c: c.cancel(check, deployment_id)))
    out.print(f"cancel requested for {deployment_id}")


@app.command()
def logs(
    deployment_id: Annotated[str, typer.Argument(metavar="DEPLOYMENT")],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep going until it ends.")] = False,
    data_dir: DataDir = None,
) -> None:
    """Print a deployment's log (kept by the bus)."""
    settings = settings_from(data_dir)

    async def on_line(line: LogLine) -> None:
        _print_line(line)

    run(with_client(settings, lambda c: c.log_lines(deployment_id, on_line, follow)))


@app.command()
def events(
    app_name: Annotated[str | None, typer.Option("--app", help="Only this app's events.")] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new ones.")] = False,
    data_dir: DataDir = None,
) -> None:
    """Print events as JSON lines, oldest first."""
    settings = settings_from(data_dir)
    if app_name:
        _checked(app_name)

    async def on_raw(data: bytes) -> None:
        sys.stdout.write(data.decode() + "\n")
        sys.stdout.flush()

    run(with_client(settings, lambda c: c.raw_events(app_name, on_raw, follow)))


# ------------------------------------------------------------------ reading


def _api_get(settings: Settings, path: str) -> Any:
    from dockyard.api_client import api_get

    try:
        return api_get(settings, path)
    except ClientError as exc:
        fail(str(exc))


@app.command()
def status(app_name: Annotated[str, typer.Argument(metavar="APP")], data_dir: DataDir = None) -> None:
    """The app's live release and latest deployment."""
    settings = settings_from(data_dir)
    check = _checked(app_name)
    info = _api_get(settings, f"/apps/{check}")
    live = info.get("live_release")
    out.print(f"[bold]{check}[/bold]: live release {('v' + str(live)) if live else 'none'}")
    latest = info.get("latest_deployment") or info.get("deployment")
    if latest:
        st = latest.get("status", "?")
        out.print(f"latest deployment {latest.get('id')}: [{STATUS_STYLE.get(st, 'red' if 'error' in st else 'white')}]{st}[/]"
                  + (f" — {escape(latest['reason'])}" if latest.get("reason") else ""))
    out.print(f"url: {settings.app_url(check)}")


@app.command()
def deployments(app_name: Annotated[str, typer.Argument(metavar="APP")],
                data_dir: DataDir = None) -> None:
    """The app's deployments, newest first."""
    settings = settings_from(data_dir)
    check = _checked(app_name)
    rows = _api_get(settings, f"/apps/{check}/deployments")
    table = Table("deployment", "release", "status", "reason", "created")
    for d in rows if isinstance(rows, list) else rows.get("deployments", []):
        table.add_row(d.get("id", ""), f"v{d.get('release')}", d.get("status", ""),
                      escape((d.get("reason") or "")[:60]), str(d.get("created_at", ""))[:19])
    out.print(table)


@app.command()
def releases(app_name: Annotated[str, typer.Argument(metavar="APP")],
             data_dir: DataDir = None) -> None:
    """The app's releases."""
    settings = settings_from(data_dir)
    check = _checked(app_name)
    rows = _api_get(settings, f"/apps/{check}/releases")
    table = Table("release", "build", "kind", "config version", "deployment", "created")
    for r in rows if isinstance(rows, list) else rows.get("releases", []):
        table.add_row(f"v{r.get('number')}", r.get("build_id", ""), r.get("kind", ""),
                      str(r.get("config_version", "")), r.get("deployment_id", ""),
                      str(r.get("created_at", ""))[:19])
    out.print(table)


# ------------------------------------------------------------------ config


def _config_release(settings: Settings, app_name: str, set_: dict[str, str],
                    unset: list[str], follow: bool) -> int:
    async def body(client: DockyardClient) -> int:
        version = await client.config_change(app_name, set_, unset)
        out.print(f"config of {app_name} is now version {version}")
        if not await client.has_release(app_name):
            out.print("no release yet: the next deploy uses it")
            return 0
        if not follow:
            cmd = await client.request_deploy(app_name, None, kind="config")
            out.print(f"releasing with the new config: deployment {cmd.deployment_id}")
            return 0
        return await _follow_and_report(
            client, app_name, lambda f: client.deploy(app_name, None, f, kind="config"))

    return run(with_client(settings, body))


@config_app.command("set")
def config_set(
    app_name: Annotated[str, typer.Argument(metavar="APP")],
    pairs: Annotated[list[str], typer.Argument(metavar="KEY=VALUE...")],
    follow: Annotated[bool, typer.Option("--follow/--no-follow", help="Follow the release.")] = True,
    data_dir: DataDir = None,
) -> None:
    """Set config vars; makes a new release of the live build (release phase runs again)."""
    settings = settings_from(data_dir)
    check = _checked(app_name)
    try:
        values = parse_assignments(pairs)
    except ConfigError as exc:
        fail(str(exc))
    raise typer.Exit(_config_release(settings, check, values, [], follow))


@config_app.command("unset")
def config_unset(
    app_name: Annotated[str, typer.Argument(metavar="APP")],
    keys: Annotated[list[str], typer.Argument(metavar="KEY...")],
    follow: Annotated[bool, typer.Option("--follow/--no-follow", help="Follow the release.")] = True,
    data_dir: DataDir = None,
) -> None:
    """Remove config vars; makes a new release like `config set`."""
    settings = settings_from(data_dir)
    check = _checked(app_name)
    raise typer.Exit(_config_release(settings, check, {}, keys, follow))


@config_app.command("show")
def config_show(app_name: Annotated[str, typer.Argument(metavar="APP")],
                data_dir: DataDir = None) -> None:
    """Print the app's config vars (KEY=VALUE lines)."""
    settings = settings_from(data_dir)
    check = _checked(app_name)
    version, values = run(with_client(settings, lambda c: c.config_show(check)))
    out.print(f"# {check} config version {version}", style="dim")
    for key, value in values.items():
        out.print(f"{key}={value}", markup=False)




@app.command()
def demo(
    runtime: Annotated[str, typer.Option(help="process (default) or docker.")] = "process",
    keep: Annotated[bool, typer.Option(help="Keep the temporary directory.")] = False,
) -> None:
    """Deploy a bundled app three times on a throwaway stack and narrate what a person sees."""
    from dockyard.demo.run import run_demo

    configure_logging("WARNING")

    def say(text: str) -> None:
        out.print(text)

    def show(line: LogLine) -> None:
        out.print("   │ ", end="", style="dim")
        _print_line(line)

    checks = run(run_demo(say, show, runtime=runtime, keep=keep))
    out.print("")
    for check in checks:
        mark = "[green]✓[/green]" if check.held else "[red]✗[/red]"
        out.print(f"{mark} {check.claim}")
    ok = len(checks) == 4 and all(c.held for c in checks)
    out.print("[bold green]The demo held.[/bold green]" if ok else "[bold red]The demo failed.[/bold red]")
    raise typer.Exit(0 if ok else 1)


# ------------------------------------------------------------------ hooks

PHASE_ORDER = ("predeploy", "release", "postdeploy", "after_switch", "on_failure")


@hooks_app.command("show")
def hooks_show(app_name: Annotated[str, typer.Argument(metavar="APP")],
               data_dir: DataDir = None) -> None:
    """Print the merged plan, in order, with where each command came from."""
    settings = settings_from(data_dir)
    check = _checked(app_name)
    plan, live = run(with_client(settings, lambda c: c.plan(check)))
    out.print(f"[bold]{check}[/bold]: plan of "
              + (f"the live build (v{live})" if live else "operator hooks only (no release yet)"))
    table = Table("phase", "#", "label", "command", "timeout", "source")
    for phase in PHASE_ORDER:
        for i, cmd in enumerate(plan.commands(phase), start=1):
            table.add_row(phase, str(i), escape(cmd.label), escape(cmd.command), f"{cmd.timeout:g}s",
                          escape(cmd.source))
    out.print(table)
    if plan.processes:
        out.print("processes: " + ", ".join(f"{p.name}×{p.scale}" for p in plan.processes))
    for note in plan.notes:
        out.print(f"note: {note}", style="dim", markup=False)


@hooks_app.command("add")
def hooks_add(
    app_name: Annotated[str, typer.Argument(metavar="APP")],
    phase: Annotated[str, typer.Argument(help="predeploy, release, postdeploy, after_switch, on_failure.")],
    command: Annotated[list[str], typer.Argument(metavar="-- COMMAND...")],
    label: Annotated[str, typer.Option("--label", "-l", help="Label shown in the deploy log.")],
    timeout: Annotated[str | None, typer.Option(help="e.g. 90s, 20m (default: the phase's).")] = None,
    memory: Annotated[str | None, typer.Option(help="e.g. 512M, 1G (default 512M).")] = None,
    data_dir: DataDir = None,
) -> None:
    """Add an operator hook; it runs after the repository's commands of that phase."""
    from dockyard.plan.durations import parse_duration, parse_memory
    from dockyard.plan.errors import PlanError

    settings = settings_from(data_dir)
    check = _checked(app_name)
    try:
        hook = OperatorHook(phase=phase, label=label, command=" ".join(command),
                            timeout=parse_duration(timeout) if timeout else None,
                            memory=parse_memory(memory) if memory else None)
        hooks = run(with_client(settings, lambda c: c.add_hook(check, hook)))
    except (ValueError, PlanError) as exc:
        fail(str(exc))
    out.print(f"added {phase} hook '{escape(label)}' to {check} ({len(hooks.hooks)} operator hook(s))")


@hooks_app.command("rm")
def hooks_rm(
    app_name: Annotated[str, typer.Argument(metavar="APP")],
    phase: Annotated[str, typer.Argument()],
    label: Annotated[str, typer.Argument()],
    data_dir: DataDir = None,
) -> None:
    """Remove an operator hook by phase and label."""
    from dockyard.plan.errors import PlanError

    settings = settings_from(data_dir)
    check = _checked(app_name)
    try:
        run(with_client(settings, lambda c: c.remove_hook(check, phase, label)))
    except PlanError as exc:
        fail(str(exc))
    out.print(f"removed {phase} hook '{escape(label)}' from {check}")


# ------------------------------------------------------------------ notify


@notify_app.command("add")
def notify_add(
    app_name: Annotated[str, typer.Argument(metavar="APP")],
    name: Annotated[str, typer.Argument(help="A name for this sink (to remove it later).")],
    url: Annotated[str, typer.Argument(help="The webhook URL.")],
    kind: Annotated[str, typer.Option(help="webhook (Standard Webhooks, signed) or slack.")] = "webhook",
    secret: Annotated[str | None, typer.Option(help="Signing secret (whsec_... or any string).")] = None,
    event: Annotated[list[str] | None, typer.Option("--event", "-e", help="Event type pattern, "
                     "e.g. deploy.* (repeatable; default: queued, succeeded, failed, hook.failed, "
                     "traffic.switched).")] = None,
    attempts: Annotated[int | None, typer.Option(help="Delivery attempts before giving up.")] = None,
    data_dir: DataDir = None,
) -> None:
    """Deliver the app's events to a webhook or a Slack-compatible chat webhook."""
    from dockyard.notifier.errors import NotifierError
    from dockyard.notifier.sinks import Sink, add_sink

    settings = settings_from(data_dir)
    check = _checked(app_name)
    fields: dict[str, Any] = {"name": name, "url": url, "kind": kind, "secret": secret}
    if event:
        fields["events"] = list(event)
    if attempts is not None:
        fields["attempts"] = attempts
    try:
        sink = Sink(**{("max_attempts" if k == "attempts" else k): v for k, v in fields.items()})
        run(with_client(settings, lambda c: add_sink(c.stores.notify, check, sink)))
    except NotifierError as exc:
        fail(str(exc))
    out.print(f"{check}: events {', '.join(sink.events)} go to sink '{escape(name)}' ({kind})")


@notify_app.command("rm")
def notify_rm(app_name: Annotated[str, typer.Argument(metavar="APP")],
              name: Annotated[str, typer.Argument()], data_dir: DataDir = None) -> None:
    """Stop delivering to a sink."""
    from dockyard.notifier.errors import NotifierError
    from dockyard.notifier.sinks import remove_sink

    settings = settings_from(data_dir)
    check = _checked(app_name)
    try:
        run(with_client(settings, lambda c: remove_sink(c.stores.notify, check, name)))
    except NotifierError as exc:
        fail(str(exc))
    out.print(f"removed sink '{escape(name)}' from {check}")


@notify_app.command("ls")
def notify_ls(app_name: Annotated[str, typer.Argument(metavar="APP")],
              data_dir: DataDir = None) -> None:
    """The app's sinks (secrets and URL paths are not shown)."""
    from urllib.parse import urlsplit

    from dockyard.notifier.sinks import list_sinks

    settings = settings_from(data_dir)
    check = _checked(app_name)
    sinks = run(with_client(settings, lambda c: list_sinks(c.stores.notify, check)))
    table = Table("name", "kind", "host", "events", "signed")
    for sink in sinks:
        table.add_row(escape(sink.name), sink.kind, urlsplit(sink.url).netloc,
                      escape(", ".join(sink.events)), "yes" if sink.secret else "no")
    out.print(table)


def main() -> None:
    """Console-script entry point."""
    app()
