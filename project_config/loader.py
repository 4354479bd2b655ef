"""Reads the `llmft` context object into one frozen ProjectConfig."""

import json
import re
from dataclasses import dataclass, field
from typing import Any

from project_config import checks
from project_config.data import DataConfig, parse_data
from project_config.hyperpod import HyperPodConfig, parse_hyperpod
from project_config.inference import InferenceConfig, parse_inference
from project_config.network import NetworkConfig, parse_network
from project_config.notebook import NotebookConfig, parse_notebook
from project_config.training import TrainingConfig, parse_training

CONTEXT_KEY = "llmft"
REGION_PATTERN = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
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


def load_config(raw: Any) -> ProjectConfig:
    """Validate the context object; any bad value raises ConfigError naming its key."""
    key = CONTEXT_KEY
    if isinstance(raw, str):
        # `cdk synth -c llmft='{...}'` hands the object over as a JSON string.
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as error:
            raise checks.ConfigError(key, raw, f"expected a JSON object ({error})") from None
    values = checks.section(raw, key, ProjectConfig.__dataclass_fields__)
    account = checks.optional_string(
        f"{key}.account",
        values.get("account"),
        pattern=checks.ACCOUNT_PATTERN,
        rule="expected 12 digits or null",
    )
    region = checks.optional_string(
        f"{key}.region",
        values.get("region"),
        pattern=REGION_PATTERN,
        rule="expected a region such as eu-west-1 or null",
    )
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
    if region is not None and any(not zone.startswith(region) for zone in network.availability_zones):
        raise checks.ConfigError(
            f"{key}.network.availability_zones",
            list(network.availability_zones),
            f"expected zones of region {region}",
        )
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
