"""The phases of a deploy, spelt one way."""

from __future__ import annotations

import pytest

from dockyard.contract.phase import HOOK_PHASES, Phase, hook_phase


def test_hook_phases_in_the_order_a_deploy_reaches_them() -> None:
    assert [p.value for p in HOOK_PHASES] == ["predeploy", "release", "postdeploy",
                                              "after_switch", "on_failure"]
    assert f"{Phase.AFTER_SWITCH}" == "after_switch" and Phase("start") is Phase.START


@pytest.mark.parametrize("name", [p.value for p in HOOK_PHASES])
def test_a_hook_phase_by_name(name: str) -> None:
    assert hook_phase(name) == Phase(name)


@pytest.mark.parametrize("name", ["build", "start", "switch", "retire", "after-switch",
                                  "PREDEPLOY", ""])
def test_anything_else_is_refused_listing_the_hook_phases(name: str) -> None:
    with pytest.raises(ValueError, match=f"unknown phase `{name}` \\(known phases: predeploy, "
                                         "release, postdeploy, after_switch, on_failure\\)"):
        hook_phase(name)
