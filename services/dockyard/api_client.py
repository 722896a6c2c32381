"""Reading the api service's JSON (status, deployments, releases) for the CLI."""

from __future__ import annotations

import os
from typing import Any

import httpx

from dockyard.settings import Settings


class ApiError(Exception):
    """The api cannot be found, reached or asked; `status` is its HTTP answer, if it gave one."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ApiNotFound(ApiError):
    """The api answered 404: the record asked for does not exist."""


def api_url(settings: Settings) -> str:
    """DOCKYARD_API_URL, or the URL the api service recorded in the data dir."""
    url = os.environ.get("DOCKYARD_API_URL")
    if url:
        return url.rstrip("/")
    recorded = settings.data_dir / "api.url"
    if recorded.exists():
        return recorded.read_text().strip().rstrip("/")
    raise ApiError(f"no api found: DOCKYARD_API_URL is unset and {recorded} does not exist "
                   "(is `dockyard up` running from here?)")


def api_token(settings: Settings) -> str:
    """DOCKYARD_API_TOKEN, or the token the api keeps in the data dir."""
    if settings.api_token:
        return settings.api_token
    path = settings.api_token_file
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise ApiError(f"no api token: DOCKYARD_API_TOKEN is unset and {path} cannot be "
                       f"read ({exc.strerror})") from None


def api_get(settings: Settings, path: str) -> Any:
    """GET a JSON document from the api; ApiError (ApiNotFound on 404) on 4xx/5xx or no answer."""
    base = api_url(settings)
    headers = {"Authorization": f"Bearer {api_token(settings)}"}
    try:
        response = httpx.get(base + path, timeout=10, headers=headers)
    except httpx.HTTPError as exc:
        raise ApiError(f"the api at {base} does not answer: {exc}") from exc
    if response.status_code >= 400:
        try:
            message = response.json().get("error", response.text)
        except ValueError:
            message = response.text
        kind = ApiNotFound if response.status_code == 404 else ApiError
        raise kind(f"{message} (HTTP {response.status_code})", response.status_code)
    return response.json()
