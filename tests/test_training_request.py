"""The request contract: the schema, SageMaker's limits from botocore, the judge's rules, the plan, S3."""

import json
from datetime import UTC, datetime

import boto3
import jsonschema
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from project_config.training import TrainingConfig
from tests.conftest import ROOT
from tests.test_training_pipeline_execution import VALID_INPUTS, VALID_REQUEST
from training_pipeline.deployment import deployment_for
from training_pipeline.request import (
    MAX_HYPERPARAMETER_BYTES,
    SCHEMA_PATH,
    online_problems,
    plan_job,
    request_problems,
    request_schema,
    sagemaker_limits,
    with_defaults,
)

BUCKET = "llmft-pipeline-test-data"
EXAMPLES = sorted((ROOT / "examples" / "training-requests").glob("*.json"))
EXAMPLE_BUCKET = "your-data-bucket"
STARTED = datetime(2026, 12, 2, 17, 5, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def deployment():
    return deployment_for(
        TrainingConfig(allowed_instance_types=("ml.g5.2xlarge", "ml.g5.12xlarge", "ml.p3.2xlarge"))
    )


def fields(problems: list[str]) -> list[str]:
    return [problem.split(":", 1)[0] for problem in problems]


def test_schema_is_valid_json_schema_2020_12():
    jsonschema.Draft202012Validator.check_schema(json.loads(SCHEMA_PATH.read_text()))


def test_sagemakers_limits_are_read_from_botocore_as_the_api_reference_states_them():
    """The CreateTrainingJob API reference: job names of at most 63 characters in [a-zA-Z0-9](-*[a-zA-Z0-9]),
    at most 100 hyperparameters, names up to 256 and values up to 2,500 characters, S3 URIs up to 1,024."""
    limits = sagemaker_limits()
    assert (limits.job_name_max, limits.job_name_pattern) == (63, "[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")
    assert (limits.hyperparameters_max, limits.hyperparameter_key_max, limits.hyperparameter_value_max) == (
        100,
        256,
        2500,
    )
    assert limits.s3_uri_max == 1024
    assert {"ml.g5.2xlarge", "ml.p5.48xlarge"} <= set(limits.instance_types)


def test_the_schema_takes_bounds_from_cdk_json_and_names_from_sagemaker():
    config = TrainingConfig(
        allowed_instance_types=("ml.p5.48xlarge",),
        max_instance_count=8,
        max_runtime_hours=12,
        default_max_runtime_hours=6,
    )
    props = request_schema(deployment_for(config))["properties"]
    assert props["instance_type"]["enum"] == ["ml.p5.48xlarge"]
    assert props["instance_count"]["maximum"] == 8
    assert (props["max_runtime_hours"]["maximum"], props["max_runtime_hours"]["default"]) == (12, 6)
    assert props["recipe"]["enum"] == sorted(
        p.stem for p in (ROOT / "training_image/llmft_train/recipes").glob("*.yaml")
    )
    # 63 less room for the capacity retries' "-r3".
    assert (props["job_name"]["pattern"], props["job_name"]["maxLength"]) == (
        "^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$",
        60,
    )


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_every_example_request_is_valid(path):
    request = json.loads(path.read_text())
    config = TrainingConfig()
    assert request_problems(request, deployment_for(config), EXAMPLE_BUCKET) == []
    assert "adapter_name" in request and request["train_data"].startswith(f"s3://{EXAMPLE_BUCKET}/datasets/")


def test_a_valid_request_has_no_problems_and_defaults_fill_the_rest(deployment):
    assert request_problems(VALID_REQUEST, deployment, BUCKET) == []
    minimal = {
        k: VALID_REQUEST[k] for k in ("recipe", "adapter_name", "train_data", "base_model", "instance_type")
    }
    filled = with_defaults(minimal, deployment)
    assert (filled["instance_count"], filled["use_spot"], filled["max_runtime_hours"]) == (1, False, 24)
    assert filled["hyperparameters"] == {}


# Each case the training-contract issue measured, with the fields the judge must name.
# (case, changes to VALID_REQUEST, fields the judge names); a None removes that field from the request.
REFUSED = [
    ("misspelt field", {"instance_cuont": 4}, ["instance_cuont"]),
    (
        "hyperparameter as a number",
        {"hyperparameters": {"learning_rate": 1e-4}},
        ["hyperparameters.learning_rate"],
    ),
    ("adapter name with _", {"adapter_name": "support_bot"}, ["adapter_name"]),
    ("adapter name of 64", {"adapter_name": "a" * 64}, ["adapter_name"]),
    ("job name with _", {"job_name": "support_bot_1"}, ["job_name"]),
    ("job name of 61", {"job_name": "j" * 61}, ["job_name"]),
    ("dataset with ..", {"train_data": f"s3://{BUCKET}/datasets/../adapters/x.json"}, ["train_data"]),
    ("dataset with //", {"validation_data": f"s3://{BUCKET}/datasets//x.json"}, ["validation_data"]),
    ("dataset with .", {"train_data": f"s3://{BUCKET}/datasets/./x.json"}, ["train_data"]),
    ("dataset in another bucket", {"train_data": "s3://other-bucket/datasets/x.json"}, ["train_data"]),
    ("dataset outside datasets/", {"train_data": f"s3://{BUCKET}/models/x.json"}, ["train_data"]),
    ("the whole datasets/ prefix", {"train_data": f"s3://{BUCKET}/datasets/"}, ["train_data"]),
    ("model outside models/", {"base_model": f"s3://{BUCKET}/datasets/llama/"}, ["base_model"]),
    ("model with ..", {"base_model": f"s3://{BUCKET}/models/../adapters/"}, ["base_model"]),
    ("model id with spaces", {"base_model": "meta llama/8B"}, ["base_model"]),
    (
        "value of 2,501 characters",
        {"hyperparameters": {"default_system": "x" * 2501}},
        ["hyperparameters.default_system"],
    ),
    # Measured: LLaMA-Factory fails on an empty dataset, after the job has started.
    ("max_samples 0", {"hyperparameters": {"max_samples": "0"}}, ["hyperparameters.max_samples"]),
    (
        "eval_strategy with nothing to evaluate",
        {"validation_data": None, "hyperparameters": {"eval_strategy": "steps"}},
        ["hyperparameters.eval_strategy"],
    ),
    (
        "val_size beside a validation set",
        {"hyperparameters": {"val_size": "0.1"}},
        ["hyperparameters.val_size"],
    ),
    ("a managed key changed", {"hyperparameters": {"report_to": "wandb"}}, ["hyperparameters.report_to"]),
    ("another recipe's stage", {"hyperparameters": {"stage": "dpo"}}, ["hyperparameters.stage"]),
    ("a token in lower case", {"hyperparameters": {"hf_token": "x"}}, ["hyperparameters.hf_token"]),
    ("a token in upper case", {"hyperparameters": {"HF_TOKEN": "x"}}, ["hyperparameters.HF_TOKEN"]),
    ("an API key", {"hyperparameters": {"WANDB_API_KEY": "x"}}, ["hyperparameters.WANDB_API_KEY"]),
    ("a token as a value", {"hyperparameters": {"template": "hf_" + "a" * 34}}, ["hyperparameters.template"]),
    ("recipe as a hyperparameter", {"hyperparameters": {"recipe": "lora"}}, ["hyperparameters.recipe"]),
    ("a managed key", {"hyperparameters": {"output_dir": "/tmp"}}, ["hyperparameters.output_dir"]),
    ("a bad value", {"hyperparameters": {"learning_rate": "fast"}}, ["hyperparameters.learning_rate"]),
    (
        "merge with full SFT",
        {"recipe": "full_sft", "hyperparameters": {"merge_adapter": "true"}},
        ["hyperparameters.merge_adapter"],
    ),
    ("1.5 instances", {"instance_count": 1.5}, ["instance_count"]),
    ("0 instances", {"instance_count": 0}, ["instance_count"]),
    ("spot as text", {"use_spot": "yes"}, ["use_spot"]),
    ("an instance type not allowed", {"instance_type": "ml.p5.48xlarge"}, ["instance_type"]),
    ("an unknown recipe", {"recipe": "ppo"}, ["recipe"]),
]


@pytest.mark.parametrize(("changes", "expected"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_each_measured_case_is_refused_naming_its_field(deployment, changes, expected):
    request = {k: v for k, v in {**VALID_REQUEST, **changes}.items() if v is not None}
    assert fields(request_problems(request, deployment, BUCKET)) == expected


def test_missing_required_fields_are_each_named(deployment):
    assert fields(request_problems({"recipe": "lora"}, deployment)) == [
        "adapter_name",
        "train_data",
        "base_model",
        "instance_type",
    ]


@pytest.mark.parametrize(
    ("given", "hub_model", "valid"),
    [(98, True, True), (99, True, False), (99, False, True), (100, False, False)],
)
def test_the_hyperparameter_count_includes_the_keys_the_pipeline_adds(deployment, given, hub_model, valid):
    """SageMaker counts recipe (always) and model_id (Hub models) against its limit of 100."""
    # Any hyperparameter name the image accepts will do: the count is what is judged.
    names = [f"n{i}" for i in range(given)]
    base_model = "org/model" if hub_model else VALID_REQUEST["base_model"]
    request = {**VALID_REQUEST, "base_model": base_model, "hyperparameters": dict.fromkeys(names, "1")}
    problems = [p for p in request_problems(request, deployment, BUCKET) if p.startswith("hyperparameters:")]
    assert (problems == []) is valid, problems


def test_the_hyperparameters_total_size_keeps_the_state_under_the_payload_limit(deployment):
    long_values = {f"default_system{i}": "x" * 2500 for i in range(14)}
    request = {**VALID_REQUEST, "hyperparameters": long_values}
    (problem,) = [
        p for p in request_problems(request, deployment, BUCKET) if p.startswith("hyperparameters:")
    ]
    assert f"at most {MAX_HYPERPARAMETER_BYTES}" in problem and "256 KiB" in problem


def test_every_problem_is_reported_at_once(deployment):
    request = {
        **VALID_REQUEST,
        "adapter_name": "Support Bot",
        "hyperparameters": {"learning_rate": 1, "lora_rnk": "8", "hf_token": "x"},
        "instance_count": 99,
        "colour": "blue",
    }
    problems = request_problems(request, deployment, BUCKET)
    assert fields(problems) == [
        "colour",
        "adapter_name",
        "hyperparameters.learning_rate",
        "instance_count",
        "hyperparameters.hf_token",
        "hyperparameters.lora_rnk",
    ], problems
    assert any("did you mean lora_rank?" in p for p in problems)


def test_offline_any_bucket_is_accepted(deployment):
    request = {**VALID_REQUEST, "train_data": "s3://someone-elses/datasets/x.jsonl"}
    assert request_problems(request, deployment) == []
    assert fields(request_problems(request, deployment, BUCKET)) == ["train_data"]


def test_the_plan_holds_the_jobs_per_request_parts(deployment):
    plan = plan_job(VALID_REQUEST, deployment, data_bucket=BUCKET, volume_kms_key="key", started=STARTED)
    assert plan["job_name"] == "support-bot-v1"
    assert plan["checkpoint_uri"] == f"s3://{BUCKET}/checkpoints/support-bot-v1/"
    assert plan["resources"] == {"InstanceType": "ml.g5.12xlarge", "InstanceCount": 2, "VolumeSizeInGB": 200}
    ebs = plan_job(
        {**VALID_REQUEST, "instance_type": "ml.p3.2xlarge"},
        deployment,
        data_bucket=BUCKET,
        volume_kms_key="key",
        started=STARTED,
    )
    assert ebs["resources"]["VolumeKmsKeyId"] == "key", "EBS volumes are encrypted with the project key"


def test_a_generated_job_name_fits_every_retry_and_comes_from_the_start_time(deployment):
    request = {k: v for k, v in VALID_REQUEST.items() if k != "job_name"} | {"adapter_name": "a" * 63}
    name = plan_job(request, deployment, data_bucket=BUCKET, volume_kms_key="k", started=STARTED)["job_name"]
    assert name == "a" * 45 + "-20261202170501" and len(name) == deployment.job_name_max
    assert len(f"{name}-r{deployment.capacity_attempts}") <= 63


def test_a_model_folder_without_its_slash_is_read_as_the_folder(deployment):
    request = {**VALID_REQUEST, "base_model": f"s3://{BUCKET}/models/llama-3.1-8b-instruct"}
    plan = plan_job(request, deployment, data_bucket=BUCKET, volume_kms_key="k", started=STARTED)
    (model,) = [c for c in plan["channels"] if c["ChannelName"] == "model"]
    assert model["DataSource"]["S3DataSource"]["S3Uri"] == f"s3://{BUCKET}/models/llama-3.1-8b-instruct/"


@pytest.fixture
def s3():
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        for key in VALID_INPUTS:
            client.put_object(Bucket=BUCKET, Key=key, Body=b"{}")
        yield client


def test_online_the_exact_manifest_key_decides_whether_a_name_is_taken(s3):
    s3.put_object(Bucket=BUCKET, Key="adapters/support-bot/manifest.json.bak", Body=b"{}")
    s3.put_object(Bucket=BUCKET, Key="adapters/support-bot-v2/manifest.json", Body=b"{}")
    assert online_problems(VALID_REQUEST, s3, BUCKET) == []
    s3.put_object(Bucket=BUCKET, Key="adapters/support-bot/manifest.json", Body=b"{}")
    (problem,) = online_problems(VALID_REQUEST, s3, BUCKET)
    assert (
        problem.startswith("adapter_name: ")
        and "adapters/support-bot/manifest.json exists already" in problem
    )


def test_online_a_folder_named_without_its_slash_is_pointed_out(s3):
    request = {**VALID_REQUEST, "train_data": f"s3://{BUCKET}/datasets/support"}
    assert online_problems(request, s3, BUCKET) == [
        f"train_data: s3://{BUCKET}/datasets/support is a folder; end the URI with '/' to train on it"
    ]


def test_online_a_model_folder_needs_its_config(s3):
    s3.delete_object(Bucket=BUCKET, Key="models/llama-3.1-8b-instruct/config.json")
    (problem,) = online_problems(VALID_REQUEST, s3, BUCKET)
    assert problem.startswith("base_model: ") and "config.json does not exist" in problem


def test_online_access_errors_are_raised_not_blamed_on_the_request():
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        with pytest.raises(ClientError):
            online_problems(VALID_REQUEST, client, "no-such-bucket")
