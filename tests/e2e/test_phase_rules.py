"""The rules under DESIGN.md's phase table, on the real stack, for both runtimes."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path

from dockyard.client import Followers
from dockyard.contract.events import (
    AnyEvent,
    CommandFinished,
    CommandStarted,
    DeployFailed,
    DeploySucceeded,
    HookStarted,
)
from dockyard.contract.phase import Phase
from tests.e2e.apps import make_app
from tests.e2e.conftest import Running
from tests.e2e.phase_support import (
    Seen,
    api_get,
    assert_failed_cleanly,
    assert_in_order,
    assert_lock_free,
    assert_nothing_left,
    deploy,
    events_of,
    log_of,
    releases_running,
    serves,
    stable_app,
    texts_of,
    types,
)

ENV_VARS = ("APP", "CONTAINER", "CONTAINER_VERSION", "DOCKYARD_RELEASE", "DOCKYARD_DEPLOYMENT_ID",
            "DOCKYARD_PHASE", "GREETING")


def _print_env(prefix: str) -> str:
    return "; ".join(f'echo "{prefix}{name}=${name}"' for name in ENV_VARS)


async def test_one_offs_get_the_config_and_dockyard_vars(running: Running, tmp_path: Path) -> None:
    app = running.app_name("env")
    await running.client.config_change(app, {"GREETING": "hi"}, [])
    socket_check = ("if test -S /var/run/docker.sock; then echo docker-socket=yes; "
                    "else echo docker-socket=no; fi")
    toml = f"""
[[postdeploy]]
command = '{_print_env("pd:")}; {socket_check}; sleep 2'

[[after_switch]]
command = '{_print_env("as:")}'
"""
    changed: list[int] = []

    async def on_event(event: AnyEvent) -> None:
        # While postdeploy runs, the config changes: the next phase of this deploy must still
        # see the config its release was made with.
        if isinstance(event, CommandStarted) and event.data.hook_phase == Phase.POSTDEPLOY:
            changed.append(
                (await running.client.config_change(app, {"GREETING": "later"}, [])).version)

    end, seen = await deploy(running, app, make_app(tmp_path / "v1", running.runtime, "v1",
                                                     toml=toml), Seen(on_event=on_event))
    assert isinstance(end, DeploySucceeded), end
    assert changed, "the config changed during postdeploy"
    artifact = next(e for e in seen.events if isinstance(e, HookStarted)).data.spec.artifact
    texts = await texts_of(running, end.deployment_id)
    for prefix, container, phase in (("pd:", "postdeploy-1", "postdeploy"),
                                     ("as:", "after_switch-1", "after_switch")):
        printed = dict(t[len(prefix):].split("=", 1) for t in texts if t.startswith(prefix))
        assert printed == {"APP": app, "CONTAINER": container, "CONTAINER_VERSION": artifact,
                           "DOCKYARD_RELEASE": str(end.release),
                           "DOCKYARD_DEPLOYMENT_ID": end.deployment_id,
                           "DOCKYARD_PHASE": phase, "GREETING": "hi"}, texts
    if running.runtime == "docker":
        assert "docker-socket=no" in texts


async def test_secret_values_are_redacted_everywhere(running: Running, tmp_path: Path) -> None:
    app = running.app_name("secret")
    secret = "s3cr3t-value-123"
    await running.client.config_change(app, {"SECRET_TOKEN": secret}, [])
    toml = """
[[postdeploy]]
command = 'echo "token is $SECRET_TOKEN"; echo "$SECRET_TOKEN" >&2; exit 3'
"""
    end, _ = await deploy(running, app, make_app(tmp_path / "v1", running.runtime, "v1",
                                                  toml=toml))
    assert isinstance(end, DeployFailed) and end.data.status == "hook-error", end
    texts = await texts_of(running, end.deployment_id)
    assert "token is [REDACTED]" in texts and "[REDACTED]" in texts
    assert not [t for t in texts if secret in t]
    assert "token is [REDACTED]" in end.data.tail

    raw: list[bytes] = []

    async def on_raw(data: bytes) -> None:
        raw.append(data)

    await running.client.raw_events(app, on_raw, follow=False)
    mine = [r for r in raw if end.deployment_id.encode() in r]
    assert any(b"[REDACTED]" in r for r in mine)
    assert not [r for r in mine if secret.encode() in r]

    await events_of(running, app, end.deployment_id, until="dockyard.deploy.failed")
    for path in (f"/deployments/{end.deployment_id}", f"/deployments/{end.deployment_id}/events",
                 f"/apps/{app}"):
        body = json.dumps(await api_get(running, path))
        assert secret not in body, path
    assert "[REDACTED]" in json.dumps(await api_get(running, f"/deployments/{end.deployment_id}"))


async def test_on_failure_is_told_the_status_and_reason(running: Running, tmp_path: Path) -> None:
    app, old = await stable_app(running, tmp_path)
    toml = """
[[postdeploy]]
label = "Check"
command = "echo checking; exit 3"

[[on_failure]]
label = "Tell"
command = 'echo "status=$DOCKYARD_FAILURE_STATUS"; echo "reason=$DOCKYARD_FAILURE_REASON"'
"""
    end, _ = await deploy(running, app, make_app(tmp_path / "v2", running.runtime, "v2",
                                                  toml=toml))
    await assert_failed_cleanly(running, app, end, "hook-error", old)
    texts = await texts_of(running, end.deployment_id)
    assert_in_order(texts, [
        "===== postdeploy =====", "checking", "===== on_failure =====",
        r"----- Tell \(1/1\) -----", "status=hook-error",
        "reason=postdeploy command 'Check' exited with code 3",
    ])


async def test_a_failure_carries_the_exit_code_and_the_last_100_lines(
        running: Running, tmp_path: Path) -> None:
    app, old = await stable_app(running, tmp_path)
    toml = """
[[postdeploy]]
command = 'i=1; while [ $i -le 150 ]; do echo "line-$i"; i=$((i+1)); done; exit 4'
"""
    end, _ = await deploy(running, app, make_app(tmp_path / "v2", running.runtime, "v2",
                                                  toml=toml))
    failed = await assert_failed_cleanly(running, app, end, "hook-error", old)
    assert failed.data.exit_code == 4
    assert len(failed.data.tail) <= 100
    assert "line-150" in failed.data.tail
    numbered = [t for t in failed.data.tail if t.startswith("line-")]
    assert numbered == [f"line-{i}" for i in range(150 - len(numbered) + 1, 151)]
    assert len(numbered) >= 90, failed.data.tail
    assert not set(failed.data.tail) & {f"line-{i}" for i in range(1, 51)}
    finished = [e for e in await events_of(running, app, end.deployment_id)
                if isinstance(e, CommandFinished)]
    assert finished[-1].data.exit_code == 4 and finished[-1].data.tail[-1] == "line-150"


async def test_deploys_of_one_app_run_one_at_a_time_in_request_order(
        running: Running, tmp_path: Path) -> None:
    app = running.app_name("queue")
    first_src = make_app(tmp_path / "v1", running.runtime, "v1",
                         toml='[[postdeploy]]\ncommand = "sleep 2"\n')
    second_src = make_app(tmp_path / "v2", running.runtime, "v2",
                          toml='[[postdeploy]]\ncommand = "echo failing; exit 9"\n')
    watches = []
    ids = [uuid.uuid4().hex, uuid.uuid4().hex]
    for dep in ids:
        watches.append(await running.client.watch(app, dep, Followers()))
    try:
        await running.client.request_deploy(app, first_src, deployment_id=ids[0])
        await running.client.request_deploy(app, second_src, deployment_id=ids[1])
        first = await watches[0].result(240)
        second = await watches[1].result(240)
    finally:
        for watch in watches:
            await watch.close()
    assert isinstance(first, DeploySucceeded), first
    assert isinstance(second, DeployFailed) and second.data.status == "hook-error", second
    events = await events_of(running, app)
    seq = [(e.deployment_id, e.type) for e in events]
    at = {key: seq.index(key) for key in set(seq)}
    a, b = ids
    assert at[(b, "dockyard.deploy.queued")] < at[(b, "dockyard.build.started")]
    assert at[(a, "dockyard.build.started")] < at[(b, "dockyard.build.started")]
    assert at[(a, "dockyard.deploy.succeeded")] < at[(b, "dockyard.build.started")], seq
    # The whole of A happened before B built: no event of B between A's start and A's end.
    between = seq[at[(a, "dockyard.build.started")]:at[(a, "dockyard.deploy.succeeded")]]
    assert not [s for s in between if s[0] == b and s[1] != "dockyard.deploy.queued"], between
    assert first.release < second.release
    serves(running, app, "v1")
    await assert_lock_free(running, app)


async def test_cancel_during_postdeploy(running: Running, tmp_path: Path) -> None:
    app, old = await stable_app(running, tmp_path)
    marker = f"cancel-me-{uuid.uuid4().hex[:8]}"
    toml = f"""
[[postdeploy]]
command = "sh -c 'sleep 30; true' {marker}"

[[on_failure]]
command = 'echo "told status=$DOCKYARD_FAILURE_STATUS"'
"""
    cancelled_at: list[float] = []

    async def on_event(event: AnyEvent) -> None:
        if isinstance(event, CommandStarted) and event.data.hook_phase == Phase.POSTDEPLOY:
            await asyncio.sleep(1)  # let the command really run
            cancelled_at.append(time.monotonic())
            await running.client.cancel(app, event.deployment_id)

    end, _ = await deploy(running, app, make_app(tmp_path / "v2", running.runtime, "v2",
                                                  toml=toml), Seen(on_event=on_event))
    assert cancelled_at
    assert time.monotonic() - cancelled_at[0] < 15
    await assert_failed_cleanly(running, app, end, "cancelled", old)
    texts = await texts_of(running, end.deployment_id)
    assert_in_order(texts, ["===== postdeploy =====", "===== on_failure =====",
                            "told status=cancelled"])
    await assert_nothing_left(running, end.deployment_id, marker)


async def test_cancel_a_queued_deploy(running: Running, tmp_path: Path) -> None:
    app = running.app_name("cancelq")
    ids = [uuid.uuid4().hex, uuid.uuid4().hex]
    watches = [await running.client.watch(app, dep, Followers()) for dep in ids]
    try:
        await running.client.request_deploy(
            app, make_app(tmp_path / "v1", running.runtime, "v1",
                          toml='[[postdeploy]]\ncommand = "sleep 3"\n'), deployment_id=ids[0])
        await running.client.request_deploy(
            app, make_app(tmp_path / "v2", running.runtime, "v2"), deployment_id=ids[1])
        await asyncio.sleep(0.5)
        await running.client.cancel(app, ids[1])
        second = await watches[1].result(60)
        first = await watches[0].result(240)
    finally:
        for watch in watches:
            await watch.close()
    assert isinstance(second, DeployFailed) and second.data.status == "cancelled", second
    assert isinstance(first, DeploySucceeded), first
    events = await events_of(running, app, ids[1])
    assert "dockyard.build.started" not in types(events), types(events)
    assert "dockyard.deploy.failed" in types(events)
    serves(running, app, "v1")
    assert await releases_running(running, app) == {first.release}
    assert [line for line in await log_of(running, ids[1]) if "=====" in line.text] == []
    await assert_lock_free(running, app)
