"""A deployment's request settings from cdk.json's training section (for the construct and the launcher).

Kept apart from `request.py`, which the Lambda function runs without the CDK app's configuration code.
"""

from __future__ import annotations

from project_config.instance_types import has_instance_storage
from project_config.training import TrainingConfig
from training_pipeline.request import Deployment, sagemaker_limits

# A job SageMaker could not place is retried as a new job this many times in all (same checkpoints).
CAPACITY_ATTEMPTS = 3


def deployment_for(config: TrainingConfig) -> Deployment:
    return Deployment(
        allowed_instance_types=tuple(config.allowed_instance_types),
        max_instance_count=config.max_instance_count,
        max_runtime_hours=config.max_runtime_hours,
        default_max_runtime_hours=config.default_max_runtime_hours,
        spot_extra_wait_hours=config.spot_extra_wait_hours,
        volume_size_gb=config.volume_size_gb,
        local_storage_instance_types=tuple(
            t for t in config.allowed_instance_types if has_instance_storage(t)
        ),
        capacity_attempts=CAPACITY_ATTEMPTS,
        limits=sagemaker_limits(),
    )
