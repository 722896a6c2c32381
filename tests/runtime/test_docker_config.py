"""The docker runtime's decisions, as values (no engine)."""

from __future__ import annotations

import io
import tarfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from dockyard.runtime import docker_config as dc
from dockyard.runtime.base import InstanceSpec, OneOffSpec

MIB = 1024 * 1024


ONEOFF = OneOffSpec(
    app="shop", deployment_id="0123456789abcdef0123", release=7, phase="postdeploy",
    container="postdeploy-1", artifact="sha256:abc", command="rake db:migrate && echo ok",
    env={"APP": "shop", "SECRET": "s3cr3t", "EMPTY": ""}, timeout=60.0, memory=512 * MIB)
INSTANCE = InstanceSpec(
    app="shop", deployment_id="0123456789abcdef0123", release=7, process="web", index=2,
    artifact="sha256:abc", command="", env={"A": "1", "PORT": "9999"})


def oneoff(**overrides: Any) -> OneOffSpec:
    return replace(ONEOFF, **overrides)


def instance(**overrides: Any) -> InstanceSpec:
    return replace(INSTANCE, **overrides)


def test_image_tags() -> None:
    assert dc.image_tag("shop", "b42") == "dockyard/shop:b42"
    tag = dc.predeploy_tag("shop", "0123456789abcdef0123")
    assert tag == "dockyard/shop:0123456789ab-predeploy"
    assert dc.build_labels("shop", "b42") == {"dockyard.app": "shop", "dockyard.build": "b42"}


def test_oneoff_config_env_is_exactly_the_spec_env() -> None:
    config = dc.oneoff_config(oneoff())
    assert config["Env"] == ["APP=shop", "SECRET=s3cr3t", "EMPTY="]


def test_oneoff_config_runs_the_command_through_sh_and_keeps_the_entrypoint() -> None:
    config = dc.oneoff_config(oneoff())
    assert config["Cmd"] == ["/bin/sh", "-c", "rake db:migrate && echo ok"]
    assert "Entrypoint" not in config  # the image's ENTRYPOINT receives the Cmd as arguments
    assert config["Image"] == "sha256:abc"
    assert config["Tty"] is False


def test_oneoff_labels_and_name() -> None:
    spec = oneoff()
    assert dc.oneoff_config(spec)["Labels"] == {
        "dockyard.app": "shop", "dockyard.release": "7",
        "dockyard.deployment": "0123456789abcdef0123", "dockyard.phase": "postdeploy",
        "dockyard.container": "postdeploy-1", "dockyard.role": "oneoff"}
    assert dc.oneoff_name(spec) == "dockyard-shop-0123456789ab-postdeploy-1"
    assert dc.label_filters(dc.oneoff_identity(spec)) == {"label": [
        "dockyard.app=shop", "dockyard.deployment=0123456789abcdef0123",
        "dockyard.phase=postdeploy", "dockyard.container=postdeploy-1", "dockyard.role=oneoff"]}


CONFINED = {"NetworkMode": "dockyard-shop", "Privileged": False, "CapDrop": ["ALL"],
            "CapAdd": [], "SecurityOpt": ["no-new-privileges"], "PidsLimit": 256,
            "RestartPolicy": {"Name": "no"}, "AutoRemove": False}


def test_oneoff_host_config_is_confined_and_memory_limited() -> None:
    host = dc.oneoff_config(oneoff(memory=256 * MIB))["HostConfig"]
    assert host == {**CONFINED, "Memory": 256 * MIB, "MemorySwap": 256 * MIB}
    assert not host.get("Binds") and not host.get("Mounts") and not host.get("VolumesFrom")
    assert "docker.sock" not in repr(dc.oneoff_config(oneoff()))


def test_confinement_settings_add_capabilities_back_and_set_the_pids_limit() -> None:
    confinement = dc.Confinement(cap_add=("NET_BIND_SERVICE", "CHOWN"), pids_limit=64)
    for config in (dc.oneoff_config(oneoff(), confinement),
                   dc.instance_config(instance(), "127.0.0.1", confinement)):
        host = config["HostConfig"]
        assert host["CapDrop"] == ["ALL"] and host["CapAdd"] == ["NET_BIND_SERVICE", "CHOWN"]
        assert host["PidsLimit"] == 64 and host["SecurityOpt"] == ["no-new-privileges"]


def test_each_app_has_a_network_of_its_own() -> None:
    assert dc.network_name("shop") == "dockyard-shop" != dc.network_name("blog")
    assert dc.network_config("shop") == {
        "Name": "dockyard-shop", "Driver": "bridge", "CheckDuplicate": True,
        "Labels": {"dockyard.app": "shop", "dockyard.role": "network"}}
    assert dc.oneoff_config(oneoff())["HostConfig"]["NetworkMode"] == "dockyard-shop"
    assert dc.instance_config(instance(app="blog"), "127.0.0.1")["HostConfig"][
        "NetworkMode"] == "dockyard-blog"


def test_instance_config_web_publishes_port_5000_on_loopback() -> None:
    config = dc.instance_config(instance(), "127.0.0.1")
    assert config["Env"] == ["A=1", "PORT=5000"]  # PORT is fixed inside the container
    assert config["ExposedPorts"] == {"5000/tcp": {}}
    assert config["HostConfig"]["PortBindings"] == {
        "5000/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}]}
    assert {k: v for k, v in config["HostConfig"].items() if k != "PortBindings"} == CONFINED
    assert not config["HostConfig"].get("Binds") and not config["HostConfig"].get("Mounts")
    assert "Cmd" not in config  # no command: the image's default
    assert config["Labels"] == {
        "dockyard.app": "shop", "dockyard.release": "7",
        "dockyard.deployment": "0123456789abcdef0123", "dockyard.process": "web",
        "dockyard.index": "2", "dockyard.role": "instance"}
    assert dc.instance_name(instance()) == "dockyard-shop-0123456789ab-web-2"


def test_instance_config_worker_publishes_nothing_and_runs_its_command() -> None:
    config = dc.instance_config(instance(process="worker", command="bin/work"), "127.0.0.1")
    assert "ExposedPorts" not in config and "PortBindings" not in config["HostConfig"]
    assert config["Cmd"] == ["/bin/sh", "-c", "bin/work"]


def test_instance_filters() -> None:
    assert dc.label_filters(dc.instance_identity(instance())) == {"label": [
        "dockyard.app=shop", "dockyard.deployment=0123456789abcdef0123",
        "dockyard.process=web", "dockyard.index=2", "dockyard.role=instance"]}
    assert dc.label_filters(dc.app_instances("shop"), running=True) == {
        "label": ["dockyard.app=shop", "dockyard.role=instance"], "status": ["running"]}


def test_ports_read_back() -> None:
    inspect = {"NetworkSettings": {"Ports": {"5000/tcp": [{"HostIp": "127.0.0.1",
                                                           "HostPort": "49153"}]}}}
    assert dc.published_port(inspect) == 49153
    assert dc.published_port({"NetworkSettings": {"Ports": {}}}) is None
    summary = {"Ports": [{"IP": "127.0.0.1", "PrivatePort": 5000, "PublicPort": 49153,
                          "Type": "tcp"}]}
    assert dc.listed_port(summary) == 49153
    assert dc.listed_port({"Ports": []}) is None


def test_commit_config_keeps_the_image_config_and_no_secret_values() -> None:
    image: dict[str, Any] = {"Env": ["PATH=/bin", "LANG=C"], "Cmd": ["/bin/sh", "-c", "serve"],
             "Entrypoint": None, "ExposedPorts": {"8080/tcp": {}}, "WorkingDir": "/app",
             "User": "", "Labels": {"dockyard.app": "shop", "dockyard.build": "b1"}}
    container_labels = dc.oneoff_labels(oneoff(phase="predeploy", container="predeploy-1"))
    config = dc.commit_config(image, {"LANG": "fr", "SECRET": "s3cr3t"}, container_labels,
                              "dockyard-shop-0123456789ab-predeploy-1")
    assert config["Cmd"] == ["/bin/sh", "-c", "serve"]
    assert config["Entrypoint"] is None
    assert config["ExposedPorts"] == {"8080/tcp": {}}
    assert config["WorkingDir"] == "/app"
    # Bare keys shadow the container's values in the engine's merge.
    assert config["Env"] == ["PATH=/bin", "LANG=C", "SECRET"]
    assert "s3cr3t" not in repr(config)
    assert config["Labels"] == {
        "dockyard.app": "shop", "dockyard.build": "b1", "dockyard.release": "",
        "dockyard.deployment": "", "dockyard.phase": "", "dockyard.container": "",
        "dockyard.role": "", "dockyard.committed-from": "dockyard-shop-0123456789ab-predeploy-1"}


def test_build_context_is_a_tar_of_the_source_without_git(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "main.py").write_text("print(1)\n")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (tmp_path / ".gitignore").write_text("*.pyc\n")
    with tarfile.open(fileobj=io.BytesIO(dc.build_context(tmp_path))) as tar:
        names = tar.getnames()
        assert tar.extractfile("app/main.py").read() == b"print(1)\n"  # type: ignore[union-attr]
    assert names == [".gitignore", "Dockerfile", "app", "app/main.py"]


def test_stop_timeout_rounds_up() -> None:
    assert dc.stop_timeout(0.2) == 1
    assert dc.stop_timeout(10) == 10
    assert dc.stop_timeout(-1) == 0
