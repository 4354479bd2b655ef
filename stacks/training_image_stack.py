"""TrainingImage stack: the ECR repository and the cloud-side build of `training_image/`."""

from pathlib import Path
from typing import Any

from aws_cdk import CfnOutput, Stack
from aws_cdk import aws_kms as kms

from constructs import Construct
from constructs.llmft_training_image import TrainingImageBuild
from project_config.training import TrainingConfig

TRAINING_IMAGE_DIR = Path(__file__).resolve().parent.parent / "training_image"


class TrainingImageStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: TrainingConfig,
        key: kms.IKey,
        source_dir: Path = TRAINING_IMAGE_DIR,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.image = TrainingImageBuild(self, "Image", config=config, key=key, source_dir=source_dir)
        CfnOutput(
            self,
            "TrainingImageUri",
            value=self.image.image_uri,
            description="The training image, tagged with the content hash of training_image/",
        )
        CfnOutput(self, "RepositoryName", value=self.image.repository.repository_name)
