"""The `inference` section: documented defaults, and one clear error per bad value."""

import pytest

from inference.lmi import supported_lmi_versions
from project_config import ConfigError, load_config
from tests.conftest import project_context


def test_inference_is_off_by_default_with_an_8b_sized_endpoint():
    config = load_config(project_context()).inference
    assert config.enabled is False, "the GPU endpoint must be opt-in: it costs money while it runs"
    assert config.instance_type == "ml.g5.2xlarge"
    assert config.lmi_version == supported_lmi_versions()[0], "default LMI should be the newest the SDK lists"
    assert 900 <= config.startup_health_check_timeout <= 3600, "an 8B model needs 15+ minutes to start"
    assert config.base_model is None, "nothing to serve until a model is named"


def test_a_hugging_face_model_id_and_scale_to_zero_are_accepted():
    config = load_config(
        project_context({"inference": {"base_model": "meta-llama/Llama-3.1-8B-Instruct", "min_copies": 0}})
    ).inference
    assert not config.base_model_in_bucket
    assert config.scales_to_zero


BAD_VALUES = [
    ({"enabled": "yes"}, "llmft.inference.enabled", "true or false"),
    (
        {"instance_type": "g5.2xlarge"},
        "llmft.inference.instance_type",
        "with NVIDIA GPUs such as ml.g5.2xlarge",
    ),
    ({"base_model": "s3://other-bucket/model/"}, "llmft.inference.base_model", "folder of the data bucket"),
    ({"base_model": "models/llama"}, "llmft.inference.base_model", "models/llama-3.1-8b-instruct/"),
    ({"lmi_version": "0.30.0"}, "llmft.inference.lmi_version", "expected one of: 0.38.0"),
    ({"lmi_version": "latest"}, "llmft.inference.lmi_version", "expected one of"),
    ({"max_loras": 0}, "llmft.inference.max_loras", "integer from 1 to 64"),
    ({"max_loras": 8, "max_cpu_loras": 4}, "llmft.inference.max_cpu_loras", "at least max_loras (8)"),
    ({"max_lora_rank": 24}, "llmft.inference.max_lora_rank", "one of: 8, 16, 32, 64"),
    ({"tensor_parallel_degree": 3}, "llmft.inference.tensor_parallel_degree", "one of: 1, 2, 4, 8"),
    ({"tensor_parallel_degree": True}, "llmft.inference.tensor_parallel_degree", "one of: 1, 2, 4, 8"),
    (
        {"tensor_parallel_degree": 8},
        "llmft.inference.tensor_parallel_degree",
        "at most the 1 GPU(s) of llmft.inference.instance_type ml.g5.2xlarge",
    ),
    ({"startup_health_check_timeout": 4000}, "llmft.inference.startup_health_check_timeout", "60 to 3600"),
    ({"model_data_download_timeout": 30}, "llmft.inference.model_data_download_timeout", "60 to 3600"),
    ({"min_copies": -1}, "llmft.inference.min_copies", "integer from 0 to 10"),
    ({"min_copies": 3, "max_copies": 2}, "llmft.inference.max_copies", "at least min_copies (3)"),
    ({"log_retention_days": 10}, "llmft.inference.log_retention_days", "one of: 1, 3"),
    ({"endpoint_name": "x"}, "llmft.inference.endpoint_name", "unknown key; allowed keys: base_model"),
]


@pytest.mark.parametrize(("overrides", "key", "message"), BAD_VALUES)
def test_bad_inference_values_fail_naming_the_key(overrides, key, message):
    with pytest.raises(ConfigError) as raised:
        load_config(project_context({"inference": overrides}))
    assert raised.value.key == key, f"error should name {key}, named {raised.value.key}"
    assert message in str(raised.value), str(raised.value)


def test_tensor_parallelism_fits_a_multi_gpu_instance():
    config = load_config(
        project_context({"inference": {"instance_type": "ml.g5.12xlarge", "tensor_parallel_degree": 4}})
    ).inference
    assert config.tensor_parallel_degree == 4


def test_a_hub_model_without_internet_access_is_refused():
    overrides = {
        "network": {"nat_gateways": 0},
        "inference": {"enabled": True, "base_model": "meta-llama/Llama-3.1-8B-Instruct"},
    }
    with pytest.raises(ConfigError) as raised:
        load_config(project_context(overrides))
    assert raised.value.key == "llmft.inference.base_model"
    assert "network.nat_gateways is 0" in str(raised.value), str(raised.value)
    overrides["inference"]["base_model"] = "models/llama-3.1-8b-instruct/"
    assert load_config(project_context(overrides)).inference.base_model_in_bucket
