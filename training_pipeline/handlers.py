"""The training state machine's two Lambda functions, bundled at synth with the judge and the image's rules.

`validate` is the state machine's first Task: the same judge as the launcher (`request.py`), with the
online checks, and the job's plan for a valid request. `record` writes the adapter manifest once the job
has completed, never over an existing one. Both read their deployment from `deployment.json` (written into
the bundle at synth) and the environment.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from training_pipeline.request import (
    MANIFEST_KEY,
    Deployment,
    manifest,
    online_problems,
    plan_job,
    read_manifest,
    request_problems,
)

DEPLOYMENT_FILE = Path(__file__).resolve().parent.parent / "deployment.json"
# A concurrent conditional write to the same key answers 409; the first writer wins within seconds.
CONFLICT_ATTEMPTS = 5


class AdapterNameTaken(Exception):
    """Another execution wrote adapters/<name>/manifest.json while this one trained (S3 answered 412)."""


class ManifestWriteConflict(Exception):
    """S3 kept answering 409 (ConditionalRequestConflict) to the conditional manifest write."""


def load_deployment() -> Deployment:
    return Deployment.from_json(DEPLOYMENT_FILE.read_text())


def started_at(value: str) -> datetime:
    """`$$.Execution.StartTime` (ISO 8601, `Z` or an offset) as a datetime."""
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def verdict(
    request: Any,
    deployment: Deployment,
    *,
    data_bucket: str,
    volume_kms_key: str,
    started: datetime,
    s3: Any,
) -> dict[str, Any]:
    """The validate Task's output: always the same keys, so the state machine's paths always resolve."""
    problems = request_problems(request, deployment, data_bucket)
    base_manifest = None
    if not problems:
        if "base_adapter" in request:
            base_manifest = read_manifest(s3, data_bucket, request["base_adapter"])
        problems = online_problems(request, s3, data_bucket, base_manifest=base_manifest)
    if problems:
        return {"valid": False, "cause": "\n".join(problems), "plan": None, "attempt": None}
    artifact = base_manifest["model_artifact"] if base_manifest else None
    plan = plan_job(
        request,
        deployment,
        data_bucket=data_bucket,
        volume_kms_key=volume_kms_key,
        started=started,
        base_adapter_artifact=artifact,
    )
    return {"valid": True, "cause": "", "plan": plan, "attempt": {"number": 1, "job_name": plan["job_name"]}}


def validate(event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
    import boto3

    return verdict(
        event["request"],
        load_deployment(),
        data_bucket=os.environ["DATA_BUCKET"],
        volume_kms_key=os.environ["VOLUME_KMS_KEY_ARN"],
        started=started_at(event["start_time"]),
        s3=boto3.client("s3"),
    )


def write_manifest(
    s3: Any,
    bucket: str,
    document: Mapping[str, Any],
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Write the manifest only if its key is free; an identical earlier write by this execution is kept."""
    from botocore.exceptions import ClientError

    key = MANIFEST_KEY.format(document["adapter_name"])
    body = json.dumps(document, indent=2).encode()
    for attempt in range(1, CONFLICT_ATTEMPTS + 1):
        try:
            s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json", IfNoneMatch="*")
            return dict(document)
        except ClientError as error:
            code = error.response["Error"]["Code"]
            status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code == "PreconditionFailed" or status == 412:
                return _existing_or_taken(s3, bucket, key, document)
            if code != "ConditionalRequestConflict" and status != 409:
                raise
        sleep(2**attempt)
    raise ManifestWriteConflict(
        f"s3://{bucket}/{key}: S3 answered 409 to {CONFLICT_ATTEMPTS} conditional writes; this run's adapter "
        f"is {document['model_artifact']}"
    )


def _existing_or_taken(s3: Any, bucket: str, key: str, document: Mapping[str, Any]) -> dict[str, Any]:
    existing = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    same_run = ("execution_arn", "training_job_name")
    if all(existing.get(name) == document.get(name) for name in same_run):
        # A retried Task whose first write succeeded: the manifest is already this run's.
        return existing
    raise AdapterNameTaken(
        f"s3://{bucket}/{key} was written by {existing.get('execution_arn') or 'another writer'} meanwhile; "
        f"nothing was overwritten. This adapter is {document['model_artifact']}: publish it under a new name"
    )


def record(event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
    import boto3

    description = boto3.client("sagemaker").describe_training_job(TrainingJobName=event["training_job_name"])
    document = manifest(event["plan"], description, event["execution_arn"])
    return write_manifest(boto3.client("s3"), os.environ["DATA_BUCKET"], document)
