"""`dockyard up`: what it says, on stop, it leaves running; the services it names."""

from __future__ import annotations

from pathlib import Path

from dockyard.bus.service import SERVICES
from dockyard.cli.running import SERVICE_NAMES, kept_lines, stop_command
from dockyard.contract.events import DeploySpec, InstanceRef
from dockyard.contract.plan import Plan
from dockyard.contract.state import LiveRelease


def live(app: str, runtime: str, *refs: InstanceRef) -> LiveRelease:
    spec = DeploySpec(runtime=runtime, build_id="b", artifact="a", plan=Plan())
    return LiveRelease(app=app, release=3, deployment_id="d" * 32, spec=spec,
                       instances=list(refs))


def test_the_cli_names_every_service() -> None:
    assert SERVICE_NAMES == SERVICES


def test_stopping_names_the_instances_that_keep_running(tmp_path: Path) -> None:
    web = InstanceRef(id="shop-3-web-1-ab12", process="web", release=3, port=41234)
    worker = InstanceRef(id="a1b2c3d4e5f6a7b8c9d0", process="worker", release=3)
    lines = kept_lines([live("shop", "process", web), live("blog", "docker", worker)],
                       {web.id: "kill -TERM 4242"}, tmp_path)
    assert lines[0].startswith("Dockyard stopped. These app instances keep running; the next "
                               f"`dockyard up` with data dir {tmp_path} re-attaches them")
    assert lines[1] == ("  blog v3 worker: container a1b2c3d4e5f6; stop it with: "
                        "docker rm -f a1b2c3d4e5f6")
    assert lines[2] == ("  shop v3 web: instance shop-3-web-1-ab12, port 41234; stop it with: "
                        "kill -TERM 4242")


def test_an_instance_is_stopped_through_its_supervisor() -> None:
    assert stop_command({"pid": 4242, "pgid": 4240, "run_dir": "/d/run/x"}) == "kill -TERM 4242"
    assert stop_command({"pid": 4242, "pgid": 4240, "run_dir": ""}) == "kill -TERM -- -4240"
    assert stop_command({"run_dir": ""}) is None


def test_stopping_with_nothing_running_says_so(tmp_path: Path) -> None:
    assert kept_lines([], {}, tmp_path) == ["Dockyard stopped. No app instances keep running."]
    assert kept_lines([live("shop", "process")], {}, tmp_path) == [
        "Dockyard stopped. No app instances keep running."]
