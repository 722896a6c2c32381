"""apps, status, ps, deployments, releases: the api's records of apps."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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
from dockyard.cli.output import out

if TYPE_CHECKING:
    from dockyard.settings import Settings

commands = typer.Typer()
PANEL = "Reading"
STATUS_STYLE = {"succeeded": "green", "cancelled": "yellow", "running": "cyan",
                "queued": "cyan"}


def _get(settings: Settings, path: str, app: str) -> Any:
    """A document of the api about `app`; None when the api has no record of the app but the app
    exists on the bus (config or hooks set, not yet deployed); exit 2 when it does not exist."""
    from dockyard.api_client import ApiError, ApiNotFound, api_get

    try:
        return api_get(settings, path)
    except ApiNotFound:
        run(with_client(settings, lambda client: require_app(client, app)))
        return None
    except ApiError as exc:
        fail(str(exc))


def status_style(status: str) -> str:
    """The colour of a deployment status on a terminal."""
    return STATUS_STYLE.get(status, "red" if "error" in status else "white")


def url_line(info: dict[str, Any] | None, url: str) -> str:
    """Where the app answers: its URL, or why it has none."""
    if not info or not info.get("live_release"):
        return f"url: {url} (answers 503 until a first release is live)"
    live = info["live_release"]
    running = [i for i in info.get("instances") or [] if i.get("release") == live]
    if running and not any(i.get("process") == "web" for i in running):
        return f"url: none: the live release has no web process, so no HTTP route ({url} " \
               "answers 503)"
    return f"url: {url}"


def maintenance_line(app: str, maintenance: dict[str, Any] | None) -> str | None:
    """What `status` says of an app in maintenance (None when it is not)."""
    if not maintenance or not maintenance.get("enabled"):
        return None
    since = f" since {maintenance['since']}" if maintenance.get("since") else ""
    message = f" ({maintenance['message']})" if maintenance.get("message") else ""
    return (f"maintenance: on{since}{message}: the host answers 503 until "
            f"`dockyard maintenance off {app}`")


def _maintenance(settings: Settings, app: str) -> dict[str, Any] | None:
    """The app's maintenance record from the api (None if it cannot say)."""
    from dockyard.api_client import ApiError, api_get

    try:
        found = api_get(settings, f"/apps/{app}/maintenance")
    except ApiError:
        return None
    return found if isinstance(found, dict) else None


def deployment_rows(rows: list[dict[str, Any]]) -> list[list[object]]:
    """Deployments as table rows: whole id, release, status, whole reason, whole date."""
    return [[d.get("id"), f"v{d['release']}" if d.get("release") else "-", d.get("status"),
             d.get("reason") or "", d.get("created_at")] for d in rows]


def release_rows(rows: list[dict[str, Any]]) -> list[list[object]]:
    """Releases as table rows."""
    return [[f"v{r.get('number')}", r.get("build_id"), r.get("kind"), r.get("config_version"),
             r.get("deployment_id"), r.get("created_at"), "yes" if r.get("live") else ""]
            for r in rows]


def app_rows(rows: list[dict[str, Any]]) -> list[list[object]]:
    """Apps as table rows: name, live release, health, running instances, latest status."""
    return [[a.get("name"), f"v{a['live_release']}" if a.get("live_release") else "-",
             a.get("health"), a.get("running"), a.get("status") or "-"] for a in rows]


def instance_rows(rows: list[dict[str, Any]]) -> list[list[object]]:
    """Instances as table rows: process, release, state, whole id, address."""
    return [[i.get("process"), f"v{i.get('release')}", i.get("state"), i.get("id"),
             f"{i.get('host')}:{i['port']}" if i.get("port") is not None else "-"]
            for i in sorted(rows, key=lambda i: (i.get("process") or "", i.get("id") or ""))]


@commands.command(rich_help_panel=PANEL, epilog="Example:\n\n  dockyard apps --json")
def apps(as_json: AsJson = False, data_dir: DataDir = None) -> None:
    """Every app: its live release, health and running instances."""
    from dockyard.api_client import ApiError, api_get

    settings = settings_from(data_dir)
    try:
        rows = api_get(settings, "/apps")
    except ApiError as exc:
        fail(str(exc))
    if as_json:
        out.json({"apps": rows})
        return
    out.table(["app", "live", "health", "running", "latest"], app_rows(rows))


@commands.command(rich_help_panel=PANEL, epilog="Examples:\n\n  dockyard ps shop\n\n"
                                                "  dockyard ps shop --json")
def ps(app_name: AppArg, as_json: AsJson = False, data_dir: DataDir = None) -> None:
    """The app's running instances: process, release, state, id and address."""
    settings = settings_from(data_dir)
    app = checked_app(app_name)
    info = _get(settings, f"/apps/{app}", app) or {}
    rows = info.get("instances") or []
    if as_json:
        out.json({"app": app, "live_release": info.get("live_release"), "instances": rows,
                  "formation": info.get("formation")})
        return
    out.table(["process", "release", "state", "instance", "address"], instance_rows(rows))
    if formation := info.get("formation"):
        out.line("formation: " + " ".join(f"{k}={v}" for k, v in formation.items()))


@commands.command(rich_help_panel=PANEL, epilog="Example:\n\n  dockyard status shop --json")
def status(app_name: AppArg, as_json: AsJson = False, data_dir: DataDir = None) -> None:
    """The app's live release, latest deployment and URL."""
    settings = settings_from(data_dir)
    app = checked_app(app_name)
    info = _get(settings, f"/apps/{app}", app)
    url = settings.app_url(app)
    maintenance = _maintenance(settings, app) if info else None
    if as_json:
        out.json({**(info or {"name": app, "live_release": None, "deployment": None}),
                  "url": url, "maintenance": bool(maintenance and maintenance.get("enabled"))})
        return
    live = (info or {}).get("live_release")
    out.line(f"{app}: live release {('v' + str(live)) if live else 'none'}", style="bold")
    latest = (info or {}).get("deployment")
    if latest:
        st = latest.get("status") or "?"
        reason = f" — {latest['reason']}" if latest.get("reason") else ""
        out.line(f"latest deployment {latest.get('id')}: {st}{reason}", style=status_style(st))
    else:
        out.line("no deployments yet")
    out.line(url_line(info, url))
    if (line := maintenance_line(app, maintenance)) is not None:
        out.line(line, style="yellow")


@commands.command(rich_help_panel=PANEL, epilog="Example:\n\n  dockyard deployments shop")
def deployments(app_name: AppArg, as_json: AsJson = False, data_dir: DataDir = None) -> None:
    """The app's deployments, newest first."""
    settings = settings_from(data_dir)
    app = checked_app(app_name)
    rows = _get(settings, f"/apps/{app}/deployments?limit=1000", app) or []
    if as_json:
        out.json({"app": app, "deployments": rows})
        return
    out.table(["deployment", "release", "status", "reason", "created"], deployment_rows(rows))


@commands.command(rich_help_panel=PANEL, epilog="Example:\n\n  dockyard releases shop --json")
def releases(app_name: AppArg, as_json: AsJson = False, data_dir: DataDir = None) -> None:
    """The app's releases, newest first."""
    settings = settings_from(data_dir)
    app = checked_app(app_name)
    rows = _get(settings, f"/apps/{app}/releases", app) or []
    if as_json:
        out.json({"app": app, "releases": rows})
        return
    out.table(["release", "build", "kind", "config version", "deployment", "created", "live"],
              release_rows(rows))
