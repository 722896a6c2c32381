"""Each example app's plan has the hooks it intends, and its web process answers on $PORT."""

import os
import shlex
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from dockyard.contract.phase import HOOK_PHASES
from dockyard.contract.plan import Plan
from dockyard.plan.merge import build_plan, read_manifest_files

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def plan_of(name: str) -> Plan:
    return build_plan(read_manifest_files(EXAMPLES / name))


def test_procfile_app() -> None:
    assert sorted(read_manifest_files(EXAMPLES / "procfile-app")) == ["Procfile"]
    plan = plan_of("procfile-app")
    assert [(p.name, p.command) for p in plan.processes] == [("web", "python3 app.py")]
    assert [c.source for c in plan.release] == ["Procfile:3"]
    assert [c.source for c in plan.postdeploy] == ["Procfile:4"]
    assert plan.predeploy == plan.after_switch == plan.on_failure == []
    assert plan.notes == []


def test_appjson_app() -> None:
    assert sorted(read_manifest_files(EXAMPLES / "appjson-app")) == ["Procfile", "app.json"]
    plan = plan_of("appjson-app")
    assert [p.name for p in plan.processes] == ["web"]
    assert [c.source for c in plan.predeploy] == ["app.json:scripts.dokku.predeploy"]
    assert [(c.source, c.first_deploy_only) for c in plan.postdeploy] == [
        ("app.json:scripts.postdeploy", True)]
    assert plan.release == plan.after_switch == plan.on_failure == []
    assert plan.notes == [
        "postdeploy: app.json:scripts.postdeploy runs on the app's first deploy only, as on Heroku"
        ' and Dokku (appjson_postdeploy = "every" in dockyard.toml runs it on every deploy)']


def test_toml_app() -> None:
    assert sorted(read_manifest_files(EXAMPLES / "toml-app")) == ["Procfile", "dockyard.toml"]
    plan = plan_of("toml-app")
    assert [c.label for c in plan.predeploy] == ["Bake build stamp"]
    assert [c.label for c in plan.release] == ["Migrate database", "Check config"]
    assert [(c.timeout, c.memory) for c in plan.release] == [(300.0, 256 * 1024**2),
                                                              (1800.0, 512 * 1024**2)]
    assert [c.label for c in plan.postdeploy] == ["Warm cache"]
    assert [c.label for c in plan.after_switch] == ["Announce"]
    assert [c.label for c in plan.on_failure] == ["Report failure"]
    assert plan.health.path == "/healthz" and plan.drain == 5.0
    assert plan.notes == []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.mark.parametrize("name", ["procfile-app", "appjson-app", "toml-app"])
def test_web_process_answers_with_name_and_release(name: str) -> None:
    web = next(p for p in plan_of(name).processes if p.name == "web")
    argv = shlex.split(web.command)
    argv[0] = sys.executable if argv[0] == "python3" else argv[0]
    port = _free_port()
    env = {**os.environ, "PORT": str(port), "DOCKYARD_RELEASE": "v7"}
    proc = subprocess.Popen(argv, cwd=EXAMPLES / name, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                    assert r.status == 200
                    assert r.read().decode() == f"{name} release v7\n"
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
    finally:
        proc.terminate()
        proc.wait(5)


@pytest.mark.parametrize("name", ["procfile-app", "appjson-app", "toml-app"])
def test_hooks_are_quick_shell_commands(name: str, tmp_path: Path) -> None:
    plan = plan_of(name)
    env = {**os.environ, "APP": name, "CONTAINER": "hook-1", "DOCKYARD_RELEASE": "v7"}
    for phase in HOOK_PHASES:
        for command in plan.commands(phase):
            done = subprocess.run(["sh", "-c", command.command], cwd=tmp_path, env=env,
                                  capture_output=True, timeout=10, check=False)
            assert done.returncode == 0, (phase, command.command, done.stderr)
