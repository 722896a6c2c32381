"""The dashboard in headless Chromium (Debian's, driven by Playwright) against a real stack:
log in, watch a deploy's timeline advance and its log stream without a reload, see a failure's
exit code and tail, cancel from the page. Screenshots go to tests/artifacts/dashboard/."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, Page, async_playwright

from tests.e2e.api_support import base_url, client, deployment, ended, stack, token, until
from tests.e2e.apps import make_app, targz
from tests.e2e.conftest import Running

__all__ = ["stack"]  # the module's stack fixture
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "dashboard"
WAIT_MS = 120_000
PHASES = ["build", "predeploy", "release", "start", "postdeploy", "switch", "after_switch",
          "retire", "on_failure"]


def require_chromium() -> str:
    """Debian's chromium; with CI set a missing one fails, else the test is skipped."""
    if shutil.which(CHROMIUM) or os.path.exists(CHROMIUM):
        return CHROMIUM
    if os.environ.get("CI"):
        pytest.fail(f"CI is set but {CHROMIUM} is missing (apt-get install chromium)",
                    pytrace=False)
    pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium; CI unset, so not a failure)")


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    path = require_chromium()
    async with async_playwright() as p:
        launched = await p.chromium.launch(executable_path=path, args=FLAGS)
        yield launched
        await launched.close()


@pytest.fixture
async def page(browser: Browser, stack: Running) -> AsyncIterator[Page]:
    """A fresh browser context, logged in through the dashboard's form."""
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    await page.goto(base_url(stack) + "/")
    await page.fill("#token", token(stack))
    await page.click("#login button[type=submit]")
    await page.wait_for_selector("h1:text('Apps')", timeout=WAIT_MS)
    yield page
    await context.close()


def shot(name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    print(f"screenshot: {path}")
    return path


async def upload(http: httpx.AsyncClient, app: str, root: Path) -> str:
    r = await http.post(f"/apps/{app}/deployments", content=targz(root),
                        headers={"Content-Type": "application/gzip"})
    assert r.status_code == 202, r.text
    dep = str(r.json()["deployment_id"])
    await deployment(http, dep)  # projected: its page can be opened
    return dep


async def log_lines(page: Page) -> list[str]:
    """The log's lines as shown (a command's own output, not the heading that quotes it)."""
    found: list[str] = await page.evaluate(
        "() => [...document.querySelectorAll('#log span')].map(s => s.textContent.trim())")
    return found


async def states(page: Page) -> dict[str, str]:
    found: dict[str, str] = await page.evaluate(
        "() => Object.fromEntries([...document.querySelectorAll('#timeline li')]"
        ".map(li => [li.dataset.phase, li.dataset.state]))")
    return found


async def test_login_refuses_a_wrong_token_and_shows_why(browser: Browser,
                                                          stack: Running) -> None:
    context = await browser.new_context()
    page = await context.new_page()
    try:
        await page.goto(base_url(stack) + "/")
        await page.fill("#token", "not-the-token")
        await page.click("#login button[type=submit]")
        await page.wait_for_function(
            "() => document.querySelector('#login-error').textContent !== ''", timeout=WAIT_MS)
        assert "api.token" in (await page.locator("#login-error").text_content() or "")
        assert await page.locator("h1:text('Apps')").count() == 0
    finally:
        await context.close()


async def test_a_deploy_advances_phase_by_phase_and_streams_its_log_without_a_reload(
        page: Page, stack: Running, tmp_path: Path) -> None:
    app = stack.app_name("dash")
    root = make_app(tmp_path / "src", "process", "v1",
                    release="echo release-line; sleep 2",
                    postdeploy="echo step-one; sleep 3; echo step-two")
    async with client(stack) as http:
        dep = await upload(http, app, root)
    await page.goto(f"{base_url(stack)}/#/deployments/{dep}")
    await page.wait_for_selector("#timeline", timeout=WAIT_MS)
    await page.evaluate("() => { window.__sameDocument = 'yes'; }")
    await page.screenshot(path=shot("deploy-started"))

    # Sample the timeline until the deploy is over: the running phase moves forward.
    running: list[str] = []
    step_one_seen_before_two = None
    deadline = time.monotonic() + WAIT_MS / 1000
    while time.monotonic() < deadline:
        now = await states(page)
        current = [p for p in PHASES if now.get(p) == "running"]
        for phase in current:
            if not running or running[-1] != phase:
                running.append(phase)
        log = await log_lines(page)
        if step_one_seen_before_two is None and "step-one" in log:
            step_one_seen_before_two = "step-two" not in log
            await page.screenshot(path=shot("deploy-running"))
        if now.get("switch") == "succeeded" and now.get("retire") == "succeeded":
            break
        await asyncio.sleep(0.1)
    final = await states(page)
    assert final == {"build": "succeeded", "predeploy": "skipped", "release": "succeeded",
                     "start": "succeeded", "postdeploy": "succeeded", "switch": "succeeded",
                     "after_switch": "succeeded", "retire": "succeeded",
                     "on_failure": "skipped"}, final
    # Seen running in pipeline order, the slow phases among them.
    assert "release" in running and "postdeploy" in running, running
    assert running == sorted(running, key=PHASES.index), running
    # The log streamed live: step-one was on the page while step-two had not been printed.
    assert step_one_seen_before_two is True
    log = await log_lines(page)
    assert "release-line" in log and "step-two" in log
    await page.wait_for_selector("#status .succeeded", timeout=WAIT_MS)
    # All of it without a reload.
    assert await page.evaluate("() => window.__sameDocument") == "yes"
    await page.screenshot(path=shot("deploy-succeeded"), full_page=True)

    # The app's page: live release, health, the deployment in the history.
    await page.goto(f"{base_url(stack)}/#/apps/{app}")
    await page.wait_for_selector(f"#history tr[data-deployment='{dep}']", timeout=WAIT_MS)
    assert await page.locator("#live").text_content() == "v1"
    await page.click("#rollback")
    notice = page.locator("#notice")
    await page.wait_for_function(
        "() => document.querySelector('#notice').textContent.includes('no release before v1')",
        timeout=WAIT_MS)
    assert "rollback" in (await notice.text_content() or "")
    await page.screenshot(path=shot("app-history"), full_page=True)

    # Maintenance from the page: the host answers its 503 page, then routes again.
    assert await page.locator("#maintenance").text_content() == "off"
    await page.click("#maintenance-on")
    await page.wait_for_function(
        "() => document.querySelector('#maintenance').textContent === 'on'", timeout=WAIT_MS)
    assert "maintenance: on" in (await notice.text_content() or "")
    await until(lambda: answers(stack, app, 503), "the maintenance page")
    await page.screenshot(path=shot("app-maintenance"), full_page=True)
    await page.click("#maintenance-off")
    await page.wait_for_function(
        "() => document.querySelector('#maintenance').textContent === 'off'", timeout=WAIT_MS)
    await until(lambda: answers(stack, app, 200), "the app served again")


async def answers(running: Running, app: str, status: int) -> bool:
    """Whether the app's host answers `status` through the router."""
    async with httpx.AsyncClient(timeout=5) as http:
        try:
            r = await http.get(f"http://127.0.0.1:{running.port}/",
                               headers={"Host": f"{app}.localhost"})
        except httpx.TransportError:  # a reload resets connections arriving then
            return False
    return r.status_code == status


async def test_a_failed_deploy_shows_its_exit_code_and_tail(page: Page, stack: Running,
                                                            tmp_path: Path) -> None:
    app = stack.app_name("dashfail")
    root = make_app(tmp_path / "src", "process", "v1", release="echo doomed-tail; exit 9")
    async with client(stack) as http:
        dep = await upload(http, app, root)
    await page.goto(f"{base_url(stack)}/#/deployments/{dep}")
    await page.wait_for_selector("#failure #exit-code", timeout=WAIT_MS)
    assert await page.locator("#exit-code").text_content() == "exit code 9"
    assert "doomed-tail" in (await page.locator("#tail").text_content() or "")
    assert (await states(page))["release"] == "failed"
    assert await page.locator("#cancel").is_hidden()
    await page.screenshot(path=shot("deploy-failed"), full_page=True)


async def test_cancel_from_the_page_ends_a_running_deploy(page: Page, stack: Running,
                                                          tmp_path: Path) -> None:
    app = stack.app_name("dashcancel")
    root = make_app(tmp_path / "src", "process", "v1", release="echo waiting; sleep 60")
    async with client(stack) as http:
        dep = await upload(http, app, root)
        await page.goto(f"{base_url(stack)}/#/deployments/{dep}")
        await page.wait_for_function(
            "() => document.querySelector('#log') && "
            "document.querySelector('#log').textContent.includes('waiting')", timeout=WAIT_MS)
        await page.click("#cancel")
        await page.wait_for_selector("#status .cancelled", timeout=WAIT_MS)
        found = (await http.get(f"/deployments/{dep}")).json()
        assert found["status"] == "cancelled"
    await page.screenshot(path=shot("deploy-cancelled"), full_page=True)


ROLLOUT = '[rollout]\nsteps = [50]\nhold = "10m"\nwatch = "10m"\n'


async def test_a_rollout_is_shown_live_and_promoted_then_aborted_from_the_page(
        page: Page, stack: Running, tmp_path: Path) -> None:
    app = stack.app_name("dashcanary")
    async with client(stack) as http:
        first = await upload(http, app, make_app(tmp_path / "v1", "process", "v1", toml=ROLLOUT))
        assert (await ended(http, first))["status"] == "succeeded"
        dep = await upload(http, app, make_app(tmp_path / "v2", "process", "v2", toml=ROLLOUT))
        await page.goto(f"{base_url(stack)}/#/apps/{app}")
        stage = page.locator("#rollout-stage")
        await page.wait_for_function(
            "() => (document.querySelector('#rollout-stage') || {}).textContent"
            " === 'canary of v2: step 1/1, 50% of requests'", timeout=WAIT_MS)
        assert "v1 (old)" in (await page.locator("#rollout-figures").text_content() or "")
        await page.screenshot(path=shot("rollout-canary"), full_page=True)
        await page.click("#rollout-promote")
        await page.wait_for_function(
            "() => (document.querySelector('#rollout-stage') || {}).textContent"
            " === 'watching v2: v1 warm to switch back to'", timeout=WAIT_MS)
        await page.screenshot(path=shot("rollout-watch"), full_page=True)
        await page.click("#rollout-abort")
        found = await ended(http, dep)
        assert found["status"] == "rolled-back", found
        await page.wait_for_selector("#rollout", state="hidden", timeout=WAIT_MS)
        assert not await stage.count()
