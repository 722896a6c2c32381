"""A followed deploy's last line, Ctrl-C's words and the log's styles, as plain values."""

from __future__ import annotations

from dockyard.cli.deploying import has_web, interrupted_lines, line_style, outcome
from dockyard.contract.events import (
    DeployFailed,
    DeploySpec,
    DeploySucceeded,
    LogLine,
    TrafficSwitched,
)
from dockyard.contract.plan import Plan, ProcessType
from tests.events import make

DEP = "7b699a8cbfdc461ea44d5be5999f100d"
URL = "http://shop.localhost:8080/"


def spec(*processes: str) -> DeploySpec:
    return DeploySpec(runtime="process", build_id="b", artifact="a", plan=Plan(
        processes=[ProcessType(name=p, command="run") for p in processes]))


def test_a_web_release_is_live_at_its_url() -> None:
    end = make(DeploySucceeded, deployment_id=DEP, release=3)
    text, style, code = outcome(end, "shop", URL, True)
    assert text == f"succeeded: shop v3 is live at {URL}  (deployment {DEP})"
    assert (style, code) == ("green", 0)
    assert outcome(end, "shop", URL, None)[0] == text, "unknown: as before"


def test_a_release_without_web_says_it_has_no_http_route() -> None:
    end = make(DeploySucceeded, deployment_id=DEP, release=2)
    text, _, code = outcome(end, "wk", URL, False)
    assert "live at" not in text and code == 0
    assert text == (f"succeeded: wk v2 runs, but it has no web process, so no HTTP route: {URL} "
                    f"answers 503  (deployment {DEP})")


def test_a_failed_deploy_says_why_and_exits_1() -> None:
    end = make(DeployFailed, deployment_id=DEP, status="hook-error",
               reason="postdeploy `smoke` exited with code 3", exit_code=3)
    text, style, code = outcome(end, "shop", URL, True)
    assert text == f"hook-error: postdeploy `smoke` exited with code 3, exit code 3  " \
                   f"(deployment {DEP})"
    assert (style, code) == ("red", 1)


def test_web_is_read_from_the_switched_release_plan() -> None:
    assert has_web(make(TrafficSwitched, spec=spec("web", "worker"), instances=[])) is True
    assert has_web(make(TrafficSwitched, spec=spec("worker"), instances=[])) is False
    assert has_web(None) is None
    assert has_web(make(DeploySucceeded)) is None


def test_ctrl_c_names_the_deployment_and_what_to_do() -> None:
    going = interrupted_lines(DEP, cancelling=False)
    assert going[0] == f"interrupted: deployment {DEP} goes on"
    assert f"dockyard logs {DEP} --follow" in going[1] and f"dockyard cancel {DEP}" in going[2]
    cancelling = interrupted_lines(DEP, cancelling=True)
    assert cancelling[0].startswith(f"interrupted: cancelling deployment {DEP}")
    assert f"dockyard logs {DEP} --follow" in cancelling[1]


def test_log_lines_are_styled_by_stream() -> None:
    def line(text: str, stream: str) -> LogLine:
        return LogLine(deployment_id=DEP, app="shop", text=text, stream=stream,  # type: ignore[arg-type]
                       source="test")

    assert line_style(line("===== build =====", "system")) == "bold cyan"
    assert line_style(line("building", "system")) == "cyan"
    assert line_style(line("oops", "err")) == "yellow"
    assert line_style(line("hello", "out")) is None


def test_only_the_exact_app_name_confirms_a_destroy() -> None:
    from dockyard.cli.deploying import confirmed

    assert confirmed("shop", "shop") and confirmed("shop", " shop\n")
    assert not confirmed("shop", "Shop") and not confirmed("shop", "")
    assert not confirmed("shop", "y") and not confirmed("shop", None)
