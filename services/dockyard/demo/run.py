"""The demo: v1 serves; v2's postdeploy fails and v1 keeps serving; v3 serves."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from dockyard.bus.embedded import free_port
from dockyard.client import DockyardClient, Followers
from dockyard.contract.events import DeploySucceeded, LogLine
from dockyard.settings import Settings
from dockyard.stack import start_stack

SAMPLE = Path(__file__).parent / "sample"
APP = "demo"

STEPS = (
    ("v1", "echo 'smoke test passed'", True),
    ("v2", "echo 'GET /checkout answered 500' >&2; exit 1", False),
    ("v3", "sleep 1; echo 'smoke test passed'", True),
)


@dataclass
class Check:
    """One thing the demo claims, and whether it held."""

    claim: str
    held: bool


def write_version(into: Path, version: str, smoke: str) -> Path:
    """The sample app's source tree for one version (its smoke test is a postdeploy command)."""
    into.mkdir(parents=True)
    shutil.copy(SAMPLE / "app.py", into / "app.py")
    shutil.copy(SAMPLE / "Procfile", into / "Procfile")
    (into / "VERSION").write_text(version + "\n")
    template = (SAMPLE / "dockyard.toml.tmpl").read_text()
    (into / "dockyard.toml").write_text(template.format(version=version, smoke=smoke))
    return into


def fetch(port: int) -> str:
    """What http://demo.localhost:PORT/ answers right now."""
    try:
        response = httpx.get(f"http://127.0.0.1:{port}/", headers={"Host": f"{APP}.localhost"},
                             timeout=5)
    except httpx.HTTPError as exc:
        return f"(no answer: {exc})"
    return f"{response.status_code} {response.text.strip()}"


async def run_demo(say: Callable[[str], None], show_line: Callable[[LogLine], None],
                   runtime: str = "process", keep: bool = False) -> list[Check]:
    """Run the three deploys and return what held."""
    work = Path(tempfile.mkdtemp(prefix="dockyard-demo-"))
    os.chmod(work, 0o711)  # as root, each app's own user passes through to data.apps
    port = free_port()
    settings = Settings.from_env(env={}, data_dir=work / "data", http_port=port, runtime=runtime,
                                 kill_grace=3.0)
    checks: list[Check] = []
    say(f"Starting an embedded Dockyard stack in {work} (apps on port {port}, {runtime} runtime)")
    stack = await start_stack(settings)
    client = await DockyardClient.connect(stack.settings)
    try:
        for version, smoke, should_succeed in STEPS:
            say("")
            say(f"[bold]Deploying {version}[/bold]"
                + ("" if should_succeed else " — its postdeploy command will fail"))
            source = write_version(work / "src" / version, version, smoke)

            async def on_line(line: LogLine) -> None:
                show_line(line)

            end = await client.deploy(APP, source, Followers(on_line=on_line), wait=180)
            answer = fetch(port)
            if should_succeed:
                ok = isinstance(end, DeploySucceeded) and f"demo {version}" in answer
                say(f"→ deploy {end.data.status}; http://{APP}.localhost:{port}/ answers: {answer}")
                checks.append(Check(f"{version} deployed and serves", ok))
            else:
                status = end.data.status
                ok = status == "hook-error" and "demo v1" in answer
                say(f"→ deploy ended [red]{status}[/red] "
                    f"(exit code {getattr(end.data, 'exit_code', None)}); the old version still "
                    f"answers: {answer}")
                checks.append(Check("v2 ends hook-error and v1 still serves", ok))
                instances = await _instances(stack.settings, runtime)
                gone = all(i.release != end.release for i in instances)
                checks.append(Check("v2's new instances are gone", gone))
    finally:
        await client.close()
        await _stop_apps(stack.settings, runtime, forget=not keep)
        await stack.stop()
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    return checks


async def _instances(settings: Settings, runtime: str) -> list:  # type: ignore[type-arg]
    from dockyard.runtime.select import Runtimes

    runtimes = Runtimes(settings)
    try:
        return await (await runtimes.get(runtime)).list_instances(APP)
    finally:
        await runtimes.close()


async def _stop_apps(settings: Settings, runtime: str, forget: bool) -> None:
    from dockyard.runtime.process import ProcessRuntime
    from dockyard.runtime.select import Runtimes

    runtimes = Runtimes(settings)
    try:
        rt = await runtimes.get(runtime)
        for ref in await rt.list_instances(APP):
            await rt.stop_instance(ref, 3.0)
        if forget and isinstance(rt, ProcessRuntime):
            await rt.remove_app(APP)  # its tree and, as root, its user
    finally:
        await runtimes.close()
