"""rollout status, promote, abort: the app's canary or watch window in progress, and the
operator's order to it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

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
    from dockyard.contract.events import ReleaseFigures
    from dockyard.contract.state import RolloutAction, RolloutProgress

rollout_app = typer.Typer(
    no_args_is_help=True,
    help="A canary or watch window in progress ([rollout] in dockyard.toml): where it is, and "
         "promoting or aborting it by hand.")


def _figures(figures: ReleaseFigures | None) -> str:
    if figures is None:
        return "not judged yet"
    p95 = "no p95" if figures.p95 is None else f"p95 {figures.p95 * 1000:.0f} ms"
    return (f"{figures.requests} requests, {figures.errors} errors "
            f"({figures.error_rate:.1%}), {p95}")


def _as_json(app: str, progress: RolloutProgress | None) -> dict[str, object]:
    if progress is None:
        return {"app": app, "in_progress": False}
    import msgspec

    return {"in_progress": True, **msgspec.to_builtins(progress)}


def _show(app: str, progress: RolloutProgress | None, as_json: bool) -> None:
    if as_json:
        out.json(_as_json(app, progress))
        return
    if progress is None:
        out.line(f"{app} has no rollout in progress")
        return
    left = ""
    if progress.until is not None:
        seconds = max(0.0, (progress.until - datetime.now(UTC)).total_seconds())
        left = f", {seconds:.0f}s left"
    if progress.stage == "canary":
        out.line(f"{app}: canary of v{progress.release}, step {progress.step}/{progress.steps}: "
                 f"{progress.percent}% of requests{left}")
    else:
        out.line(f"{app}: watching v{progress.release} (v{progress.previous_release} warm to "
                 f"switch back to){left}")
    out.line(f"  v{progress.release}: {_figures(progress.new)}")
    out.line(f"  v{progress.previous_release}: {_figures(progress.old)}")
    out.line(f"  deployment {progress.deployment_id}")


def _order(app_name: str, action: RolloutAction, as_json: bool, data_dir: DataDir) -> None:
    settings = settings_from(data_dir)
    app = checked_app(app_name)

    async def body(client: DockyardClient) -> RolloutProgress:
        await require_app(client, app)
        return await client.order_rollout(app, action)

    progress = run(with_client(settings, body))
    if as_json:
        out.json({"app": app, "action": action, "deployment_id": progress.deployment_id})
        return
    out.line(f"{action} ordered for the rollout of v{progress.release} "
             f"({progress.deployment_id}); the router acts within a second "
             f"(`dockyard logs {progress.deployment_id}` follows it)")


@rollout_app.command("status", epilog="Example:\n\n  dockyard rollout status shop --json")
def rollout_status(app_name: AppArg, as_json: AsJson = False, data_dir: DataDir = None) -> None:
    """Where the app's canary or watch window is, with both releases' figures."""
    settings = settings_from(data_dir)
    app = checked_app(app_name)

    async def body(client: DockyardClient) -> RolloutProgress | None:
        await require_app(client, app)
        return await client.rollout(app)

    _show(app, run(with_client(settings, body)), as_json)


@rollout_app.command("promote", epilog="Example:\n\n  dockyard rollout promote shop")
def rollout_promote(app_name: AppArg, as_json: AsJson = False, data_dir: DataDir = None) -> None:
    """Every request to the new release now (in the watch window: end it as passed)."""
    _order(app_name, "promote", as_json, data_dir)


@rollout_app.command("abort", epilog="Example:\n\n  dockyard rollout abort shop")
def rollout_abort(app_name: AppArg, as_json: AsJson = False, data_dir: DataDir = None) -> None:
    """Every request back to the old release: the deploy ends canary-error (rolled-back in
    the watch window)."""
    _order(app_name, "abort", as_json, data_dir)
