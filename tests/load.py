"""A bounded load generator on loopback: users asking an app's host through the proxy, each
with its own cookie jar, until told to stop; what each was answered, in order."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx

from tests.waiting import until


@dataclass
class Load:
    """Users on loopback, `workers` at a time: each user asks the app's host `visits` times
    with its own cookie jar, then the next user comes; what each user was answered, in order."""

    port: int
    host: str
    workers: int = 4
    visits: int = 5
    answers: dict[int, list[tuple[int, str]]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)

    async def _worker(self) -> None:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.port}", timeout=10,
                                     headers={"Host": self.host}) as client:
            while not self.stopping.is_set():
                client.cookies.clear()  # the next user
                got = self.answers.setdefault(len(self.answers), [])
                for _ in range(self.visits):
                    try:
                        answer = await client.get("/")
                    except httpx.HTTPError as exc:
                        self.failures.append(repr(exc))
                        continue
                    got.append((answer.status_code, answer.text))

    async def run(self, until_done: Callable[[], object | Awaitable[object]],
                  within: float) -> None:
        """Keep asking until `until_done` answers something truthy (bounded)."""
        tasks = [asyncio.create_task(self._worker()) for _ in range(self.workers)]
        try:
            await until(until_done, "the canary ended", within=within)
        finally:
            self.stopping.set()
            await asyncio.gather(*tasks)

    def all(self) -> list[tuple[int, str]]:
        return [a for got in self.answers.values() for a in got]
