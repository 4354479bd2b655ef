"""llmft.training: defaults and one clear error per bad value."""

import pytest

from project_config import ConfigError, load_config
from tests.conftest import project_context


def test_defaults_match_cdk_json():
    training = load_config(project_context()).training
    assert training.dlc_registry_account == "763104351884"
    assert training.image_keep_count == 10
    assert "ml.g5.2xlarge" in training.allowed_instance_types
    assert training.default_max_runtime_hours <= training.max_runtime_hours
    assert training.hf_token_secret_name is None


BAD_VALUES = [
    ({"image_keep_count": 0}, "llmft.training.image_keep_count", "integer from 1 to 1000"),
    ({"dlc_registry_account": "7631"}, "llmft.training.dlc_registry_account", "12-digit account"),
    ({"build_timeout_minutes": 90}, "llmft.training.build_timeout_minutes", "integer from 10 to 55"),
    ({"allowed_instance_types": []}, "llmft.training.allowed_instance_types", "at least one"),
    ({"allowed_instance_types": ["g5.2xlarge"]}, "llmft.training.allowed_instance_types", "ml.g5.2xlarge"),
    ({"allowed_instance_types": "ml.g5.2xlarge"}, "llmft.training.allowed_instance_types", "list of strings"),
    ({"max_instance_count": 0}, "llmft.training.max_instance_count", "integer from 1 to 64"),
    ({"max_runtime_hours": 700}, "llmft.training.max_runtime_hours", "integer from 1 to 672"),
    (
        {"max_runtime_hours": 10, "default_max_runtime_hours": 24},
        "llmft.training.default_max_runtime_hours",
        "integer from 1 to 10",
    ),
    ({"spot_extra_wait_hours": 0}, "llmft.training.spot_extra_wait_hours", "integer from 1 to 168"),
    ({"volume_size_gb": 10}, "llmft.training.volume_size_gb", "integer from 30 to 16384"),
    ({"hf_token_secret_name": "my token"}, "llmft.training.hf_token_secret_name", "Secrets Manager"),
    ({"hf_token_kms_key_arn": "alias/hf"}, "llmft.training.hf_token_kms_key_arn", "KMS key ARN"),
    (
        {"hf_token_kms_key_arn": "arn:aws:kms:us-east-1:123456789012:key/mrk-" + "0" * 32},
        "llmft.training.hf_token_kms_key_arn",
        "set llmft.training.hf_token_secret_name too",
    ),
    ({"notification_email": "nobody"}, "llmft.training.notification_email", "e-mail address"),
    ({"log_retention_days": 2}, "llmft.training.log_retention_days", "one of: 1, 3"),
    ({"instance_types": []}, "llmft.training.instance_types", "unknown key"),
]


@pytest.mark.parametrize(("overrides", "key", "rule"), BAD_VALUES, ids=[c[1] + str(c[0]) for c in BAD_VALUES])
def test_a_bad_training_value_names_its_key_value_and_rule(overrides, key, rule):
    with pytest.raises(ConfigError) as error:
        load_config(project_context({"training": overrides}))
    message = str(error.value)
    assert message.startswith(f"cdk.json context {key} = "), message
    assert rule in message, message
