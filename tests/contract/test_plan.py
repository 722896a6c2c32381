"""The plan: each hook phase's commands."""

from __future__ import annotations

import pytest

from dockyard.contract.phase import HOOK_PHASES, Phase
from dockyard.contract.plan import DEFAULT_TIMEOUTS, Command, Plan


def test_commands_of_each_hook_phase() -> None:
    commands = {p: [Command(label=p.value, command=f"./{p.value}", timeout=1)]
                for p in HOOK_PHASES}
    plan = Plan(predeploy=commands[Phase.PREDEPLOY], release=commands[Phase.RELEASE],
                postdeploy=commands[Phase.POSTDEPLOY], after_switch=commands[Phase.AFTER_SWITCH],
                on_failure=commands[Phase.ON_FAILURE])
    for phase in HOOK_PHASES:
        assert plan.commands(phase) == commands[phase]
    assert Plan().commands(Phase.RELEASE) == []


@pytest.mark.parametrize("phase", [Phase.BUILD, Phase.START, Phase.SWITCH, Phase.RETIRE])
def test_a_phase_without_commands_is_not_asked(phase: Phase) -> None:
    with pytest.raises(KeyError):
        Plan().commands(phase)


def test_every_hook_phase_has_a_default_timeout() -> None:
    assert set(DEFAULT_TIMEOUTS) == set(HOOK_PHASES)
