"""Inference stack: the LMI endpoint serving LoRA adapters, and the workflow that registers new ones."""

from typing import Any

from aws_cdk import CfnOutput, Stack
from aws_cdk import aws_sns as sns

from constructs import Construct
from constructs.llmft_adapter_registration import AdapterRegistration
from constructs.llmft_data_store import DataStore
from constructs.llmft_inference import LmiEndpoint
from constructs.llmft_network import TrainingNetwork
from project_config.inference import InferenceConfig


class InferenceStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: InferenceConfig,
        network: TrainingNetwork,
        store: DataStore,
        component_prefix: str,
        notifications: sns.ITopic,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.endpoint = LmiEndpoint(
            self,
            "Lmi",
            config=config,
            vpc=network.vpc,
            subnets=network.workload_subnets,
            security_group=network.inference_security_group,
            key=store.key,
            data_bucket=store.data_bucket,
            component_prefix=component_prefix,
            log_retention_days=config.log_retention_days,
        )
        self.registration = AdapterRegistration(
            self,
            "AdapterRegistration",
            data_bucket=store.data_bucket,
            key=store.key,
            endpoint_name=self.endpoint.endpoint.attr_endpoint_name,
            # The endpoint's own ARN: SageMaker writes the generated name in lower case there.
            endpoint_arn=self.endpoint.endpoint.attr_endpoint_arn,
            base_component_name=self.endpoint.base_component_name,
            notifications=notifications,
            served_model=self.endpoint.served_model,
            component_prefix=component_prefix,
            log_retention_days=config.log_retention_days,
        )
        CfnOutput(self, "EndpointName", value=self.endpoint.endpoint.attr_endpoint_name)
        CfnOutput(self, "BaseComponentName", value=self.endpoint.base_component_name)
        CfnOutput(
            self, "RegistrationStateMachineArn", value=self.registration.state_machine.state_machine_arn
        )
        # `python -m inference.register` reads the manifest's bucket from here.
        CfnOutput(self, "DataBucketName", value=store.data_bucket.bucket_name)
