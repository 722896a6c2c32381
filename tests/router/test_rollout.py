"""A canary's decisions as values: the dial slots each step gives the new release, and the
verdict on a step's figures against the old release's."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from dockyard.contract.plan import Rollout
from dockyard.router.config import DIAL_SLOTS, app_handler, slotted
from dockyard.router.figures import Figures
from dockyard.router.rollout import Canary, aborts, canary_slots, judge, split
from dockyard.router.routes import AppRoute, with_canary

OLD = ("127.0.0.1:5001", "127.0.0.1:5002")
NEW = ("127.0.0.1:6001",)
ROLLOUT = Rollout(steps=[5, 25], hold=30, min_requests=20)


def figures(release: int, requests: int, errors: int = 0, p95: float | None = 0.01) -> Figures:
    return Figures(app="shop", release=release, window=30, requests=requests, errors=errors,
                   failures=0, error_rate=errors / requests if requests else 0.0,
                   p50=p95, p95=p95, p99=p95)


@given(st.sampled_from(range(5, 100, 5)), st.integers(min_value=1, max_value=40))
def test_a_share_is_its_twentieths_of_the_slots_old_and_new_each_repeated(
        percent: int, new_count: int) -> None:
    new = tuple(f"127.0.0.1:{7000 + i}" for i in range(new_count))
    slots = max(DIAL_SLOTS, len(OLD), len(new))
    got = split(OLD, new, percent, slots)
    taken = canary_slots(percent, slots)
    assert len(got) == slots and 1 <= taken <= slots - 1
    # Each side's addresses are spread over its slots (every one of them, if it has enough).
    assert set(got[:taken]) == set(new[:taken]) and set(got[taken:]) == set(OLD[:slots - taken])
    if slots == DIAL_SLOTS:
        assert taken == percent * DIAL_SLOTS // 100


@given(st.lists(st.sampled_from(range(5, 100, 5)), min_size=2, max_size=5, unique=True))
def test_a_growing_share_only_ever_turns_slots_new(shares: list[int]) -> None:
    # A client's cookie keeps its slot: it may move from old to new, never back.
    shares.sort()
    before = split(OLD, NEW, shares[0], DIAL_SLOTS)
    for share in shares[1:]:
        after = split(OLD, NEW, share, DIAL_SLOTS)
        assert all(a in NEW for b, a in zip(before, after, strict=True) if b in NEW)
        before = after


def test_the_route_is_sticky_from_the_canarys_start_and_its_shape_never_changes() -> None:
    route = AppRoute(app="shop", upstreams=OLD)
    canary = Canary(deployment_id="d", release=2, upstreams=NEW)
    started = with_canary(route, canary)
    assert started.sticky and started.canary == ()  # cookies first, no share yet
    stepped = with_canary(route, Canary(deployment_id="d", release=2, upstreams=NEW, percent=25))
    assert slotted(stepped).count(NEW[0]) == 5
    shape = app_handler(started, "/routes")
    assert app_handler(stepped, "/routes") == shape
    assert shape["load_balancing"]["selection_policy"]["policy"] == "cookie"
    assert "load_balancing" not in app_handler(route, "/routes")
    # An app answering 503 (maintenance) gets no canary share.
    down = AppRoute(app="shop", upstreams=OLD, maintenance=True)
    assert with_canary(down, canary) == down


def test_a_step_passes_within_the_thresholds() -> None:
    verdict, reason = judge(figures(2, 40, errors=1), figures(1, 760, errors=8), ROLLOUT)
    assert verdict == "passed" and "v2: 40 requests, 1 errors" in reason
    assert not aborts(verdict, ROLLOUT)


def test_a_fifth_of_errors_fails_the_step_naming_the_figures() -> None:
    verdict, reason = judge(figures(2, 40, errors=8), figures(1, 760), ROLLOUT)
    assert verdict == "failed" and aborts(verdict, ROLLOUT)
    assert "error rate 20.0% above the allowed 2.0%" in reason


def test_a_slow_release_fails_on_its_p95_but_loopback_noise_does_not() -> None:
    verdict, reason = judge(figures(2, 40, p95=0.300), figures(1, 760, p95=0.050), ROLLOUT)
    assert verdict == "failed" and "p95 300 ms above the allowed 75 ms" in reason
    noise = judge(figures(2, 40, p95=0.004), figures(1, 760, p95=0.001), ROLLOUT)
    assert noise[0] == "passed"  # 4× a millisecond is within the slack


def test_too_few_requests_is_inconclusive_and_the_policy_decides() -> None:
    verdict, reason = judge(figures(2, 3, errors=3), figures(1, 50), ROLLOUT)
    assert verdict == "inconclusive" and "too few requests to judge (3 < 20)" in reason
    assert not aborts(verdict, ROLLOUT)
    strict = Rollout(steps=[5], inconclusive="abort")
    assert aborts(verdict, strict)
    unmeasured = judge(figures(2, 400), figures(1, 50), ROLLOUT, measured=False)
    assert unmeasured[0] == "inconclusive" and "DOCKYARD_ACCESS_LOG=off" in unmeasured[1]
