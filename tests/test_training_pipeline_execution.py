"""The training state machine's paths, executed in moto's Step Functions interpreter."""

import json

import pytest
from moto import mock_aws
from moto.s3 import models as s3_models
from moto.s3.exceptions import S3AccessDeniedError
from moto.sagemaker import models as sagemaker_models
from moto.sagemaker.exceptions import ValidationError

from inference.registration import plan_registration
from tests.conftest import synthesize
from tests.pipeline_moto import BUCKET, TEST_VALUES, PipelineWorld

VALID_REQUEST = {
    "recipe": "lora",
    "adapter_name": "support-bot",
    "train_data": f"s3://{BUCKET}/datasets/support/train.jsonl",
    "validation_data": f"s3://{BUCKET}/datasets/support/validation.jsonl",
    "base_model": f"s3://{BUCKET}/models/llama-3.1-8b-instruct/",
    "instance_type": "ml.g5.12xlarge",
    "instance_count": 2,
    "use_spot": True,
    "max_runtime_hours": 10,
    "hyperparameters": {"learning_rate": "5e-5", "num_train_epochs": "2"},
    "job_name": "support-bot-v1",
}


@pytest.fixture
def world(full_app):
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        yield PipelineWorld(full_app.template(full_app.stacks.training_pipeline))


def _job_outcome(monkeypatch, statuses: dict[str, tuple[str, str | None]]) -> None:
    """Make moto's training jobs end as given (by job name); others complete as moto's do."""
    original = sagemaker_models.FakeTrainingJob.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        if self.training_job_name in statuses:
            status, reason = statuses[self.training_job_name]
            self.training_job_status = self.secondary_status = status
            if reason:
                self.failure_reason = reason

    monkeypatch.setattr(sagemaker_models.FakeTrainingJob, "__init__", init)


def test_a_valid_request_trains_writes_the_manifest_and_notifies(world):
    run = world.run(VALID_REQUEST)
    assert run.status == "SUCCEEDED", (run.error, run.cause)

    (request,) = run.created_jobs()
    assert request["TrainingJobName"] == "support-bot-v1"
    assert request["RoleArn"] == TEST_VALUES["TrainingRoleArn"]
    assert request["AlgorithmSpecification"]["TrainingImage"] == TEST_VALUES["TrainingImage"]
    assert {d["Name"] for d in request["AlgorithmSpecification"]["MetricDefinitions"]} >= {
        "train:loss",
        "validation:loss",
    }, "metric definitions must come from the image's progress module"
    channels = {
        c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in request["InputDataConfig"]
    }
    assert channels == {
        "train": VALID_REQUEST["train_data"],
        "validation": VALID_REQUEST["validation_data"],
        "model": VALID_REQUEST["base_model"],
    }
    assert request["HyperParameters"] == {"learning_rate": "5e-5", "num_train_epochs": "2", "recipe": "lora"}
    assert request["OutputDataConfig"] == {
        "S3OutputPath": f"s3://{BUCKET}/training/",
        "KmsKeyId": TEST_VALUES["KmsKeyArn"],
    }
    assert request["CheckpointConfig"]["S3Uri"] == f"s3://{BUCKET}/checkpoints/support-bot-v1/"
    # ml.g5 has local NVMe volumes, for which SageMaker refuses a volume KMS key.
    assert request["ResourceConfig"] == {
        "InstanceType": "ml.g5.12xlarge",
        "InstanceCount": 2,
        "VolumeSizeInGB": 200,
    }
    assert request["StoppingCondition"] == {
        "MaxRuntimeInSeconds": 36000,
        "MaxWaitTimeInSeconds": 36000 + 24 * 3600,
    }
    assert request["EnableManagedSpotTraining"] is True
    assert request["EnableInterContainerTrafficEncryption"] is True
    assert request["VpcConfig"] == {
        "SecurityGroupIds": [TEST_VALUES["SecurityGroupId"]],
        "Subnets": [TEST_VALUES["Subnet0"], TEST_VALUES["Subnet1"]],
    }
    assert request["Environment"] == {"HF_TOKEN_SECRET_ARN": TEST_VALUES["HfTokenSecretArn"]}
    tags = {t["Key"]: t["Value"] for t in request["Tags"]}
    assert tags["llmft:execution-name"] == "run-1" and tags["llmft:adapter-name"] == "support-bot"
    assert tags["llmft:execution-arn"].endswith(":run-1"), tags

    (job,) = run.jobs
    assert job["TrainingJobName"] == "support-bot-v1", "moto must have received the job"

    body = world.s3.get_object(Bucket=BUCKET, Key="adapters/support-bot/manifest.json")["Body"].read()
    manifest = json.loads(body)
    assert manifest == {
        "adapter_name": "support-bot",
        "model_artifact": f"s3://{BUCKET}/training/support-bot-v1/output/model.tar.gz",
        "training_job_name": "support-bot-v1",
        "base_model": VALID_REQUEST["base_model"],
        "recipe": "lora",
        "execution_arn": manifest["execution_arn"],
        "final_metrics": [{"name": "train:progress", "value": 100.0}],
    }
    assert manifest["execution_arn"].endswith(":run-1")
    assert run.output == manifest, "the execution's output is the manifest"
    (message,) = run.messages
    assert message["Subject"] == "LLM fine-tuning: adapter ready"
    assert json.loads(message["Message"]) == manifest


def test_the_manifest_is_what_the_inference_stack_registers(world):
    run = world.run(VALID_REQUEST)
    assert run.status == "SUCCEEDED", (run.error, run.cause)
    key = "adapters/support-bot/manifest.json"
    manifest = json.loads(world.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    plan = plan_registration(
        manifest=manifest,
        bucket=BUCKET,
        key=key,
        component_prefix="LlmFt",
        served_model=VALID_REQUEST["base_model"],
    )
    assert plan["artifact_key"] == "adapters/support-bot/support-bot-v1/model.tar.gz", plan


def test_a_hub_model_id_becomes_a_hyperparameter_and_defaults_fill_the_rest(world):
    request = {
        "recipe": "qlora_4bit",
        "adapter_name": "faq",
        "train_data": f"s3://{BUCKET}/datasets/faq.jsonl",
        "base_model": "meta-llama/Llama-3.1-8B-Instruct",
        "instance_type": "ml.g5.2xlarge",
    }
    run = world.run(request)
    assert run.status == "SUCCEEDED", (run.error, run.cause)
    (created,) = run.created_jobs()
    assert [c["ChannelName"] for c in created["InputDataConfig"]] == ["train"]
    assert created["HyperParameters"] == {
        "recipe": "qlora_4bit",
        "model_id": "meta-llama/Llama-3.1-8B-Instruct",
    }
    assert created["ResourceConfig"]["InstanceCount"] == 1
    assert created["StoppingCondition"] == {"MaxRuntimeInSeconds": 24 * 3600}, "on demand: no spot wait"
    assert created["EnableManagedSpotTraining"] is False
    assert created["TrainingJobName"].startswith("llmft-"), "a job name is generated when none is given"


def test_an_instance_type_without_local_storage_gets_a_kms_encrypted_volume(tmp_path_factory):
    app = synthesize(
        tmp_path_factory.mktemp("cdk-ebs"),
        {"training": {"allowed_instance_types": ["ml.g5.2xlarge", "ml.p3.2xlarge"]}},
    )
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        world = PipelineWorld(app.template(app.stacks.training_pipeline))
        run = world.run({**VALID_REQUEST, "instance_type": "ml.p3.2xlarge"})
    assert run.status == "SUCCEEDED", (run.error, run.cause)
    (created,) = run.created_jobs()
    assert created["ResourceConfig"]["VolumeKmsKeyId"] == TEST_VALUES["KmsKeyArn"], created["ResourceConfig"]


def test_a_job_polled_while_in_progress_is_waited_for(world, monkeypatch):
    _job_outcome(monkeypatch, {"support-bot-v1": ("InProgress", None)})
    original = sagemaker_models.SageMakerModelBackend.describe_training_job
    calls = []

    def describe(self, name):
        calls.append(name)
        if len(calls) == 2:
            self.training_jobs[name].training_job_status = "Completed"
            self.training_jobs[name].secondary_status = "Completed"
        return original(self, name)

    monkeypatch.setattr(sagemaker_models.SageMakerModelBackend, "describe_training_job", describe)
    run = world.run(VALID_REQUEST)
    assert run.status == "SUCCEEDED", (run.error, run.cause)
    entered = [e["stateEnteredEventDetails"]["name"] for e in run.history if e["type"] == "WaitStateEntered"]
    assert entered.count("Wait for job") >= 2, "the state machine must poll again while the job runs"


def test_a_failed_job_publishes_its_reason_and_ends_in_fail(world, monkeypatch):
    reason = "AlgorithmError: llmft: channel 'train' is missing"
    _job_outcome(monkeypatch, {"support-bot-v1": ("Failed", reason)})
    run = world.run(VALID_REQUEST)
    assert run.status == "FAILED"
    assert run.error == "TrainingJobFailed" and run.cause == reason, (run.error, run.cause)
    (message,) = run.messages
    assert message["Subject"] == "LLM fine-tuning: training failed"
    published = json.loads(message["Message"])
    assert published["failure_reason"] == reason and published["status"] == "Failed"
    assert published["training_job_name"] == "support-bot-v1"
    listed = world.s3.list_objects_v2(Bucket=BUCKET, Prefix="adapters/")
    assert listed["KeyCount"] == 0, "a failed job must not record an adapter"


def test_a_stopped_job_without_a_reason_still_fails_with_a_cause(world, monkeypatch):
    _job_outcome(monkeypatch, {"support-bot-v1": ("Stopped", None)})
    run = world.run(VALID_REQUEST)
    assert run.status == "FAILED" and run.error == "TrainingJobFailed"
    assert run.cause == "training job support-bot-v1 ended Stopped (Stopped)", run.cause
    assert len(run.messages) == 1


def test_a_capacity_error_is_retried_as_a_new_job_on_the_same_checkpoints(world, monkeypatch):
    _job_outcome(
        monkeypatch,
        {"support-bot-v1": ("Failed", "CapacityError: Unable to provision requested ML compute capacity.")},
    )
    run = world.run(VALID_REQUEST)
    assert run.status == "SUCCEEDED", (run.error, run.cause)
    first, second = run.created_jobs()
    assert (first["TrainingJobName"], second["TrainingJobName"]) == ("support-bot-v1", "support-bot-v1-r2")
    assert first["CheckpointConfig"] == second["CheckpointConfig"], "the retry must resume from checkpoints"
    manifest = json.loads(
        world.s3.get_object(Bucket=BUCKET, Key="adapters/support-bot/manifest.json")["Body"].read()
    )
    assert manifest["training_job_name"] == "support-bot-v1-r2"


def test_capacity_retries_stop_after_the_last_attempt(world, monkeypatch):
    reason = "CapacityError: Unable to provision requested ML compute capacity."
    names = ["support-bot-v1", "support-bot-v1-r2", "support-bot-v1-r3"]
    _job_outcome(monkeypatch, dict.fromkeys(names, ("Failed", reason)))
    run = world.run(VALID_REQUEST)
    assert run.status == "FAILED" and run.cause == reason
    assert [j["TrainingJobName"] for j in run.created_jobs()] == names


def test_a_job_sagemaker_refuses_fails_with_its_error_and_notifies(world, monkeypatch):
    def refuse(self, **kwargs):
        raise ValidationError(message=f"Job name {kwargs['training_job_name']} is in use by another job")

    monkeypatch.setattr(sagemaker_models.SageMakerModelBackend, "create_training_job", refuse)
    run = world.run(VALID_REQUEST)
    assert run.status == "FAILED" and run.error == "TrainingJobNotCreated", (run.error, run.cause)
    assert "support-bot-v1" in run.cause, run.cause
    assert json.loads(run.messages[0]["Message"])["error"] == "TrainingJobNotCreated"


def test_an_existing_adapter_is_never_overwritten(world):
    world.s3.put_object(Bucket=BUCKET, Key="adapters/support-bot/manifest.json", Body=b"{}")
    run = world.run(VALID_REQUEST)
    assert run.status == "FAILED" and run.error == "InvalidRequest.adapter_name"
    assert "adapters/support-bot/manifest.json exists already" in run.cause, run.cause
    assert run.created_jobs() == [] and run.jobs == [], "no training job may start"
    assert (
        world.s3.get_object(Bucket=BUCKET, Key="adapters/support-bot/manifest.json")["Body"].read() == b"{}"
    )


def test_an_adapter_lookup_s3_refuses_ends_in_fail_before_any_job(world, monkeypatch):
    def refuse(self, *args, **kwargs):
        raise S3AccessDeniedError()

    monkeypatch.setattr(s3_models.S3Backend, "list_objects_v2", refuse)
    run = world.run(VALID_REQUEST)
    assert run.status == "FAILED" and run.error == "AdapterLookupFailed", (run.error, run.cause)
    assert run.cause, "the cause must carry S3's reason"
    assert run.created_jobs() == [] and run.jobs == [], "no training job may start"


def _without(field: str) -> dict:
    return {k: v for k, v in VALID_REQUEST.items() if k != field}


# (request, error, words of the cause): each must end in Fail before any training job exists.
INVALID_REQUESTS = [
    (_without("recipe"), "InvalidRequest.recipe", "recipe: is required"),
    (
        {**VALID_REQUEST, "recipe": "dpo"},
        "InvalidRequest.recipe",
        "must be one of: full_sft, lora, qlora_4bit",
    ),
    ({**VALID_REQUEST, "adapter_name": ""}, "InvalidRequest.adapter_name", "must not be empty"),
    ({**VALID_REQUEST, "adapter_name": "team/bot"}, "InvalidRequest.adapter_name", "must not contain '/'"),
    (
        {**VALID_REQUEST, "train_data": "s3://someone-elses-bucket/datasets/x.jsonl"},
        "InvalidRequest.train_data",
        "in the data bucket under datasets/",
    ),
    (
        {**VALID_REQUEST, "train_data": f"s3://{BUCKET}/datasets/"},
        "InvalidRequest.train_data",
        "not the whole",
    ),
    (
        {**VALID_REQUEST, "validation_data": f"s3://{BUCKET}/models/x.jsonl"},
        "InvalidRequest.validation_data",
        "under datasets/",
    ),
    (
        {**VALID_REQUEST, "base_model": f"s3://{BUCKET}/datasets/llama/"},
        "InvalidRequest.base_model",
        "under models/",
    ),
    ({**VALID_REQUEST, "instance_type": "ml.p5.4xlarge"}, "InvalidRequest.instance_type", "must be one of"),
    ({**VALID_REQUEST, "instance_count": 0}, "InvalidRequest.instance_count", "at least 1"),
    ({**VALID_REQUEST, "instance_count": 9}, "InvalidRequest.instance_count", "at most 4"),
    ({**VALID_REQUEST, "instance_count": "2"}, "InvalidRequest.instance_count", "must be an integer"),
    ({**VALID_REQUEST, "instance_count": 1.5}, "InvalidRequest.instance_count", "must be an integer"),
    ({**VALID_REQUEST, "max_runtime_hours": 2.5}, "InvalidRequest.max_runtime_hours", "must be an integer"),
    ({**VALID_REQUEST, "max_runtime_hours": 100}, "InvalidRequest.max_runtime_hours", "at most 72"),
    ({**VALID_REQUEST, "use_spot": "yes"}, "InvalidRequest.use_spot", "must be a boolean"),
    ({**VALID_REQUEST, "hyperparameters": "lr=1e-4"}, "InvalidRequest.hyperparameters", "must be an object"),
    ({**VALID_REQUEST, "job_name": "-support"}, "InvalidRequest.job_name", "must match"),
]


@pytest.mark.parametrize(
    ("request_body", "error", "cause"), INVALID_REQUESTS, ids=[f"{c[1]}:{c[2]}" for c in INVALID_REQUESTS]
)
def test_an_invalid_request_fails_naming_field_and_rule_and_starts_no_job(world, request_body, error, cause):
    run = world.run(request_body)
    assert run.status == "FAILED"
    assert run.error == error, (run.error, run.cause)
    field = error.split(".", 1)[1]
    assert run.cause.startswith(f"{field}: ") and cause in run.cause, run.cause
    assert run.created_jobs() == [] and run.jobs == [], "an invalid request must not start a training job"
    assert run.messages == [], "validation failures are answered by the execution, not notified"
