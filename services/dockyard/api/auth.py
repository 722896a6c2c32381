"""Who may call the api: its token (Bearer), or the dashboard's session cookie made from it.

The token is generated once into the data dir (0600). The dashboard logs in with it once and
gets a signed, expiring HttpOnly SameSite=Strict cookie; a state change carried by that cookie
must come from the api's own pages (Origin / Sec-Fetch-Site), so no other site can make one.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from pathlib import Path
from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from dockyard.api.errors import Forbidden, Unauthenticated

COOKIE = "dockyard_session"
SESSION_TTL = 12 * 3600
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# A route handler with opt={"open": True} answers without a token: /healthz, the dashboard's
# shell and its static files, the login itself.
OPEN = "open"

NO_TOKEN = ("a valid token is required: send `Authorization: Bearer <token>` (the token is in "
            "the data dir's api.token, or DOCKYARD_API_TOKEN), or log in to the dashboard at /")
CROSS_SITE = ("cross-site request refused: a state change with the dashboard's session must come "
              "from the dashboard's own pages (or send `Authorization: Bearer <token>` instead)")


def load_or_create_token(path: Path, given: str = "") -> str:
    """The configured token, else the one kept at path, else a new one written there."""
    if given:
        return given
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    # Created 0600 in one step: the token is never readable by others, not even for an instant.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(token + "\n")
    return token


def bearer(headers: Any) -> str | None:
    """The token a request presents (`Authorization: Bearer <token>`)."""
    scheme, _, value = str(headers.get("authorization", "")).partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def same_token(given: str, token: str) -> bool:
    """Constant-time comparison."""
    return hmac.compare_digest(given.encode(), token.encode())


def _signature(token: str, expires: int) -> str:
    # Keyed by the token: a new token ends every session made with the old one.
    return hmac.new(token.encode(), f"dockyard-session:{expires}".encode(),
                    hashlib.sha256).hexdigest()


def new_session(token: str, now: float | None = None) -> str:
    """A session cookie's value: its expiry and a MAC of it under the token."""
    expires = int((time.time() if now is None else now) + SESSION_TTL)
    return f"{expires}.{_signature(token, expires)}"


def valid_session(value: str, token: str, now: float | None = None) -> bool:
    """Whether a session cookie was made with this token and has not expired."""
    expires, _, mac = value.partition(".")
    if not expires.isdigit() or len(expires) > 12:
        return False
    if int(expires) < (time.time() if now is None else now):
        return False
    return hmac.compare_digest(mac.encode(), _signature(token, int(expires)).encode())


def same_origin(connection: ASGIConnection[Any, Any, Any, Any]) -> bool:
    """Whether a browser says the request comes from the api's own pages.

    Sec-Fetch-Site is sent by every current browser; Origin by older ones on state changes.
    A request with neither is not from a browser page (curl), so no page can forge it."""
    site = connection.headers.get("sec-fetch-site")
    if site is not None:
        return site in ("same-origin", "none")
    origin = connection.headers.get("origin")
    if origin is None:
        return True
    host = connection.headers.get("host", "")
    return origin in (f"http://{host}", f"https://{host}")


def require_access(token: str) -> Any:
    """The guard every route has: a token or a session, and no cross-site state change."""

    def guard(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
        method = connection.scope.get("method", "GET")
        if handler.opt.get(OPEN):
            if method not in SAFE_METHODS and not same_origin(connection):
                raise Forbidden(CROSS_SITE)  # the login form too: no login forced from afar
            return
        given = bearer(connection.headers)
        if given is not None:
            if not same_token(given, token):
                raise Unauthenticated(NO_TOKEN)
            return
        cookie = connection.cookies.get(COOKIE)
        if cookie is None or not valid_session(cookie, token):
            raise Unauthenticated(NO_TOKEN if cookie is None else
                                  "the dashboard session has expired or is not valid: log in "
                                  "again at / (or send `Authorization: Bearer <token>`)")
        if method not in SAFE_METHODS and not same_origin(connection):
            raise Forbidden(CROSS_SITE)

    return guard
