"""cdk.json context -> ProjectConfig: defaults, and one clear error per bad value."""

import pytest

from project_config import ConfigError, load_config
from tests.conftest import project_context


def test_cdk_json_defaults_load_into_a_frozen_config():
    config = load_config(project_context())
    assert config.env_agnostic
    assert config.network.nat_gateways == 1
    assert config.network.vpc_cidr == "10.20.0.0/16"
    assert config.network.flow_log_retention_days == 90
    assert "sagemaker.api" in config.network.interface_endpoints
    assert config.data.noncurrent_version_expiration_days == 30
    with pytest.raises(AttributeError):
        config.network.nat_gateways = 3  # type: ignore[misc]


def test_a_token_secret_without_nat_is_fine_with_a_secrets_manager_endpoint():
    endpoints = ["sagemaker.api", "sagemaker.runtime", "ecr.api", "ecr.dkr", "logs", "sts", "secretsmanager"]
    config = load_config(
        project_context(
            {
                "network": {"nat_gateways": 0, "interface_endpoints": endpoints},
                "training": {"hf_token_secret_name": "hf-token"},
            }
        )
    )
    assert config.training.hf_token_secret_name == "hf-token"


def test_missing_context_uses_the_documented_defaults():
    assert load_config(None) == load_config({})


def test_fixed_environment_with_preseeded_zones_is_accepted():
    config = load_config(
        project_context(
            {
                "account": "123456789012",
                "region": "eu-west-1",
                "network": {"availability_zones": ["eu-west-1a", "eu-west-1b"]},
            }
        )
    )
    assert not config.env_agnostic
    assert config.network.availability_zones == ("eu-west-1a", "eu-west-1b")


BAD_VALUES = [
    ({"network": {"nat_gateways": 3}}, "llmft.network.nat_gateways", "integer from 0 to 2"),
    ({"network": {"nat_gateways": "1"}}, "llmft.network.nat_gateways", "integer from 0 to 2"),
    ({"network": {"nat_gateways": True}}, "llmft.network.nat_gateways", "integer from 0 to 2"),
    ({"network": {"vpc_cidr": "10.20.0.0/33"}}, "llmft.network.vpc_cidr", "IPv4 CIDR block"),
    ({"network": {"vpc_cidr": "10.20.0.1/16"}}, "llmft.network.vpc_cidr", "host bits set"),
    ({"network": {"vpc_cidr": "10.0.0.0/8"}}, "llmft.network.vpc_cidr", "from /16 to /22"),
    ({"network": {"flow_log_retention_days": 45}}, "llmft.network.flow_log_retention_days", "one of: 1, 3"),
    (
        {"network": {"interface_endpoints": ["sagemaker.api", "s3"]}},
        "llmft.network.interface_endpoints",
        "expected entries from",
    ),
    ({"network": {"interface_endpoints": ["sts", "sts"]}}, "llmft.network.interface_endpoints", "repeated"),
    ({"network": {"subnets": 4}}, "llmft.network.subnets", "unknown key; allowed keys: availability_zones"),
    ({"netwrok": {}}, "llmft.netwrok", "unknown key"),
    ({"network": "private"}, "llmft.network", "expected a JSON object"),
    ({"account": "12345"}, "llmft.account", "12 digits"),
    ({"account": "123456789012"}, "llmft.account/llmft.region", "set both"),
    (
        {"account": "123456789012", "region": "eu-west-1"},
        "llmft.network.availability_zones",
        "list the 2 zones of eu-west-1",
    ),
    (
        {
            "account": "123456789012",
            "region": "eu-west-1",
            "network": {"availability_zones": ["us-east-1a", "us-east-1b"]},
        },
        "llmft.network.availability_zones",
        "zones of region eu-west-1",
    ),
    ({"network": {"availability_zones": ["eu-west-1a"]}}, "llmft.network.availability_zones", "exactly 2"),
    (
        {"network": {"availability_zones": ["eu-west-1a", "eu-west-1b"]}},
        "llmft.network.availability_zones",
        "zones need a fixed environment",
    ),
    (
        {"network": {"nat_gateways": 0}, "training": {"hf_token_secret_name": "hf-token"}},
        "llmft.training.hf_token_secret_name",
        'add "secretsmanager" to llmft.network.interface_endpoints',
    ),
    ({"region": "Europe", "account": "123456789012"}, "llmft.region", "region such as eu-west-1"),
    ({"stack_prefix": "my stacks"}, "llmft.stack_prefix", "letters or digits"),
    (
        {"data": {"noncurrent_version_expiration_days": 0}},
        "llmft.data.noncurrent_version_expiration_days",
        "integer from 1 to 3650",
    ),
]


@pytest.mark.parametrize(("overrides", "key", "rule"), BAD_VALUES, ids=[case[1] for case in BAD_VALUES])
def test_a_bad_value_names_its_key_value_and_rule(overrides, key, rule):
    with pytest.raises(ConfigError) as error:
        load_config(project_context(overrides))
    message = str(error.value)
    assert message.startswith(f"cdk.json context {key} = "), message
    assert rule in message, message


def test_the_bad_value_itself_is_quoted():
    with pytest.raises(ConfigError, match=r"nat_gateways = 7 is invalid"):
        load_config(project_context({"network": {"nat_gateways": 7}}))


def test_context_given_on_the_command_line_as_json_text_is_parsed():
    config = load_config('{"network": {"nat_gateways": 0}}')
    assert config.network.nat_gateways == 0 and config.network.isolated


def test_command_line_context_that_is_not_json_names_the_key():
    expected = r"cdk.json context llmft = 'nat=0' is invalid: expected a JSON object"
    with pytest.raises(ConfigError, match=expected):
        load_config("nat=0")
