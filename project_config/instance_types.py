"""Facts about SageMaker instance types that more than one stack depends on."""

import re

# Families whose instances carry local NVMe storage beyond the "d" in names such as m5d, g4dn, p4d.
# SageMaker refuses a KMS key for those volumes (training VolumeKmsKeyId, endpoint config KmsKeyId):
# they are encrypted by the instance's hardware.
INSTANCE_STORAGE_FAMILIES = frozenset(
    {"g4ad", "g5", "g6", "g6e", "gr6", "p5", "p5e", "p5en", "p6", "trn1", "trn1n", "trn2"}
)
# A family with a "d" among its trailing letters: m5d, g4dn, p3dn, p4d, p4de, c5ad.
_D_FAMILY = re.compile(r"^[a-z]+[0-9]+[a-z]*d[a-z]*$")


def has_instance_storage(instance_type: str) -> bool:
    """ml.g5.2xlarge -> True: the type has local NVMe storage, so no KMS key may be given for it."""
    family = instance_type.split(".")[1].split("-")[0]
    return family in INSTANCE_STORAGE_FAMILIES or bool(_D_FAMILY.match(family))


# GPUs per instance of the GPU types the project's defaults and docs use (SageMaker's instance pages).
GPUS_PER_INSTANCE = {
    **{f"ml.g5.{size}": 1 for size in ("xlarge", "2xlarge", "4xlarge", "8xlarge", "16xlarge")},
    "ml.g5.12xlarge": 4,
    "ml.g5.24xlarge": 4,
    "ml.g5.48xlarge": 8,
    **{f"ml.g6.{size}": 1 for size in ("xlarge", "2xlarge", "4xlarge", "8xlarge", "16xlarge")},
    "ml.g6.12xlarge": 4,
    "ml.g6.24xlarge": 4,
    "ml.g6.48xlarge": 8,
    **{f"ml.g6e.{size}": 1 for size in ("xlarge", "2xlarge", "4xlarge", "8xlarge", "16xlarge")},
    "ml.g6e.12xlarge": 4,
    "ml.g6e.24xlarge": 4,
    "ml.g6e.48xlarge": 8,
    "ml.p4d.24xlarge": 8,
    "ml.p4de.24xlarge": 8,
    "ml.p5.48xlarge": 8,
    "ml.p5e.48xlarge": 8,
    "ml.p5en.48xlarge": 8,
}
