"""HyperPod stack: a Slurm cluster on SageMaker HyperPod with FSx for Lustre over the data bucket."""

from typing import Any

from aws_cdk import CfnOutput, Fn, Stack
from aws_cdk import aws_ecr as ecr

from constructs import Construct
from constructs.llmft_data_store import DataStore
from constructs.llmft_hyperpod import HyperPodCluster
from constructs.llmft_network import TrainingNetwork
from project_config.hyperpod import HyperPodConfig


class HyperPodStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: HyperPodConfig,
        network: TrainingNetwork,
        store: DataStore,
        repository: ecr.IRepository,
        image_uri: str,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.hyperpod = HyperPodCluster(
            self,
            "HyperPod",
            config=config,
            vpc=network.vpc,
            key=store.key,
            data_bucket=store.data_bucket,
            repository=repository,
            image_uri=image_uri,
        )
        cluster = self.hyperpod.cluster
        controller = config.controller.name
        CfnOutput(self, "ClusterArn", value=cluster.attr_cluster_arn)
        CfnOutput(self, "FileSystemDnsName", value=self.hyperpod.fsx_dns_name)
        CfnOutput(self, "FileSystemMountName", value=self.hyperpod.fsx_mount_name)
        CfnOutput(self, "LifecycleScriptsUri", value=self.hyperpod.lifecycle_uri)
        CfnOutput(
            self,
            "ControllerInstanceCommand",
            description="Prints the controller node's instance id",
            value=Fn.join(
                "",
                [
                    "aws sagemaker list-cluster-nodes --cluster-name ",
                    cluster.attr_cluster_arn,
                    f" --instance-group-name-contains {controller}",
                    " --query 'ClusterNodeSummaries[0].InstanceId' --output text",
                ],
            ),
        )
        CfnOutput(
            self,
            "ControllerSsmCommand",
            description="Session on the controller; replace <instance-id> with ControllerInstanceCommand's",
            value=Fn.join(
                "",
                [
                    "aws ssm start-session --target sagemaker-cluster:",
                    self.hyperpod.cluster_id,
                    f"_{controller}-<instance-id>",
                ],
            ),
        )
