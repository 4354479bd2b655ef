"""The LMI (DJL Serving + vLLM) container: its image per region, and the environment that configures it.

Image URIs come from the sagemaker SDK's own registry (`sagemaker.core.image_uris`' `djl-lmi.json`),
read as a file so that synth does not import the whole SDK.
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import re
from dataclasses import dataclass
from typing import Any

import botocore.loaders
import botocore.regions

LMI_FRAMEWORK = "djl-lmi"
# Multi-adapter (LoRA) serving in vLLM's async mode arrived in LMI v16 (DJL Serving 0.34.0).
MIN_LMI_VERSION = (0, 34, 0)
ASYNC_ENTRYPOINT = "djl_python.lmi_vllm.vllm_async_service"


@dataclass(frozen=True)
class LmiImage:
    """One LMI release in one region: where to pull it from and which ECR repository that is."""

    region: str
    registry: str
    repository: str
    tag: str
    hostname: str

    @property
    def uri(self) -> str:
        return f"{self.registry}.dkr.{self.hostname}/{self.repository}:{self.tag}"


@functools.cache
def _registry_config() -> dict[str, Any]:
    path = importlib.metadata.distribution("sagemaker-core").locate_file(
        f"sagemaker/core/image_uri_config/{LMI_FRAMEWORK}.json"
    )
    return json.loads(path.read_text())


@functools.cache
def _ecr_resolver() -> botocore.regions.EndpointResolver:
    # The same endpoint data the SDK uses to name each region's ECR host (amazonaws.com, .com.cn, ...).
    return botocore.regions.EndpointResolver(botocore.loaders.create_loader().load_data("endpoints"))


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def supported_lmi_versions() -> list[str]:
    """LMI versions the SDK knows that serve LoRA adapters in vLLM's async mode, newest first."""
    versions = [v for v in _registry_config()["versions"] if re.fullmatch(r"\d+\.\d+\.\d+", v)]
    usable = [v for v in versions if _version_tuple(v) >= MIN_LMI_VERSION]
    return sorted(usable, key=_version_tuple, reverse=True)


def lmi_images(version: str) -> dict[str, LmiImage]:
    """The image of one LMI version in every region the SDK lists a registry for."""
    if version not in supported_lmi_versions():
        raise ValueError(f"LMI {version!r} is not one of {', '.join(supported_lmi_versions())}")
    release = _registry_config()["versions"][version]
    images = {}
    for region, registry in sorted(release["registries"].items()):
        endpoint = _ecr_resolver().construct_endpoint("ecr", region)
        hostname = endpoint["hostname"] if endpoint else f"ecr.{region}.amazonaws.com"
        images[region] = LmiImage(
            region=region,
            registry=registry,
            repository=release["repository"],
            tag=release["tag_prefix"],
            hostname=hostname,
        )
    return images


def model_source(base_model: str, bucket_name: str) -> str:
    """HF_MODEL_ID: an s3:// folder of the data bucket for `models/...`, else the Hub model id as is."""
    if base_model.startswith("models/"):
        return f"s3://{bucket_name}/{base_model}"
    return base_model


def lmi_environment(
    *,
    model_id: str,
    tensor_parallel_degree: int,
    max_model_len: int,
    max_loras: int,
    max_cpu_loras: int,
    max_lora_rank: int,
    model_loading_timeout: int,
) -> dict[str, str]:
    """Container environment: vLLM in LMI's async mode, with LoRA adapters enabled."""
    return {
        "HF_MODEL_ID": model_id,
        # Async mode is LMI's recommended vLLM mode since v15, and the one that serves adapters since v16.
        "OPTION_ASYNC_MODE": "true",
        "OPTION_ROLLING_BATCH": "disable",
        "OPTION_ENTRYPOINT": ASYNC_ENTRYPOINT,
        "TENSOR_PARALLEL_DEGREE": str(tensor_parallel_degree),
        "OPTION_MAX_MODEL_LEN": str(max_model_len),
        "OPTION_ENABLE_LORA": "true",
        "OPTION_MAX_LORAS": str(max_loras),
        "OPTION_MAX_CPU_LORAS": str(max_cpu_loras),
        "OPTION_MAX_LORA_RANK": str(max_lora_rank),
        # DJL's own limit (240 s by default) would stop an 8B load before SageMaker's health check does.
        "OPTION_MODEL_LOADING_TIMEOUT": str(model_loading_timeout),
        # Fail the container at once on a load error instead of answering health checks while broken.
        "SERVING_FAIL_FAST": "true",
    }
