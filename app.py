#!/usr/bin/env python3
"""The CDK app: reads `cdk.json` context once into ProjectConfig and builds every enabled stack."""

from dataclasses import dataclass

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks, NagReportFormat

from project_config import CONTEXT_KEY, ProjectConfig, load_config
from stacks.data_stack import DataStack
from stacks.network_stack import NetworkStack
from stacks.notebook_stack import NotebookStack


@dataclass(frozen=True)
class Stacks:
    data: DataStack
    network: NetworkStack
    notebook: NotebookStack | None = None

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
    network = NetworkStack(app, f"{prefix}-Network", config=config.network, key=data.store.key, env=env)
    notebook = None
    if config.notebook.enabled:
        notebook = NotebookStack(
            app,
            f"{prefix}-Notebook",
            config=config.notebook,
            network=network.network,
            store=data.store,
            env=env,
        )
    stacks = Stacks(data=data, network=network, notebook=notebook)
    for stack in stacks.all():
        cdk.Tags.of(stack).add("project", prefix)
    # Checked over the whole app; reports per stack (CSV and JSON) land in the output folder.
    cdk.Aspects.of(app).add(
        AwsSolutionsChecks(
            reports=True, verbose=True, report_formats=[NagReportFormat.CSV, NagReportFormat.JSON]
        )
    )
    return stacks


def main() -> None:
    app = cdk.App()
    build(app, load_config(app.node.try_get_context(CONTEXT_KEY)))
    app.synth()


if __name__ == "__main__":
    main()
