"""The CLI's reads of the api, against a tiny local HTTP server."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from dockyard.api_client import ApiError, ApiNotFound, api_get, api_url
from dockyard.settings import Settings

ANSWERS: dict[str, tuple[int, str, bytes]] = {
    "/apps": (200, "application/json", b'[{"name": "shop"}]'),
    "/apps/ghost": (404, "application/json", b'{"error": "no app \'ghost\'"}'),
    "/boom": (500, "text/plain", b"Internal Server Error"),
    "/odd": (400, "application/json", b'{"detail": "x"}'),
}


class Answer(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status, kind, body = ANSWERS.get(self.path, (404, "text/plain", b"not here"))
        if self.headers.get("Authorization") != "Bearer t0ken":
            status, kind, body = 401, "application/json", b'{"error": "a valid token"}'
        self.send_response(status)
        self.send_header("content-type", kind)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return None


@pytest.fixture
def api() -> Iterator[str]:
    """A local HTTP server on a free port, stopped after the test."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(10)


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.delenv("DOCKYARD_API_URL", raising=False)
    (tmp_path / "api.token").write_text("t0ken\n")
    return Settings(data_dir=tmp_path)


def test_the_url_from_the_environment_or_the_data_dir(settings: Settings,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ApiError, match="no api found: DOCKYARD_API_URL is unset and "
                                          f"{settings.data_dir / 'api.url'} does not exist"):
        api_url(settings)
    (settings.data_dir / "api.url").write_text("http://127.0.0.1:1234/\n")
    assert api_url(settings) == "http://127.0.0.1:1234"
    monkeypatch.setenv("DOCKYARD_API_URL", "http://api.example:9/")
    assert api_url(settings) == "http://api.example:9"


def test_a_json_answer(api: str, settings: Settings) -> None:
    (settings.data_dir / "api.url").write_text(api)
    assert api_get(settings, "/apps") == [{"name": "shop"}]


def test_the_token_is_sent_and_a_missing_one_is_named(api: str, settings: Settings) -> None:
    (settings.data_dir / "api.url").write_text(api)
    (settings.data_dir / "api.token").unlink()
    with pytest.raises(ApiError, match="no api token: DOCKYARD_API_TOKEN is unset and"):
        api_get(settings, "/apps")


def test_an_error_answer_is_its_message_and_status(api: str, settings: Settings) -> None:
    (settings.data_dir / "api.url").write_text(api)
    with pytest.raises(ApiNotFound, match=r"^no app 'ghost' \(HTTP 404\)$") as missing:
        api_get(settings, "/apps/ghost")
    assert missing.value.status == 404
    with pytest.raises(ApiError, match=r"^Internal Server Error \(HTTP 500\)$"):
        api_get(settings, "/boom")
    with pytest.raises(ApiError, match=r'^\{"detail": "x"\} \(HTTP 400\)$'):
        api_get(settings, "/odd")


def test_no_answer_is_named(settings: Settings) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Nothing listens on the port now.
    (settings.data_dir / "api.url").write_text(f"http://127.0.0.1:{port}")
    with pytest.raises(ApiError, match=f"the api at http://127.0.0.1:{port} does not answer"):
        api_get(settings, "/apps")
