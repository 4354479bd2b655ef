"""Reads the `llmft` context object into one frozen ProjectConfig."""

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from project_config import checks
from project_config.data import DataConfig, parse_data
from project_config.hyperpod import HyperPodConfig, parse_hyperpod
from project_config.inference import InferenceConfig, parse_inference
from project_config.network import NetworkConfig, parse_network
from project_config.notebook import NotebookConfig, parse_notebook
from project_config.training import TrainingConfig, parse_training

CONTEXT_KEY = "llmft"
# AWS names a zone after its region and one letter; us-east-1, with six, goes furthest (a to f).
ZONE_LETTERS = "abcdef"
PREFIX_PATTERN = re.compile(r"^[A-Z][A-Za-z0-9]{1,19}$")


@dataclass(frozen=True)
class ProjectConfig:
    stack_prefix: str = "LlmFt"
    account: str | None = None
    region: str | None = None
    network: NetworkConfig = field(default_factory=NetworkConfig)
    data: DataConfig = field(default_factory=DataConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    hyperpod: HyperPodConfig = field(default_factory=HyperPodConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    notebook: NotebookConfig = field(default_factory=NotebookConfig)

    @property
    def env_agnostic(self) -> bool:
        return self.account is None and self.region is None


def merged(base: Any, override: Any) -> Any:
    """`override` over `base`: objects merge key by key, at every depth; any other value replaces."""
    if isinstance(base, Mapping) and isinstance(override, Mapping):
        return {**base, **{name: merged(base.get(name), value) for name, value in override.items()}}
    return override


def context_with_override(cdk_json: Path, context_value: Any) -> Any:
    """The `llmft` object the app validates: cdk.json's own, with `-c llmft='{...}'` merged over it.

    The CDK CLI gives a `-c` value to the app as a string, replacing cdk.json's object whole; this puts
    back every key the override leaves out. An object (cdk.json's, unchanged) is returned as it is.
    """
    if not isinstance(context_value, str):
        return context_value
    try:
        override = json.loads(context_value)
    except json.JSONDecodeError as error:
        raise checks.ConfigError(
            f"-c {CONTEXT_KEY}", context_value, f"expected a JSON object ({error})"
        ) from None
    if not isinstance(override, Mapping):
        raise checks.ConfigError(f"-c {CONTEXT_KEY}", override, "expected a JSON object")
    base = json.loads(cdk_json.read_text()).get("context", {}).get(CONTEXT_KEY) or {}
    return merged(base, override)


@cache
def sagemaker_regions() -> dict[str, tuple[str, ...]]:
    """Regions with a SageMaker endpoint, per partition, from botocore's endpoint data (offline)."""
    import botocore.session

    session = botocore.session.get_session()
    return {
        partition: tuple(session.get_available_regions("sagemaker", partition_name=partition))
        for partition in session.get_available_partitions()
    }


def _region(key: str, value: Any) -> str | None:
    if value is None:
        return None
    regions = sagemaker_regions()
    if not any(value in names for names in regions.values()):
        listed = ", ".join(regions.get("aws", ()))
        raise checks.ConfigError(
            key,
            value,
            f"expected null or a region with SageMaker (botocore's endpoint data): {listed}; "
            f"or one of the partitions {', '.join(p for p in regions if p != 'aws')}",
        )
    return value


def _zones_of(key: str, zones: tuple[str, ...], region: str) -> None:
    for zone in zones:
        if zone[:-1] != region or zone[-1] not in ZONE_LETTERS:
            raise checks.ConfigError(
                key,
                zone,
                f"expected a zone of region {region}: {region} and one letter a to f, e.g. {region}a "
                f"(your account's zones: aws ec2 describe-availability-zones --region {region})",
            )


def load_config(raw: Any) -> ProjectConfig:
    """Validate the context object; any bad value raises ConfigError naming its key."""
    key = CONTEXT_KEY
    values = checks.section(raw, key, ProjectConfig.__dataclass_fields__)
    account = checks.optional_string(
        f"{key}.account",
        values.get("account"),
        pattern=checks.ACCOUNT_PATTERN,
        rule="expected 12 digits or null",
    )
    region = _region(f"{key}.region", values.get("region"))
    if (account is None) != (region is None):
        raise checks.ConfigError(
            f"{key}.account/{key}.region",
            {"account": account, "region": region},
            "set both (a fixed environment) or neither (env-agnostic)",
        )
    network = parse_network(values.get("network"), f"{key}.network")
    if region is not None and not network.availability_zones:
        # A fixed environment makes ec2.Vpc look zones up in AWS; synth must work without credentials.
        raise checks.ConfigError(
            f"{key}.network.availability_zones",
            [],
            f"with a fixed account/region, list the 2 zones of {region} to use, "
            f'e.g. ["{region}a", "{region}b"]',
        )
    if region is not None:
        _zones_of(f"{key}.network.availability_zones", network.availability_zones, region)
    if region is None and network.availability_zones:
        # Env-agnostic templates deploy to any region; fixed zone names would pin one silently.
        raise checks.ConfigError(
            f"{key}.network.availability_zones",
            list(network.availability_zones),
            f"zones need a fixed environment: set {key}.account and {key}.region too, or use []",
        )
    training = parse_training(values.get("training"), f"{key}.training")
    if (
        training.hf_token_secret_name
        and network.isolated
        and "secretsmanager" not in network.interface_endpoints
    ):
        # Jobs read the token at start; with no NAT only an endpoint reaches Secrets Manager.
        raise checks.ConfigError(
            f"{key}.training.hf_token_secret_name",
            training.hf_token_secret_name,
            f'with {key}.network.nat_gateways = 0, add "secretsmanager" to '
            f"{key}.network.interface_endpoints so training jobs can read the token",
        )
    notebook = parse_notebook(values.get("notebook"), f"{key}.notebook")
    if notebook.enabled and network.isolated:
        # The notebook installs LLaMA-Factory from PyPI and conda-forge on create; that needs egress.
        raise checks.ConfigError(
            f"{key}.notebook.enabled",
            True,
            f"the notebook needs {key}.network.nat_gateways >= 1 to install its LLaMA-Factory environment",
        )
    return ProjectConfig(
        stack_prefix=checks.string(
            f"{key}.stack_prefix",
            values.get("stack_prefix", ProjectConfig.stack_prefix),
            pattern=PREFIX_PATTERN,
            rule="expected 2-20 letters or digits starting with a capital letter",
        ),
        account=account,
        region=region,
        network=network,
        data=parse_data(values.get("data"), f"{key}.data"),
        training=training,
        hyperpod=parse_hyperpod(
            values.get("hyperpod"), f"{key}.hyperpod", network_zones=network.availability_zones
        ),
        inference=parse_inference(values.get("inference"), f"{key}.inference", internet=not network.isolated),
        notebook=notebook,
    )
