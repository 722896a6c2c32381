"""Manifests on the real stack: the merge rule, operator hooks, presets, and malformed manifests."""

from __future__ import annotations

import json
import os
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dockyard.client import ClientError
from dockyard.contract.events import DeployFailed, DeploySucceeded
from tests.e2e.apps import get, make_app
from tests.e2e.cli_support import (
    cells,
    cli,
    deploy,
    deployment_of,
    events_of,
    index_of,
    wait_lock_free,
)
from tests.e2e.conftest import Running
from tests.runtime.process_support import reachable_tmp, remove

MERGE_TOML = """\
[[postdeploy]]
label = "Toml first"
command = "echo toml-postdeploy-one"

[[postdeploy]]
label = "Toml second"
command = "echo toml-postdeploy-two"
"""
MERGE_APPJSON = json.dumps({
    "name": "merge",
    "scripts": {"postdeploy": "echo appjson-postdeploy-loser",
                "dokku": {"predeploy": "echo appjson-predeploy-winner"}},
})


async def test_three_manifests_merge_and_the_winners_run(running: Running, tmp_path: Path) -> None:
    app = running.app_name("merge")
    src = make_app(tmp_path / "src", running.runtime, "v1", release="echo procfile-release-winner",
                   postdeploy="echo procfile-postdeploy-loser", toml=MERGE_TOML,
                   files={"app.json": MERGE_APPJSON})
    done = await deploy(running, app, src)
    assert isinstance(done.end, DeploySucceeded), (done.end, done.text)

    assert ("plan: postdeploy: dockyard.toml wins over Procfile (postdeploy:) and "
            "app.json (scripts.postdeploy)") in done.system
    # The winners' commands ran, in phase order; the losers' did not.
    out = done.out
    order = [index_of(out, text) for text in ("appjson-predeploy-winner",
                                              "procfile-release-winner",
                                              "toml-postdeploy-one", "toml-postdeploy-two")]
    assert order == sorted(order), out
    assert not any("loser" in line for line in out), out
    assert "----- Toml second (2/2) -----" in done.system
    assert get(running.port, app).text == "app v1\n"

    shown = await cli(running, "hooks", app)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    lines = shown.stdout.splitlines()
    rows = [index_of(lines, "app.json:scripts.dokku.predeploy"),
            index_of(lines, "procfile-release-winner"),
            index_of(lines, "dockyard.toml:[[postdeploy]]#1"),
            index_of(lines, "dockyard.toml:[[postdeploy]]#2")]
    assert rows == sorted(rows), shown.stdout
    table = [cells(lines[r]) for r in rows]
    assert [row[0] for row in table] == ["predeploy", "release", "postdeploy", "postdeploy"]
    assert table[1][5] == "Procfile:2"
    assert table[2][2] == "Toml first" and table[3][2] == "Toml second"
    assert "loser" not in shown.stdout
    assert "postdeploy: dockyard.toml wins over Procfile" in shown.stdout


async def test_operator_hook_runs_after_the_repository_and_can_be_removed(
        running: Running, tmp_path: Path) -> None:
    app = running.app_name("ophook")
    added = await cli(running, "hooks", "add", app, "postdeploy", "--label", "Warm cache",
                      "--create", "--", "echo", "warming")
    assert added.returncode == 0, added.stdout + added.stderr
    assert "Warm cache" in added.stdout

    src = make_app(tmp_path / "src", running.runtime, "v1", postdeploy="echo repo-postdeploy")
    done = await deploy(running, app, src)
    assert isinstance(done.end, DeploySucceeded), (done.end, done.text)
    assert index_of(done.text, "repo-postdeploy") < index_of(done.text, "----- Warm cache (2/2)")
    assert index_of(done.text, "----- Warm cache (2/2)") < done.text.index("warming")

    shown = await cli(running, "hooks", app)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    lines = shown.stdout.splitlines()
    row = cells(lines[index_of(lines, "Warm cache")])
    assert (row[0], row[1], row[3], row[5]) == ("postdeploy", "2", "echo warming", "operator")
    assert index_of(lines, "repo-postdeploy") < index_of(lines, "Warm cache")

    bad = await cli(running, "hooks", "add", app, "postdeploi", "--label", "Typo", "--",
                    "echo", "x")
    assert bad.returncode == 2, bad.stdout + bad.stderr
    assert "unknown phase `postdeploi`" in bad.stderr and "postdeploy" in bad.stderr
    plan, _ = await running.client.plan(app)
    assert [c.label for c in plan.postdeploy if c.source == "operator"] == ["Warm cache"]

    removed = await cli(running, "hooks", "rm", app, "postdeploy", "Warm cache")
    assert removed.returncode == 0, removed.stdout + removed.stderr
    shown = await cli(running, "hooks", app)
    assert "Warm cache" not in shown.stdout and "operator" not in shown.stdout
    again = await cli(running, "hooks", "rm", app, "postdeploy", "Warm cache")
    assert again.returncode == 2 and "Warm cache" in again.stderr

    done = await deploy(running, app, src)
    assert isinstance(done.end, DeploySucceeded), (done.end, done.text)
    assert "warming" not in done.out and "repo-postdeploy" in done.out


PYTHON_SHIM = '#!/bin/sh\n# stands in for python in the busybox image: `python SCRIPT ARGS`\n' \
              'script=$1; shift; echo "$script: $*"\n'
MANAGE_PY = 'import sys\nprint("manage.py: " + " ".join(sys.argv[1:]))\n'
PRESET_TOML = """\
preset = "django"

[[release]]
label = "Own migrate"
command = "echo own-release-wins"
"""


async def test_django_preset_runs_below_the_repository(running: Running, tmp_path: Path) -> None:
    """The preset's predeploy runs (python manage.py: real python3 on the process runtime's host
    PATH; a shell stand-in for `python` in the busybox image); dockyard.toml replaces its
    release."""
    app = running.app_name("django")
    files = {"manage.py": MANAGE_PY}
    if running.runtime == "docker":
        files["python"] = PYTHON_SHIM
        files["Dockerfile"] = ("FROM dockyard-test/busybox:latest\nCOPY . /app\nWORKDIR /app\n"
                               "RUN cp /app/python /bin/python && chmod +x /bin/python\n")
    else:
        # The hook runs as the app's own user (Dockyard as root), who may not reach the host's
        # `python` (root's pyenv): the app brings one, on its own PATH, that runs python3.
        files["bin/python"] = '#!/bin/sh\nexec python3 "$@"\n'
        await running.client.config_change(app, {"PATH": f"bin:{os.defpath}"}, [])
    src = make_app(tmp_path / "src", running.runtime, "v1", toml=PRESET_TOML, files=files)
    if running.runtime == "process":
        (src / "bin" / "python").chmod(0o755)
    done = await deploy(running, app, src)
    assert isinstance(done.end, DeploySucceeded), (done.end, done.text)
    assert "plan: release: dockyard.toml wins over preset django" in done.system
    assert "----- Collect static files (1/1) -----" in done.system
    assert "manage.py: collectstatic --noinput" in done.out
    assert "own-release-wins" in done.out
    assert not any("migrate" in line for line in done.out), done.out

    shown = await cli(running, "hooks", app)
    lines = shown.stdout.splitlines()
    row = cells(lines[index_of(lines, "Collect static files")])
    assert (row[0], row[3], row[5]) == ("predeploy", "python manage.py collectstatic --noinput",
                                        "preset:django")
    assert "Migrate database" not in shown.stdout


# ---------------------------------------------------------------- malformed manifests


@dataclass
class Live:
    """An app with a good v1 serving, for the malformed deploys to fail against."""

    app: str
    release: int


@pytest.fixture(scope="module")
async def live(running: Running, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Live]:
    app = running.app_name("broken")
    src = make_app(tmp_path_factory.mktemp("good") / "v1", running.runtime, "v1")
    done = await deploy(running, app, src)
    assert isinstance(done.end, DeploySucceeded), (done.end, done.text)
    yield Live(app=app, release=done.end.release)


MALFORMED = {
    "bad-toml": ({"dockyard.toml": "[health]\npath = \"/up\"\ntimeout = \n"}, "dockyard.toml:3"),
    "bad-json": ({"app.json": '{\n  "scripts": {\n    "postdeploy": "echo hi"\n    "x": 1\n'
                              '  }\n}\n'},
                 "app.json:4: JSON is malformed: expected ',' or '}' (// and /* */ comments and"
                 " trailing commas are accepted"),
    "procfile-no-colon": ({"Procfile": "web: true\nrelease: echo ok\nworker python worker.py\n"},
                          "Procfile:3"),
    "unknown-phase": ({"dockyard.toml": "# hooks\n\n[[predeploi]]\ncommand = \"echo x\"\n"},
                      "dockyard.toml:3: unknown phase `predeploi`"),
    "bad-timeout": ({"dockyard.toml": "[[release]]\ncommand = \"echo x\"\n"
                                      "timeout = \"ten minutes\"\n"},
                    'dockyard.toml:3: release[0].timeout: "ten minutes" is not a duration'),
    "unknown-preset": ({"dockyard.toml": "\npreset = \"wordpress\"\n"},
                       "dockyard.toml:2: preset: unknown preset `wordpress`"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
async def test_malformed_manifest_fails_before_anything_runs(
        running: Running, live: Live, tmp_path: Path, case: str) -> None:
    files, expected = MALFORMED[case]
    src = make_app(tmp_path / "src", running.runtime, "v2", release="echo must-not-run",
                   postdeploy="echo must-not-run")
    for name, text in files.items():
        (src / name).write_text(text)

    proc = await cli(running, "deploy", live.app, str(src))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "build-error" in proc.stdout and expected in proc.stdout, proc.stdout
    assert "must-not-run" not in proc.stdout.replace("echo must-not-run", "")

    dep = deployment_of(proc.stdout)
    events = await events_of(running, live.app, dep)
    end = [e for e in events if isinstance(e, DeployFailed)]
    assert len(end) == 1 and end[0].data.status == "build-error", end
    assert expected in end[0].data.reason, end
    types = {e.type.removeprefix("dockyard.") for e in events}
    assert types <= {"deploy.queued", "build.started", "build.failed", "deploy.aborted",
                     "deploy.failed"}, types
    assert {i.release for i in await running.instances(live.app)} == {live.release}
    assert await wait_lock_free(running, live.app) is None
    response = get(running.port, live.app)
    assert response.status_code == 200 and response.text == "app v1\n"


# ---------------------------------------------------------------- manifests as real apps write them

# A Dokku-style app.json (comments, trailing commas, a URL holding `//`) whose Heroku-style
# `scripts.postdeploy` seeds a database: Heroku and Dokku run it on the first deploy only.
SEED_APPJSON = """\
{{
  // https://dokku.com/docs/advanced-usage/deployment-tasks/
  "name": "seeded",
  "repository": "https://example.com//seeded", /* not a comment inside a string */
  "scripts": {{
    "postdeploy": {command},
  }},
}}
"""
SKIPPED = re.compile(r"skipped '.*' \[app\.json:scripts\.postdeploy\]: it runs on the app's first "
                     r"deploy only, and v\d+ is live")


@pytest.mark.parametrize(("setting", "runs"), [(None, 1), ("every", 2)])
async def test_app_json_postdeploy_runs_once_unless_every(
        running: Running, tmp_path: Path, setting: str | None, runs: int) -> None:
    app = running.app_name("seed" if setting is None else f"seed-{setting}")
    # The hook runs as the app's own user (as root): the counter must be somewhere it may write.
    shared = reachable_tmp("dockyard-counter-")
    shared.chmod(0o1777)
    counter = shared / "counter"
    # Docker one-offs have no host mounts: there the deploy logs are the counter.
    command = ("echo seeded-the-database" if running.runtime == "docker"
               else f"echo seeded-the-database && echo x >> {counter}")
    toml = None if setting is None else f'appjson_postdeploy = "{setting}"\n'
    src = make_app(tmp_path / "src", running.runtime, "v1", toml=toml,
                   files={"app.json": SEED_APPJSON.format(command=json.dumps(command))})
    procfile = src / "Procfile"
    procfile.write_text("// Dokku (procfile-util) comment\n# classic comment\n"
                        + procfile.read_text())

    first = await deploy(running, app, src)
    assert isinstance(first.end, DeploySucceeded), (first.end, first.text)
    assert "seeded-the-database" in first.out, first.text
    assert not any(SKIPPED.search(line) for line in first.system), first.system

    second = await deploy(running, app, src)
    assert isinstance(second.end, DeploySucceeded), (second.end, second.text)
    ran = [d for d in (first, second) if "seeded-the-database" in d.out]
    assert len(ran) == runs, second.text
    skipped = [line for line in second.system if SKIPPED.search(line)]
    assert len(skipped) == (1 if runs == 1 else 0), second.system
    if runs == 1:
        assert f"v{first.end.release} is live" in skipped[0]
    try:
        if running.runtime == "process":
            assert counter.read_text().splitlines() == ["x"] * runs
        assert get(running.port, app).text == "app v1\n"
    finally:
        remove(shared)


async def test_app_names_longer_than_63_characters_are_refused(
        running: Running, tmp_path: Path) -> None:
    name = "a" * 64
    message = f"invalid app name '{name}': is 64 characters long (at most 63)"
    src = make_app(tmp_path / "src", running.runtime, "v1")
    for args in (("deploy", name, str(src)), ("status", name), ("config", "set", name, "A=1"),
                 ("hooks", name), ("notify", "add", name, "ops", "http://127.0.0.1:9/x"),
                 ("notify", "ls", name), ("events", "--app", name)):
        proc = await cli(running, *args)
        assert proc.returncode == 2 and message in proc.stderr, (args, proc.stdout, proc.stderr)
    with pytest.raises(ClientError, match=re.escape(message)):
        await running.client.request_deploy(name, src)
    with pytest.raises(ClientError, match=re.escape(message)):
        await running.client.events(name)
    assert await running.client.events("a" * 63) == []
