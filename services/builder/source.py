"""Fetch an uploaded source archive from the object store and unpack it safely."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

from nats.js.object_store import ObjectStore


class SourceError(Exception):
    """The uploaded source cannot be used."""


async def fetch(store: ObjectStore, name: str, into: Path) -> Path:
    """Download and unpack `name` into a directory; refuses links and paths outside it."""
    try:
        result = await store.get(name)
    except Exception as exc:
        raise SourceError(f"source archive {name!r} not found in the object store: {exc}") from exc
    data = result.data or b""
    into.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
            tar.extractall(into, filter="data")
    except (tarfile.TarError, OSError) as exc:
        raise SourceError(f"source archive {name!r} cannot be unpacked: {exc}") from exc
    return into


def pack(path: Path) -> bytes:
    """A gzip tarball of a source tree (without .git), as `dockyard deploy` uploads it."""
    if not path.is_dir():
        raise SourceError(f"{path} is not a directory")
    buf = io.BytesIO()
    skip = {".git", ".dockyard", "__pycache__", ".venv"}
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for item in sorted(path.iterdir()):
            if item.name in skip:
                continue
            tar.add(item, arcname=item.name,
                    filter=lambda info: None if any(p in skip for p in Path(info.name).parts)
                    else info)
    return buf.getvalue()


def object_name(app: str, deployment_id: str) -> str:
    """Where a deployment's source archive is stored."""
    return f"{app}/{deployment_id}.tar.gz"
