#!/usr/bin/env python3
"""Planning for the HyperPod lifecycle scripts: which role this node has, and the files it needs.

Pure functions turn llmft_parameters.json (ours: the groups' roles, FSx, the image) and HyperPod's
resource_config.json into a node plan and the text of each configuration file; `main` is the thin
command line that `on_create.sh` calls. Slurm itself is configured by HyperPod from the cluster's API
request (SlurmConfig per instance group), not from a provisioning_parameters.json.
Standard library only: it runs on the node's system Python before anything is installed.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

CONTROLLER, LOGIN, WORKER = "controller", "login", "worker"
ECR_URI = re.compile(
    r"^(?P<registry>\d{12}\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?)/(?P<rest>.+)$"
)


class PlanError(ValueError):
    """Inputs the node cannot be provisioned from; the message says which file and what."""


@dataclass(frozen=True)
class NodePlan:
    role: str
    group: str
    address: str
    controller_addresses: tuple[str, ...]
    fsx_dns_name: str
    fsx_mount_name: str
    mount_point: str
    image_uri: str
    image_ref: str
    registry: str
    region: str

    def shell(self) -> str:
        """KEY='value' lines that on_create.sh evaluates."""
        values = {
            "NODE_ROLE": self.role,
            "NODE_GROUP": self.group,
            "NODE_ADDRESS": self.address,
            "CONTROLLER_ADDRESSES": ",".join(self.controller_addresses),
            "FSX_DNS_NAME": self.fsx_dns_name,
            "FSX_MOUNT_NAME": self.fsx_mount_name,
            "FSX_MOUNT_POINT": self.mount_point,
            "IMAGE_URI": self.image_uri,
            "IMAGE_REF": self.image_ref,
            "ECR_REGISTRY": self.registry,
            "ECR_REGION": self.region,
        }
        return "".join(f"{key}={shlex.quote(value)}\n" for key, value in values.items())


def enroot_image_ref(image_uri: str) -> tuple[str, str, str]:
    """ECR URI -> (enroot/pyxis image reference, registry, region).

    enroot names a registry image `REGISTRY#REPOSITORY:TAG`; with `/` after the registry it would
    look the repository up on Docker Hub instead.
    """
    match = ECR_URI.match(image_uri)
    if not match:
        raise PlanError(
            f"llmft_parameters.json: llmft_image_uri {image_uri!r} is not an ECR image URI "
            "(ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPOSITORY:TAG)"
        )
    return f"{match['registry']}#{match['rest']}", match["registry"], match["region"]


def _require(params: dict, name: str) -> str:
    value = params.get(name)
    if not isinstance(value, str) or not value:
        raise PlanError(f"llmft_parameters.json: {name!r} is missing or empty")
    return value


def group_addresses(resource_config: dict, group: str) -> tuple[str, ...]:
    for item in resource_config.get("InstanceGroups", []):
        if item.get("Name") == group:
            return tuple(
                i["CustomerIpAddress"] for i in item.get("Instances", []) if "CustomerIpAddress" in i
            )
    return ()


def plan_node(params: dict, resource_config: dict, address: str) -> NodePlan:
    """This node's role from the group its address belongs to, and everything it mounts and pulls."""
    controller_group = _require(params, "controller_group")
    login_group = params.get("login_group")
    worker_groups = [g.get("instance_group_name") for g in params.get("worker_groups", [])]
    mine = None
    for item in resource_config.get("InstanceGroups", []):
        if any(i.get("CustomerIpAddress") == address for i in item.get("Instances", [])):
            mine = item.get("Name")
    if mine is None:
        raise PlanError(f"resource_config.json: no instance has address {address}")
    if mine == controller_group:
        role = CONTROLLER
    elif login_group and mine == login_group:
        role = LOGIN
    elif mine in worker_groups:
        role = WORKER
    else:
        raise PlanError(
            f"instance group {mine!r} is none of controller_group, login_group or worker_groups "
            "in llmft_parameters.json"
        )
    controllers = group_addresses(resource_config, controller_group)
    if not controllers:
        raise PlanError(f"resource_config.json: controller group {controller_group!r} has no instance")
    image_uri = _require(params, "llmft_image_uri")
    image_ref, registry, region = enroot_image_ref(image_uri)
    return NodePlan(
        role=role,
        group=mine,
        address=address,
        controller_addresses=controllers,
        fsx_dns_name=_require(params, "fsx_dns_name"),
        fsx_mount_name=_require(params, "fsx_mountname"),
        mount_point=params.get("llmft_mount_point", "/fsx"),
        image_uri=image_uri,
        image_ref=image_ref,
        registry=registry,
        region=region,
    )


def fstab_line(plan: NodePlan) -> str:
    # _netdev waits for the network at boot; flock gives jobs POSIX locks across nodes.
    return (
        f"{plan.fsx_dns_name}@tcp:/{plan.fsx_mount_name} {plan.mount_point} lustre "
        "defaults,noatime,flock,_netdev 0 0\n"
    )


def enroot_conf(local_dir: str, mount_point: str) -> str:
    """Container layers on the node's local disk; the image cache shared on FSx."""
    return (
        f"ENROOT_RUNTIME_PATH {local_dir}/enroot/runtime/user-$(id -u)\n"
        f"ENROOT_DATA_PATH {local_dir}/enroot/data/user-$(id -u)\n"
        f"ENROOT_TEMP_PATH {local_dir}/enroot/tmp\n"
        f"ENROOT_CACHE_PATH {mount_point}/llmft/enroot-cache\n"
        "ENROOT_CONFIG_PATH /etc/enroot/llmft\n"
        "ENROOT_SQUASH_OPTIONS -comp lz4 -noD\n"
        "ENROOT_MOUNT_HOME no\n"
        "ENROOT_RESTRICT_DEV yes\n"
        "ENROOT_ROOTFS_WRITABLE yes\n"
    )


def enroot_credentials(plan: NodePlan) -> str:
    # enroot runs the $(...) each time it pulls, so the 12-hour ECR token never goes stale.
    return (
        f"machine {plan.registry} login AWS password $(aws ecr get-login-password --region {plan.region})\n"
    )


def pyxis_conf(plugin_path: str) -> str:
    # container_scope=job: a container's writable layer is dropped when the job ends.
    return f"required {plugin_path} runtime_path=/run/pyxis container_scope=job sbatch_support=1\n"


def _active_lines(text: str) -> list[str]:
    return [line.split("#", 1)[0].strip() for line in text.splitlines() if line.split("#", 1)[0].strip()]


def plugstack_files(root: Path, plugstack: str) -> list[str]:
    """plugstack.conf and every file its `include` lines name (globs), as paths on the node."""
    found = [plugstack]
    main_file = root / plugstack.lstrip("/")
    if not main_file.is_file():
        return found
    for line in _active_lines(main_file.read_text()):
        words = line.split()
        if words[0].lower() == "include" and len(words) > 1:
            pattern = words[1] if words[1].startswith("/") else f"{Path(plugstack).parent}/{words[1]}"
            found += sorted("/" + str(p.relative_to(root)) for p in root.glob(pattern.lstrip("/")))
    return found


def pyxis_loaded_by(root: Path, plugstack: str, ours: str) -> str | None:
    """The plugin stack file, other than ours, that already loads pyxis on this node (None: none does).

    Images differ: some load pyxis already, and a second `required ... spank_pyxis.so` would load it twice.
    """
    for path in plugstack_files(root, plugstack):
        node_file = root / path.lstrip("/")
        if path == ours or not node_file.is_file():
            continue
        for line in _active_lines(node_file.read_text()):
            words = line.split()
            if (
                words[0] in ("required", "optional")
                and len(words) > 1
                and words[1].endswith("spank_pyxis.so")
            ):
                return path
    return None


def docker_daemon_json(existing: str | None, data_root: str) -> str:
    """Docker's daemon.json with our data-root, every other setting the image has kept."""
    settings = {}
    if existing is not None and existing.strip():
        try:
            settings = json.loads(existing)
        except json.JSONDecodeError as err:
            raise PlanError(
                f"/etc/docker/daemon.json is not valid JSON: {err.msg} at line {err.lineno}"
            ) from None
        if not isinstance(settings, dict):
            raise PlanError("/etc/docker/daemon.json is not a JSON object")
    return json.dumps({**settings, "data-root": data_root}, indent=2, sort_keys=True) + "\n"


def cluster_env(plan: NodePlan) -> str:
    """What the sbatch scripts read from FSx: the image to run and where things live."""
    return (
        f"LLMFT_IMAGE_URI={shlex.quote(plan.image_uri)}\n"
        f"LLMFT_IMAGE={shlex.quote(plan.image_ref)}\n"
        f"LLMFT_FSX={shlex.quote(plan.mount_point)}\n"
    )


def logrotate_conf(log_dir: str) -> str:
    return (
        f"{log_dir}/*.log /var/log/slurm/*.log {{\n"
        "    weekly\n    rotate 8\n    compress\n    delaycompress\n    missingok\n    notifempty\n"
        "    copytruncate\n}\n"
    )


def own_address() -> str:
    """The address other nodes reach this one at (no packet is sent by a UDP connect)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect(("10.254.254.254", 1))
        return sock.getsockname()[0]


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise PlanError(f"{path} does not exist") from None
    except json.JSONDecodeError as err:
        raise PlanError(f"{path} is not valid JSON: {err.msg} at line {err.lineno}") from None


RENDERERS = {
    "fstab": lambda plan, args: fstab_line(plan),
    "enroot-conf": lambda plan, args: enroot_conf(args.local_dir, plan.mount_point),
    "enroot-credentials": lambda plan, args: enroot_credentials(plan),
    "pyxis-conf": lambda plan, args: pyxis_conf(args.plugin),
    "cluster-env": lambda plan, args: cluster_env(plan),
    "logrotate": lambda plan, args: logrotate_conf(args.log_dir),
}


def _node_file_commands(argv: list[str]) -> int:
    """Commands about this node's own files, which need no plan: pyxis-loaded, docker-daemon-json."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("what", choices=["pyxis-loaded", "docker-daemon-json"])
    parser.add_argument("--root", type=Path, default=Path("/"))
    parser.add_argument("--plugstack", default="/opt/slurm/etc/plugstack.conf")
    parser.add_argument("--ours", default="/opt/slurm/etc/plugstack.conf.d/pyxis.conf")
    parser.add_argument("--existing", type=Path, default=None)
    parser.add_argument("--data-root", default="/opt/sagemaker/docker")
    args = parser.parse_args(argv)
    if args.what == "pyxis-loaded":
        loaded_by = pyxis_loaded_by(args.root, args.plugstack, args.ours)
        if loaded_by is None:
            return 1
        print(loaded_by)
        return 0
    existing = args.existing.read_text() if args.existing and args.existing.is_file() else None
    try:
        sys.stdout.write(docker_daemon_json(existing, args.data_root))
    except PlanError as err:
        print(f"llmft lifecycle: {err}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("pyxis-loaded", "docker-daemon-json"):
        return _node_file_commands(argv)
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("what", choices=["plan", *RENDERERS])
    parser.add_argument("--params", type=Path, required=True)
    parser.add_argument("--resource-config", type=Path, required=True)
    parser.add_argument("--address", default=None)
    parser.add_argument("--local-dir", default="/opt/sagemaker")
    parser.add_argument("--plugin", default="")
    parser.add_argument("--log-dir", default="/var/log/llmft")
    args = parser.parse_args(argv)
    try:
        plan = plan_node(
            _read_json(args.params), _read_json(args.resource_config), args.address or own_address()
        )
    except PlanError as err:
        print(f"llmft lifecycle: {err}", file=sys.stderr)
        return 2
    sys.stdout.write(plan.shell() if args.what == "plan" else RENDERERS[args.what](plan, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
