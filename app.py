#!/usr/bin/env python3
"""The CDK app: reads `cdk.json` context once into ProjectConfig and builds every enabled stack."""

import os
import sys
from dataclasses import dataclass
from pathlib import Path

# jsii's banner about Node 20's end of life is noise for the pinned toolchain (Node 20, as the Makefile
# says); set before aws_cdk starts its Node process so that `npx cdk synth` prints it neither. The
# end-of-life variable lists the major versions it silences; the other two need only be set.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
os.environ.setdefault("JSII_SILENCE_WARNING_UNTESTED_NODE_VERSION", "1")
os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")

import aws_cdk as cdk  # noqa: E402
from cdk_nag import AwsSolutionsChecks, NagReportFormat  # noqa: E402

from constructs.llmft_compliance import COMPLIANCE_PACKS  # noqa: E402
from project_config import (  # noqa: E402
    CONTEXT_KEY,
    ConfigError,
    ProjectConfig,
    context_with_override,
    load_config,
)
from stacks.data_stack import DataStack  # noqa: E402
from stacks.hyperpod_stack import HyperPodStack  # noqa: E402
from stacks.inference_stack import InferenceStack  # noqa: E402
from stacks.network_stack import NetworkStack  # noqa: E402
from stacks.notebook_stack import NotebookStack  # noqa: E402
from stacks.training_image_stack import TrainingImageStack  # noqa: E402
from stacks.training_pipeline_stack import TrainingPipelineStack  # noqa: E402

CDK_JSON = Path(__file__).resolve().with_name("cdk.json")

# The rule packs every synth runs: AWS Solutions, and the HIPAA Security, NIST 800-53 rev 5 and PCI DSS
# 3.2.1 packs a regulated shop's reviewers ask for. An open finding of any of them fails `make synth`.
NAG_PACKS = (AwsSolutionsChecks, *COMPLIANCE_PACKS.values())


@dataclass(frozen=True)
class Stacks:
    data: DataStack
    network: NetworkStack
    training_image: TrainingImageStack
    training_pipeline: TrainingPipelineStack
    hyperpod: HyperPodStack | None
    inference: InferenceStack | None
    notebook: NotebookStack | None

    def all(self) -> list[cdk.Stack]:
        return [stack for stack in vars(self).values() if stack is not None]


def build(app: cdk.App, config: ProjectConfig) -> Stacks:
    """Every stack of the project, wired through construct references."""
    env = None if config.env_agnostic else cdk.Environment(account=config.account, region=config.region)
    if not config.env_agnostic:
        # Pre-seed the zone lookup so a fixed environment synthesizes without credentials.
        app.node.set_context(
            f"availability-zones:account={config.account}:region={config.region}",
            list(config.network.availability_zones),
        )
    prefix = config.stack_prefix
    data = DataStack(app, f"{prefix}-Data", config=config.data, env=env)
    network = NetworkStack(
        app,
        f"{prefix}-Network",
        config=config.network,
        key=data.store.key,
        data_bucket=data.store.data_bucket,
        env=env,
    )
    training_image = TrainingImageStack(
        app, f"{prefix}-TrainingImage", config=config.training, key=data.store.key, env=env
    )
    training_pipeline = TrainingPipelineStack(
        app,
        f"{prefix}-TrainingPipeline",
        config=config.training,
        store=data.store,
        network=network.network,
        image=training_image.image,
        env=env,
    )
    hyperpod = None
    if config.hyperpod.enabled:
        hyperpod = HyperPodStack(
            app,
            f"{prefix}-HyperPod",
            config=config.hyperpod,
            network=network.network,
            store=data.store,
            repository=training_image.image.repository,
            image_uri=training_image.image.image_uri,
            env=env,
        )
    inference = None
    if config.inference.enabled:
        inference = InferenceStack(
            app,
            f"{prefix}-Inference",
            config=config.inference,
            network=network.network,
            store=data.store,
            component_prefix=prefix,
            notifications=training_pipeline.pipeline.topic,
            env=env,
        )
    notebook = None
    if config.notebook.enabled:
        notebook = NotebookStack(
            app,
            f"{prefix}-Notebook",
            config=config.notebook,
            network=network.network,
            store=data.store,
            training_state_machine=training_pipeline.pipeline.state_machine,
            inference_endpoint_arn=inference.endpoint.endpoint.ref if inference else None,
            env=env,
        )
    stacks = Stacks(
        data=data,
        network=network,
        training_image=training_image,
        training_pipeline=training_pipeline,
        hyperpod=hyperpod,
        inference=inference,
        notebook=notebook,
    )
    for stack in stacks.all():
        cdk.Tags.of(stack).add("project", prefix)
    # Checked over the whole app; reports per stack and pack (CSV and JSON) land in the output folder.
    for pack in NAG_PACKS:
        cdk.Aspects.of(app).add(
            pack(reports=True, verbose=True, report_formats=[NagReportFormat.CSV, NagReportFormat.JSON])
        )
    return stacks


def main() -> None:
    app = cdk.App()
    try:
        config = load_config(context_with_override(CDK_JSON, app.node.try_get_context(CONTEXT_KEY)))
    except ConfigError as error:
        # The refusal is the last thing the user reads (the CLI adds only its exit line), not a traceback.
        sys.exit(str(error))
    build(app, config)
    app.synth()


if __name__ == "__main__":
    main()
