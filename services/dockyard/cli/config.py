"""config set, unset, show: an app's config vars (a change makes a release)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

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
    from dockyard.settings import Settings

config_app = typer.Typer(no_args_is_help=True,
                         help="Config vars of an app (a change makes a release).")
Follow = Annotated[bool, typer.Option("--follow/--no-follow", help="Follow the release.")]


def _release(settings: Settings, app: str, set_: dict[str, str], unset: list[str],
             follow: bool, create: bool) -> int:
    from dockyard.cli.deploying import follow_deploy

    async def body(client: DockyardClient) -> int:
        if not create:
            await require_app(client, app, can_create=bool(set_))
        version = (await client.config_change(app, set_, unset)).version
        out.line(f"config of {app} is now version {version}")
        if not await client.has_release(app):
            out.line("no release yet: the next deploy uses it")
            return 0
        if not follow:
            cmd = await client.request_deploy(app, None, kind="config")
            out.line(f"releasing with the new config: deployment {cmd.deployment_id}")
            return 0
        return await follow_deploy(client, app, None, kind="config")

    return run(with_client(settings, body))


@config_app.command("set", epilog=(
    "Examples:\n\n"
    "  dockyard config set shop DATABASE_URL=postgres://db/shop DEBUG=0\n\n"
    "  dockyard config set newapp GREETING=hello --create"))
def config_set(
    app_name: AppArg,
    pairs: Annotated[list[str], typer.Argument(metavar="KEY=VALUE...")],
    follow: Follow = True,
    create: Create = False,
    data_dir: DataDir = None,
) -> None:
    """Set config vars; makes a new release of the live build (release phase runs again)."""
    from dockyard.pipeline.config import ConfigError, parse_assignments

    settings = settings_from(data_dir)
    app = checked_app(app_name)
    try:
        values = parse_assignments(pairs)
    except ConfigError as exc:
        fail(str(exc))
    raise typer.Exit(_release(settings, app, values, [], follow, create))


@config_app.command("unset", epilog="Example:\n\n  dockyard config unset shop DEBUG")
def config_unset(
    app_name: AppArg,
    keys: Annotated[list[str], typer.Argument(metavar="KEY...")],
    follow: Follow = True,
    data_dir: DataDir = None,
) -> None:
    """Remove config vars; makes a new release like `config set`."""
    settings = settings_from(data_dir)
    app = checked_app(app_name)
    raise typer.Exit(_release(settings, app, {}, keys, follow, False))


@config_app.command("show", epilog="Example:\n\n  dockyard config show shop --json")
def config_show(app_name: AppArg, as_json: AsJson = False, data_dir: DataDir = None) -> None:
    """Print the app's config vars (KEY=VALUE lines)."""
    settings = settings_from(data_dir)
    app = checked_app(app_name)

    async def body(client: DockyardClient) -> tuple[int, dict[str, str]]:
        await require_app(client, app)
        config = await client.config_show(app)
        return config.version, dict(config.values)

    version, values = run(with_client(settings, body))
    if as_json:
        out.json({"app": app, "version": version, "values": values})
        return
    out.line(f"# {app} config version {version}", style="dim")
    for key, value in values.items():
        out.line(f"{key}={value}")
