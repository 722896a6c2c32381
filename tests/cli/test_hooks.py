"""The hook plan as table rows, in the order a deploy runs them."""

from __future__ import annotations

from dockyard.cli.hooks import plan_rows
from dockyard.contract.plan import Command, Plan


def test_plan_rows_follow_the_phases_and_number_each_phase() -> None:
    plan = Plan(postdeploy=[Command(label="Smoke", command="./smoke", timeout=1200,
                                    source="Procfile:2"),
                            Command(label="Warm cache", command="echo warming", timeout=90.5,
                                    source="operator")],
                predeploy=[Command(label="Stamp", command="date > stamp", timeout=60,
                                   source="app.json:scripts.dokku.predeploy")])
    assert plan_rows(plan) == [
        ["predeploy", 1, "Stamp", "date > stamp", "60s", "app.json:scripts.dokku.predeploy"],
        ["postdeploy", 1, "Smoke", "./smoke", "1200s", "Procfile:2"],
        ["postdeploy", 2, "Warm cache", "echo warming", "90.5s", "operator"]]
