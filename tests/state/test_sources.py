"""Uploaded source archives on a real nats-server (the object store)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dockyard.contract.events import new_id
from dockyard.state.sources import (
    SourceMissing,
    object_name,
    open_source_reader,
    open_source_uploads,
)
from tests.conftest import Bus


async def test_an_upload_is_fetched_back_byte_for_byte(bus: Bus, tmp_path: Path) -> None:
    uploads = await open_source_uploads(bus.js, "cli")
    reader = await open_source_reader(bus.js, "builder")
    dep = new_id()
    data = os.urandom(300_000)  # several chunks
    name = await uploads.upload("shop", dep, data)
    assert name == object_name("shop", dep) == f"shop/{dep}.tar.gz"
    path = await reader.fetch(name, tmp_path / "src.tar")
    assert path == tmp_path / "src.tar" and path.read_bytes() == data


async def test_a_missing_archive_is_named_and_leaves_no_file(bus: Bus, tmp_path: Path) -> None:
    reader = await open_source_reader(bus.js, "builder")
    name = f"shop/{new_id()}.tar.gz"
    with pytest.raises(SourceMissing) as missing:
        await reader.fetch(name, tmp_path / "src.tar")
    assert missing.value.name == name
    assert str(missing.value) == f"source archive {name!r} not found in the object store"
    assert not (tmp_path / "src.tar").exists()
