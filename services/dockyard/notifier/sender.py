"""The only HTTP in the notifier: POST one body to one sink and say what came back."""

from __future__ import annotations

import httpx

from dockyard.contract.state import AttemptResult

USER_AGENT = "dockyard-notifier"


class Sender:
    """POSTs over one shared AsyncClient (closed by the service's on_stop)."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def post(self, url: str, body: bytes, headers: dict[str, str],
                   request_timeout: float) -> AttemptResult:
        """POST body; an HTTP status when the sink answered, else the error (URL left out)."""
        all_headers = {"content-type": "application/json", "user-agent": USER_AGENT, **headers}
        try:
            response = await self.client.post(url, content=body, headers=all_headers,
                                              timeout=request_timeout)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            return AttemptResult(error=_describe(exc, url))
        return AttemptResult(status_code=response.status_code)

    async def close(self) -> None:
        """Close the connection pool."""
        await self.client.aclose()


def _describe(exc: httpx.HTTPError | httpx.InvalidURL, url: str) -> str:
    # The error goes into events and logs: the URL may carry a token (Slack's do), so drop it.
    message = str(exc).replace(url, "<sink url>") or "no detail"
    return f"{type(exc).__name__}: {message}"
