"""cdk.json context -> ProjectConfig: defaults, and one clear error per bad value."""

import json
import os
import subprocess
from pathlib import Path

import aws_cdk as cdk
import pytest

import app as cdk_app
from project_config import ConfigError, context_with_override, load_config
from project_config.loader import merged
from tests.conftest import CDK_JSON_CONTEXT, ROOT, project_context


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
        "expected a zone of region eu-west-1",
    ),
    # Measured: a zone letter no region has passed because it starts with the region's name.
    (
        {
            "account": "123456789012",
            "region": "eu-west-1",
            "network": {"availability_zones": ["eu-west-1a", "eu-west-1z"]},
        },
        "llmft.network.availability_zones",
        "eu-west-1 and one letter a to f",
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
    ({"region": "Europe", "account": "123456789012"}, "llmft.region", "a region with SageMaker"),
    # Measured: a misspelt region had the shape of one and passed.
    ({"region": "eu-westt-1", "account": "123456789012"}, "llmft.region", "eu-west-1, eu-west-2"),
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


def test_regions_of_other_partitions_are_accepted_with_their_zones():
    config = load_config(
        project_context(
            {
                "account": "123456789012",
                "region": "cn-north-1",
                "network": {"availability_zones": ["cn-north-1a", "cn-north-1b"]},
            }
        )
    )
    assert config.region == "cn-north-1"


def write_cdk_json(path: Path, llmft: dict) -> Path:
    path.write_text(json.dumps({"app": "python app.py", "context": {"llmft": llmft, "other-key": True}}))
    return path


def test_command_line_context_is_merged_over_cdk_json_key_by_key(tmp_path):
    # Measured: `-c llmft='{...}'` replaced all of cdk.json, so Team1's one-key override made LlmFt-* stacks.
    cdk_json = write_cdk_json(
        tmp_path / "cdk.json",
        {"stack_prefix": "Team1", "network": {"nat_gateways": 2, "flow_log_retention_days": 30}},
    )
    raw = context_with_override(cdk_json, '{"network": {"nat_gateways": 0}}')
    config = load_config(raw)
    assert config.stack_prefix == "Team1", "a key the override leaves out keeps cdk.json's value"
    assert config.network.nat_gateways == 0, "the override wins where it speaks"
    assert config.network.flow_log_retention_days == 30, "objects merge at every depth"
    stacks = cdk_app.build(cdk.App(context=CDK_JSON_CONTEXT, analytics_reporting=False), config)
    assert {stack.stack_name.split("-")[0] for stack in stacks.all()} == {"Team1"}


def test_merge_replaces_lists_and_scalars_and_recurses_into_objects():
    base = {"a": {"b": 1, "c": [1, 2]}, "d": "x"}
    assert merged(base, {"a": {"c": [3]}, "e": None}) == {"a": {"b": 1, "c": [3]}, "d": "x", "e": None}
    assert merged(base, {"a": 5}) == {"a": 5, "d": "x"}


def test_cdk_json_context_object_is_used_as_it_is(tmp_path):
    cdk_json = write_cdk_json(tmp_path / "cdk.json", {"stack_prefix": "Team1"})
    assert context_with_override(cdk_json, {"stack_prefix": "Team2"}) == {"stack_prefix": "Team2"}
    assert context_with_override(cdk_json, None) is None


@pytest.mark.parametrize("text", ["nat=0", "[1]"])
def test_command_line_context_that_is_not_a_json_object_names_the_option(tmp_path, text):
    cdk_json = write_cdk_json(tmp_path / "cdk.json", {})
    with pytest.raises(
        ConfigError, match=r"cdk.json context -c llmft = .* is invalid: expected a JSON object"
    ):
        context_with_override(cdk_json, text)


def test_a_refused_configuration_is_the_last_thing_cdk_synth_prints(tmp_path):
    # Measured: the refusal came after jsii's Node banner and a Python traceback.
    result = subprocess.run(
        [str(ROOT / "node_modules/.bin/cdk"), "synth", "--no-notices", "--output", str(tmp_path / "out")]
        + ["-c", 'llmft={"network": {"nat_gateways": 3}}'],
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if not k.startswith("JSII_SILENCE")},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    app_lines = [line for line in lines if "Subprocess exited with error" not in line]
    assert app_lines == [
        "cdk.json context llmft.network.nat_gateways = 3 is invalid: expected an integer from 0 to 2"
    ], lines
    assert "Subprocess exited with error 1" in lines[-1], "only the CLI's own exit line may follow"
