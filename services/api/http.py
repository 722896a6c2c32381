"""The HTTP API (starlette): JSON views of the deployment records."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dockyard.store import BadQueryError, NotFoundError, Store, StoreError, queries
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

# Sync endpoints: starlette runs them in its thread pool, so SQL never blocks the event loop.
Endpoint = Callable[[Request], JSONResponse]


def _int(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise BadQueryError(name, f"must be a whole number, got {raw!r}") from None


def _errors(view: Callable[[Request], Any]) -> Endpoint:
    def endpoint(request: Request) -> JSONResponse:
        try:
            return JSONResponse(view(request))
        except NotFoundError as exc:
            return JSONResponse({"error": str(exc)}, status_code=404)
        except BadQueryError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        except StoreError as exc:
            return JSONResponse({"error": str(exc)}, status_code=500)

    return endpoint


def make_app(store: Store) -> Starlette:
    """The API application over one store."""

    def healthz(_: Request) -> dict[str, Any]:
        return {"status": "ok", "events": queries.count_events(store)}

    def apps(_: Request) -> list[dict[str, Any]]:
        return queries.list_apps(store)

    def app(request: Request) -> dict[str, Any]:
        return queries.get_app(store, request.path_params["app"])

    def deployments(request: Request) -> list[dict[str, Any]]:
        return queries.list_deployments(store, request.path_params["app"],
                                        limit=_int(request, "limit", 50))

    def releases(request: Request) -> list[dict[str, Any]]:
        return queries.list_releases(store, request.path_params["app"])

    def deployment(request: Request) -> dict[str, Any]:
        return queries.get_deployment(store, request.path_params["id"])

    def deployment_events(request: Request) -> list[dict[str, Any]]:
        return queries.deployment_events(store, request.path_params["id"])

    def events(request: Request) -> list[dict[str, Any]]:
        return queries.list_events(store, app=request.query_params.get("app") or None,
                                   after=request.query_params.get("after") or None,
                                   limit=_int(request, "limit", 100))

    return Starlette(routes=[
        Route("/healthz", _errors(healthz)),
        Route("/apps", _errors(apps)),
        Route("/apps/{app}", _errors(app)),
        Route("/apps/{app}/deployments", _errors(deployments)),
        Route("/apps/{app}/releases", _errors(releases)),
        Route("/deployments/{id}", _errors(deployment)),
        Route("/deployments/{id}/events", _errors(deployment_events)),
        Route("/events", _errors(events)),
    ])
