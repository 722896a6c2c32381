"""One hook phase's commands, in order, each recorded so none runs twice."""

from __future__ import annotations

from typing import Any, cast

import msgspec
from nats.aio.client import Client

from dockyard.bus.emit import Emitter
from dockyard.bus.logs import DeployLog
from dockyard.contract.events import (
    CommandFinished,
    CommandStarted,
    ReleaseStarted,
    event_id,
)
from dockyard.contract.phase import Phase
from dockyard.contract.plan import Command
from dockyard.pipeline.phases import (
    PhaseResult,
    PhaseRun,
    StepResult,
    container_name,
    run_phase,
    step_name,
    step_result,
)
from dockyard.runtime.base import OneOffResult
from tests.contract.samples import SPEC
from tests.events import make
from tests.fakes import FakeCancels, FakeNats, FakeRuntime, FakeSteps, RecordingBroker

A = Command(label="A", command="./a", timeout=60)
B = Command(label="B", command="./b", timeout=60)
C = Command(label="C", command="./c", timeout=60)


class Phases:
    """A PhaseRun on fakes, and the fakes."""

    def __init__(self, extra: dict[str, str] | None = None) -> None:
        self.broker, self.nc = RecordingBroker(), FakeNats()
        self.runtime, self.records, self.cancels = FakeRuntime(), FakeSteps(), FakeCancels()
        self.trigger = make(ReleaseStarted, app="shop", deployment_id="d1", release=2,
                            spec=SPEC)
        emitter = Emitter(self.broker, "hook-runner",  # type: ignore[arg-type]
                          (CommandStarted, CommandFinished))
        self.run = PhaseRun(trigger=self.trigger, artifact="img", config={"K": "v"},
                            runtime=self.runtime, records=self.records, cancels=self.cancels,
                            emitter=emitter,
                            deploy_log=DeployLog(cast(Client, self.nc), "shop", "d1", "test"),
                            kill_grace=3.0, extra_env=extra or {})

    def ran(self) -> list[tuple[str, str]]:
        return [(s.command, s.artifact) for s in self.runtime.ran]

    def announced(self) -> list[tuple[str, Any]]:
        return [(e.type, (e.data.hook_phase, e.data.index)) for e in self.broker.events
                if isinstance(e, CommandStarted | CommandFinished)]


async def test_no_commands_pass_at_once_and_say_nothing() -> None:
    p = Phases()
    assert await run_phase(p.run, Phase.RELEASE, []) == PhaseResult(ok=True, artifact="img")
    assert p.nc.lines == [] and p.broker.published == []


async def test_committing_commands_chain_their_artifacts() -> None:
    p = Phases()
    result = await run_phase(p.run, Phase.PREDEPLOY, [A, B], commit=True)
    assert result == PhaseResult(ok=True, artifact="img+predeploy-1+predeploy-2")
    assert p.ran() == [("./a", "img"), ("./b", "img+predeploy-1")]
    assert all(s.commit for s in p.runtime.ran)
    assert p.announced() == [
        ("dockyard.command.started", (Phase.PREDEPLOY, 1)),
        ("dockyard.command.finished", (Phase.PREDEPLOY, 1)),
        ("dockyard.command.started", (Phase.PREDEPLOY, 2)),
        ("dockyard.command.finished", (Phase.PREDEPLOY, 2)),
    ]
    assert [e.id for e in p.broker.events][:2] == [
        event_id("d1", "dockyard.command.started", "predeploy", 1),
        event_id("d1", "dockyard.command.finished", "predeploy", 1)]
    assert p.nc.texts("d1")[:3] == ["===== predeploy =====", "----- A (1/2) -----",
                                    "$ ./a  []"]


async def test_each_command_is_told_where_it_runs() -> None:
    p = Phases(extra={"DOCKYARD_FAILURE_STATUS": "hook-error"})
    await run_phase(p.run, Phase.ON_FAILURE, [A])
    [spec] = p.runtime.ran
    assert (spec.app, spec.deployment_id, spec.release, spec.phase, spec.container) == (
        "shop", "d1", 2, "on_failure", "on_failure-1")
    assert (spec.timeout, spec.kill_grace, spec.commit) == (60, 3.0, False)
    assert spec.env["K"] == "v" and spec.env["DOCKYARD_FAILURE_STATUS"] == "hook-error"
    assert spec.env["DOCKYARD_PHASE"] == "on_failure"


async def test_the_first_failure_stops_the_phase() -> None:
    p = Phases()
    p.runtime.exit_codes["./b"] = 4
    result = await run_phase(p.run, Phase.RELEASE, [A, B, C])
    assert result == PhaseResult(ok=False, artifact="img", failed=B, exit_code=4,
                                 tail=["ran ./b"])
    assert result.reason(Phase.RELEASE) == "release command 'B' exited with code 4"
    assert p.ran() == [("./a", "img"), ("./b", "img")]
    recorded = msgspec.json.decode(p.records.records[("d1", step_name(Phase.RELEASE, 2))],
                                   type=StepResult)
    assert (recorded.exit_code, recorded.tail) == (4, ["ran ./b"])


async def test_recorded_commands_do_not_run_again_and_are_announced_again() -> None:
    p = Phases()
    done = StepResult(exit_code=0, duration=1.5, tail=["earlier"], artifact="img+predeploy-1")
    await p.records.put("d1", step_name(Phase.PREDEPLOY, 1), msgspec.json.encode(done))

    result = await run_phase(p.run, Phase.PREDEPLOY, [A, B], commit=True)

    assert p.ran() == [("./b", "img+predeploy-1")]
    assert result.artifact == "img+predeploy-1+predeploy-2"
    # The recorded command's end is announced again with the recorded result (same id).
    first = p.broker.events[0]
    assert isinstance(first, CommandFinished)
    assert first.id == event_id("d1", "dockyard.command.finished", "predeploy", 1)
    assert (first.data.exit_code, first.data.duration, first.data.tail) == (0, 1.5, ["earlier"])
    assert [e.type for e in p.broker.events] == ["dockyard.command.finished",
                                                 "dockyard.command.started",
                                                 "dockyard.command.finished"]


async def test_a_recorded_failure_ends_the_phase_without_running() -> None:
    p = Phases()
    failed = StepResult(exit_code=2, duration=0.1, tail=["no"])
    await p.records.put("d1", step_name(Phase.RELEASE, 1), msgspec.json.encode(failed))
    result = await run_phase(p.run, Phase.RELEASE, [A, B])
    assert (result.ok, result.failed, result.exit_code, result.tail) == (False, A, 2, ["no"])
    assert p.ran() == []


async def test_a_runtime_that_cannot_run_the_command_counts_as_exit_code_1() -> None:
    p = Phases()
    p.runtime.raising["./a"] = OSError("image gone")
    result = await run_phase(p.run, Phase.RELEASE, [A, B])
    assert (result.ok, result.exit_code, result.tail) == (
        False, 1, ["ran ./a", "could not run the command: image gone"])
    assert await p.records.get("d1", step_name(Phase.RELEASE, 1)) is not None


async def test_a_command_past_its_timeout_or_cancelled_says_so() -> None:
    p = Phases()
    p.runtime.timeouts.add("./a")
    timed = await run_phase(p.run, Phase.POSTDEPLOY, [A])
    assert timed.timed_out and timed.exit_code == -128
    assert timed.reason(Phase.POSTDEPLOY) == ("postdeploy command 'A' timed out after 60s "
                                              "(exit code -128)")
    assert "timed out after 60s: stopped (SIGTERM, then SIGKILL)" in p.nc.texts("d1")

    p = Phases()
    await p.cancels.request("d1", "stop")
    cancelled = await run_phase(p.run, Phase.POSTDEPLOY, [A, B])
    assert cancelled.cancelled and cancelled.failed == A
    assert cancelled.reason(Phase.POSTDEPLOY) == "cancelled during postdeploy command 'A'"
    assert p.ran() == [("./a", "img")]


def test_names_and_records() -> None:
    assert step_name(Phase.AFTER_SWITCH, 2) == "cmd.after_switch.2"
    assert container_name(Phase.POSTDEPLOY, 1) == "postdeploy-1"
    assert step_result(None, 0.5, ["t"]) == StepResult(exit_code=1, duration=0.5, tail=["t"])
    outcome = OneOffResult(exit_code=0, duration=2.0, artifact="x")
    assert step_result(outcome, 9.0, []) == StepResult(exit_code=0, duration=2.0, artifact="x")
    assert PhaseResult(ok=False, artifact="a").reason(Phase.RELEASE) == "release failed"
