"""Launch planning: the cluster (from SageMaker or Slurm) in, a command and its env out. Pure."""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from llmft_train.hyperparams import ConfigError

MASTER_PORT = 29500
WORKER_MODULE = "llmft_train.worker"

# Filled in only where the job's environment does not set them already.
EFA_ENV = {"FI_PROVIDER": "efa", "FI_EFA_USE_DEVICE_RDMA": "1", "FI_EFA_FORK_SAFE": "1"}
NCCL_ENV = {"NCCL_DEBUG": "WARN"}


@dataclass(frozen=True)
class Cluster:
    hosts: tuple[str, ...]
    node_rank: int
    gpus_per_node: int
    network_interface: str | None = None

    @property
    def master(self) -> str:
        # One node talks to itself: loopback works even where its own name does not resolve.
        return self.hosts[0] if len(self.hosts) > 1 else "127.0.0.1"

    @property
    def is_primary(self) -> bool:
        return self.node_rank == 0

    @property
    def processes_per_node(self) -> int:
        # A machine without GPUs still runs one (CPU) process.
        return max(self.gpus_per_node, 1)

    @property
    def world_size(self) -> int:
        return len(self.hosts) * self.processes_per_node


@dataclass(frozen=True)
class LaunchPlan:
    command: list[str]
    env: dict[str, str] = field(default_factory=dict)
    world_size: int = 1
    is_primary: bool = True


def cluster_from_sagemaker(resource_config: Mapping, gpus_per_node: int) -> Cluster:
    """Cluster from SageMaker's resourceconfig.json (current_host, hosts, network_interface_name)."""
    hosts = resource_config.get("hosts")
    current = resource_config.get("current_host")
    if not isinstance(hosts, list) or not hosts or not all(isinstance(h, str) for h in hosts):
        raise ConfigError(f"resourceconfig.json: 'hosts' must be a non-empty list, got {hosts!r}")
    if current not in hosts:
        raise ConfigError(f"resourceconfig.json: current_host {current!r} is not one of hosts {hosts}")
    # Every node reads the same list in the same order, so list order fixes the ranks.
    return Cluster(
        hosts=tuple(hosts),
        node_rank=hosts.index(current),
        gpus_per_node=gpus_per_node,
        network_interface=resource_config.get("network_interface_name"),
    )


_RANGE = re.compile(r"^(\d+)(?:-(\d+))?$")


def _expand_brackets(text: str, spec: str) -> list[str]:
    values = []
    for part in text.split(","):
        match = _RANGE.match(part.strip())
        if not match:
            raise ConfigError(f"SLURM_JOB_NODELIST {spec!r}: bad range {part!r} in [{text}]")
        low, high = match.group(1), match.group(2) or match.group(1)
        if int(high) < int(low):
            raise ConfigError(f"SLURM_JOB_NODELIST {spec!r}: range {part!r} goes backwards")
        width = len(low)
        values.extend(str(n).zfill(width) for n in range(int(low), int(high) + 1))
    return values


def _split_top_level(spec: str) -> list[str]:
    items, depth, start = [], 0, 0
    for index, char in enumerate(spec):
        if char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
            if depth < 0:
                raise ConfigError(f"SLURM_JOB_NODELIST {spec!r}: ']' without '['")
        elif char == "," and depth == 0:
            items.append(spec[start:index])
            start = index + 1
    if depth:
        raise ConfigError(f"SLURM_JOB_NODELIST {spec!r}: '[' without ']'")
    items.append(spec[start:])
    return items


def expand_nodelist(spec: str) -> list[str]:
    """Slurm's compact host list, as `scontrol show hostnames` expands it: a[1-3,07],b -> ..."""
    hosts = []
    for item in _split_top_level(spec.strip()):
        if not item:
            raise ConfigError(f"SLURM_JOB_NODELIST {spec!r}: empty host name")
        pieces = re.split(r"\[([^\]]*)\]", item)
        # Alternating literal text and bracket contents; every combination is one host.
        choices = [[p] if i % 2 == 0 else _expand_brackets(p, spec) for i, p in enumerate(pieces)]
        hosts.extend("".join(combo) for combo in itertools.product(*choices))
    return hosts


def _int_env(env: Mapping[str, str], name: str) -> int:
    value = env.get(name)
    if value is None:
        raise ConfigError(f"{name} is not set; the launcher needs it under Slurm")
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"{name}={value!r} is not an integer") from None


def cluster_from_slurm(env: Mapping[str, str], detected_gpus: int) -> Cluster:
    """Cluster from one Slurm task per node (srun --ntasks-per-node=1)."""
    spec = env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST")
    if not spec:
        raise ConfigError("SLURM_JOB_NODELIST is not set; the launcher needs it under Slurm")
    hosts = tuple(expand_nodelist(spec))
    nnodes = _int_env(env, "SLURM_NNODES") if "SLURM_NNODES" in env else len(hosts)
    if nnodes != len(hosts):
        raise ConfigError(f"SLURM_NNODES={nnodes} but SLURM_JOB_NODELIST {spec!r} names {len(hosts)} hosts")
    node_rank = _int_env(env, "SLURM_NODEID")
    if not 0 <= node_rank < nnodes:
        raise ConfigError(f"SLURM_NODEID={node_rank} is outside 0..{nnodes - 1}")
    gpus = _int_env(env, "SLURM_GPUS_ON_NODE") if "SLURM_GPUS_ON_NODE" in env else detected_gpus
    return Cluster(hosts=hosts, node_rank=node_rank, gpus_per_node=gpus)


def plan_launch(
    cluster: Cluster,
    env: Mapping[str, str],
    worker_args: Sequence[str],
    python: str,
    efa_devices: int = 0,
) -> LaunchPlan:
    """One process for one device; torchrun across all GPUs of all nodes otherwise."""
    nproc = cluster.processes_per_node
    nnodes = len(cluster.hosts)
    world_size = cluster.world_size
    worker = ["-m", WORKER_MODULE, *worker_args]
    if world_size == 1:
        return LaunchPlan(command=[python, *worker], world_size=1, is_primary=True)

    # A port the job already chose (another job on a shared Slurm node, say) is kept.
    port = env.get("MASTER_PORT") or str(MASTER_PORT)
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"MASTER_PORT={port!r} is not a TCP port number (1-65535)")
    plan_env = {
        "MASTER_ADDR": cluster.master,
        "MASTER_PORT": port,
        "NNODES": str(nnodes),
        "NODE_RANK": str(cluster.node_rank),
    }
    defaults = dict(NCCL_ENV)
    if cluster.network_interface:
        defaults["NCCL_SOCKET_IFNAME"] = cluster.network_interface
        defaults["GLOO_SOCKET_IFNAME"] = cluster.network_interface
    if efa_devices > 0:
        defaults.update(EFA_ENV)
    plan_env.update({k: v for k, v in defaults.items() if k not in env})

    command = [
        python,
        "-m",
        "torch.distributed.run",
        f"--nnodes={nnodes}",
        f"--node_rank={cluster.node_rank}",
        f"--nproc_per_node={nproc}",
        f"--master_addr={cluster.master}",
        f"--master_port={port}",
        *worker,
    ]
    return LaunchPlan(command=command, env=plan_env, world_size=world_size, is_primary=cluster.is_primary)
