"""The api's errors; every failure is answered as one JSON shape (`ErrorBody`) saying what to do."""

from __future__ import annotations

from typing import Any

import structlog
from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, ValidationException

from dockyard.api.models import ErrorBody
from dockyard.contract.names import InvalidName
from dockyard.contract.sinks import InvalidSink, SinkNotFound
from dockyard.pipeline.config import ConfigError
from dockyard.plan.errors import HookNotFound, InvalidHook
from dockyard.state.kv import Busy
from dockyard.store import BadQueryError, NotFoundError, StoreError

log = structlog.get_logger()


class ApiError(Exception):
    """Base of the api's own errors: an HTTP status and a sentence."""

    status = 500

    def __init__(self, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


class BadRequest(ApiError):
    """The request cannot be served as sent (400)."""

    status = 400


class Unauthenticated(ApiError):
    """No valid token or session (401)."""

    status = 401

    def __init__(self, message: str) -> None:
        super().__init__(message, {"WWW-Authenticate": "Bearer"})


class Forbidden(ApiError):
    """Authenticated, but this request is refused (403): a cross-site state change."""

    status = 403


class NotFound(ApiError):
    """No such app, deployment or resource (404)."""

    status = 404


class Conflict(ApiError):
    """The request clashes with what is stored (409)."""

    status = 409


class TooLarge(ApiError):
    """A body past its limit (413)."""

    status = 413

    def __init__(self, limit: int, setting: str) -> None:
        super().__init__(f"the request body is larger than {limit} bytes (limit: {setting})")
        self.limit = limit



def _status_of(exc: Exception) -> int:
    """The HTTP status of an error raised by a shared package."""
    if isinstance(exc, NotFoundError | HookNotFound | SinkNotFound):
        return 404
    if isinstance(exc, BadQueryError | InvalidName | ConfigError | InvalidHook | InvalidSink):
        return 400
    if isinstance(exc, Busy):
        return 409
    return 500


def error_response(status: int, message: str, details: list[dict[str, Any]] | None = None,
                   headers: dict[str, str] | None = None) -> Response[ErrorBody]:
    """The one error shape."""
    return Response(ErrorBody(error=message, status=status, details=details or []),
                    status_code=status, headers=headers, media_type=MediaType.JSON)


def on_api_error(_: Request[Any, Any, Any], exc: ApiError) -> Response[ErrorBody]:
    """Our own errors."""
    return error_response(exc.status, exc.message, headers=exc.headers)


def on_known_error(_: Request[Any, Any, Any], exc: Exception) -> Response[ErrorBody]:
    """Errors of the shared packages that name the problem themselves."""
    return error_response(_status_of(exc), str(exc))


def on_validation(_: Request[Any, Any, Any], exc: ValidationException) -> Response[ErrorBody]:
    """A body, parameter or header that does not fit its declared shape: each field named."""
    details = [d for d in (exc.extra if isinstance(exc.extra, list) else []) if isinstance(d, dict)]
    named = "; ".join(f"{d.get('key') or d.get('source', '')}: {d.get('message', '')}"
                      for d in details)
    message = exc.detail if not named else f"invalid request: {named}"
    return error_response(400, message, details)


def on_http(_: Request[Any, Any, Any], exc: HTTPException) -> Response[ErrorBody]:
    """Litestar's own (404 for an unknown path, 405 for a wrong method, 413...)."""
    hints = {404: "no such route (the API is described at /openapi.json)",
             405: "this route does not take that method (see /openapi.json)"}
    message = hints.get(exc.status_code, exc.detail)
    return error_response(exc.status_code, message, headers=dict(exc.headers or {}))


def on_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[ErrorBody]:
    """A bug: logged with its traceback, answered without it."""
    log.exception("api request failed", path=request.url.path, method=request.method,
                  exc_info=exc)
    return error_response(500, f"internal error ({type(exc).__name__}); the api's log has "
                               "the details")


HANDLERS: dict[type[Exception] | int, Any] = {
    Exception: on_unexpected,
    ApiError: on_api_error,
    ValidationException: on_validation,
    HTTPException: on_http,
    StoreError: on_known_error,
    InvalidName: on_known_error,
    ConfigError: on_known_error,
    InvalidHook: on_known_error,
    HookNotFound: on_known_error,
    InvalidSink: on_known_error,
    SinkNotFound: on_known_error,
    Busy: on_known_error,
}
