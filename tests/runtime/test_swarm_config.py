"""The Swarm runtime's service specs, as values."""

from __future__ import annotations

from dockyard.runtime import docker_config as dc
from dockyard.runtime import swarm_config as sc
from dockyard.runtime.base import InstanceSpec, OneOffSpec

INSTANCE = InstanceSpec(app="shop", deployment_id="d" * 32, release=3, process="web", index=1,
                        artifact="sha256:abc", command="exec server", env={"PORT": "1", "A": "b"})
ONEOFF = OneOffSpec(app="shop", deployment_id="d" * 32, release=3, phase="postdeploy",
                    container="postdeploy-1", artifact="sha256:abc", command="echo hi",
                    env={"A": "b"}, timeout=30, memory=64 << 20, kill_grace=2.5)


def test_an_instance_is_one_task_never_restarted_by_swarm_with_the_docker_labels() -> None:
    args = sc.instance_service(INSTANCE, dc.Confinement(cap_add=("NET_BIND_SERVICE",),
                                                        pids_limit=99), grace=4)
    template = args["task_template"]
    container = template["ContainerSpec"]
    assert args["name"] == dc.instance_name(INSTANCE)
    assert args["labels"] == container["Labels"] == dc.instance_labels(INSTANCE)
    assert args["mode"] == {"Replicated": {"Replicas": 1}}
    assert template["RestartPolicy"] == {"Condition": "none"}
    assert container["Env"] == {"A": "b", "PORT": str(dc.CONTAINER_PORT)}  # $PORT is ours
    assert container["Command"] == dc.shell_command("exec server")
    assert container["CapabilityDrop"] == ["ALL"]
    assert container["CapabilityAdd"] == ["NET_BIND_SERVICE"]
    assert container["StopGracePeriod"] == 4 * sc.NS
    assert template["Resources"] == {"Limits": {"Pids": 99}}
    assert template["Networks"] == [{"Target": dc.network_name("shop")}]
    assert args["endpoint_spec"] == {"Ports": [{"Protocol": "tcp",
                                                "TargetPort": dc.CONTAINER_PORT,
                                                "PublishMode": "host"}]}


def test_a_worker_publishes_nothing() -> None:
    worker = InstanceSpec(app="shop", deployment_id="d" * 32, release=3, process="worker",
                          index=1, artifact="sha256:abc", command="")
    args = sc.instance_service(worker)
    assert "endpoint_spec" not in args
    assert "Command" not in args["task_template"]["ContainerSpec"]  # the image's own CMD


def test_a_one_off_is_a_job_of_one_task_with_the_memory_limit() -> None:
    args = sc.oneoff_service(ONEOFF)
    template = args["task_template"]
    assert args["name"] == dc.oneoff_name(ONEOFF)
    assert args["labels"] == dc.oneoff_labels(ONEOFF)
    assert args["mode"] == {"ReplicatedJob": {"MaxConcurrent": 1, "TotalCompletions": 1}}
    assert template["RestartPolicy"] == {"Condition": "none", "MaxAttempts": 0}
    assert template["Resources"]["Limits"]["MemoryBytes"] == 64 << 20
    assert template["ContainerSpec"]["StopGracePeriod"] == int(2.5 * sc.NS)


def test_tasks_are_read_for_state_port_exit_code_and_node() -> None:
    old = {"CreatedAt": "2026-01-01T00:00:00Z", "Status": {"State": "failed"}}
    new = {"CreatedAt": "2026-01-02T00:00:00Z", "NodeID": "n1", "Status": {
        "State": "running", "ContainerStatus": {"ExitCode": 0},
        "PortStatus": {"Ports": [{"TargetPort": dc.CONTAINER_PORT, "PublishedPort": 30001}]}}}
    assert sc.latest_task([old, new]) is new and sc.latest_task([]) is None
    assert sc.task_state(new) == sc.RUNNING and sc.published_port(new) == 30001
    assert sc.published_port(old) is None and sc.exit_code(old) is None
    assert sc.exit_code(new) == 0
    assert sc.task_error({"Status": {"State": "rejected", "Err": "no such image"}}) == \
        "no such image"
    assert sc.node_address({"Status": {"Addr": "10.0.0.5"}}, "127.0.0.1") == "10.0.0.5"
    assert sc.node_address({"Status": {"Addr": "0.0.0.0"}}, "127.0.0.1") == "127.0.0.1"
