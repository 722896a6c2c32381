"""One-off runs (`dockyard run`) in the hook-runner, on in-memory doors and a fake runtime."""

from __future__ import annotations

from typing import cast

import msgspec
import pytest
from faststream.nats.annotations import NatsMessage

from dockyard.contract.events import (
    RUN_MAX_TIMEOUT,
    RUN_NOT_RUN,
    DeploySpec,
    LogLine,
    RunRequested,
    new_id,
)
from dockyard.contract.plan import Plan
from dockyard.contract.state import LiveRelease
from dockyard.hook_runner import decide
from dockyard.hook_runner.app import SERVICE
from dockyard.hook_runner.handlers import RUN_STEP, HookRunner, RunEnd
from dockyard.runtime.base import TIMEOUT_EXIT_CODE
from tests.fakes import FakeMessage, delivered_on_test_broker
from tests.hook_runner.test_handlers import APP, World, world

LIVE_SPEC = DeploySpec(runtime="process", build_id="v2-abc", artifact="live-img", plan=Plan(),
                       config_version=2)


async def live_world() -> World:
    w = await world()
    await w.config.change(APP, {"GREETING": "hello"}, [])
    await w.config.change(APP, {"SECRET": "hunter22"}, [])
    await w.routes.set_live(LiveRelease(app=APP, release=2, deployment_id=new_id(),
                                        spec=LIVE_SPEC, instances=[]))
    return w


def request(command: str = "./task", timeout: float = 60.0) -> RunRequested:
    return RunRequested(run_id=new_id(), app=APP, command=command, timeout=timeout)


async def ask(w: World, cmd: RunRequested) -> list[LogLine]:
    await w.runner.on_run_requested(cmd, cast(NatsMessage, FakeMessage()))
    return [line for line in w.nc.lines if line.deployment_id == cmd.run_id]


async def test_a_run_is_a_one_off_of_the_live_release_with_its_config_and_ends_with_its_code(
) -> None:
    w = await live_world()
    w.runtime.exit_codes["./task"] = 3
    cmd = request()
    lines = await ask(w, cmd)
    [spec] = w.runtime.ran
    assert (spec.artifact, spec.release, spec.deployment_id, spec.container, spec.phase,
            spec.timeout, spec.commit) == ("live-img", 2, cmd.run_id, "run", "run", 60.0, False)
    assert spec.env["GREETING"] == "hello" and spec.env["DOCKYARD_RELEASE"] == "2"
    assert [line.exit_code for line in lines[:-1]] == [None] * (len(lines) - 1)
    assert lines[-1].exit_code == 3 and lines[-1].stream == "system"
    assert "ran ./task" in [line.text for line in lines]


async def test_a_run_uses_the_live_release_s_config_version_not_the_newest() -> None:
    w = await live_world()
    await w.config.change(APP, {"GREETING": "newer"}, [])
    await ask(w, request())
    assert w.runtime.ran[0].env["GREETING"] == "hello"


async def test_a_run_takes_no_deploy_lock() -> None:
    w = await live_world()
    held: list[bool] = []

    async def look(operation: str, spec: object) -> None:
        held.append(await w.locks.holder(APP) == w.dep)

    w.runtime.on_call = look
    await ask(w, request())
    assert held == [True]  # the deploy's lock stays the deploy's: the run did not wait for it


async def test_its_output_is_redacted() -> None:
    w = await live_world()
    lines = await ask(w, request("echo hunter22"))
    assert all("hunter22" not in line.text for line in lines)
    assert "ran echo [REDACTED]" in [line.text for line in lines]


async def test_no_live_release_ends_at_once_saying_so() -> None:
    w = await world()
    lines = await ask(w, request())
    assert w.runtime.ran == []
    assert [(line.text, line.exit_code) for line in lines] == [
        (f"app '{APP}' has no live release to run from: deploy it first", RUN_NOT_RUN)]


async def test_a_timeout_ends_with_the_timeout_code() -> None:
    w = await live_world()
    w.runtime.timeouts.add("./slow")
    lines = await ask(w, request("./slow", timeout=5))
    assert lines[-1].exit_code == TIMEOUT_EXIT_CODE
    assert lines[-1].text.startswith("timed out after 5s")


async def test_a_runtime_failure_ends_as_not_run() -> None:
    w = await live_world()
    w.runtime.raising["./task"] = OSError("no such artifact")
    lines = await ask(w, request())
    assert (lines[-1].text, lines[-1].exit_code) == (
        "could not run the command: no such artifact", RUN_NOT_RUN)


async def test_a_redelivered_request_does_not_run_again_and_repeats_the_same_last_line() -> None:
    w = await live_world()
    w.runtime.exit_codes["./task"] = 4
    cmd = request()
    await ask(w, cmd)
    lines = await ask(w, cmd)
    assert len(w.runtime.ran) == 1
    ends = [line for line in lines if line.exit_code is not None]
    assert [(e.text, e.exit_code) for e in ends] == [(ends[0].text, 4)] * 2
    # Both published with one message id: the LOGS stream keeps one of them.
    assert w.nc.last_headers[f"dockyard.log.{cmd.run_id}"]["Nats-Msg-Id"] == f"{cmd.run_id}:end"
    recorded = await w.steps.get(cmd.run_id, RUN_STEP)
    assert recorded is not None
    assert msgspec.json.decode(recorded, type=RunEnd).exit_code == 4


@pytest.mark.parametrize(("command", "timeout", "reason"), [
    ("  ", 60.0, "no command to run"),
    ("ls", 0.0, "timeout must be"),
    ("ls", RUN_MAX_TIMEOUT + 1, "timeout must be"),
])
def test_a_blank_command_or_a_timeout_out_of_range_is_refused(command: str, timeout: float,
                                                              reason: str) -> None:
    live = LiveRelease(app=APP, release=1, deployment_id=new_id(), spec=LIVE_SPEC, instances=[])
    refusal = decide.run_refusal(request(command, timeout), live)
    assert refusal is not None and refusal.startswith(reason)


def test_the_end_line_says_how_it_ended() -> None:
    assert decide.run_end(0, 1.25, 60) == ("exit code 0 in 1.2s", 0)
    assert decide.run_end(-128, 60, 60, timed_out=True)[1] == TIMEOUT_EXIT_CODE


async def test_a_run_request_reaches_its_handler_as_its_type() -> None:
    cmd = request()
    calls = await delivered_on_test_broker(SERVICE, HookRunner, [cmd])
    assert calls == [("on_run_requested", cmd)]
