"""The training state machine's paths, executed in moto's Step Functions interpreter with the real judge.

The `.sync` training Task and the Lambda functions are substituted as tests/pipeline_moto.py documents.
"""

import json

import pytest
from moto import mock_aws
from moto.s3 import models as s3_models
from moto.s3.exceptions import S3AccessDeniedError
from moto.sagemaker import models as sagemaker_models
from moto.sagemaker.exceptions import ValidationError

from inference.registration import plan_registration
from tests import service_model
from tests.conftest import ROOT, synthesize
from tests.pipeline_moto import (
    BUCKET,
    JOB_FAILED,
    KMS_KEY,
    RECORDER,
    TEST_VALUES,
    VALIDATOR,
    PipelineWorld,
    bundle_dir,
    run_functions_in_process,
)
from training_pipeline import handlers

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
# What VALID_REQUEST names in the bucket: the S3 checks look for them.
VALID_INPUTS = (
    "datasets/support/train.jsonl",
    "datasets/support/validation.jsonl",
    "models/llama-3.1-8b-instruct/config.json",
)
MANIFEST = "adapters/support-bot/manifest.json"


def open_world(app, monkeypatch) -> tuple[PipelineWorld, list[dict]]:
    invocations = run_functions_in_process(monkeypatch, bundle_dir(app, app.stacks.training_pipeline))
    world = PipelineWorld(app.template(app.stacks.training_pipeline))
    world.put_inputs(*VALID_INPUTS)
    return world, invocations


@pytest.fixture
def world(full_app, monkeypatch):
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        yield open_world(full_app, monkeypatch)[0]


def job_outcome(monkeypatch, statuses: dict[str, tuple[str, str | None]]) -> None:
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
    assert request["OutputDataConfig"] == {"S3OutputPath": f"s3://{BUCKET}/training/", "KmsKeyId": KMS_KEY}
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

    manifest = json.loads(world.s3.get_object(Bucket=BUCKET, Key=MANIFEST)["Body"].read())
    assert manifest == {
        "adapter_name": "support-bot",
        "model_artifact": f"s3://{BUCKET}/training/support-bot-v1/output/model.tar.gz",
        "training_job_name": "support-bot-v1",
        "base_model": VALID_REQUEST["base_model"],
        "recipe": "lora",
        "weights": "adapter",
        "execution_arn": manifest["execution_arn"],
        "final_metrics": [{"name": "train:progress", "value": 100.0}],
    }
    assert manifest["execution_arn"].endswith(":run-1")
    assert run.output == manifest, "the execution's output is the manifest"
    (message,) = run.messages
    assert message["Subject"] == "LLM fine-tuning: adapter ready"
    assert json.loads(message["Message"]) == manifest


def test_only_the_plan_travels_after_validation(world):
    """The request is not carried past the judge: the training Task's input is the verdict and its plan."""
    run = world.run(VALID_REQUEST)
    entered = next(
        e
        for e in run.history
        if e["type"] == "ParallelStateEntered" and e["stateEnteredEventDetails"]["name"] == "Train"
    )
    state = json.loads(entered["stateEnteredEventDetails"]["input"])
    assert set(state) == {"valid", "cause", "plan", "attempt"}, set(state)
    assert state["attempt"] == {"number": 1, "job_name": "support-bot-v1"}


def test_the_manifest_is_what_the_inference_stack_registers(world):
    run = world.run(VALID_REQUEST)
    assert run.status == "SUCCEEDED", (run.error, run.cause)
    manifest = json.loads(world.s3.get_object(Bucket=BUCKET, Key=MANIFEST)["Body"].read())
    plan = plan_registration(
        manifest=manifest,
        bucket=BUCKET,
        key=MANIFEST,
        component_prefix="LlmFt",
        served_model=VALID_REQUEST["base_model"],
    )
    assert plan["artifact_key"] == "adapters/support-bot/support-bot-v1/model.tar.gz", plan


def test_a_hub_model_id_becomes_a_hyperparameter_and_defaults_fill_the_rest(world):
    request = {
        "recipe": "qlora_4bit",
        "adapter_name": "faq",
        "train_data": f"s3://{BUCKET}/datasets/support/train.jsonl",
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
    # Generated from the adapter and the execution's start: the same for every retry of one execution.
    assert (
        created["TrainingJobName"].startswith("faq-") and len(created["TrainingJobName"]) == len("faq-") + 14
    )


def test_an_instance_type_without_local_storage_gets_a_kms_encrypted_volume(tmp_path_factory, monkeypatch):
    app = synthesize(
        tmp_path_factory.mktemp("cdk-ebs"),
        {"training": {"allowed_instance_types": ["ml.g5.2xlarge", "ml.p3.2xlarge"]}},
    )
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        world, _ = open_world(app, monkeypatch)
        run = world.run({**VALID_REQUEST, "instance_type": "ml.p3.2xlarge"})
    assert run.status == "SUCCEEDED", (run.error, run.cause)
    (created,) = run.created_jobs()
    assert created["ResourceConfig"]["VolumeKmsKeyId"] == KMS_KEY, created["ResourceConfig"]


def test_an_invalid_request_lists_every_problem_and_starts_no_job(world):
    request = {
        **VALID_REQUEST,
        "instance_cuont": 4,
        "adapter_name": "support_bot",
        "train_data": f"s3://{BUCKET}/datasets/../adapters/x.json",
        "hyperparameters": {"learning_rate": 5e-5, "plot_los": "true"},
    }
    run = world.run(request)
    assert (run.status, run.error) == ("FAILED", "InvalidRequest"), (run.error, run.cause)
    fields = [line.split(":", 1)[0] for line in run.cause.split("\n")]
    assert fields == [
        "instance_cuont",
        "adapter_name",
        "hyperparameters.learning_rate",
        "train_data",
        "hyperparameters.plot_los",
    ], run.cause
    assert "did you mean instance_count?" in run.cause
    assert run.created_jobs() == [] and run.jobs == [], "an invalid request must not start a training job"
    assert run.messages == [], "validation failures are answered by the execution, not notified"


@pytest.mark.parametrize("body", [[VALID_REQUEST], "train please", 42, None])
def test_input_that_is_not_an_object_is_refused_with_a_reason(world, body):
    run = world.run(body)
    assert (run.status, run.error) == ("FAILED", "InvalidRequest"), (run.error, run.cause)
    assert run.cause.startswith("(request): must be a JSON object"), run.cause


def test_an_existing_manifest_refuses_the_name_but_a_lookalike_key_does_not(world):
    world.s3.put_object(Bucket=BUCKET, Key="adapters/support-bot/manifest.json.bak", Body=b"{}")
    assert world.run(VALID_REQUEST, name="lookalike").status == "SUCCEEDED"

    run = world.run({**VALID_REQUEST, "job_name": "support-bot-v2"}, name="again")
    assert (run.status, run.error) == ("FAILED", "InvalidRequest")
    assert run.cause.startswith("adapter_name: ") and f"{MANIFEST} exists already" in run.cause, run.cause
    assert [j["TrainingJobName"] for j in run.jobs] == ["support-bot-v1"], "no second job may start"


def test_missing_datasets_are_refused_before_any_job(world):
    request = {**VALID_REQUEST, "train_data": f"s3://{BUCKET}/datasets/support/"}
    world.s3.delete_object(Bucket=BUCKET, Key="datasets/support/validation.jsonl")
    world.s3.delete_object(Bucket=BUCKET, Key="datasets/support/train.jsonl")
    run = world.run(request)
    assert run.error == "InvalidRequest"
    assert run.cause.split("\n") == [
        f"train_data: no objects under s3://{BUCKET}/datasets/support/",
        f"validation_data: s3://{BUCKET}/datasets/support/validation.jsonl does not exist",
    ], run.cause
    assert run.jobs == []


def test_a_failed_job_notifies_its_reason_and_ends_in_fail(world, monkeypatch):
    reason = "AlgorithmError: llmft: channel 'train' is missing"
    job_outcome(monkeypatch, {"support-bot-v1": ("Failed", reason)})
    run = world.run(VALID_REQUEST)
    assert (run.status, run.error) == ("FAILED", JOB_FAILED), (run.error, run.cause)
    described = json.loads(run.cause)
    assert described["FailureReason"] == reason and described["TrainingJobName"] == "support-bot-v1"
    (message,) = run.messages
    assert message["Subject"] == "LLM fine-tuning: training failed"
    published = json.loads(message["Message"])
    assert published["error"] == JOB_FAILED and reason in published["cause"]
    assert published["request"] == VALID_REQUEST and published["execution_arn"].endswith(":run-1")
    assert world.s3.list_objects_v2(Bucket=BUCKET, Prefix="adapters/")["KeyCount"] == 0, "no adapter recorded"


def test_a_capacity_error_is_retried_as_a_new_job_on_the_same_checkpoints(world, monkeypatch):
    job_outcome(
        monkeypatch,
        {"support-bot-v1": ("Failed", "CapacityError: Unable to provision requested ML compute capacity.")},
    )
    run = world.run(VALID_REQUEST)
    assert run.status == "SUCCEEDED", (run.error, run.cause)
    first, second = run.created_jobs()
    assert (first["TrainingJobName"], second["TrainingJobName"]) == ("support-bot-v1", "support-bot-v1-r2")
    assert first["CheckpointConfig"] == second["CheckpointConfig"], "the retry must resume from checkpoints"
    manifest = json.loads(world.s3.get_object(Bucket=BUCKET, Key=MANIFEST)["Body"].read())
    assert manifest["training_job_name"] == "support-bot-v1-r2"


def test_capacity_retries_stop_after_the_last_attempt(world, monkeypatch):
    reason = "InsufficientCapacityError: We currently do not have sufficient capacity"
    names = ["support-bot-v1", "support-bot-v1-r2", "support-bot-v1-r3"]
    job_outcome(monkeypatch, dict.fromkeys(names, ("Failed", reason)))
    run = world.run(VALID_REQUEST)
    assert run.status == "FAILED" and json.loads(run.cause)["FailureReason"] == reason
    assert [j["TrainingJobName"] for j in run.created_jobs()] == names


def test_a_job_sagemaker_refuses_fails_with_its_error_and_notifies(world, monkeypatch):
    def refuse(self, **kwargs):
        raise ValidationError(message=f"Job name {kwargs['training_job_name']} is in use by another job")

    monkeypatch.setattr(sagemaker_models.SageMakerModelBackend, "create_training_job", refuse)
    run = world.run(VALID_REQUEST)
    assert run.status == "FAILED" and "support-bot-v1 is in use" in run.cause, (run.error, run.cause)
    assert json.loads(run.messages[0]["Message"])["cause"] == run.cause


def test_an_s3_error_in_the_judge_is_notified_and_starts_no_job(world, monkeypatch):
    def refuse(self, *args, **kwargs):
        raise S3AccessDeniedError()

    monkeypatch.setattr(s3_models.S3Backend, "head_object", refuse)
    run = world.run(VALID_REQUEST)
    # Lambda names a function's error by its exception class: botocore's for S3's AccessDenied.
    assert (run.status, run.error) == ("FAILED", "AccessDenied"), (run.error, run.cause)
    assert "HeadObject operation: Access Denied" in run.cause, run.cause
    assert run.jobs == [], "no training job may start"
    assert [m["Subject"] for m in run.messages] == ["LLM fine-tuning: training failed"]


def test_a_manifest_written_meanwhile_is_kept_and_the_conflict_notified(world, monkeypatch):
    """S3's 412 to the conditional write: another execution published the name while this one trained."""
    other = {
        "adapter_name": "support-bot",
        "execution_arn": "arn:aws:states:...:other",
        "training_job_name": "x",
    }
    original = handlers.write_manifest

    def write_after_another(s3, bucket, document, **kwargs):
        s3.put_object(Bucket=bucket, Key=MANIFEST, Body=json.dumps(other).encode())
        return original(s3, bucket, document, **kwargs)

    monkeypatch.setattr(handlers, "write_manifest", write_after_another)
    run = world.run(VALID_REQUEST)
    assert (run.status, run.error) == ("FAILED", "AdapterNameTaken"), (run.error, run.cause)
    assert json.loads(world.s3.get_object(Bucket=BUCKET, Key=MANIFEST)["Body"].read()) == other
    assert "training/support-bot-v1/output/model.tar.gz" in run.cause, "the trained adapter must be findable"
    assert [m["Subject"] for m in run.messages] == ["LLM fine-tuning: training failed"]


def test_a_notification_that_fails_never_fails_a_trained_adapter(world, monkeypatch):
    from moto.sns import models as sns_models

    def refuse(self, *args, **kwargs):
        raise sns_models.SNSNotFoundError("Topic does not exist")

    monkeypatch.setattr(sns_models.SNSBackend, "publish", refuse)
    run = world.run(VALID_REQUEST)
    assert run.status == "SUCCEEDED", (run.error, run.cause)
    assert run.output["adapter_name"] == "support-bot", "the output is still the manifest"
    assert world.s3.get_object(Bucket=BUCKET, Key=MANIFEST)


def test_functions_are_called_with_what_they_need_only(full_app, monkeypatch):
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        world, invocations = open_world(full_app, monkeypatch)
        world.run(VALID_REQUEST)
    validate, record = invocations
    assert validate["function"] == VALIDATOR and set(validate["event"]) == {"request", "start_time"}
    assert validate["event"]["request"] == VALID_REQUEST
    assert record["function"] == RECORDER and set(record["event"]) == {
        "plan",
        "training_job_name",
        "execution_arn",
    }


EXAMPLES = sorted((ROOT / "examples" / "training-requests").glob("*.json"))
# The service operation of each Task as the history names it (resource type, resource).
TASK_OPERATIONS = {
    ("lambda", "invoke"): ("lambda", "Invoke"),
    ("sns", "publish"): ("sns", "Publish"),
    ("aws-sdk:sagemaker", "createTrainingJob"): ("sagemaker", "CreateTrainingJob"),
    ("aws-sdk:sagemaker", "describeTrainingJob"): ("sagemaker", "DescribeTrainingJob"),
}


def _example_request(path) -> dict:
    request = json.loads(path.read_text().replace("your-data-bucket", BUCKET))
    return {**request, "instance_type": "ml.g5.12xlarge"}


def _inputs_of(request: dict) -> list[str]:
    keys = []
    for field in ("train_data", "validation_data"):
        if field in request:
            key = request[field].split("/", 3)[3]
            keys.append(key + "part-0.jsonl" if key.endswith("/") else key)
    if request["base_model"].startswith("s3://"):
        keys.append(request["base_model"].split("/", 3)[3].rstrip("/") + "/config.json")
    return keys


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_every_tasks_rendered_parameters_pass_botocores_validator(full_app, monkeypatch, path):
    """What the state machine sends for each example request, capacity retry included, is a valid request
    for the operation as botocore's service model describes it (shapes, required fields, enums, lengths,
    patterns: tests/service_model.py)."""
    request = _example_request(path)
    job = request.get("job_name")
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        world, _ = open_world(full_app, monkeypatch)
        world.put_inputs(*_inputs_of(request))
        if "base_adapter" in request:
            # The adapter it continues, as an earlier run of the pipeline recorded it.
            sft = {
                "recipe": "lora",
                "base_model": request["base_model"],
                "model_artifact": f"s3://{BUCKET}/training/{request['base_adapter']}-1/output/model.tar.gz",
            }
            world.s3.put_object(
                Bucket=BUCKET,
                Key=f"adapters/{request['base_adapter']}/manifest.json",
                Body=json.dumps(sft).encode(),
            )
        if job:
            job_outcome(monkeypatch, {job: ("Failed", "CapacityError: Unable to provision capacity.")})
        run = world.run(request)
    assert run.status == "SUCCEEDED", (run.error, run.cause)
    checked = []
    for event in run.history:
        if event["type"] != "TaskScheduled":
            continue
        details = event["taskScheduledEventDetails"]
        service, operation = TASK_OPERATIONS[(details["resourceType"], details["resource"])]
        parameters = json.loads(details["parameters"])
        if "Payload" in parameters:
            parameters["Payload"] = json.dumps(parameters["Payload"])  # Step Functions sends it as JSON text
        assert service_model.request_problems(service, operation, parameters) == [], parameters
        checked.append(operation)
    expected_jobs = 2 if job else 1
    assert checked.count("CreateTrainingJob") == expected_jobs and checked.count("Invoke") == 2, checked
    assert "Publish" in checked


@pytest.mark.parametrize(
    ("changes", "weights"),
    [
        ({"hyperparameters": {"merge_adapter": "true"}}, "adapter_and_merged"),
        ({"hyperparameters": {"merge_adapter": "no"}}, "adapter"),
        ({"recipe": "full_sft"}, "full"),
    ],
)
def test_the_manifest_says_what_the_archive_holds(world, changes, weights):
    run = world.run({**VALID_REQUEST, **changes})
    assert run.status == "SUCCEEDED", (run.error, run.cause)
    assert run.output["weights"] == weights
