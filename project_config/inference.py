"""Inference settings: the LMI endpoint, its LoRA limits, startup timeouts and autoscaling."""

import re
from dataclasses import dataclass
from typing import Any

from inference.lmi import supported_lmi_versions
from project_config import checks
from project_config.instance_types import GPUS_PER_INSTANCE, memory_gib
from project_config.network import LOG_RETENTION_DAYS

# An S3 folder under the data bucket's models/ prefix, or a Hugging Face model id (org/name).
MODEL_PREFIX_PATTERN = re.compile(r"^models/[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*/$")
MODEL_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
# vLLM accepts only these values for max_lora_rank.
LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)
TENSOR_PARALLEL_DEGREES = (1, 2, 4, 8)


@dataclass(frozen=True)
class InferenceConfig:
    # Off by default: a GPU endpoint costs money for every hour it runs.
    enabled: bool = False
    instance_type: str = "ml.g5.2xlarge"
    # Required when enabled: what the endpoint serves and every adapter attaches to.
    base_model: str | None = None
    lmi_version: str = "0.38.0"
    max_loras: int = 4
    max_cpu_loras: int = 16
    max_lora_rank: int = 64
    tensor_parallel_degree: int = 1
    max_model_len: int = 8192
    min_memory_mb: int = 16384
    startup_health_check_timeout: int = 1800
    model_data_download_timeout: int = 1800
    min_copies: int = 1
    max_copies: int = 2
    max_instances: int = 2
    target_invocations_per_copy: int = 20
    log_retention_days: int = 90

    @property
    def base_model_in_bucket(self) -> bool:
        """True when the base model is read from the data bucket, not downloaded from the Hub."""
        return bool(self.base_model) and self.base_model.startswith("models/")

    @property
    def scales_to_zero(self) -> bool:
        return self.min_copies == 0


def parse_inference(raw: Any, key: str = "llmft.inference", *, internet: bool = True) -> InferenceConfig:
    """`internet`: whether the VPC has NAT; without it a Hub model id cannot be downloaded."""
    get = checks.section_fields(raw, key, InferenceConfig)

    def integer(name: str, minimum: int, maximum: int) -> int:
        return checks.integer(f"{key}.{name}", get(name), minimum=minimum, maximum=maximum)

    enabled = checks.boolean(f"{key}.enabled", get("enabled"))
    base_model = _base_model(f"{key}.base_model", get("base_model"), enabled=enabled)
    if enabled and not internet and base_model and not base_model.startswith("models/"):
        raise checks.ConfigError(
            f"{key}.base_model",
            base_model,
            "a Hugging Face model id needs internet access, but network.nat_gateways is 0: "
            "upload the model under models/ in the data bucket and name that folder",
        )
    max_loras = integer("max_loras", 1, 64)
    max_cpu_loras = integer("max_cpu_loras", 1, 512)
    if max_cpu_loras < max_loras:
        # vLLM refuses a CPU cache smaller than the GPU one.
        raise checks.ConfigError(
            f"{key}.max_cpu_loras", max_cpu_loras, f"expected at least max_loras ({max_loras})"
        )
    min_copies = integer("min_copies", 0, 10)
    max_copies = integer("max_copies", 1, 10)
    if max_copies < max(min_copies, 1):
        raise checks.ConfigError(
            f"{key}.max_copies", max_copies, f"expected at least min_copies ({min_copies}) and at least 1"
        )
    # LMI serves with vLLM's CUDA build: the endpoint needs GPUs.
    instance_type = checks.instance_type(
        f"{key}.instance_type", get("instance_type"), use="endpoint", gpu=True
    )
    tensor_parallel_degree = _int_choice(
        f"{key}.tensor_parallel_degree", get("tensor_parallel_degree"), TENSOR_PARALLEL_DEGREES
    )
    min_memory_mb = integer("min_memory_mb", 1024, 2097152)
    memory = memory_gib(instance_type)
    if memory is not None and min_memory_mb > memory * 1024:
        # SageMaker would never place the model component on that instance.
        raise checks.ConfigError(
            f"{key}.min_memory_mb",
            min_memory_mb,
            f"at most the {memory * 1024} MiB ({memory} GiB) of host memory of {key}.instance_type "
            f"{instance_type}",
        )
    gpus = GPUS_PER_INSTANCE.get(instance_type)
    if gpus is not None and tensor_parallel_degree > gpus:
        # Otherwise the endpoint deploys and only the model component fails to place.
        raise checks.ConfigError(
            f"{key}.tensor_parallel_degree",
            tensor_parallel_degree,
            f"at most the {gpus} GPU(s) of {key}.instance_type {instance_type}",
        )
    return InferenceConfig(
        enabled=enabled,
        instance_type=instance_type,
        base_model=base_model,
        lmi_version=checks.choice(f"{key}.lmi_version", get("lmi_version"), supported_lmi_versions()),
        max_loras=max_loras,
        max_cpu_loras=max_cpu_loras,
        max_lora_rank=_int_choice(f"{key}.max_lora_rank", get("max_lora_rank"), LORA_RANKS),
        tensor_parallel_degree=tensor_parallel_degree,
        max_model_len=integer("max_model_len", 256, 262144),
        min_memory_mb=min_memory_mb,
        # SageMaker accepts 60 to 3600 seconds for both startup timeouts.
        startup_health_check_timeout=integer("startup_health_check_timeout", 60, 3600),
        model_data_download_timeout=integer("model_data_download_timeout", 60, 3600),
        min_copies=min_copies,
        max_copies=max_copies,
        max_instances=integer("max_instances", 1, 10),
        target_invocations_per_copy=integer("target_invocations_per_copy", 1, 10000),
        log_retention_days=checks.choice(
            f"{key}.log_retention_days", get("log_retention_days"), LOG_RETENTION_DAYS
        ),
    )


def _base_model(key: str, value: Any, *, enabled: bool) -> str | None:
    rule = (
        "expected a folder of the data bucket such as models/llama-3.1-8b-instruct/ "
        "or a Hugging Face model id such as meta-llama/Llama-3.1-8B-Instruct"
    )
    if value is None:
        if enabled:
            raise checks.ConfigError(key, value, f"the endpoint needs a model to serve: {rule}")
        return None
    # `models/...` always means the data bucket, never a Hub organisation called "models".
    pattern = MODEL_PREFIX_PATTERN if str(value).startswith("models/") else MODEL_ID_PATTERN
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise checks.ConfigError(key, value, rule)
    return value


def _int_choice(key: str, value: Any, allowed: tuple[int, ...]) -> int:
    # `true == 1` in Python; a flag is never a rank or a GPU count
    if isinstance(value, bool):
        raise checks.ConfigError(key, value, f"expected one of: {', '.join(map(str, allowed))}")
    return checks.choice(key, value, allowed)
