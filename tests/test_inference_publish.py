"""Adapters from anywhere: a HyperPod or notebook output folder, published for the registration to serve."""

import io
import json
import tarfile
from datetime import UTC, datetime

import boto3
import pytest
from moto import mock_aws

from inference import publish
from inference.registration import ManifestError, plan_registration

BUCKET = "llmft-data"
NOW = datetime(2026, 12, 2, 17, 5, 1, tzinfo=UTC)
BASE_MODEL = "models/llama-3.1-8b-instruct/"
# What the image's `train` writes into a HyperPod run's model folder (cli.write_model), with a merge.
HYPERPOD_MODEL_FOLDER = {
    "adapter_config.json": b'{"peft_type": "LORA", "r": 16}',
    "adapter_model.safetensors": b"lora weights",
    "tokenizer.json": b"{}",
    "tokenizer_config.json": b"{}",
    "llamafactory_config.yaml": b"stage: sft\n",
    "metrics.json": b'{"global_step": 120, "loss": 1.25, "resumed_from": null}',
    "merged/model-00001-of-00002.safetensors": b"merged weights",
    "merged/config.json": b"{}",
}


def write_folder(root, files):
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def members(archive: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}


@pytest.fixture
def s3():
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


def _publish(folder, name="hyperpod-run-1", session=None):
    argv = [
        str(folder),
        "--name",
        name,
        "--base-model",
        BASE_MODEL,
        "--data-bucket",
        BUCKET,
        "--region",
        "us-east-1",
    ]
    return publish.main(argv, session=session or boto3.Session(region_name="us-east-1"), now=NOW)


@pytest.mark.parametrize("where", ["local folder", "export prefix"])
def test_a_hyperpod_output_folder_is_published_and_registers(s3, tmp_path, capsys, where):
    folder = write_folder(tmp_path / "model", HYPERPOD_MODEL_FOLDER)
    if where == "export prefix":
        for name, data in HYPERPOD_MODEL_FOLDER.items():
            s3.put_object(Bucket=BUCKET, Key=f"hyperpod/jobs/run-1/model/{name}", Body=data)
        folder = f"s3://{BUCKET}/hyperpod/jobs/run-1/model"
    assert _publish(folder) == publish.OK, capsys.readouterr().err
    key = "adapters/hyperpod-run-1/manifest.json"
    manifest = json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    assert manifest["weights"] == "adapter" and manifest["source"] == str(folder)
    assert {"name": "loss", "value": 1.25} in manifest["final_metrics"]
    artifact_key = manifest["model_artifact"].split(f"s3://{BUCKET}/", 1)[1]
    packed = members(s3.get_object(Bucket=BUCKET, Key=artifact_key)["Body"].read())
    assert sorted(packed) == sorted(n for n in HYPERPOD_MODEL_FOLDER if not n.startswith("merged/"))
    assert packed["adapter_model.safetensors"] == b"lora weights"
    plan = plan_registration(
        manifest=manifest, bucket=BUCKET, key=key, component_prefix="LlmFt", served_model=BASE_MODEL
    )
    assert (
        plan["artifact_key"] == "adapters/hyperpod-run-1/published-hyperpod-run-1-20261202170501/model.tar.gz"
    )


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"config.json": b"{}", "model-00001-of-00004.safetensors": b"w"}, "holds a full model"),
        (
            {"config.json": b"{}", "model.safetensors": b"w", "adapter_config.json": b"{}"},
            "holds merged weights",
        ),
        ({"adapter_config.json": b"{}"}, "no adapter_model.safetensors or adapter_model.bin"),
        ({"tokenizer.json": b"{}"}, "has no adapter_config.json at its top"),
    ],
    ids=["full model", "merged beside the adapter", "no weights", "nothing"],
)
def test_what_is_not_a_lora_adapter_is_refused_and_nothing_is_written(s3, tmp_path, capsys, files, message):
    folder = write_folder(tmp_path / "out", files)
    assert _publish(folder) == publish.INVALID
    assert message in capsys.readouterr().err
    assert s3.list_objects_v2(Bucket=BUCKET).get("KeyCount", 0) == 0


def test_a_published_name_is_never_overwritten(s3, tmp_path, capsys):
    s3.put_object(Bucket=BUCKET, Key="adapters/hyperpod-run-1/manifest.json", Body=b"{}")
    assert _publish(write_folder(tmp_path / "model", HYPERPOD_MODEL_FOLDER)) == publish.INVALID
    assert "exists already" in capsys.readouterr().err
    assert s3.get_object(Bucket=BUCKET, Key="adapters/hyperpod-run-1/manifest.json")["Body"].read() == b"{}"


def test_a_bad_name_is_refused(s3, tmp_path, capsys):
    assert _publish(write_folder(tmp_path / "model", HYPERPOD_MODEL_FOLDER), name="Run_1") == publish.INVALID
    assert "--name 'Run_1'" in capsys.readouterr().err


def test_the_registration_refuses_an_archive_with_merged_weights():
    manifest = {
        "adapter_name": "support-bot",
        "model_artifact": f"s3://{BUCKET}/training/job-1/output/model.tar.gz",
        "training_job_name": "job-1",
        "base_model": BASE_MODEL,
        "recipe": "lora",
        "weights": "adapter_and_merged",
    }
    with pytest.raises(ManifestError, match="'adapter_and_merged' weights .* python -m inference.publish"):
        plan_registration(
            manifest=manifest,
            bucket=BUCKET,
            key="adapters/support-bot/manifest.json",
            component_prefix="LlmFt",
            served_model=BASE_MODEL,
        )
