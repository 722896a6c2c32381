"""Property: what the builder reads from an unpacked tree (manifests, detection's files, the
listing) is kept as JSON and planned, or is one clear error; never a crash."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import msgspec
from hypothesis import example, given
from hypothesis import strategies as st

from dockyard.contract import codec
from dockyard.contract.manifest import MANIFEST_FILES
from dockyard.contract.plan import Plan
from dockyard.plan.detect import BUILD_FILES, LISTING, read_build_files
from dockyard.plan.errors import PlanError
from dockyard.plan.merge import build_plan, read_manifest_files
from tests.properties.support import PROPERTY, assert_clear

KNOWN = [*MANIFEST_FILES, *BUILD_FILES, "index.html", "server.js", "app.py", "uv.lock"]
# File names as a tar member can carry them: any bytes but `/` and NUL (not UTF-8, line breaks).
NAMES = st.one_of(st.sampled_from([n.encode() for n in KNOWN]),
                  st.binary(min_size=1, max_size=8).map(lambda b: b.replace(b"/", b"_")
                                                        .replace(b"\x00", b"_")),
                  st.sampled_from([b"\xff", b"a\nPipfile.lock", b"proj\xfe"]))
CONTENT = st.one_of(st.binary(max_size=40), st.text(max_size=40).map(str.encode),
                    st.sampled_from([b"web: run\n", b"flask\n", b'{"scripts": {}}', b"3.11\n",
                                     b"\xef\xbb\xbfweb: x\n", b"\xff\xfe"]))
TREES = st.lists(st.tuples(NAMES, st.sampled_from(["file", "dir", "wsgi"]), CONTENT),
                 max_size=8, unique_by=lambda entry: entry[0])


def make(root: Path, tree: list[tuple[bytes, str, bytes]]) -> None:
    """The tree on disk, by bytes names."""
    top = os.fsencode(root)
    for name, kind, content in tree:
        if name in (b".", b".."):
            continue
        path = os.path.join(top, name)
        if kind == "file":
            with open(path, "wb") as f:
                f.write(content)
        else:
            os.mkdir(path)
            if kind == "wsgi":
                with open(os.path.join(path, b"wsgi.py"), "wb") as f:
                    f.write(content)


@PROPERTY
@given(TREES)
# Found here: a top-level name of undecodable bytes went into the listing, which the builder
# keeps as JSON (UnicodeEncodeError: a fault of ours, retried); a name holding a line break
# listed a file that does not exist.
@example([(b"\xff", "file", b""), (b"requirements.txt", "file", b"flask\n")])
@example([(b"a\nPipfile.lock", "file", b""), (b"requirements.txt", "file", b"flask\n")])
def test_any_tree_is_kept_and_planned_or_a_clear_error(tree: list[tuple[bytes, str, bytes]]
                                                       ) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        make(Path(tmp), tree)
        try:
            files = {**read_manifest_files(Path(tmp)), **read_build_files(Path(tmp))}
        except PlanError as exc:
            assert_clear(exc)
            return
        listed = set(files[LISTING].splitlines())
        assert listed <= {os.fsdecode(entry.name) for entry in os.scandir(tmp)} | {
            os.fsdecode(name) + "/wsgi.py" for name, kind, _ in tree if kind == "wsgi"}
    # The builder keeps these files as JSON, and a config deploy plans from them again.
    assert msgspec.json.decode(msgspec.json.encode(files), type=dict[str, str]) == files
    try:
        plan = build_plan(files)
    except PlanError as exc:
        assert_clear(exc)
        msgspec.json.encode(str(exc))  # a build.failed reason: valid text
        return
    assert codec.decode_as(codec.encode(plan), Plan) == plan
