"""up, service, demo: running Dockyard itself."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from dockyard.cli.common import DataDir, fail, run, settings_from
from dockyard.cli.output import out

if TYPE_CHECKING:

    from dockyard.contract.events import LogLine
    from dockyard.contract.state import LiveRelease
    from dockyard.settings import Settings
    from dockyard.stack import Stack

T = TypeVar("T")

commands = typer.Typer()
PANEL = "Running Dockyard"
# dockyard.bus.service.SERVICES, spelt here so that `--help` need not import the services
# (tests/cli/test_running.py keeps the two the same).
SERVICE_NAMES = ("builder", "hook-runner", "scheduler", "router", "notifier", "api")


def kept_lines(live: list[LiveRelease], stops: Mapping[str, str], data_dir: Path) -> list[str]:
    """What `dockyard up` says on stop about the app instances that keep running; `stops` holds
    the command that stops each process-runtime instance (from its record)."""
    instances = [(rel, ref) for rel in sorted(live, key=lambda r: r.app)
                 for ref in rel.instances]
    if not instances:
        return ["Dockyard stopped. No app instances keep running."]
    lines = [f"Dockyard stopped. These app instances keep running; the next `dockyard up` with "
             f"data dir {data_dir} re-attaches them:"]
    for rel, ref in instances:
        port = f", port {ref.port}" if ref.port else ""
        if rel.spec.runtime == "docker":
            short = ref.id[:12]
            lines.append(f"  {rel.app} v{rel.release} {ref.process}: container {short}{port}; "
                         f"stop it with: docker rm -f {short}")
        elif ref.id in stops:
            lines.append(f"  {rel.app} v{rel.release} {ref.process}: instance {ref.id}{port}; "
                         f"stop it with: {stops[ref.id]}")
        else:
            lines.append(f"  {rel.app} v{rel.release} {ref.process}: instance {ref.id}{port}")
    return lines


def stop_command(record: Mapping[str, object]) -> str | None:
    """How to stop a process-runtime instance from its record: SIGTERM to its supervisor (which
    stops the instance's whole tree), or to the process group of a record from before them."""
    pid, pgid = record.get("pid"), record.get("pgid")
    if record.get("run_dir") and isinstance(pid, int):
        return f"kill -TERM {pid}"
    return f"kill -TERM -- -{pgid}" if isinstance(pgid, int) else None


async def _live_releases(settings: Settings) -> list[LiveRelease]:
    """The live release of every app (their instances outlive the stack)."""
    from dockyard.client import DockyardClient

    client = await DockyardClient.connect(settings)
    try:
        return list((await client.doors.routes.all_live()).values())
    finally:
        await client.close(at_once=True)


def _process_stops(settings: Settings, live: list[LiveRelease]) -> dict[str, str]:
    """The stop command of each process-runtime instance, from its record on disk."""
    import json

    from dockyard.runtime.process import record_path

    found: dict[str, str] = {}
    for rel in live:
        for ref in rel.instances:
            try:
                record = json.loads(record_path(settings.data_dir / "process", rel.app, ref.id)
                                    .read_text())
            except (OSError, ValueError):
                continue
            if isinstance(record, dict) and (command := stop_command(record)) is not None:
                found[ref.id] = command
    return found


async def _serve(start: Callable[[], Awaitable[T]], stop: Callable[[T], Awaitable[None]]) -> bool:
    """`start()`, then serve until SIGINT or SIGTERM, then `stop()`; False when the signal came
    while starting.

    The handlers are in place before anything starts: a signal during the start cancels it (a
    start stops what it had started when cancelled), so a service or a stack asked to stop as it
    comes up leaves no nats-server or Caddy behind; before, SIGTERM then killed the process
    outright and the proxy, in a session of its own, kept serving.
    """
    import asyncio
    import signal

    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    stopping = asyncio.Event()
    started = False

    def on_signal() -> None:
        stopping.set()
        if not started and task is not None:
            task.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    try:
        try:
            running = await start()
        except asyncio.CancelledError:
            if not stopping.is_set() or task is None:
                raise
            task.uncancel()
            return False
        started = True
        try:
            await stopping.wait()
        finally:
            await stop(running)
        return True
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def _runtime_said(asked: str) -> str:
    from dockyard.runtime.select import resolve

    chosen = await resolve(asked)
    if asked != "auto":
        return chosen
    why = "a Docker engine answers" if chosen == "docker" else "no Docker engine answers"
    return f"{chosen} (auto: {why})"


@commands.command(rich_help_panel=PANEL, epilog=(
    "Examples:\n\n"
    "  dockyard up\n\n"
    "  dockyard up --http-port 8081 --runtime process --data-dir /srv/dockyard"))
def up(
    data_dir: DataDir = None,
    http_port: Annotated[int | None, typer.Option(help="Port the apps answer on.")] = None,
    runtime: Annotated[str | None, typer.Option(help="auto, docker, process or swarm.")] = None,
) -> None:
    """Start the embedded bus, the proxy and one of each service (Ctrl-C stops them; the apps'
    instances keep running)."""
    settings = settings_from(data_dir, http_port=http_port, runtime=runtime)
    if not 0 < settings.http_port < 65536:
        fail(f"--http-port must be a port number (1-65535), got {settings.http_port}")

    async def main() -> None:
        from dockyard.log_config import configure_logging
        from dockyard.stack import start_stack

        configure_logging()
        kept: list[LiveRelease] = []

        async def start() -> Stack:
            # A busy --http-port, a stack already running here: StackError, one line (run()).
            stack = await start_stack(settings)
            try:
                out.marked_up(f"[bold]Dockyard is up[/bold] (data dir {settings.data_dir})")
                out.line(f"  bus:  {stack.settings.nats_url}")
                out.line(f"  runtime: {await _runtime_said(settings.runtime)}")
                out.line(f"  apps: {settings.app_url('<app>')}")
                api_url = settings.data_dir / "api.url"
                if api_url.exists():
                    out.line(f"  api:  {api_url.read_text().strip()}")
                out.line("Press Ctrl-C to stop.")
            except BaseException:
                # A Ctrl-C while it says so: the bus and Caddy must not outlive it.
                await stack.stop()
                raise
            return stack

        async def stop(stack: Stack) -> None:
            try:
                kept.extend(await _live_releases(stack.settings))
            except Exception as exc:  # the report is a courtesy: stopping must go on
                out.line(f"(cannot list the apps' instances: {exc})")
            await stack.stop()

        if not await _serve(start, stop):
            return
        for line in kept_lines(kept, _process_stops(settings, kept), settings.data_dir):
            out.line(line)

    run(main())


@commands.command(rich_help_panel=PANEL, epilog=(
    "Example:\n\n  DOCKYARD_NATS_URL=nats://bus:4222 dockyard service builder"))
def service(
    name: Annotated[str, typer.Argument(help=f"One of: {', '.join(SERVICE_NAMES)}.")],
    data_dir: DataDir = None,
) -> None:
    """Run one service alone against the bus (DOCKYARD_NATS_URL or the data dir's)."""
    if name not in SERVICE_NAMES:
        fail(f"unknown service {name!r}: choose one of {', '.join(SERVICE_NAMES)}")
    settings = settings_from(data_dir)

    async def main() -> None:
        from dockyard.bus.service import start_service
        from dockyard.log_config import configure_logging

        configure_logging()
        await _serve(lambda: start_service(name, settings), lambda running: running.stop())

    run(main())


@commands.command(rich_help_panel=PANEL, epilog="Example:\n\n  dockyard demo --runtime docker")
def demo(
    runtime: Annotated[str, typer.Option(help="process (default) or docker.")] = "process",
    keep: Annotated[bool, typer.Option(help="Keep the temporary directory.")] = False,
) -> None:
    """Deploy a bundled app three times on a throwaway stack and narrate what a person sees."""
    from dockyard.cli.deploying import line_style
    from dockyard.demo.run import run_demo
    from dockyard.log_config import configure_logging

    configure_logging("WARNING")

    def show(line: LogLine) -> None:
        out.line(f"   │ {line.text}", line_style(line))

    checks = run(run_demo(out.marked_up, show, runtime=runtime, keep=keep))
    out.line("")
    for check in checks:
        out.line(("✓ " if check.held else "✗ ") + check.claim,
                 style="green" if check.held else "red")
    ok = len(checks) == 4 and all(c.held for c in checks)
    out.line("The demo held." if ok else "The demo failed.",
             style="bold green" if ok else "bold red")
    raise typer.Exit(0 if ok else 1)
