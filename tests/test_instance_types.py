"""Instance types per use, held to SageMaker's catalogues in botocore, and the GPU table held to them."""

import pytest

from project_config import ConfigError, load_config
from project_config.instance_types import (
    GPU_FAMILIES,
    GPU_INSTANCES,
    NON_GPU_FAMILIES,
    USES,
    catalogue,
    family,
    has_gpu,
)
from tests.conftest import project_context

EVERY_TYPE = sorted({t for use in USES for t in catalogue(use)})


def test_every_family_of_the_catalogues_is_classified_gpu_or_not():
    families = {family(t) for t in EVERY_TYPE}
    unclassified = sorted(families - GPU_FAMILIES - NON_GPU_FAMILIES)
    assert not unclassified, f"botocore lists families nobody classified: {unclassified}"
    assert not GPU_FAMILIES & NON_GPU_FAMILIES
    assert not (GPU_FAMILIES | NON_GPU_FAMILIES) - families, "a classified family no catalogue lists"


def test_the_gpu_table_lists_exactly_the_gpu_types_of_the_catalogues():
    gpu_types = {t for t in EVERY_TYPE if has_gpu(t)}
    assert set(GPU_INSTANCES) == gpu_types, (
        f"missing from the table: {sorted(gpu_types - set(GPU_INSTANCES))}; "
        f"not in any catalogue: {sorted(set(GPU_INSTANCES) - gpu_types)}"
    )


def test_known_gpu_facts_are_plausible():
    for name, facts in GPU_INSTANCES.items():
        if facts.gpus is not None:
            assert facts.gpus in (1, 2, 4, 8, 16), name
        if facts.memory_gib is not None:
            # Host memory grows with the GPUs: at least 16 GiB and 16 GiB per GPU on every type listed.
            assert facts.memory_gib >= 16 * (facts.gpus or 1), name
    assert GPU_INSTANCES["ml.g5.xlarge"].memory_gib == 16
    assert GPU_INSTANCES["ml.p4d.24xlarge"].gpus == 8


def refusal(overrides: dict) -> str:
    with pytest.raises(ConfigError) as raised:
        load_config(project_context(overrides))
    return str(raised.value)


# (what was measured, cdk.json overrides, key named, words of the refusal)
MEASURED = [
    (
        "a training type SageMaker does not have",
        {"training": {"allowed_instance_types": ["ml.g5.2xlarge", "ml.g5.3xlarge"]}},
        "llmft.training.allowed_instance_types",
        "SageMaker offers no ml.g5.3xlarge for training jobs (did you mean ml.g5.xlarge",
    ),
    (
        "a GPU-less endpoint for LMI",
        {"inference": {"enabled": True, "base_model": "models/m/", "instance_type": "ml.m5.xlarge"}},
        "llmft.inference.instance_type",
        "ml.m5.xlarge has none (GPU families: g4dn, g5",
    ),
    (
        "a 64 GiB memory reservation on a 16 GiB instance",
        {"inference": {"instance_type": "ml.g5.xlarge", "min_memory_mb": 65536}},
        "llmft.inference.min_memory_mb",
        "at most the 16384 MiB (16 GiB) of host memory of llmft.inference.instance_type ml.g5.xlarge",
    ),
    (
        "the endpoint switched on without a model to serve",
        {"inference": {"enabled": True}},
        "llmft.inference.base_model",
        "the endpoint needs a model to serve",
    ),
    (
        "a CPU training type",
        {"training": {"allowed_instance_types": ["ml.m5.xlarge"]}},
        "llmft.training.allowed_instance_types",
        "a SageMaker training instance type with NVIDIA GPUs; ml.m5.xlarge has none",
    ),
    (
        "a GPU type SageMaker offers for training only",
        {"inference": {"instance_type": "ml.p3dn.24xlarge"}},
        "llmft.inference.instance_type",
        "SageMaker offers no ml.p3dn.24xlarge for real-time endpoints",
    ),
    (
        "a notebook without GPUs",
        {"notebook": {"instance_type": "ml.t3.medium"}},
        "llmft.notebook.instance_type",
        "ml.t3.medium has none",
    ),
    (
        "a HyperPod worker group without GPUs",
        {
            "hyperpod": {
                "workers": [{"name": "w", "instance_type": "ml.c5.xlarge", "count": 1, "ebs_volume_gib": 100}]
            }
        },
        "llmft.hyperpod.workers[0].instance_type",
        "a SageMaker HyperPod instance type with NVIDIA GPUs",
    ),
    (
        "a HyperPod controller type HyperPod does not offer",
        {"hyperpod": {"controller": {"instance_type": "ml.t2.medium"}}},
        "llmft.hyperpod.controller.instance_type",
        "SageMaker offers no ml.t2.medium for HyperPod clusters",
    ),
]


@pytest.mark.parametrize(("case", "overrides", "key", "words"), MEASURED, ids=[m[0] for m in MEASURED])
def test_configuration_is_held_to_sagemakers_catalogues(case, overrides, key, words):
    message = refusal(overrides)
    assert message.startswith(f"cdk.json context {key} = "), message
    assert words in message, message


def test_cpu_controller_and_a_reservation_within_memory_are_accepted():
    config = load_config(
        project_context(
            {
                "hyperpod": {"controller": {"instance_type": "ml.m5.xlarge"}},
                "inference": {"instance_type": "ml.g5.xlarge", "min_memory_mb": 16384},
            }
        )
    )
    assert config.hyperpod.controller.instance_type == "ml.m5.xlarge"
    assert config.inference.min_memory_mb == 16384


def test_memory_reservation_is_not_judged_where_the_table_does_not_know_the_memory():
    assert GPU_INSTANCES["ml.g7e.2xlarge"].memory_gib is None
    config = load_config(
        project_context({"inference": {"instance_type": "ml.g7e.2xlarge", "min_memory_mb": 65536}})
    )
    assert config.inference.min_memory_mb == 65536
