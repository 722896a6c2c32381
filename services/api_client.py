"""Reading the api service's JSON (status, deployments, releases) for the CLI."""

from __future__ import annotations

import os
from typing import Any

import httpx

from dockyard.client import ClientError
from dockyard.settings import Settings


def api_url(settings: Settings) -> str:
    """DOCKYARD_API_URL, or the URL the api service recorded in the data dir."""
    url = os.environ.get("DOCKYARD_API_URL")
    if url:
        return url.rstrip("/")
    recorded = settings.data_dir / "api.url"
    if recorded.exists():
        return recorded.read_text().strip().rstrip("/")
    raise ClientError(f"no api found: DOCKYARD_API_URL is unset and {recorded} does not exist "
                      "(is `dockyard up` running from here?)")


def api_get(settings: Settings, path: str) -> Any:
    """GET a JSON document from the api; a clear error on 4xx/5xx or no answer."""
    base = api_url(settings)
    try:
        response = httpx.get(base + path, timeout=10)
    except httpx.HTTPError as exc:
        raise ClientError(f"the api at {base} does not answer: {exc}") from exc
    if response.status_code >= 400:
        try:
            message = response.json().get("error", response.text)
        except ValueError:
            message = response.text
        raise ClientError(f"{message} (HTTP {response.status_code})")
    return response.json()
