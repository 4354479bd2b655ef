"""Notebook stack (optional): a SageMaker notebook instance with LLaMA-Factory ready, stopped when idle."""

from typing import Any

from aws_cdk import CfnOutput, Stack
from aws_cdk import aws_stepfunctions as sfn

from constructs import Construct
from constructs.llmft_data_store import DataStore
from constructs.llmft_network import TrainingNetwork
from constructs.llmft_notebook import EXAMPLES_PREFIX, LlamaFactoryNotebook
from project_config.notebook import NotebookConfig


class NotebookStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: NotebookConfig,
        network: TrainingNetwork,
        store: DataStore,
        training_state_machine: sfn.StateMachine | None = None,
        inference_endpoint_arn: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.notebook = LlamaFactoryNotebook(
            self,
            "Notebook",
            config=config,
            # One private workload subnet: a notebook instance lives in a single zone.
            subnet=network.vpc.select_subnets(subnet_type=network.workload_subnets.subnet_type).subnets[0],
            security_group=network.notebook_security_group,
            key=store.key,
            data_bucket=store.data_bucket,
            training_state_machine=training_state_machine,
            inference_endpoint_arn=inference_endpoint_arn,
        )
        CfnOutput(
            self,
            "NotebookInstanceName",
            value=self.notebook.instance.attr_notebook_instance_name,
            description="Open it from the SageMaker console (Notebook instances) or with "
            "`aws sagemaker create-presigned-notebook-instance-url`",
        )
        CfnOutput(
            self,
            "ExamplesLocation",
            value=f"s3://{store.data_bucket.bucket_name}/{EXAMPLES_PREFIX}",
            description="Example notebooks, copied to ~/SageMaker/llmft-examples on every start",
        )
        CfnOutput(self, "NotebookRoleArn", value=self.notebook.role.role_arn)
