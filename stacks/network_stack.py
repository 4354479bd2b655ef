"""Network stack: the VPC and security groups every other stack attaches to."""

from typing import Any

from aws_cdk import CfnOutput, Stack
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3

from constructs import Construct
from constructs.llmft_network import TrainingNetwork
from project_config.network import NetworkConfig


class NetworkStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: NetworkConfig,
        key: kms.IKey,
        data_bucket: s3.IBucket,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.network = TrainingNetwork(self, "Network", config=config, key=key, data_bucket=data_bucket)
        CfnOutput(self, "VpcId", value=self.network.vpc.vpc_id)
