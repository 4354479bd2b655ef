"""Plans the registration of a trained adapter from its manifest; run by the registration state machine.

The training pipeline writes `s3://<bucket>/adapters/<adapter_name>/manifest.json` when a job succeeds.
This planner checks it and says which inference component to create and where to copy the adapter,
so that the endpoint's role reads released adapters under `adapters/` only. It makes no AWS call.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping
from typing import Any

try:  # packaged flat in the Lambda function; a package everywhere else
    from names import component_name
except ImportError:  # pragma: no cover - the import path depends on where the module runs
    from inference.names import component_name

REQUIRED_FIELDS = ("adapter_name", "model_artifact", "training_job_name", "base_model")
MANIFEST_KEY = re.compile(r"^adapters/(?P<adapter>[^/]+)/manifest\.json$")
# SageMaker's training job name pattern (it becomes part of the released adapter's key).
TRAINING_JOB_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
ARTIFACT_URL = re.compile(r"^s3://(?P<bucket>[^/]+)/(?P<key>training/.+\.tar\.gz)$")


# Recipes whose output is a whole model: an adapter component on the base model cannot serve it.
FULL_MODEL_RECIPES = ("full_sft",)


class ManifestError(ValueError):
    """The manifest cannot be registered; the message says which field and why."""


def _same_model(a: str, b: str) -> bool:
    return a.rstrip("/") == b.rstrip("/")


def plan_registration(
    *, manifest: Mapping[str, Any], bucket: str, key: str, component_prefix: str, served_model: str
) -> dict[str, str]:
    """Manifest in, registration plan out: component name, copy source and released artifact."""
    match = MANIFEST_KEY.fullmatch(key)
    if not match:
        raise ManifestError(f"{key!r} is not adapters/<adapter_name>/manifest.json")
    if not isinstance(manifest, Mapping):
        raise ManifestError(f"s3://{bucket}/{key} is not a JSON object")
    for field in REQUIRED_FIELDS:
        if not isinstance(manifest.get(field), str) or not manifest[field]:
            raise ManifestError(f"s3://{bucket}/{key}: field {field!r} is missing or not a string")
    adapter = manifest["adapter_name"]
    if adapter != match["adapter"]:
        raise ManifestError(
            f"s3://{bucket}/{key}: adapter_name {adapter!r} differs from its folder {match['adapter']!r}"
        )
    if manifest.get("recipe") in FULL_MODEL_RECIPES or manifest.get("weights") == "full":
        raise ManifestError(
            f"s3://{bucket}/{key}: recipe {manifest.get('recipe')!r} trains a full model, not a LoRA "
            "adapter; serve it as a model of its own"
        )
    if manifest.get("weights", "adapter") != "adapter":
        raise ManifestError(
            f"s3://{bucket}/{key}: the archive holds {manifest['weights']!r} weights (merge_adapter=true); "
            "publish the adapter alone: python -m inference.publish <model folder> --name <new name>, "
            "which leaves merged/ out"
        )
    job = manifest["training_job_name"]
    if not TRAINING_JOB_NAME.fullmatch(job):
        raise ManifestError(f"s3://{bucket}/{key}: training_job_name {job!r} is not a training job name")
    base_model = manifest["base_model"]
    # An adapter only fits the base model it was trained on; the endpoint serves exactly one.
    in_bucket = f"s3://{bucket}/{base_model}"
    if not (_same_model(base_model, served_model) or _same_model(in_bucket, served_model)):
        raise ManifestError(
            f"s3://{bucket}/{key}: adapter trained on base_model {base_model!r}, "
            f"but the endpoint serves {served_model!r}"
        )
    artifact = ARTIFACT_URL.fullmatch(manifest["model_artifact"])
    if not artifact or artifact["bucket"] != bucket:
        raise ManifestError(
            f"s3://{bucket}/{key}: model_artifact {manifest['model_artifact']!r} must be a .tar.gz "
            f"under s3://{bucket}/training/"
        )
    released_key = f"adapters/{adapter}/{job}/model.tar.gz"
    return {
        "adapter_name": adapter,
        "component_name": component_name(component_prefix, adapter),
        "base_model": base_model,
        "training_job_name": job,
        # CopyObject takes the source as a URL-encoded `bucket/key`.
        "copy_source": urllib.parse.quote(f"{bucket}/{artifact['key']}"),
        "artifact_key": released_key,
        "artifact_url": f"s3://{bucket}/{released_key}",
    }


def handler(event: Mapping[str, Any], _context: Any) -> dict[str, str]:
    """Lambda entry point: the state machine passes the manifest, its location and the prefix."""
    return plan_registration(
        manifest=event["manifest"],
        bucket=event["bucket"],
        key=event["key"],
        component_prefix=event["component_prefix"],
        served_model=event["served_model"],
    )
