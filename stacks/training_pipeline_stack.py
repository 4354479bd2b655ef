"""TrainingPipeline stack: the state machine developers start training with, and its training role."""

from typing import Any

from aws_cdk import CfnOutput, Stack

from constructs import Construct
from constructs.llmft_data_store import DataStore
from constructs.llmft_network import TrainingNetwork
from constructs.llmft_training_image import TrainingImageBuild
from constructs.llmft_training_pipeline import TrainingPipeline
from project_config.training import TrainingConfig


class TrainingPipelineStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: TrainingConfig,
        store: DataStore,
        network: TrainingNetwork,
        image: TrainingImageBuild,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.pipeline = TrainingPipeline(
            self, "Pipeline", config=config, store=store, network=network, image=image
        )
        CfnOutput(self, "StateMachineArn", value=self.pipeline.state_machine.state_machine_arn)
        CfnOutput(self, "NotificationTopicArn", value=self.pipeline.topic.topic_arn)
        CfnOutput(self, "TrainingRoleArn", value=self.pipeline.training_role.role_arn)
        # The launcher checks S3 URIs against the bucket before starting anything.
        CfnOutput(self, "DataBucketName", value=store.data_bucket.bucket_name)
