"""notify add, rm, ls: where an app's events are delivered."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

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
    from dockyard.contract.sinks import Sink, SinkStatus

notify_app = typer.Typer(no_args_is_help=True, help="Where an app's events are delivered.")


def sink_view(sink: Sink, status: SinkStatus | None = None) -> dict[str, Any]:
    """What may be shown of a sink and how it has answered lately: never its secret nor its
    URL's path (a Slack webhook URL is itself a credential)."""
    from urllib.parse import urlsplit

    import msgspec

    from dockyard.contract.sinks import SinkStatus

    view: dict[str, Any] = {"name": sink.name, "kind": sink.kind,
                            "host": urlsplit(sink.url).netloc, "events": list(sink.events),
                            "signed": sink.secret is not None}
    answered: dict[str, Any] = msgspec.to_builtins(status or SinkStatus())
    return view | answered


def sink_row(view: dict[str, Any]) -> list[object]:
    """A sink's view as a `notify ls` row: failures (and events given up), the last error."""
    failures = str(view["failures"]) + (f" ({view['given_up']} events given up)"
                                        if view["given_up"] else "")
    last = "" if view["last_error"] is None else \
        f"{view['last_error']} at {view['last_failure_at']}"
    return [view["name"], view["kind"], view["host"], ", ".join(view["events"]),
            "yes" if view["signed"] else "no", failures, last]


@notify_app.command("add", epilog=(
    "Examples:\n\n"
    "  dockyard notify add shop ops https://hooks.example.com/x --secret whsec_... "
    "--event 'deploy.*'\n\n"
    "  dockyard notify add shop chat https://chat.example.com/hook --kind slack"))
def notify_add(
    app_name: AppArg,
    name: Annotated[str, typer.Argument(help="A name for this sink (to remove it later).")],
    url: Annotated[str, typer.Argument(help="The webhook URL.")],
    kind: Annotated[str, typer.Option(
        help="webhook (Standard Webhooks, signed) or slack.")] = "webhook",
    secret: Annotated[str | None, typer.Option(
        help="Signing secret: whsec_<base64 key>, or any string (shown once in that form)."
    )] = None,
    event: Annotated[list[str] | None, typer.Option("--event", "-e", help="Event type pattern, "
                     "e.g. deploy.* (repeatable; default: queued, succeeded, failed, hook.failed, "
                     "traffic.switched).")] = None,
    attempts: Annotated[int | None, typer.Option(
        help="Delivery attempts before giving up.")] = None,
    create: Create = False,
    data_dir: DataDir = None,
) -> None:
    """Deliver the app's events to a webhook or a Slack-compatible chat webhook."""
    from dockyard.contract.sinks import Sink, SinkError, validate

    settings = settings_from(data_dir)
    app = checked_app(app_name)
    fields: dict[str, Any] = {"name": name, "url": url, "kind": kind, "secret": secret}
    if event:
        fields["events"] = list(event)
    if attempts is not None:
        fields["max_attempts"] = attempts
    try:
        # As stored: a plain secret becomes its whsec_ form, a bad whsec_ one is refused here.
        sink = validate(Sink(**fields))
    except SinkError as exc:
        fail(str(exc))

    async def body(client: DockyardClient) -> None:
        if not create:
            await require_app(client, app, can_create=True)
        await client.add_sink(app, sink)

    run(with_client(settings, body))
    out.line(f"{app}: events {', '.join(sink.events)} go to sink '{name}' ({kind})")
    if sink.secret is not None and sink.secret != secret:
        out.line(f"signing secret (shown once; give it to the receiver): {sink.secret}")


@notify_app.command("rm", epilog="Example:\n\n  dockyard notify rm shop ops")
def notify_rm(app_name: AppArg,
              name: Annotated[str, typer.Argument(help="The sink's name.")],
              data_dir: DataDir = None) -> None:
    """Stop delivering to a sink."""
    settings = settings_from(data_dir)
    app = checked_app(app_name)

    async def body(client: DockyardClient) -> None:
        await require_app(client, app)
        await client.remove_sink(app, name)

    run(with_client(settings, body))
    out.line(f"removed sink '{name}' from {app}")


@notify_app.command("ls", epilog="Example:\n\n  dockyard notify ls shop --json")
def notify_ls(app_name: AppArg, as_json: AsJson = False, data_dir: DataDir = None) -> None:
    """The app's sinks and how each has answered lately (secrets and URL paths are not shown)."""
    settings = settings_from(data_dir)
    app = checked_app(app_name)

    async def body(client: DockyardClient) -> list[tuple[Sink, SinkStatus]]:
        await require_app(client, app)
        return await client.sink_statuses(app)

    views = [sink_view(sink, status) for sink, status in run(with_client(settings, body))]
    if as_json:
        out.json({"app": app, "sinks": views})
        return
    out.table(["name", "kind", "host", "events", "signed", "failures", "last error"],
              [sink_row(v) for v in views])
