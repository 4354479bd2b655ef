"""Publish a LoRA adapter folder so the endpoint serves it: `python -m inference.publish FOLDER --name NAME`.

FOLDER is a LLaMA-Factory output folder holding a PEFT adapter (`adapter_config.json` and its weights):
a HyperPod run's `model/` folder on FSx or under the export prefix (`s3://<bucket>/hyperpod/...`), or a
notebook run's output. The adapter's files (not `merged/`, not checkpoints) are packed into the archive the
registration expects, uploaded under `training/`, and `adapters/NAME/manifest.json` is written, only if
that key is free; the Inference stack's registration then makes the adapter callable. Full models and
merged weights are refused: an adapter component on the base model cannot serve them.

Exit status: 0 published, 2 refused (not an adapter, name taken, bad usage), 3 AWS access.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import sys
import tarfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
# A whole model's weights: what an adapter folder never holds at its top.
FULL_WEIGHTS = re.compile(r"^(model|pytorch_model)(-\d+-of-\d+)?\.(safetensors|bin)$")
# Not part of the adapter: LLaMA-Factory's merged export and the trainer's checkpoints and state.
LEFT_OUT = re.compile(r"^(merged|checkpoint-\d+|runs|global_step\d+)(/|$)|^(optimizer|scheduler|rng_state)")
ADAPTER_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
OK, INVALID, AWS_ACCESS = 0, 2, 3


class PublishError(ValueError):
    """The folder or the name cannot be published; the message says why and what to do."""


@dataclass(frozen=True)
class AdapterPlan:
    files: tuple[str, ...]
    job_name: str
    artifact_key: str


def plan_adapter(names: Iterable[str], *, adapter: str, source: str, now: datetime) -> AdapterPlan:
    """Which files of the folder (relative paths) make the adapter, and where its archive goes."""
    names = sorted(set(names))
    top = {name for name in names if "/" not in name}
    if not ADAPTER_NAME.fullmatch(adapter):
        raise PublishError(
            f"--name {adapter!r}: lowercase letters, digits and hyphens, 1 to 63, starting and ending "
            "with a letter or digit"
        )
    if ADAPTER_CONFIG not in top:
        full = sorted(name for name in top if FULL_WEIGHTS.match(name))
        if full:
            raise PublishError(
                f"{source} holds a full model ({', '.join(full[:3])}), not a LoRA adapter: serve it as a "
                "model of its own, or publish the adapter folder it was merged from"
            )
        raise PublishError(f"{source} has no {ADAPTER_CONFIG} at its top: it is not a LoRA adapter folder")
    full = sorted(name for name in top if FULL_WEIGHTS.match(name))
    if full:
        raise PublishError(
            f"{source} holds merged weights ({', '.join(full[:3])}) beside the adapter: publish the "
            "adapter's own folder"
        )
    if not top & set(ADAPTER_WEIGHTS):
        raise PublishError(f"{source} has {ADAPTER_CONFIG} but no {' or '.join(ADAPTER_WEIGHTS)}")
    files = tuple(name for name in names if not LEFT_OUT.search(name))
    stamp = now.strftime("%Y%m%d%H%M%S")
    # Published adapters get a training-job-shaped name: the registration keys released files by it.
    job_name = f"published-{adapter[: 63 - len('published--') - len(stamp)].rstrip('-')}-{stamp}"
    return AdapterPlan(
        files=files, job_name=job_name, artifact_key=f"training/{job_name}/output/model.tar.gz"
    )


def manifest(
    plan: AdapterPlan, *, adapter: str, bucket: str, base_model: str, source: str, metrics: Mapping[str, Any]
) -> dict[str, Any]:
    """The manifest the registration reads: the same contract as the training pipeline's."""
    return {
        "adapter_name": adapter,
        "model_artifact": f"s3://{bucket}/{plan.artifact_key}",
        "training_job_name": plan.job_name,
        "base_model": base_model,
        "recipe": "lora",
        "weights": "adapter",
        "source": source,
        "final_metrics": [
            {"name": k, "value": v} for k, v in sorted(metrics.items()) if isinstance(v, int | float)
        ],
    }


def archive(files: Mapping[str, bytes]) -> bytes:
    """A gzipped tar of the adapter's files at its top, as SageMaker's model.tar.gz holds them."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------------
# Reading the folder: local (FSx, a notebook) or S3 (the export prefix)


def _s3_location(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key if not key or key.endswith("/") else key + "/"


def list_folder(folder: str, s3: Any) -> list[str]:
    if folder.startswith("s3://"):
        bucket, prefix = _s3_location(folder)
        names = []
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            names += [item["Key"][len(prefix) :] for item in page.get("Contents", [])]
        return [name for name in names if name]
    root = Path(folder)
    if not root.is_dir():
        raise PublishError(f"{folder} is not a folder")
    return [str(path.relative_to(root)) for path in root.rglob("*") if path.is_file()]


def read_file(folder: str, name: str, s3: Any) -> bytes:
    if folder.startswith("s3://"):
        bucket, prefix = _s3_location(folder)
        return s3.get_object(Bucket=bucket, Key=prefix + name)["Body"].read()
    return (Path(folder) / name).read_bytes()


def _exists(s3: Any, bucket: str, key: str) -> bool:
    from botocore.exceptions import ClientError

    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError as error:
        if error.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound"):
            return False
        raise
    return True


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m inference.publish", description=__doc__.splitlines()[0])
    parser.add_argument("folder", help="the adapter folder: a local path or s3://bucket/prefix/")
    parser.add_argument("--name", required=True, help="the adapter's name: adapters/<name>/ must be new")
    parser.add_argument(
        "--base-model",
        required=True,
        help="the base model it was trained on, as the endpoint serves it (models/<name>/ or an org/name id)",
    )
    parser.add_argument(
        "--data-bucket", required=True, help="the data bucket (a stack output DataBucketName)"
    )
    parser.add_argument("--region", help="AWS region (default: the environment's)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None, session: Any = None, now: datetime | None = None) -> int:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    from training_pipeline.handlers import AdapterNameTaken, write_manifest

    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        s3 = (session or boto3.Session(region_name=args.region)).client("s3")
        plan = plan_adapter(
            list_folder(args.folder, s3), adapter=args.name, source=args.folder, now=now or datetime.now(UTC)
        )
        key = f"adapters/{args.name}/manifest.json"
        if _exists(s3, args.data_bucket, key):
            raise PublishError(
                f"s3://{args.data_bucket}/{key} exists already; adapters are never overwritten"
            )
        files = {name: read_file(args.folder, name, s3) for name in plan.files}
        metrics = json.loads(files["metrics.json"]) if "metrics.json" in files else {}
        # IfNoneMatch: a published archive is never replaced (S3 refuses the write if the key exists).
        s3.put_object(Bucket=args.data_bucket, Key=plan.artifact_key, Body=archive(files), IfNoneMatch="*")
        document = manifest(
            plan,
            adapter=args.name,
            bucket=args.data_bucket,
            base_model=args.base_model,
            source=args.folder,
            metrics=metrics,
        )
        write_manifest(s3, args.data_bucket, document)
    except (PublishError, AdapterNameTaken) as error:
        print(f"error: {error}", file=sys.stderr)
        return INVALID
    except (ClientError, BotoCoreError) as error:
        print(f"AWS: {error}", file=sys.stderr)
        return AWS_ACCESS
    print(
        f"published {args.name}: s3://{args.data_bucket}/{plan.artifact_key} and s3://{args.data_bucket}/{key}"
    )
    return OK


if __name__ == "__main__":
    sys.exit(main())
