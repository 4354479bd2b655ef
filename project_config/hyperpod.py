"""HyperPod settings: the Slurm cluster's instance groups, its zone and its FSx for Lustre file system."""

import re
from dataclasses import dataclass, field
from typing import Any

from project_config import checks

# HyperPod's pattern for instance group names (CreateCluster API).
GROUP_NAME_PATTERN = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
# Slurm partition names as ClusterSlurmConfig accepts them; kept short for `sinfo`.
PARTITION_PATTERN = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,31}$")
# Top-level data bucket prefixes, e.g. "datasets/"; one path segment, no leading slash.
PREFIX_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}/$")
# FSx for Lustre PERSISTENT_2 throughput tiers (MB/s per TiB of storage).
THROUGHPUT_PER_TIB = (125, 250, 500, 1000)
# A file system holds at most 8 data repository associations.
MAX_ASSOCIATIONS = 8
ON_DELETE = ("retain", "delete")
RESERVED_GROUP_NAMES = ("controller", "login")


@dataclass(frozen=True)
class InstanceGroupConfig:
    name: str
    instance_type: str
    count: int
    ebs_volume_gib: int
    partition: str | None = None


@dataclass(frozen=True)
class FsxConfig:
    storage_gib: int = 1200
    throughput_per_tib: int = 250
    # Read from S3 into the file system (lazily, on first access), never written back.
    import_prefixes: tuple[str, ...] = ("datasets/", "models/")
    # Imported and exported: what jobs write there lands in the bucket under the same prefix.
    export_prefixes: tuple[str, ...] = ("hyperpod/",)
    on_delete: str = "retain"


DEFAULT_CONTROLLER = InstanceGroupConfig("controller", "ml.c5.xlarge", 1, 100)
DEFAULT_WORKERS = (InstanceGroupConfig("workers", "ml.g5.12xlarge", 2, 500, "gpu"),)


@dataclass(frozen=True)
class HyperPodConfig:
    enabled: bool = False
    # An index into the Network stack's two zones (works env-agnostic) or a pinned zone's name.
    availability_zone: int | str = 0
    controller: InstanceGroupConfig = DEFAULT_CONTROLLER
    login: InstanceGroupConfig | None = None
    workers: tuple[InstanceGroupConfig, ...] = DEFAULT_WORKERS
    fsx: FsxConfig = field(default_factory=FsxConfig)


def _group(
    raw: Any, key: str, *, name: str | None, default: InstanceGroupConfig, worker: bool
) -> InstanceGroupConfig:
    # Slurm has exactly one controller here; HyperPod replaces it when it fails.
    counted = worker or name == "login"
    allowed = ["instance_type", "ebs_volume_gib", *(["count"] if counted else [])]
    if worker:
        allowed += ["name", "partition"]
    values = checks.section(raw, key, allowed)
    group_name, partition = name, None
    if worker:
        group_name = checks.string(
            f"{key}.name",
            values.get("name"),
            pattern=GROUP_NAME_PATTERN,
            rule="expected a group name of letters, digits and hyphens (1-63), e.g. workers",
        )
        if group_name in RESERVED_GROUP_NAMES:
            raise checks.ConfigError(
                f"{key}.name", group_name, f"expected a name other than {', '.join(RESERVED_GROUP_NAMES)}"
            )
        partition = checks.string(
            f"{key}.partition",
            values.get("partition", group_name),
            pattern=PARTITION_PATTERN,
            rule="expected a Slurm partition name of letters, digits and hyphens (1-32)",
        )
    return InstanceGroupConfig(
        name=group_name,
        # Worker groups run the training image's jobs; the controller and login nodes only run Slurm.
        instance_type=checks.instance_type(
            f"{key}.instance_type",
            values.get("instance_type", default.instance_type),
            use="cluster",
            gpu=worker,
        ),
        count=(
            checks.integer(f"{key}.count", values.get("count", default.count), minimum=1, maximum=256)
            if counted
            else 1
        ),
        ebs_volume_gib=checks.integer(
            f"{key}.ebs_volume_gib",
            values.get("ebs_volume_gib", default.ebs_volume_gib),
            minimum=1,
            maximum=16384,
        ),
        partition=partition,
    )


def _storage(key: str, value: Any) -> int:
    rule = "expected 1200 or a multiple of 2400 GiB (FSx for Lustre PERSISTENT_2 sizes)"
    if isinstance(value, bool) or not isinstance(value, int):
        raise checks.ConfigError(key, value, rule)
    if value != 1200 and (value < 2400 or value % 2400):
        raise checks.ConfigError(key, value, rule)
    return value


def _prefixes(key: str, value: Any) -> tuple[str, ...]:
    prefixes = checks.string_list(key, value)
    for prefix in prefixes:
        if not PREFIX_PATTERN.fullmatch(prefix):
            raise checks.ConfigError(
                key, prefix, "expected a top-level bucket prefix ending in '/', e.g. datasets/"
            )
    return prefixes


def parse_fsx(raw: Any, key: str) -> FsxConfig:
    default = FsxConfig()
    values = checks.section(raw, key, FsxConfig.__dataclass_fields__)
    imports = _prefixes(
        f"{key}.import_prefixes", values.get("import_prefixes", list(default.import_prefixes))
    )
    exports = _prefixes(
        f"{key}.export_prefixes", values.get("export_prefixes", list(default.export_prefixes))
    )
    both = sorted(set(imports) & set(exports))
    if both:
        raise checks.ConfigError(
            f"{key}.export_prefixes",
            both,
            "expected each prefix in import_prefixes or export_prefixes, not both",
        )
    if not 1 <= len(imports) + len(exports) <= MAX_ASSOCIATIONS:
        raise checks.ConfigError(
            f"{key}.import_prefixes/export_prefixes",
            [*imports, *exports],
            f"expected 1 to {MAX_ASSOCIATIONS} prefixes in all (one data repository association each)",
        )
    return FsxConfig(
        storage_gib=_storage(f"{key}.storage_gib", values.get("storage_gib", default.storage_gib)),
        throughput_per_tib=checks.choice(
            f"{key}.throughput_per_tib",
            values.get("throughput_per_tib", default.throughput_per_tib),
            THROUGHPUT_PER_TIB,
        ),
        import_prefixes=imports,
        export_prefixes=exports,
        on_delete=checks.choice(f"{key}.on_delete", values.get("on_delete", default.on_delete), ON_DELETE),
    )


def _zone(key: str, value: Any, zones: tuple[str, ...]) -> int | str:
    if isinstance(value, int) and not isinstance(value, bool):
        return checks.integer(key, value, minimum=0, maximum=1)
    if isinstance(value, str) and zones:
        return checks.choice(key, value, zones)
    if isinstance(value, str):
        raise checks.ConfigError(
            key,
            value,
            "a zone name needs a pinned environment (account, region, network.availability_zones); "
            "env-agnostic, give the zone's index 0 or 1",
        )
    raise checks.ConfigError(key, value, "expected 0, 1 or one of network.availability_zones")


def parse_hyperpod(
    raw: Any, key: str = "llmft.hyperpod", *, network_zones: tuple[str, ...] = ()
) -> HyperPodConfig:
    default = HyperPodConfig()
    values = checks.section(raw, key, HyperPodConfig.__dataclass_fields__)
    raw_workers = values.get("workers")
    if raw_workers is None:
        workers = default.workers
    else:
        if not isinstance(raw_workers, list) or not raw_workers:
            raise checks.ConfigError(f"{key}.workers", raw_workers, "expected a non-empty list of groups")
        workers = tuple(
            _group(item, f"{key}.workers[{index}]", name=None, default=DEFAULT_WORKERS[0], worker=True)
            for index, item in enumerate(raw_workers)
        )
    names = [group.name for group in workers]
    if len(set(names)) != len(names):
        raise checks.ConfigError(f"{key}.workers", names, "expected distinct group names")
    raw_login = values.get("login")
    login = (
        None
        if raw_login is None
        else _group(
            raw_login,
            f"{key}.login",
            name="login",
            default=InstanceGroupConfig("login", "ml.m5.xlarge", 1, 100),
            worker=False,
        )
    )
    return HyperPodConfig(
        enabled=checks.boolean(f"{key}.enabled", values.get("enabled", default.enabled)),
        availability_zone=_zone(
            f"{key}.availability_zone",
            values.get("availability_zone", default.availability_zone),
            network_zones,
        ),
        controller=_group(
            values.get("controller"),
            f"{key}.controller",
            name="controller",
            default=DEFAULT_CONTROLLER,
            worker=False,
        ),
        login=login,
        workers=workers,
        fsx=parse_fsx(values.get("fsx"), f"{key}.fsx"),
    )
