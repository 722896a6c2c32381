"""api/timeline.py: a deployment's phases from its events, as plain values."""

from __future__ import annotations

from typing import Any

from dockyard.api.timeline import timeline


def ev(kind: str, t: int, **data: Any) -> dict[str, Any]:
    return {"type": f"dockyard.{kind}", "time": f"2025-04-01T09:00:{t:02d}Z", "data": data}


def cmd(outcome: str, t: int, phase: str, index: int = 1, total: int = 1,
        code: int | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {"hook_phase": phase, "label": f"{phase} {index}", "index": index,
                            "total": total, "command": "x"}
    if code is not None:
        data["exit_code"] = code
    return ev(f"command.{outcome}", t, **data)


def states(events: list[dict[str, Any]], cancelled: bool = False) -> dict[str, str]:
    return {s.phase: s.state for s in timeline(events, cancelled)}


HAPPY = [ev("deploy.queued", 0), ev("build.started", 1), ev("build.succeeded", 2),
         ev("release.started", 3), cmd("started", 4, "predeploy"),
         cmd("finished", 5, "predeploy", code=0), cmd("started", 6, "release"),
         cmd("finished", 7, "release", code=0), ev("release.succeeded", 8),
         ev("start.started", 9), ev("start.succeeded", 10), ev("hook.started", 11),
         ev("hook.succeeded", 12), ev("traffic.switched", 13), ev("after_switch.succeeded", 14),
         ev("deploy.succeeded", 15), ev("retire.succeeded", 16)]


def test_nothing_yet_is_all_pending() -> None:
    assert set(states([ev("deploy.queued", 0)]).values()) == {"pending"}


def test_the_phases_advance_in_order_as_events_arrive() -> None:
    seen = [states(HAPPY[:n]) for n in (2, 4, 7, 10, 12, 13, 14, 15, 16, 17)]
    running = [[p for p, s in st.items() if s == "running"] for st in seen]
    assert running == [["build"], ["predeploy"], ["release"], ["start"], ["postdeploy"],
                       ["switch"], ["after_switch"], ["retire"], ["retire"], []]
    final = seen[-1]
    assert final == {"build": "succeeded", "predeploy": "succeeded", "release": "succeeded",
                     "start": "succeeded", "postdeploy": "succeeded",
                     "switch": "succeeded", "after_switch": "succeeded",
                     "retire": "succeeded", "on_failure": "skipped"}


def test_a_phase_without_commands_is_skipped_once_passed() -> None:
    events = [ev("build.started", 1), ev("build.succeeded", 2), ev("release.started", 3),
              ev("release.succeeded", 4), ev("start.started", 5)]
    st = states(events)
    assert (st["predeploy"], st["release"], st["start"]) == ("skipped", "succeeded", "running")


def test_a_failing_postdeploy_command_shows_its_exit_code_and_on_failure_runs() -> None:
    events = [*HAPPY[:12], cmd("started", 13, "postdeploy"),
              cmd("finished", 14, "postdeploy", code=3),
              ev("hook.failed", 15, status="hook-error", reason="postdeploy command failed",
                 exit_code=3, tail=["boom"]),
              ev("deploy.aborted", 16, status="hook-error", reason="postdeploy command failed"),
              cmd("started", 17, "on_failure"), cmd("finished", 18, "on_failure", code=0),
              ev("deploy.failed", 19, status="hook-error", reason="postdeploy command failed")]
    steps = {s.phase: s for s in timeline(events)}
    post = steps["postdeploy"]
    assert (post.state, post.exit_code, post.reason) == ("failed", 3,
                                                         "postdeploy command failed")
    assert steps["on_failure"].state == "succeeded"
    assert {steps[p].state for p in ("switch", "after_switch", "retire")} == {"skipped"}


def test_a_failing_predeploy_skips_release() -> None:
    events = [*HAPPY[:5], cmd("finished", 5, "predeploy", code=2),
              ev("release.failed", 6, status="release-error", reason="predeploy failed",
                 exit_code=2)]
    assert states(events)["start"] == "pending"  # until the deploy ends
    st = states([*events, ev("deploy.aborted", 7, status="release-error", reason="x")])
    assert (st["predeploy"], st["release"], st["start"]) == ("failed", "skipped", "skipped")


def test_a_build_failure_ends_everything_after_it() -> None:
    events = [ev("build.started", 1),
              ev("build.failed", 2, status="build-error", reason="no Dockerfile"),
              ev("deploy.aborted", 3, status="build-error", reason="no Dockerfile"),
              ev("deploy.failed", 4, status="build-error", reason="no Dockerfile")]
    steps = {s.phase: s for s in timeline(events)}
    assert steps["build"].state == "failed" and steps["build"].reason == "no Dockerfile"
    assert {s.state for p, s in steps.items() if p != "build"} == {"skipped"}


def test_a_cancel_fails_the_running_phase() -> None:
    events = [*HAPPY[:4], ev("deploy.failed", 5, status="cancelled", reason="cancelled by user")]
    steps = {s.phase: s for s in timeline(events)}
    assert steps["predeploy"].state == "failed"
    assert steps["predeploy"].reason == "cancelled by user"
    queued_then_cancelled = states([ev("deploy.queued", 0)], cancelled=True)
    assert set(queued_then_cancelled.values()) == {"skipped"}


def test_times_and_command_counts_are_kept() -> None:
    steps = {s.phase: s for s in timeline(HAPPY)}
    assert steps["build"].started_at == "2025-04-01T09:00:01Z"
    assert steps["build"].finished_at == "2025-04-01T09:00:02Z"
    assert steps["predeploy"].commands == 1 and steps["start"].commands == 0


def test_unknown_events_and_phases_are_ignored() -> None:
    events = [ev("build.started", 1), {"type": "dockyard.future.thing"},
              cmd("started", 2, "nonsense"), {"data": "not a mapping"}]
    assert states(events)["build"] == "running"
