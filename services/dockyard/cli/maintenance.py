"""maintenance on, off, status: an app's host answers a 503 maintenance page (its instances keep
running), or routes to its live release again."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from dockyard.cli.common import (
    AppArg,
    AsJson,
    DataDir,
    checked_app,
    require_app,
    run,
    settings_from,
    with_client,
)
from dockyard.cli.output import out

if TYPE_CHECKING:
    from dockyard.client import DockyardClient
    from dockyard.contract.state import Maintenance

maintenance_app = typer.Typer(
    no_args_is_help=True,
    help="Maintenance mode: the app's host answers 503 with Retry-After and a maintenance page; "
         "its instances keep running.")
Message = Annotated[str | None, typer.Option(
    "--message", "-m", help="One line shown on the page (at most 200 characters, no braces).")]


def _as_json(record: Maintenance) -> dict[str, object]:
    since = None if record.since is None else record.since.isoformat().replace("+00:00", "Z")
    return {"app": record.app, "enabled": record.enabled, "since": since,
            "message": record.message}


def _show(record: Maintenance, as_json: bool) -> None:
    if as_json:
        out.json(_as_json(record))
        return
    if not record.enabled:
        since = f" (since {record.since:%Y-%m-%d %H:%M:%S} UTC)" if record.since else ""
        out.line(f"{record.app} is not in maintenance{since}: its host routes to the live "
                 "release")
        return
    out.line(f"{record.app} is in maintenance since {record.since:%Y-%m-%d %H:%M:%S} UTC: its "
             "host answers 503 with Retry-After")
    if record.message:
        out.line(f"message: {record.message}")


def _turn(app_name: str, enabled: bool, message: str | None, as_json: bool,
          data_dir: DataDir) -> None:
    settings = settings_from(data_dir)
    app = checked_app(app_name)

    async def body(client: DockyardClient) -> Maintenance:
        await require_app(client, app)
        return await client.turn_maintenance(app, enabled, message)

    _show(run(with_client(settings, body)), as_json)


@maintenance_app.command("on", epilog=(
    "Examples:\n\n"
    "  dockyard maintenance on shop\n\n"
    "  dockyard maintenance on shop --message 'Back at 14:00 UTC'"))
def maintenance_on(app_name: AppArg, message: Message = None, as_json: AsJson = False,
                   data_dir: DataDir = None) -> None:
    """Answer the app's host with a 503 maintenance page; deploys still proceed and are served
    once maintenance is off."""
    _turn(app_name, True, message, as_json, data_dir)


@maintenance_app.command("off", epilog="Example:\n\n  dockyard maintenance off shop")
def maintenance_off(app_name: AppArg, as_json: AsJson = False, data_dir: DataDir = None) -> None:
    """Route the app's host to its live release again."""
    _turn(app_name, False, None, as_json, data_dir)


@maintenance_app.command("status", epilog="Example:\n\n  dockyard maintenance status shop --json")
def maintenance_status(app_name: AppArg, as_json: AsJson = False,
                       data_dir: DataDir = None) -> None:
    """Whether the app is in maintenance, since when, with which message."""
    settings = settings_from(data_dir)
    app = checked_app(app_name)

    async def body(client: DockyardClient) -> Maintenance:
        await require_app(client, app)
        return await client.maintenance(app)

    _show(run(with_client(settings, body)), as_json)
