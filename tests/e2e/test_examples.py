"""The bundled examples deploy with `dockyard deploy`
(process runtime: they run python3) and their hooks run."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.e2e.apps import get
from tests.e2e.cli_support import cli
from tests.e2e.conftest import Running, start_running, stop_running

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Running]:
    """One process-runtime stack for this module (the examples need python3 in the runtime)."""
    r = await start_running(tmp_path_factory.mktemp("examples"), "process")
    yield r
    await stop_running(r)


# example -> lines its hooks print (with the release filled in), in the order they run
EXPECTED = {
    "procfile-app": ["procfile-app: release {release}", "procfile-app: postdeploy on postdeploy-1"],
    "appjson-app": ["appjson-app: predeploy", "appjson-app: postdeploy of release {release}"],
    "toml-app": ["toml-app: migrating", "toml-app: warming cache",
                 "toml-app: release {release} is live"],
}


@pytest.mark.parametrize("example", list(EXPECTED))
async def test_example_deploys_and_runs_its_hooks(stack: Running, example: str) -> None:
    app = stack.app_name(example.removesuffix("-app") + "-example")
    proc = await cli(stack, "deploy", app, str(EXAMPLES / example))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "succeeded" in proc.stdout and " v1 is live at " in proc.stdout, proc.stdout
    lines = proc.stdout.splitlines()
    positions = []
    for expected in EXPECTED[example]:
        line = expected.format(release=1)
        assert line in lines, (line, proc.stdout)
        positions.append(lines.index(line))
    assert positions == sorted(positions), proc.stdout
    response = get(stack.port, app)
    assert response.status_code == 200 and response.text == f"{example} release 1\n"
    if example == "toml-app":
        assert get(stack.port, app, "/healthz").status_code == 200
        for heading in ("===== predeploy =====", "----- Bake build stamp (1/1) -----",
                        "----- Migrate database (1/2) -----", "----- Check config (2/2) -----",
                        "===== after_switch ====="):
            assert heading in lines, (heading, proc.stdout)


async def test_deploy_exit_codes_for_usage_errors(stack: Running, tmp_path: Path) -> None:
    missing = await cli(stack, "deploy", "fine-name", str(tmp_path / "nowhere"))
    assert missing.returncode == 2 and "is not a directory" in missing.stderr, missing.stderr
    bad = await cli(stack, "deploy", "Bad_Name", str(EXAMPLES / "procfile-app"))
    assert bad.returncode == 2 and "invalid app name 'Bad_Name'" in bad.stderr, bad.stderr
    no_args = await cli(stack, "deploy")
    assert no_args.returncode == 2, no_args.stderr
    # Nothing was deployed by any of them.
    assert await stack.client.events("fine-name") == []
