"""Facts about SageMaker instance types: which exist for each use (botocore's catalogues), which carry
NVIDIA GPUs, how many and how much host memory, and which have local storage."""

import re
from dataclasses import dataclass
from functools import cache

# Each use of an instance type in this project, and the botocore shape that lists the types SageMaker
# accepts there (the enum of the API parameter the construct fills in).
USES = {
    "training": "TrainingInstanceType",  # CreateTrainingJob ResourceConfig.InstanceType
    "endpoint": "ProductionVariantInstanceType",  # CreateEndpointConfig ProductionVariants[].InstanceType
    "cluster": "ClusterInstanceType",  # CreateCluster InstanceGroups[].InstanceType (HyperPod)
    "notebook": "InstanceType",  # CreateNotebookInstance InstanceType
}

# Families with NVIDIA GPUs, and every other family of the catalogues above (CPU only, or AWS Inferentia,
# Trainium and Habana Gaudi accelerators, which CUDA, LLaMA-Factory's kernels and vLLM's GPU build cannot
# use). tests/test_instance_types.py fails when botocore lists a family in neither set.
GPU_FAMILIES = frozenset(
    "g4dn g5 g6 g6e g7 g7e gr6 p2 p3 p3dn p4d p4de p5 p5e p5en p6-b200 p6-b300 p6e-gb200".split()
)
NON_GPU_FAMILIES = frozenset(
    """
    c4 c5 c5d c5n c6a c6g c6gd c6gn c6i c6id c6in c7g c7i c7i-flex c8a c8g c8i c8i-flex dl1 i3en inf1 inf2
    m4 m5 m5d m6a m6g m6gd m6i m6id m7g m7i m7i-flex m8a m8g m8i m8i-flex r5 r5d r6g r6gd r6i r6id r7gd r7i
    r8g r8i r8i-flex t2 t3 trn1 trn1n trn2
    """.split()
)


@dataclass(frozen=True)
class GpuInstance:
    gpus: int | None
    memory_gib: int | None


# GPUs and host memory per GPU instance type of the catalogues, from the EC2 instance type specifications
# (docs.aws.amazon.com/ec2/latest/instancetypes/ac.html, the AWS Batch guide's "Run GPU jobs" table);
# SageMaker's ml.* types are the same machines. None: not stated in those pages as of 2026-07, so not
# checked. tests/test_instance_types.py holds this table to botocore's catalogues both ways.
GPU_INSTANCES: dict[str, GpuInstance] = {
    **{f"ml.g4dn.{s}": GpuInstance(1, m) for s, m in (("xlarge", 16), ("2xlarge", 32), ("4xlarge", 64))},
    **{f"ml.g4dn.{s}": GpuInstance(1, m) for s, m in (("8xlarge", 128), ("16xlarge", 256))},
    "ml.g4dn.12xlarge": GpuInstance(4, 192),
    **{
        f"ml.{family}.{size}": GpuInstance(gpus, memory)
        for family in ("g5", "g6")
        for size, gpus, memory in (
            ("xlarge", 1, 16),
            ("2xlarge", 1, 32),
            ("4xlarge", 1, 64),
            ("8xlarge", 1, 128),
            ("16xlarge", 1, 256),
            ("12xlarge", 4, 192),
            ("24xlarge", 4, 384),
            ("48xlarge", 8, 768),
        )
    },
    **{
        f"ml.g6e.{size}": GpuInstance(gpus, memory)
        for size, gpus, memory in (
            ("xlarge", 1, 32),
            ("2xlarge", 1, 64),
            ("4xlarge", 1, 128),
            ("8xlarge", 1, 256),
            ("16xlarge", 1, 512),
            ("12xlarge", 4, 384),
            ("24xlarge", 4, 768),
            ("48xlarge", 8, 1536),
        )
    },
    **{f"ml.g7.{s}": GpuInstance(None, None) for s in ("2xlarge", "4xlarge", "8xlarge", "12xlarge")},
    **{f"ml.g7.{s}": GpuInstance(None, None) for s in ("24xlarge", "48xlarge")},
    **{f"ml.g7e.{s}": GpuInstance(None, None) for s in ("2xlarge", "4xlarge", "8xlarge", "12xlarge")},
    **{f"ml.g7e.{s}": GpuInstance(None, None) for s in ("24xlarge", "48xlarge")},
    "ml.gr6.4xlarge": GpuInstance(1, 128),
    "ml.gr6.8xlarge": GpuInstance(1, 256),
    "ml.p2.xlarge": GpuInstance(1, 61),
    "ml.p2.8xlarge": GpuInstance(8, 488),
    "ml.p2.16xlarge": GpuInstance(16, 732),
    "ml.p3.2xlarge": GpuInstance(1, 61),
    "ml.p3.8xlarge": GpuInstance(4, 244),
    "ml.p3.16xlarge": GpuInstance(8, 488),
    "ml.p3dn.24xlarge": GpuInstance(8, 768),
    "ml.p4d.24xlarge": GpuInstance(8, 1152),
    "ml.p4de.24xlarge": GpuInstance(8, 1152),
    "ml.p5.4xlarge": GpuInstance(1, 256),
    "ml.p5.48xlarge": GpuInstance(8, 2048),
    "ml.p5e.48xlarge": GpuInstance(8, 2048),
    "ml.p5en.48xlarge": GpuInstance(8, 2048),
    "ml.p6-b200.48xlarge": GpuInstance(8, 2048),
    "ml.p6-b300.48xlarge": GpuInstance(None, None),
    "ml.p6e-gb200.36xlarge": GpuInstance(None, None),
}

# GPUs per instance where the table knows them (the inference config's tensor parallelism bound).
GPUS_PER_INSTANCE = {name: facts.gpus for name, facts in GPU_INSTANCES.items() if facts.gpus is not None}

# Families whose instances carry local NVMe storage beyond the "d" in names such as m5d, g4dn, p4d.
# SageMaker refuses a KMS key for those volumes (training VolumeKmsKeyId, endpoint config KmsKeyId):
# they are encrypted by the instance's hardware.
INSTANCE_STORAGE_FAMILIES = frozenset(
    {"g4ad", "g5", "g6", "g6e", "gr6", "p5", "p5e", "p5en", "p6", "trn1", "trn1n", "trn2"}
)
# A family with a "d" among its trailing letters: m5d, g4dn, p3dn, p4d, p4de, c5ad.
_D_FAMILY = re.compile(r"^[a-z]+[0-9]+[a-z]*d[a-z]*$")


def family(instance_type: str) -> str:
    """ml.g5.2xlarge -> g5; ml.p6-b200.48xlarge -> p6-b200."""
    return instance_type.split(".")[1]


def has_instance_storage(instance_type: str) -> bool:
    """ml.g5.2xlarge -> True: the type has local NVMe storage, so no KMS key may be given for it."""
    name = family(instance_type).split("-")[0]
    return name in INSTANCE_STORAGE_FAMILIES or bool(_D_FAMILY.match(name))


def has_gpu(instance_type: str) -> bool:
    return family(instance_type) in GPU_FAMILIES


def memory_gib(instance_type: str) -> int | None:
    """Host memory of the type in GiB, where the table knows it."""
    facts = GPU_INSTANCES.get(instance_type)
    return facts.memory_gib if facts else None


@cache
def _sagemaker_model():
    """botocore's SageMaker service model (offline), loaded once for every use's catalogue."""
    import botocore.session

    return botocore.session.get_session().get_service_model("sagemaker")


@cache
def catalogue(use: str) -> tuple[str, ...]:
    """The instance types SageMaker accepts for `use`, from botocore's service model (offline)."""
    return tuple(_sagemaker_model().shape_for(USES[use]).enum)
