"""Launch planning from SageMaker's resource config and from Slurm's variables. Pure."""

from __future__ import annotations

import pytest
from llmft_train.hyperparams import ConfigError
from llmft_train.launch import (
    MASTER_PORT,
    Cluster,
    cluster_from_sagemaker,
    cluster_from_slurm,
    expand_nodelist,
    plan_launch,
)

PYTHON = "/opt/conda/bin/python"
ARGS = ["train", "/opt/ml/work/llamafactory_config.yaml"]


def sagemaker_config(current: str, hosts: list[str]) -> dict:
    return {"current_host": current, "hosts": hosts, "network_interface_name": "eth0"}


def option(command: list[str], name: str) -> str:
    prefix = f"--{name}="
    values = [part[len(prefix) :] for part in command if part.startswith(prefix)]
    assert len(values) == 1, f"{name} appears {len(values)} times in {command}"
    return values[0]


def test_single_gpu_runs_the_worker_directly():
    cluster = cluster_from_sagemaker(sagemaker_config("algo-1", ["algo-1"]), gpus_per_node=1)
    plan = plan_launch(cluster, {}, ARGS, PYTHON)
    assert plan.command == [PYTHON, "-m", "llmft_train.worker", *ARGS]
    assert plan.world_size == 1 and plan.is_primary
    assert plan.env == {}


def test_cpu_only_machine_runs_one_process():
    plan = plan_launch(Cluster(("localhost",), 0, 0), {}, ARGS, PYTHON)
    assert plan.command[:3] == [PYTHON, "-m", "llmft_train.worker"]


def test_sagemaker_multi_node_plan_uses_host_index_as_node_rank():
    hosts = ["algo-1", "algo-2", "algo-3", "algo-4"]
    cluster = cluster_from_sagemaker(sagemaker_config("algo-3", hosts), gpus_per_node=8)
    plan = plan_launch(cluster, {}, ARGS, PYTHON, efa_devices=4)
    assert plan.command[:3] == [PYTHON, "-m", "torch.distributed.run"]
    assert option(plan.command, "nnodes") == "4"
    assert option(plan.command, "node_rank") == "2"
    assert option(plan.command, "nproc_per_node") == "8"
    assert option(plan.command, "master_addr") == "algo-1"
    assert option(plan.command, "master_port") == str(MASTER_PORT)
    assert plan.command[-4:] == ["-m", "llmft_train.worker", *ARGS]
    assert plan.world_size == 32
    assert not plan.is_primary
    assert plan.env["MASTER_ADDR"] == "algo-1"
    assert plan.env["NODE_RANK"] == "2"
    assert plan.env["NCCL_SOCKET_IFNAME"] == "eth0"
    assert plan.env["FI_PROVIDER"] == "efa"
    assert plan.env["FI_EFA_USE_DEVICE_RDMA"] == "1"


def test_master_node_is_primary():
    cluster = cluster_from_sagemaker(sagemaker_config("algo-1", ["algo-1", "algo-2"]), 8)
    assert plan_launch(cluster, {}, ARGS, PYTHON).is_primary


def test_no_efa_variables_without_efa_devices():
    cluster = cluster_from_sagemaker(sagemaker_config("algo-1", ["algo-1", "algo-2"]), 4)
    plan = plan_launch(cluster, {}, ARGS, PYTHON, efa_devices=0)
    assert "FI_PROVIDER" not in plan.env


def test_single_node_with_several_gpus_uses_torchrun():
    cluster = cluster_from_sagemaker(sagemaker_config("algo-1", ["algo-1"]), gpus_per_node=4)
    plan = plan_launch(cluster, {}, ARGS, PYTHON)
    assert option(plan.command, "nnodes") == "1"
    assert option(plan.command, "nproc_per_node") == "4"
    assert option(plan.command, "master_addr") == "127.0.0.1"
    assert plan.world_size == 4


def test_variables_already_set_by_the_job_are_kept():
    cluster = cluster_from_sagemaker(sagemaker_config("algo-1", ["algo-1", "algo-2"]), 8)
    env = {"NCCL_DEBUG": "INFO", "NCCL_SOCKET_IFNAME": "ens5", "FI_PROVIDER": "tcp"}
    plan = plan_launch(cluster, env, ARGS, PYTHON, efa_devices=1)
    assert "NCCL_DEBUG" not in plan.env
    assert "NCCL_SOCKET_IFNAME" not in plan.env
    assert "FI_PROVIDER" not in plan.env


def test_master_port_chosen_by_the_job_is_kept():
    cluster = cluster_from_sagemaker(sagemaker_config("algo-1", ["algo-1", "algo-2"]), 8)
    plan = plan_launch(cluster, {"MASTER_PORT": "29811"}, ARGS, PYTHON)
    assert option(plan.command, "master_port") == "29811"
    assert plan.env["MASTER_PORT"] == "29811"


@pytest.mark.parametrize("port", ["http", "0", "70000"])
def test_bad_master_port_is_rejected(port):
    cluster = cluster_from_sagemaker(sagemaker_config("algo-1", ["algo-1", "algo-2"]), 8)
    with pytest.raises(ConfigError, match=rf"MASTER_PORT='{port}' is not a TCP port number"):
        plan_launch(cluster, {"MASTER_PORT": port}, ARGS, PYTHON)


@pytest.mark.parametrize(
    ("spec", "hosts"),
    [
        ("node1", ["node1"]),
        ("node1,node2", ["node1", "node2"]),
        ("ip-10-1-2-[3-5]", ["ip-10-1-2-3", "ip-10-1-2-4", "ip-10-1-2-5"]),
        ("gpu[08-10,12]", ["gpu08", "gpu09", "gpu10", "gpu12"]),
        ("a[1-2],b[3]", ["a1", "a2", "b3"]),
        ("r[1-2]n[1-2]", ["r1n1", "r1n2", "r2n1", "r2n2"]),
    ],
)
def test_slurm_nodelist_expands_like_scontrol(spec, hosts):
    assert expand_nodelist(spec) == hosts


def slurm_env(**changes) -> dict[str, str]:
    env = {
        "SLURM_JOB_ID": "42",
        "SLURM_JOB_NODELIST": "ip-10-1-[1-2]",
        "SLURM_NNODES": "2",
        "SLURM_NODEID": "1",
        "SLURM_GPUS_ON_NODE": "8",
    }
    env.update(changes)
    return env


def test_slurm_plan_matches_the_sagemaker_shape():
    env = slurm_env()
    cluster = cluster_from_slurm(env, detected_gpus=0)
    plan = plan_launch(cluster, env, ARGS, PYTHON, efa_devices=32)
    assert cluster.hosts == ("ip-10-1-1", "ip-10-1-2")
    assert option(plan.command, "nnodes") == "2"
    assert option(plan.command, "node_rank") == "1"
    assert option(plan.command, "nproc_per_node") == "8"
    assert option(plan.command, "master_addr") == "ip-10-1-1"
    assert plan.env["FI_PROVIDER"] == "efa"
    assert "NCCL_SOCKET_IFNAME" not in plan.env
    assert plan.world_size == 16 and not plan.is_primary


def test_slurm_without_gpus_on_node_uses_detected_count():
    env = slurm_env()
    del env["SLURM_GPUS_ON_NODE"]
    assert cluster_from_slurm(env, detected_gpus=4).gpus_per_node == 4


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (sagemaker_config("algo-9", ["algo-1", "algo-2"]), "current_host 'algo-9' is not one of hosts"),
        ({"current_host": "algo-1", "hosts": []}, "'hosts' must be a non-empty list, got []"),
        ({"current_host": "algo-1"}, "'hosts' must be a non-empty list, got None"),
    ],
)
def test_bad_resource_config_is_rejected(config, message):
    with pytest.raises(ConfigError) as caught:
        cluster_from_sagemaker(config, 8)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"SLURM_NNODES": "3"}, "SLURM_NNODES=3 but SLURM_JOB_NODELIST 'ip-10-1-[1-2]' names 2 hosts"),
        ({"SLURM_NODEID": "2"}, "SLURM_NODEID=2 is outside 0..1"),
        ({"SLURM_NODEID": "one"}, "SLURM_NODEID='one' is not an integer"),
        ({"SLURM_JOB_NODELIST": "ip-10-1-[1-2"}, "'[' without ']'"),
        ({"SLURM_JOB_NODELIST": "ip-10-1-[2-1]"}, "range '2-1' goes backwards"),
        ({"SLURM_JOB_NODELIST": "ip-10-1-[a-b]"}, "bad range 'a-b'"),
        ({"SLURM_JOB_NODELIST": "a,,b"}, "empty host name"),
        ({"SLURM_JOB_NODELIST": ""}, "SLURM_JOB_NODELIST is not set"),
    ],
)
def test_bad_slurm_environment_is_rejected(changes, message):
    with pytest.raises(ConfigError) as caught:
        cluster_from_slurm(slurm_env(**changes), detected_gpus=8)
    assert message in str(caught.value)


def test_missing_slurm_node_id_is_named():
    env = slurm_env()
    del env["SLURM_NODEID"]
    with pytest.raises(ConfigError, match="SLURM_NODEID is not set"):
        cluster_from_slurm(env, detected_gpus=8)
