"""What a one-off and an instance are told, as plain values."""

from __future__ import annotations

from dockyard.pipeline.env import instance_env, oneoff_env


def test_a_one_off_gets_the_config_and_what_dockyard_injects() -> None:
    env = oneoff_env({"DATABASE_URL": "pg://x", "APP": "spoofed"}, app="shop",
                     container="release-1", artifact="img:v3", release=3, deployment_id="d1",
                     phase="release")
    assert env == {"DATABASE_URL": "pg://x", "APP": "shop", "CONTAINER": "release-1",
                   "CONTAINER_VERSION": "img:v3", "DOCKYARD_RELEASE": "3",
                   "DOCKYARD_DEPLOYMENT_ID": "d1", "DOCKYARD_PHASE": "release"}


def test_extra_variables_come_last() -> None:
    env = oneoff_env({}, app="shop", container="on_failure-1", artifact="a", release=1,
                     deployment_id="d", phase="on_failure",
                     extra={"DOCKYARD_FAILURE_STATUS": "hook-error"})
    assert env["DOCKYARD_FAILURE_STATUS"] == "hook-error"
    assert env["DOCKYARD_PHASE"] == "on_failure"


def test_the_config_given_is_not_changed() -> None:
    config = {"A": "1"}
    oneoff_env(config, app="shop", container="c", artifact="a", release=1, deployment_id="d",
               phase="release")
    assert config == {"A": "1"}


def test_an_instance_is_named_by_process_and_index_and_runs() -> None:
    env = instance_env({"A": "1"}, app="shop", process="worker", index=2, artifact="img",
                       release=4, deployment_id="d4")
    assert env["CONTAINER"] == "worker-2"
    assert env["DOCKYARD_PHASE"] == "run"
    assert env["DOCKYARD_RELEASE"] == "4" and env["A"] == "1"
    assert "PORT" not in env  # the runtime adds it
