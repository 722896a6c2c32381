"""The HTTP API (Litestar): JSON over the deployment records, the operations, SSE streams and the
dashboard; msgspec structs in and out, and the OpenAPI document generated from them."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import msgspec
from litestar import Litestar, MediaType, Request, Response, delete, get, patch, post
from litestar.datastructures import Cookie
from litestar.di import NamedDependency, Provide
from litestar.openapi import OpenAPIConfig, ResponseSpec
from litestar.openapi.plugins import RedocRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.params import (
    FromPath,
    FromQuery,
    HeaderParameter,
    JSONBody,
    PathParameter,
    QueryParameter,
)
from litestar.response import File, ServerSentEvent
from litestar.response.sse import ServerSentEventMessage
from litestar.static_files import create_static_files_router

from dockyard.api import views
from dockyard.api.auth import (
    COOKIE,
    OPEN,
    SESSION_TTL,
    new_session,
    require_access,
    same_token,
)
from dockyard.api.errors import HANDLERS, BadRequest, Unauthenticated
from dockyard.api.feeds import Kept, Streams
from dockyard.api.models import (
    Accepted,
    AppDetail,
    AppSummary,
    ConfigChange,
    ConfigChanged,
    ConfigView,
    DeploymentDetail,
    DeploymentRow,
    ErrorBody,
    HookAdd,
    HookPlan,
    Liveness,
    MaintenanceRequest,
    MaintenanceView,
    OperationAccepted,
    OperatorHooksView,
    ReleaseRow,
    RestartRequest,
    RollbackRequest,
    RolloutRequest,
    RolloutView,
    ScaleRequest,
    Session,
    SinkAdd,
    SinkAdded,
    SinksView,
)
from dockyard.api.operations import Operations, rollout_override
from dockyard.bus.topology import STREAM_FEED
from dockyard.contract import subjects
from dockyard.contract.names import check_app, check_deployment_id
from dockyard.store import Store, queries

STATIC = Path(__file__).parent / "static"
VERSION = "1"
# Every body but an uploaded archive is a small JSON document.
MAX_JSON_BODY = 1024 * 1024
T = TypeVar("T")

AppName = Annotated[str, PathParameter(description="The app's name (a DNS label).")]
DeploymentId = Annotated[str, PathParameter(description="A deployment id (32 lowercase hex).")]
LastEventId = Annotated[str | None, HeaderParameter(
    name="Last-Event-ID", required=False,
    description="Resume after this event (EventSource sends it when it reconnects).")]
Limit = Annotated[int, QueryParameter(ge=1, le=queries.MAX_LIMIT, description="At most this many.")]

_MEANINGS = {
    400: "The request is invalid: the body says which part and why.",
    401: "No valid token or session: send `Authorization: Bearer <token>` or log in.",
    403: "A cross-site state change with the dashboard's session is refused.",
    404: "No such app, deployment or resource.",
    409: "The request clashes with what is stored (already ended, changed meanwhile).",
    413: "The body is past its limit.",
}


def errors(*codes: int) -> dict[int, ResponseSpec]:
    """The documented error responses of a route (every one is an ErrorBody)."""
    return {code: ResponseSpec(ErrorBody, description=_MEANINGS[code], generate_examples=False)
            for code in (400, 401, *codes)}


READ = errors(404)
WRITE = errors(403, 404, 409)


@dataclass
class Backend:
    """What the routes work on: the store, the operations, the streams, the token."""

    store: Store
    operations: Operations
    streams: Streams
    token: str
    # How long a stream waits for its next message before checking whether it should end.
    idle: float = 0.5

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        """A store read, off the event loop."""
        return await asyncio.to_thread(fn, self.store, *args)


Api = NamedDependency[Backend]


def _backend(backend: Backend | None) -> Callable[[], Backend]:
    def provide() -> Backend:
        if backend is None:
            raise RuntimeError("this app was built for its OpenAPI document only")
        return backend

    return provide


# ---------------------------------------------------------------- open routes


@get("/healthz", opt={OPEN: True}, security=[], tags=["health"],
     summary="Liveness (no token needed)")
async def healthz(api: Api) -> Liveness:
    """The api answers; how many events it has projected."""
    return Liveness(status="ok", events=await api.read(queries.count_events))


@get("/", opt={OPEN: True}, include_in_schema=False)
async def dashboard() -> File:
    """The dashboard's shell (it logs in with the token, then calls this API)."""
    return File(STATIC / "index.html", content_disposition_type="inline",
                media_type=MediaType.HTML)


@post("/session", opt={OPEN: True}, security=[], tags=["dashboard"], status_code=204,
      summary="Log in with the token (sets the session cookie)",
      responses=errors(403))
async def login(data: JSONBody[Session], request: Request[Any, Any, Any],
                api: Api) -> Response[None]:
    """Exchange the token for an HttpOnly, SameSite=Strict session cookie."""
    if not same_token(data.token.strip(), api.token):
        raise Unauthenticated("that is not the api's token (it is in the data dir's api.token)")
    secure = request.url.scheme == "https"
    return Response(None, status_code=204, cookies=[Cookie(
        key=COOKIE, value=new_session(api.token), max_age=SESSION_TTL, path="/", httponly=True,
        samesite="strict", secure=secure)])


@delete("/session", opt={OPEN: True}, security=[], tags=["dashboard"], status_code=204,
        summary="Log out (clears the session cookie)", responses=errors(403))
async def logout() -> Response[None]:
    """Forget the session cookie."""
    return Response(None, status_code=204, cookies=[Cookie(
        key=COOKIE, value="", max_age=0, path="/", httponly=True, samesite="strict")])


@get("/openapi.json", include_in_schema=False)
async def openapi(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """This API's OpenAPI document."""
    return document(request.app)


# ---------------------------------------------------------------- records


@get("/apps", tags=["apps"], responses=errors(), summary="Apps")
async def list_apps(api: Api) -> list[AppSummary]:
    """Every app with its live release, health and latest deployment's status."""
    return await api.read(views.apps)


@get("/apps/{app:str}", tags=["apps"], responses=READ, summary="One app")
async def one_app(app: AppName, api: Api) -> AppDetail:
    """Live release and health, latest deployment, route, running instances and the
    formation (once scaled)."""
    detail = await api.read(views.app, check_app(app))
    detail.formation = await api.operations.formation(app)
    return detail


@get("/apps/{app:str}/deployments", tags=["deployments"], responses=READ,
     summary="An app's deployments")
async def app_deployments(app: AppName, api: Api,
                          limit: Limit = 50
                          ) -> list[DeploymentRow]:
    """Newest first."""
    return await api.read(views.deployments, check_app(app), limit)


@get("/apps/{app:str}/releases", tags=["apps"], responses=READ, summary="An app's releases")
async def app_releases(app: AppName, api: Api) -> list[ReleaseRow]:
    """Newest first; `live` marks the one serving."""
    return await api.read(views.releases, check_app(app))


@get("/deployments/{deployment_id:str}", tags=["deployments"], responses=READ,
     summary="One deployment")
async def one_deployment(deployment_id: DeploymentId, api: Api) -> DeploymentDetail:
    """Its timeline phase by phase, hook runs, failure (exit code and tail) and events."""
    return await api.read(views.deployment, check_deployment_id(deployment_id))


@get("/deployments/{deployment_id:str}/events", tags=["events"], responses=READ,
     summary="A deployment's events")
async def deployment_events(deployment_id: DeploymentId, api: Api) -> list[dict[str, Any]]:
    """Every event of one deployment as published (CloudEvents JSON), oldest first."""
    return await api.read(queries.deployment_events, check_deployment_id(deployment_id))


@get("/events", tags=["events"], responses=errors(), summary="Events")
async def list_events(api: Api, app: FromQuery[str | None] = None,
                      after: FromQuery[str | None] = None,
                      limit: Limit = 100
                      ) -> list[dict[str, Any]]:
    """Events as published, oldest first; of one app; after an event id (paging)."""
    return await api.read(views.events, check_app(app) if app else None, after or None, limit)


# ---------------------------------------------------------------- streams


def _sse(messages: AsyncIterator[ServerSentEventMessage]) -> ServerSentEvent:
    return ServerSentEvent(messages, headers={"Cache-Control": "no-store",
                                              "X-Accel-Buffering": "no"})


SSE_DOC = {200: ResponseSpec(str, description="A text/event-stream.",
                             media_type="text/event-stream", generate_examples=False)}


@get("/deployments/{deployment_id:str}/logs", tags=["deployments"],
     responses={**READ, **SSE_DOC}, summary="A deployment's log, live (SSE)")
async def deployment_logs(deployment_id: DeploymentId, api: Api,
                          last_event_id: LastEventId = None) -> ServerSentEvent:
    """The kept log, then new lines until the deployment ends: `line` events (a LogLine's JSON,
    id = its place in the log), then one `end` event with the deployment's status."""
    dep = check_deployment_id(deployment_id)
    after = 0
    if last_event_id:
        if not last_event_id.isdigit():
            raise BadRequest(f"Last-Event-ID must be a line id from this stream, got "
                             f"{last_event_id!r}")
        after = int(last_event_id)
    await api.read(views.deployment_row, dep)  # 404 for an unknown deployment

    async def ended() -> bool:
        return await api.read(views.ended, dep)

    async def lines() -> AsyncIterator[ServerSentEventMessage]:
        kept: Kept
        async for kept in api.streams.follow(subjects.STREAM_LOGS, subjects.log(dep), after,
                                             ended, api.idle):
            yield ServerSentEventMessage(data=kept.data.decode(), event="line", id=kept.seq)
        row = await api.read(views.deployment_row, dep)
        yield ServerSentEventMessage(data=json.dumps({"status": row.status}), event="end")

    return _sse(lines())


@get("/apps/{app:str}/events/stream", tags=["events"], responses={**READ, **SSE_DOC},
     summary="An app's events, live (SSE)")
async def app_event_stream(app: AppName, api: Api, last_event_id: LastEventId = None,
                           follow: FromQuery[bool] = True) -> ServerSentEvent:
    """Every event of the app as published (CloudEvents JSON, id = the event's id), then new
    ones as they happen (unless follow=false)."""
    name = check_app(app)
    await api.read(views.app, name)  # 404 for an unknown app
    if last_event_id:
        # BadQueryError (400) when no event has that id.
        await api.read(views.events, name, last_event_id, 1)

    async def stop() -> bool:
        return not follow

    async def events() -> AsyncIterator[ServerSentEventMessage]:
        skipping = bool(last_event_id)
        async for kept in api.streams.follow(STREAM_FEED, subjects.app_events(name), 0, stop,
                                             api.idle):
            event_id = _event_id(kept.data)
            if skipping:
                skipping = event_id != last_event_id
                continue
            yield ServerSentEventMessage(data=kept.data.decode(), id=event_id or None)

    return _sse(events())


def _event_id(data: JSONBody[bytes]) -> str:
    try:
        found = json.loads(data).get("id")
    except (ValueError, AttributeError):
        return ""
    return found if isinstance(found, str) else ""


# ---------------------------------------------------------------- operations


@post("/apps/{app:str}/deployments", tags=["deployments"], status_code=202,
      opt={"upload": True}, responses=errors(403, 413), summary="Deploy",
      # The archive is streamed to a file and capped there (DOCKYARD_ARCHIVE_MAX_BYTES).
      request_max_body_size=None)
async def deploy(app: AppName, request: Request[Any, Any, Any], api: Api,
                 canary: FromQuery[str | None] = None, hold: FromQuery[str | None] = None,
                 watch: FromQuery[str | None] = None,
                 rollout: FromQuery[Literal["off"] | None] = None) -> Accepted:
    """Upload the source and ask for its deploy; follow it at the links answered. `canary`
    (`5,25`: percent of requests in turn), `hold` (`60s`) and `watch` (`5m`) replace
    dockyard.toml's [rollout] for this deploy; `rollout=off`: every request at once."""
    override = rollout_override(canary, hold, watch, rollout == "off")
    return await api.operations.deploy(check_app(app), request.stream(), override)


@post("/deployments/{deployment_id:str}/cancel", tags=["deployments"], status_code=202,
      responses=WRITE, summary="Cancel a deployment")
async def cancel(deployment_id: DeploymentId, api: Api) -> Accepted:
    """Ask to cancel a queued or running deployment (it ends `cancelled`)."""
    return await api.operations.cancel(check_deployment_id(deployment_id), "cancelled by user")


@get("/apps/{app:str}/config", tags=["config"], responses=errors(), summary="Config names")
async def config_show(app: AppName, api: Api) -> ConfigView:
    """The config version and the names it sets; values are never answered."""
    return await api.operations.config(check_app(app))


@patch("/apps/{app:str}/config", tags=["config"], responses=errors(403, 409),
       summary="Set and unset config vars")
async def config_change(app: AppName, data: JSONBody[ConfigChange], api: Api) -> ConfigChanged:
    """A new config version; with a live release, a config release of the same build starts."""
    return await api.operations.change_config(check_app(app), data)


@get("/apps/{app:str}/hooks", tags=["hooks"], responses=errors(), summary="The merged hook plan")
async def hooks_show(app: AppName, api: Api) -> HookPlan:
    """What the next deploy of the live build would run, in order, with each command's source."""
    return await api.operations.plan(check_app(app))


@post("/apps/{app:str}/hooks", tags=["hooks"], status_code=201, responses=errors(403, 409),
      summary="Add an operator hook")
async def hooks_add(app: AppName, data: JSONBody[HookAdd], api: Api) -> OperatorHooksView:
    """It runs after the repository's commands of its phase."""
    return await api.operations.add_hook(check_app(app), data)


@delete("/apps/{app:str}/hooks/{phase:str}/{label:str}", tags=["hooks"], status_code=200,
        responses=errors(403, 404, 409), summary="Remove an operator hook")
async def hooks_remove(app: AppName, phase: FromPath[str], label: FromPath[str],
                       api: Api) -> OperatorHooksView:
    """By phase and label."""
    return await api.operations.remove_hook(check_app(app), phase, label)


@get("/apps/{app:str}/sinks", tags=["notify"], responses=errors(), summary="Notification sinks")
async def sinks_show(app: AppName, api: Api) -> SinksView:
    """Each sink with its failures since the last delivery and its last error (no secrets)."""
    return await api.operations.sinks(check_app(app))


@post("/apps/{app:str}/sinks", tags=["notify"], status_code=201, responses=errors(403, 409),
      summary="Add a notification sink")
async def sinks_add(app: AppName, data: JSONBody[SinkAdd], api: Api) -> SinkAdded:
    """Add, or replace by name, a webhook or Slack-compatible sink."""
    return await api.operations.add_sink(check_app(app), data)


@delete("/apps/{app:str}/sinks/{name:str}", tags=["notify"], status_code=200,
        responses=errors(403, 404, 409), summary="Remove a notification sink")
async def sinks_remove(app: AppName, name: FromPath[str], api: Api) -> SinksView:
    """Stop delivering to it."""
    return await api.operations.remove_sink(check_app(app), name)


@post("/apps/{app:str}/scale", tags=["operations"], status_code=202,
      responses=errors(403, 404), summary="Scale a process type")
async def scale(app: AppName, data: JSONBody[ScaleRequest], api: Api) -> OperationAccepted:
    """Run `count` (0..20) instances of one process type of the live release, kept as the
    app's formation for later deploys (404: no live release; 400: unknown process type or
    count). Answered when asked for on the bus; follow it at the links (`scale.succeeded` or
    `scale.failed` ends it)."""
    return await api.operations.scale(check_app(app), data)


@post("/apps/{app:str}/restart", tags=["operations"], status_code=202,
      responses=errors(403, 404), summary="Restart")
async def restart(app: AppName, data: JSONBody[RestartRequest], api: Api) -> OperationAccepted:
    """Replace the live release's instances (one process type, or all): each new one healthy
    and routed before the old ones drain and stop (404: no live release; 400: unknown process
    type)."""
    return await api.operations.restart(check_app(app), data)


@post("/apps/{app:str}/rollback", tags=["operations"], status_code=202,
      responses=errors(403, 404, 409), summary="Roll back")
async def rollback(app: AppName, data: JSONBody[RollbackRequest], api: Api) -> OperationAccepted:
    """A new release of an earlier release's build and config (404: no such release went live;
    409: no longer kept, DOCKYARD_KEEP_RELEASES); follow it at the links answered. Databases
    are not rolled back."""
    return await api.operations.rollback(check_app(app), data)


@get("/apps/{app:str}/maintenance", tags=["operations"], responses=READ,
     summary="Maintenance mode")
async def maintenance_show(app: AppName, api: Api) -> MaintenanceView:
    """Whether the app's host answers its maintenance page, since when, with which message."""
    return await api.operations.maintenance(check_app(app))


@post("/apps/{app:str}/maintenance", tags=["operations"], status_code=200,
      responses=errors(403, 404, 409), summary="Maintenance mode on or off")
async def maintenance(app: AppName, data: JSONBody[MaintenanceRequest],
                      api: Api) -> MaintenanceView:
    """On: the app's host answers 503 with Retry-After and a maintenance page (with `message`,
    if given) while its instances keep running; deploys still proceed and are served once it
    is off. Off: the host routes to the live release again. Answers the recorded state; the
    router follows it within moments."""
    return await api.operations.turn_maintenance(check_app(app), data)


@get("/apps/{app:str}/rollout", tags=["operations"], responses=READ,
     summary="Rollout in progress")
async def rollout_show(app: AppName, api: Api) -> RolloutView:
    """The app's canary step (the new release's share of requests) or watch window in
    progress, with both releases' figures as the router last judged them."""
    return await api.operations.rollout(check_app(app))


@post("/apps/{app:str}/rollout", tags=["operations"], status_code=200,
      responses=errors(403, 404, 409), summary="Promote or abort a rollout")
async def rollout_order(app: AppName, data: JSONBody[RolloutRequest], api: Api) -> RolloutView:
    """`promote`: every request to the new release now (in the watch window: end it as
    passed); `abort`: every request back to the old release (the deploy ends canary-error, or
    rolled-back). 409: no rollout in progress. The router acts within a second."""
    return await api.operations.order_rollout(check_app(app), data)


@delete("/apps/{app:str}", tags=["operations"], status_code=202,
        responses=errors(403, 404, 409), summary="Destroy an app")
async def destroy(app: AppName, api: Api) -> OperationAccepted:
    """Stop its instances, remove its route, artifacts, config, hooks, sinks and records; the
    name may be deployed again as a new app (from v1). 404: no such app; 409: a deploy of it
    is queued or running. Follow it at `events` (`destroy.succeeded` or `destroy.failed`)."""
    return await api.operations.destroy(check_app(app))


ROUTES = [healthz, dashboard, login, logout, openapi, list_apps, one_app, app_deployments,
          app_releases, one_deployment, deployment_events, list_events, deployment_logs,
          app_event_stream, deploy, cancel, config_show, config_change, hooks_show, hooks_add,
          hooks_remove, sinks_show, sinks_add, sinks_remove, scale, restart, rollback,
          maintenance_show, maintenance, rollout_show, rollout_order, destroy]


def openapi_config() -> OpenAPIConfig:
    """Title, auth schemes, and a docs page at /docs."""
    return OpenAPIConfig(
        title="Dockyard", version=VERSION, path="/docs",
        description="Deploy, follow and operate apps on a Dockyard stack. Every route but "
                    "/healthz and the dashboard's login needs the api token: "
                    "`Authorization: Bearer <token>` (or the dashboard's session cookie).",
        components=Components(security_schemes={
            "token": SecurityScheme(type="http", scheme="bearer",
                                    description="The api token (data dir's api.token)."),
            "session": SecurityScheme(type="apiKey", name=COOKIE, security_scheme_in="cookie",
                                      description="The dashboard's session (POST /session)."),
        }),
        security=[{"token": []}, {"session": []}],
        render_plugins=[RedocRenderPlugin(path="/")],
        use_handler_docstrings=True,
    )


def make_app(backend: Backend | None) -> Litestar:
    """The API application; `backend` None builds it for its OpenAPI document alone."""
    token = backend.token if backend is not None else ""
    static = create_static_files_router(path="/static", directories=[STATIC], opt={OPEN: True},
                                        include_in_schema=False)
    return Litestar(
        route_handlers=[*ROUTES, static],
        dependencies={"api": Provide(_backend(backend), sync_to_thread=False)},
        guards=[require_access(token)],
        exception_handlers=HANDLERS,
        openapi_config=openapi_config(),
        request_max_body_size=MAX_JSON_BODY,
        logging_config=None,
    )


UPLOAD_BODY = {
    "required": True,
    "description": "The app's source as a gzip tarball (`tar czf - -C DIR .`), checked before it "
                   "is stored: regular files and directories, relative paths, the "
                   "DOCKYARD_ARCHIVE_* limits.",
    "content": {"application/gzip": {"schema": {"type": "string", "format": "binary"}}},
}


def document(app: Litestar) -> dict[str, Any]:
    """The OpenAPI document of an app, as plain JSON data; what Litestar cannot say from the
    handlers' signatures is set here: open routes need no auth, the deploy body is a tarball,
    204 answers have no body."""
    doc: dict[str, Any] = msgspec.to_builtins(app.openapi_schema.to_schema())
    for route in app.routes:
        for handler in getattr(route, "route_handlers", []):
            for method in getattr(handler, "http_methods", ()):
                operation = doc["paths"].get(_openapi_path(route.path), {}).get(method.lower())
                if operation is None:
                    continue
                if handler.opt.get(OPEN):
                    operation["security"] = []
                if handler.opt.get("upload"):
                    operation["requestBody"] = UPLOAD_BODY
                for status, answer in operation["responses"].items():
                    if status == "204":
                        answer.pop("content", None)
    return doc


def _openapi_path(path: str) -> str:
    """`/apps/{app:str}` as OpenAPI spells it: `/apps/{app}`."""
    return re.sub(r"\{(\w+):\w+\}", r"{\1}", path)


def openapi_document() -> dict[str, Any]:
    """The API's OpenAPI document (for schemas/openapi.json)."""
    return document(make_app(None))

