"""A real stack's HTTP API for end-to-end tests: its URL and token, polling, SSE reading."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from dockyard.api.app import read_api_url
from tests.e2e.conftest import Running, start_running, stop_running

T = TypeVar("T")
WAIT = 120.0


def base_url(running: Running) -> str:
    """The api's URL, as the service recorded it."""
    url = read_api_url(running.settings.data_dir)
    assert url is not None, "the api recorded no URL"
    return url


def token(running: Running) -> str:
    """The api's token, from the data dir."""
    return running.settings.api_token_file.read_text().strip()


def client(running: Running, **kwargs: Any) -> httpx.AsyncClient:
    """An HTTP client of the stack's api, with its token."""
    return httpx.AsyncClient(base_url=base_url(running), timeout=30,
                             headers={"Authorization": f"Bearer {token(running)}"}, **kwargs)


async def until(check: Callable[[], Awaitable[T | None]], what: str,
                within: float = WAIT) -> T:
    """Poll check until it answers something truthy; fail naming `what` after `within`s."""
    deadline = time.monotonic() + within
    last: T | None = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.2)
    raise AssertionError(f"{what}: not within {within}s (last: {last!r})")


async def deployment(http: httpx.AsyncClient, dep: str,
                     done: Callable[[dict[str, Any]], bool] = lambda d: True,
                     what: str = "the deployment") -> dict[str, Any]:
    """GET /deployments/{dep} once it exists and done(it)."""
    async def check() -> dict[str, Any] | None:
        r = await http.get(f"/deployments/{dep}")
        body: dict[str, Any] = r.json() if r.status_code == 200 else {}
        return body if body and done(body) else None

    return await until(check, what)


async def ended(http: httpx.AsyncClient, dep: str) -> dict[str, Any]:
    """The deployment once it has ended."""
    return await deployment(http, dep, lambda d: d["finished_at"] is not None,
                            "the deployment ends")


@dataclass
class Message:
    """One server-sent event, with when it arrived."""

    event: str
    data: str
    id: str | None
    at: float

    def json(self) -> Any:
        return json.loads(self.data)


async def sse(http: httpx.AsyncClient, path: str,
              headers: dict[str, str] | None = None) -> AsyncIterator[Message]:
    """The events of an SSE response as they arrive."""
    async with http.stream("GET", path, headers=headers, timeout=WAIT) as r:
        assert r.status_code == 200, await r.aread()
        assert r.headers["content-type"].startswith("text/event-stream")
        fields: dict[str, str] = {}
        async for line in r.aiter_lines():
            if line == "":
                if fields:
                    yield Message(event=fields.get("event", "message"),
                                  data=fields.get("data", ""), id=fields.get("id"),
                                  at=time.monotonic())
                fields = {}
            elif not line.startswith(":"):
                key, _, value = line.partition(":")
                fields[key] = fields.get(key, "") + value.removeprefix(" ")


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Running]:
    """One real stack (process runtime: these tests are about the API, not the runtime)."""
    running = await start_running(tmp_path_factory.mktemp("api-stack"), "process")
    yield running
    await stop_running(running)


def source(root: Path) -> Path:
    """Where a test writes its app's source."""
    root.mkdir(parents=True, exist_ok=True)
    return root
