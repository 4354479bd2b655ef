"""Training settings: the image build (ECR, CodeBuild) and the training pipeline's request bounds."""

import re
from dataclasses import dataclass
from typing import Any

from project_config import checks
from project_config.network import LOG_RETENTION_DAYS

# Secrets Manager names: letters, digits and /_+=.@- (up to 512 characters).
SECRET_NAME_PATTERN = re.compile(r"^[A-Za-z0-9/_+=.@-]{1,512}$")
EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
# A KMS key's ARN (single- or multi-Region key), in any partition.
KMS_KEY_ARN_PATTERN = re.compile(
    r"^arn:aws[a-z-]*:kms:[a-z]{2}(-[a-z]+)+-\d:\d{12}:key/(mrk-[0-9a-f]{32}|[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12})$"
)
# SageMaker caps a training job's MaxRuntimeInSeconds at 28 days.
SAGEMAKER_MAX_RUNTIME_HOURS = 28 * 24
DEFAULT_INSTANCE_TYPES = (
    "ml.g5.2xlarge",
    "ml.g5.12xlarge",
    "ml.g6e.2xlarge",
    "ml.g6e.12xlarge",
    "ml.p4d.24xlarge",
    "ml.p5.48xlarge",
)


@dataclass(frozen=True)
class TrainingConfig:
    # TrainingImage stack
    image_keep_count: int = 10
    dlc_registry_account: str = "763104351884"
    build_timeout_minutes: int = 55
    # TrainingPipeline stack: what a request may ask for
    allowed_instance_types: tuple[str, ...] = DEFAULT_INSTANCE_TYPES
    max_instance_count: int = 4
    max_runtime_hours: int = 72
    default_max_runtime_hours: int = 24
    spot_extra_wait_hours: int = 24
    volume_size_gb: int = 200
    hf_token_secret_name: str | None = None
    # The customer managed key that encrypts that secret, if not Secrets Manager's own aws/secretsmanager.
    hf_token_kms_key_arn: str | None = None
    notification_email: str | None = None
    log_retention_days: int = 90


def parse_training(raw: Any, key: str = "llmft.training") -> TrainingConfig:
    get = checks.section_fields(raw, key, TrainingConfig)

    raw_types = get("allowed_instance_types")
    # The default is a tuple; cdk.json gives a list.
    instance_types = checks.string_list(
        f"{key}.allowed_instance_types", list(raw_types) if isinstance(raw_types, tuple) else raw_types
    )
    if not instance_types:
        raise checks.ConfigError(f"{key}.allowed_instance_types", [], "expected at least one instance type")
    for instance in instance_types:
        # The recipes train in bf16 with CUDA kernels; a CPU instance would only fail or crawl.
        checks.instance_type(f"{key}.allowed_instance_types", instance, use="training", gpu=True)
    max_runtime = checks.integer(
        f"{key}.max_runtime_hours", get("max_runtime_hours"), minimum=1, maximum=SAGEMAKER_MAX_RUNTIME_HOURS
    )
    hf_token_key = checks.optional_string(
        f"{key}.hf_token_kms_key_arn",
        get("hf_token_kms_key_arn"),
        pattern=KMS_KEY_ARN_PATTERN,
        rule="expected a KMS key ARN (arn:<partition>:kms:<region>:<account>:key/<id>) or null",
    )
    if hf_token_key and not get("hf_token_secret_name"):
        raise checks.ConfigError(
            f"{key}.hf_token_kms_key_arn",
            hf_token_key,
            f"set {key}.hf_token_secret_name too: the key is the secret's",
        )
    return TrainingConfig(
        image_keep_count=checks.integer(
            f"{key}.image_keep_count", get("image_keep_count"), minimum=1, maximum=1000
        ),
        dlc_registry_account=checks.string(
            f"{key}.dlc_registry_account",
            get("dlc_registry_account"),
            pattern=checks.ACCOUNT_PATTERN,
            rule="expected the 12-digit account of the deep learning container registry",
        ),
        # The deploy waits for the build through a custom resource, which gives up after 1 hour.
        build_timeout_minutes=checks.integer(
            f"{key}.build_timeout_minutes", get("build_timeout_minutes"), minimum=10, maximum=55
        ),
        allowed_instance_types=instance_types,
        max_instance_count=checks.integer(
            f"{key}.max_instance_count", get("max_instance_count"), minimum=1, maximum=64
        ),
        max_runtime_hours=max_runtime,
        default_max_runtime_hours=checks.integer(
            f"{key}.default_max_runtime_hours",
            get("default_max_runtime_hours"),
            minimum=1,
            maximum=max_runtime,
        ),
        spot_extra_wait_hours=checks.integer(
            f"{key}.spot_extra_wait_hours", get("spot_extra_wait_hours"), minimum=1, maximum=168
        ),
        volume_size_gb=checks.integer(
            f"{key}.volume_size_gb", get("volume_size_gb"), minimum=30, maximum=16384
        ),
        hf_token_secret_name=checks.optional_string(
            f"{key}.hf_token_secret_name",
            get("hf_token_secret_name"),
            pattern=SECRET_NAME_PATTERN,
            rule="expected a Secrets Manager secret name (letters, digits, /_+=.@-) or null",
        ),
        hf_token_kms_key_arn=hf_token_key,
        notification_email=checks.optional_string(
            f"{key}.notification_email",
            get("notification_email"),
            pattern=EMAIL_PATTERN,
            rule="expected an e-mail address or null",
        ),
        log_retention_days=checks.choice(
            f"{key}.log_retention_days", get("log_retention_days"), LOG_RETENTION_DAYS
        ),
    )
