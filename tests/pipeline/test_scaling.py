"""The pure decisions of scale and restart, as values."""

from __future__ import annotations

import pytest

from dockyard.contract.events import InstanceRef, ScaleRequested, new_id
from dockyard.contract.plan import Plan, ProcessType
from dockyard.pipeline.scaling import ScaleRefused, change, check_counts, formation_of, kept

PLAN = Plan(processes=[ProcessType(name="web", command="serve"),
                       ProcessType(name="worker", command="work", scale=2)])


def ref(id_: str, process: str = "web") -> InstanceRef:
    return InstanceRef(id=id_, process=process, release=3, port=8000 if process == "web" else None)


def cmd(**kw: object) -> ScaleRequested:
    return ScaleRequested(deployment_id=new_id(), app="shop", **kw)  # type: ignore[arg-type]


def test_scaling_up_starts_the_missing_instances_at_new_indexes() -> None:
    running = [ref("a"), ref("w1", "worker"), ref("w2", "worker")]
    found = change(cmd(counts={"web": 3}), PLAN, running, None)
    assert [(s.process, s.index) for s in found.start] == [("web", 2), ("web", 3)]
    assert found.stop == ()
    assert found.formation == {"web": 3, "worker": 2}


def test_scaling_down_stops_the_extras_and_keeps_the_rest() -> None:
    running = [ref("a"), ref("b"), ref("w1", "worker")]
    found = change(cmd(counts={"web": 1, "worker": 0}), PLAN, running, {"web": 2})
    assert found.start == ()
    assert [i.id for i in found.stop] == ["b", "w1"]
    assert [i.id for i in kept(running, found.stop)] == ["a"]
    assert found.formation == {"web": 1, "worker": 0}


def test_restart_replaces_every_instance_of_one_type_or_all() -> None:
    running = [ref("a"), ref("b"), ref("w1", "worker")]
    web = change(cmd(kind="restart", process="web"), PLAN, running, None)
    assert [(s.process, s.index) for s in web.start] == [("web", 3), ("web", 4)]
    assert [i.id for i in web.stop] == ["a", "b"]
    every = change(cmd(kind="restart"), PLAN, running, None)
    assert {i.id for i in every.stop} == {"a", "b", "w1"}
    assert len(every.start) == 3


@pytest.mark.parametrize(("counts", "problem"), [
    ({}, "no process type"),
    ({"clock": 1}, "no process type 'clock'"),
    ({"web": -1}, "between 0 and 20"),
    ({"web": 21}, "between 0 and 20"),
])
def test_bad_counts_are_refused_with_one_sentence(counts: dict[str, int], problem: str) -> None:
    with pytest.raises(ScaleRefused, match=problem):
        check_counts(PLAN, counts)


def test_restart_of_an_unknown_type_or_of_nothing_is_refused() -> None:
    with pytest.raises(ScaleRefused, match="no process type 'clock'"):
        change(cmd(kind="restart", process="clock"), PLAN, [ref("a")], None)
    with pytest.raises(ScaleRefused, match="nothing to restart"):
        change(cmd(kind="restart", process="worker"), PLAN, [ref("a")], None)


def test_a_new_release_starts_at_the_formation_and_new_types_at_their_plan_scale() -> None:
    assert formation_of(PLAN, None) == {"web": 1, "worker": 2}
    assert formation_of(PLAN, {"web": 3, "gone": 4}) == {"web": 3, "worker": 2}
