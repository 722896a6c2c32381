"""Test apps for the end-to-end tests: the same app for the process and the docker runtime."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import httpx

TEST_IMAGE = "dockyard-test/busybox:latest"


def make_app(root: Path, runtime: str, version: str, *, release: str | None = None,
             postdeploy: str | None = None, toml: str | None = None,
             files: dict[str, str] | None = None) -> Path:
    """A source tree whose web process answers `app <version>` on $PORT."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "www").mkdir(exist_ok=True)
    (root / "www" / "index.html").write_text(f"app {version}\n")
    if runtime in ("docker", "swarm"):  # an image, built from the Dockerfile
        (root / "Dockerfile").write_text(f"FROM {TEST_IMAGE}\nCOPY . /app\nWORKDIR /app\n")
        web = "exec busybox httpd -f -p $PORT -h www"
    else:
        web = "exec python3 -m http.server $PORT --bind 127.0.0.1 --directory www"
    lines = [f"web: {web}"]
    if release:
        lines.append(f"release: {release}")
    if postdeploy:
        lines.append(f"postdeploy: {postdeploy}")
    (root / "Procfile").write_text("\n".join(lines) + "\n")
    if toml is not None:
        (root / "dockyard.toml").write_text(toml)
    for name, text in (files or {}).items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def targz(root: Path) -> bytes:
    """A gzip tarball of a tree, made with the standard library only."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for item in sorted(root.iterdir()):
            tar.add(item, arcname=item.name)
    return buf.getvalue()


def get(port: int, app: str, path: str = "/", timeout: float = 5.0) -> httpx.Response:
    """GET http://<app>.localhost:<port><path> (Host header sent explicitly)."""
    return httpx.get(f"http://127.0.0.1:{port}{path}", headers={"Host": f"{app}.localhost"},
                     timeout=timeout)


async def aget(client: httpx.AsyncClient, port: int, app: str) -> httpx.Response:
    """Async GET of an app's front page through the proxy."""
    return await client.get(f"http://127.0.0.1:{port}/", headers={"Host": f"{app}.localhost"})
