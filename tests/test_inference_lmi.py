"""LMI image per region (against the sagemaker SDK's own lookup) and the container environment."""

import pytest

from inference.lmi import (
    ASYNC_ENTRYPOINT,
    lmi_environment,
    lmi_images,
    model_source,
    supported_lmi_versions,
)
from project_config.instance_types import has_instance_storage


@pytest.fixture(scope="module")
def sdk_retrieve():
    # Imported here: the SDK takes seconds to import, and only this comparison needs it.
    from sagemaker.core import image_uris

    return image_uris.retrieve


@pytest.mark.parametrize("version", ["0.38.0", "0.34.0"])
@pytest.mark.parametrize("region", ["us-east-1", "eu-west-1", "ap-southeast-3", "cn-north-1", "il-central-1"])
def test_image_uri_matches_the_sdk_retrieve(sdk_retrieve, region, version):
    expected = sdk_retrieve("djl-lmi", region, version=version)
    assert lmi_images(version)[region].uri == expected, f"LMI {version} in {region} differs from the SDK"


def test_every_region_of_the_release_has_an_image():
    images = lmi_images("0.38.0")
    assert len(images) >= 40, f"expected the SDK's ~44 regions, got {len(images)}"
    assert all(image.repository == "djl-inference" for image in images.values())
    assert images["us-east-1"].tag == "0.38.0-lmi29.0.0-cu130"


def test_only_versions_serving_adapters_in_async_mode_are_offered():
    versions = supported_lmi_versions()
    assert versions[0] == "0.38.0" and "0.34.0" in versions, versions
    assert "0.33.0" not in versions, "LMI before v16 cannot serve LoRA adapters in async mode"
    with pytest.raises(ValueError, match="0.30.0"):
        lmi_images("0.30.0")


@pytest.mark.parametrize(
    ("instance_type", "expected"),
    [
        ("ml.g5.2xlarge", True),
        ("ml.g6e.12xlarge", True),
        ("ml.p4d.24xlarge", True),
        ("ml.m5d.large", True),
        ("ml.p3.2xlarge", False),
        ("ml.inf2.xlarge", False),
        ("ml.m5.large", False),
    ],
)
def test_instance_storage_decides_whether_a_volume_key_is_allowed(instance_type, expected):
    assert has_instance_storage(instance_type) is expected, instance_type


def test_model_source_is_an_s3_folder_or_a_model_id():
    assert model_source("models/llama/", "bucket-1") == "s3://bucket-1/models/llama/"
    assert model_source("meta-llama/Llama-3.1-8B-Instruct", "bucket-1") == "meta-llama/Llama-3.1-8B-Instruct"


def test_environment_runs_vllm_async_with_lora_enabled():
    env = lmi_environment(
        model_id="s3://b/models/m/",
        tensor_parallel_degree=2,
        max_model_len=4096,
        max_loras=4,
        max_cpu_loras=16,
        max_lora_rank=64,
        model_loading_timeout=1800,
    )
    assert env["OPTION_ENTRYPOINT"] == ASYNC_ENTRYPOINT and env["OPTION_ASYNC_MODE"] == "true"
    assert env["OPTION_ROLLING_BATCH"] == "disable", "async mode requires rolling batch off"
    assert env["OPTION_ENABLE_LORA"] == "true"
    assert (env["OPTION_MAX_LORAS"], env["OPTION_MAX_CPU_LORAS"], env["OPTION_MAX_LORA_RANK"]) == (
        "4",
        "16",
        "64",
    )
    assert env["TENSOR_PARALLEL_DEGREE"] == "2" and env["OPTION_MAX_MODEL_LEN"] == "4096"
    assert env["OPTION_MODEL_LOADING_TIMEOUT"] == "1800"
    assert all(isinstance(value, str) for value in env.values()), "container environment values are strings"
