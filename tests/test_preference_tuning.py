"""Preference tuning end to end on the pipeline's side: a dpo run on an SFT adapter is planned with the
adapter as a channel, its manifest records the lineage, and its adapter is registered like any other."""

from datetime import UTC, datetime

import pytest

from inference.registration import plan_registration
from project_config.training import TrainingConfig
from tests.pipeline_moto import BUCKET
from training_pipeline.deployment import deployment_for
from training_pipeline.request import base_adapter_problems, manifest, plan_job, request_problems

BASE_MODEL = f"s3://{BUCKET}/models/llama-3.1-8b-instruct/"
SFT_ARTIFACT = f"s3://{BUCKET}/training/support-bot-v1-20261201/output/model.tar.gz"
REQUEST = {
    "recipe": "dpo",
    "adapter_name": "support-bot-v1-dpo",
    "base_adapter": "support-bot-v1",
    "train_data": f"s3://{BUCKET}/datasets/support-preferences/train.jsonl",
    "base_model": BASE_MODEL,
    "instance_type": "ml.g6e.2xlarge",
}
SFT_MANIFEST = {"recipe": "lora", "base_model": BASE_MODEL, "model_artifact": SFT_ARTIFACT}


@pytest.fixture(scope="module")
def deployment():
    return deployment_for(TrainingConfig(allowed_instance_types=("ml.g6e.2xlarge",)))


def test_a_dpo_request_on_an_sft_adapter_is_valid(deployment):
    assert request_problems(REQUEST, deployment, BUCKET) == []
    assert base_adapter_problems(REQUEST, SFT_MANIFEST, BUCKET) == []


def test_the_base_model_is_compared_as_a_folder():
    assert (
        base_adapter_problems({**REQUEST, "base_model": BASE_MODEL.rstrip("/")}, SFT_MANIFEST, BUCKET) == []
    )


def dpo_plan(deployment) -> dict:
    return plan_job(
        REQUEST,
        deployment,
        data_bucket=BUCKET,
        volume_kms_key="arn:aws:kms:us-east-1:123456789012:key/k",
        started=datetime(2026, 12, 2, 17, 5, tzinfo=UTC),
        base_adapter_artifact=SFT_ARTIFACT,
    )


def test_the_manifest_of_a_dpo_run_names_the_adapter_it_continued(deployment):
    plan = dpo_plan(deployment)
    description = {
        "TrainingJobName": plan["job_name"],
        "ModelArtifacts": {
            "S3ModelArtifacts": f"s3://{BUCKET}/training/{plan['job_name']}/output/model.tar.gz"
        },
    }
    document = manifest(plan, description, "arn:aws:states:us-east-1:123456789012:execution:train:x")
    assert document["recipe"] == "dpo" and document["base_adapter"] == "support-bot-v1"
    assert "base_adapter" not in manifest({**plan, "base_adapter": None}, description, "arn:x")


def test_a_dpo_adapter_is_registered_like_any_other(deployment):
    plan = dpo_plan(deployment)
    artifact = f"s3://{BUCKET}/training/{plan['job_name']}/output/model.tar.gz"
    common = {
        "model_artifact": artifact,
        "training_job_name": plan["job_name"],
        "base_model": "models/llama/",
    }
    registered = {
        recipe: plan_registration(
            manifest={"adapter_name": "a", "recipe": recipe, **common, **extra},
            bucket=BUCKET,
            key="adapters/a/manifest.json",
            component_prefix="LlmFt",
            served_model=f"s3://{BUCKET}/models/llama/",
        )
        for recipe, extra in (("lora", {}), ("dpo", {"base_adapter": "support-bot-v1"}))
    }
    assert registered["dpo"] == registered["lora"]
