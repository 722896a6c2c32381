"""The `dockyard` command tree: the root, its options, and every command module's commands.

Importing this imports typer and the command modules only; each command imports what it uses
(nats, httpx, the contract, the stack) when it runs, so `--help` and `--version` stay fast."""

from __future__ import annotations

from typing import Annotated

import typer

from dockyard.cli import (
    config,
    deploying,
    hooks,
    maintenance,
    notify,
    oneoff,
    reading,
    rollout,
    running,
    scaling,
)
from dockyard.cli.bus import bus_app

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Dockyard: build, release, gate on postdeploy, switch traffic.",
                  epilog="Example: dockyard up, then (from the same directory) "
                         "dockyard deploy shop ./shop")


def version_text() -> str:
    """`dockyard <version>`."""
    from dockyard import __version__

    return f"dockyard {__version__}"


def _show_version(value: bool) -> None:
    if value:
        print(version_text())
        raise typer.Exit()


@app.callback()
def root(version: Annotated[bool, typer.Option(
        "--version", is_eager=True, callback=_show_version,
        help="Print the version and exit.")] = False) -> None:
    """Dockyard: build, release, gate on postdeploy, switch traffic."""


for module in (running, deploying, oneoff, scaling, reading):
    app.add_typer(module.commands)
app.add_typer(config.config_app, name="config", rich_help_panel="Configuring")
app.add_typer(hooks.hooks_app, name="hooks", rich_help_panel="Configuring")
app.add_typer(notify.notify_app, name="notify", rich_help_panel="Configuring")
app.add_typer(maintenance.maintenance_app, name="maintenance", rich_help_panel="Configuring")
app.add_typer(rollout.rollout_app, name="rollout", rich_help_panel="Deploying")
app.add_typer(bus_app, name="bus", rich_help_panel="Running Dockyard")
