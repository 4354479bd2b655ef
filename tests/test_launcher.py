"""The launcher CLI against moto (Step Functions, S3, CloudWatch Logs) and botocore's Stubber (SageMaker
StopTrainingJob, which moto lacks; CloudFormation): start and stream, stop, status, every exit status."""

import io
import json
import time

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from tests.pipeline_moto import BUCKET, REGION, TRAINING_LOG_GROUP
from tests.test_training_pipeline_execution import MANIFEST, VALID_REQUEST, job_outcome, open_world
from training_pipeline import launch


@pytest.fixture
def world(full_app, monkeypatch):
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        world, _ = open_world(full_app, monkeypatch)
        monkeypatch.setattr(launch.Aws, "output", lambda self, key: _outputs(world)[key])
        yield world


def _outputs(world) -> dict[str, str]:
    """The TrainingPipeline stack's outputs as CloudFormation returns them (moto's CloudFormation needs
    packages this project does not install; `Aws.output`'s own reading is tested with the Stubber below)."""
    return {"StateMachineArn": world.state_machine_arn, "DataBucketName": BUCKET}


def _write(tmp_path, request) -> str:
    path = tmp_path / "request.json"
    path.write_text(json.dumps(request))
    return str(path)


def _launch(*argv):
    out, err = io.StringIO(), io.StringIO()
    code = launch.main([*argv, "--region", REGION], out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def _job_logs(world, job_name: str, lines: list[str]) -> None:
    world.logs.create_log_group(logGroupName=TRAINING_LOG_GROUP)
    stream = f"{job_name}/algo-1-1733150000"
    world.logs.create_log_stream(logGroupName=TRAINING_LOG_GROUP, logStreamName=stream)
    world.logs.put_log_events(
        logGroupName=TRAINING_LOG_GROUP,
        logStreamName=stream,
        logEvents=[
            {"timestamp": int(time.time() * 1000) + i, "message": line} for i, line in enumerate(lines)
        ],
    )


PROGRESS = [
    "llmft data train: 1200 rows (train/support.jsonl: alpaca)",
    "llmft step=10 loss=1.2345 learning_rate=9.000e-05 epoch=0.50 tokens_per_second=8123.4",
    "llmft eval step=10 eval_loss=1.3000",
]


def test_start_and_wait_streams_the_jobs_logs_links_and_the_manifest(world, tmp_path):
    _job_logs(world, "support-bot-v1", PROGRESS)
    code, out, err = _launch(
        _write(tmp_path, VALID_REQUEST), "--wait", "--poll-seconds", "0", "--name", "cli-run"
    )
    assert code == launch.OK, err
    assert "started arn:aws:states:" in out and ":cli-run" in out, out
    assert (
        "console: https://us-east-1.console.aws.amazon.com/states/home?region=us-east-1#/v2/executions/details/"
        in out
    )
    assert "training job support-bot-v1" in out
    assert (
        "job:  https://us-east-1.console.aws.amazon.com/sagemaker/home?region=us-east-1#/jobs/support-bot-v1"
        in out
    )
    assert "$252Faws$252Fsagemaker$252FTrainingJobs$3FlogStreamNameFilter$3Dsupport-bot-v1" in out, out
    for line in PROGRESS:
        assert f"[algo-1] {line}" in out, out
    manifest = json.loads(out.split("succeeded: adapter support-bot\n", 1)[1])
    assert manifest["training_job_name"] == "support-bot-v1"


def test_metrics_only_prints_the_losses_not_the_log(world, tmp_path):
    _job_logs(world, "support-bot-v1", PROGRESS)
    code, out, _ = _launch(_write(tmp_path, VALID_REQUEST), "--wait", "--poll-seconds", "0", "--metrics-only")
    assert code == launch.OK
    assert (
        "train:loss=1.2345  train:learning_rate=9e-05  train:epoch=0.5  train:tokens_per_second=8123.4" in out
    )
    assert "validation:loss=1.3" in out
    assert "1200 rows" not in out, "plain log lines are left out"


def test_a_failed_job_exits_1_with_its_reason(world, tmp_path, monkeypatch):
    job_outcome(monkeypatch, {"support-bot-v1": ("Failed", "AlgorithmError: CUDA out of memory")})
    code, _, err = _launch(_write(tmp_path, VALID_REQUEST), "--wait", "--poll-seconds", "0")
    assert code == launch.FAILED
    assert (
        "failed: " in err and "training job support-bot-v1 Failed: AlgorithmError: CUDA out of memory" in err
    ), err


def test_start_without_wait_names_the_execution_after_the_adapter(world, tmp_path):
    code, out, _ = _launch(_write(tmp_path, VALID_REQUEST))
    assert code == launch.OK and out.startswith("started "), out
    (execution,) = world.sfn.list_executions(stateMachineArn=world.state_machine_arn)["executions"]
    assert execution["name"].startswith("support-bot-"), execution["name"]
    # Let it finish here: moto's interpreter thread would otherwise write into the next test's world.
    world.wait(execution["executionArn"])


def test_an_invalid_request_exits_2_and_starts_nothing(world, tmp_path):
    code, _, err = _launch(_write(tmp_path, {**VALID_REQUEST, "instance_cuont": 4, "adapter_name": "a_b"}))
    assert code == launch.INVALID
    assert "invalid request, nothing was started" in err
    assert (
        "  instance_cuont: unknown field (did you mean instance_count?)" in err and "  adapter_name: " in err
    )
    assert world.sfn.list_executions(stateMachineArn=world.state_machine_arn)["executions"] == []


def test_a_missing_dataset_is_found_before_anything_starts(world, tmp_path):
    code, _, err = _launch(
        _write(tmp_path, {**VALID_REQUEST, "train_data": f"s3://{BUCKET}/datasets/nope.jsonl"})
    )
    assert code == launch.INVALID and f"train_data: s3://{BUCKET}/datasets/nope.jsonl does not exist" in err
    assert world.sfn.list_executions(stateMachineArn=world.state_machine_arn)["executions"] == []


def test_a_taken_execution_name_is_a_usage_error(world, tmp_path):
    assert _launch(_write(tmp_path, VALID_REQUEST), "--name", "same", "--wait", "--poll-seconds", "0")[0] == 0
    code, _, err = _launch(_write(tmp_path, {**VALID_REQUEST, "adapter_name": "other"}), "--name", "same")
    assert code == launch.INVALID and "an execution named same exists already" in err, err


def _held_in_progress(world, monkeypatch, tmp_path) -> str:
    """Start an execution whose job keeps running; return its name once the job exists."""
    job_outcome(monkeypatch, {"support-bot-v1": ("InProgress", None)})
    assert _launch(_write(tmp_path, VALID_REQUEST), "--name", "long-run")[0] == 0
    for _ in range(200):
        if world.sagemaker.list_training_jobs()["TrainingJobSummaries"]:
            return "long-run"
        time.sleep(0.05)
    raise AssertionError("the job was never created")


def test_stop_stops_the_execution_and_its_job(world, monkeypatch, tmp_path):
    name = _held_in_progress(world, monkeypatch, tmp_path)
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    stubber = Stubber(sagemaker)
    described = world.sagemaker.describe_training_job(TrainingJobName="support-bot-v1")
    described.pop("ResponseMetadata")
    stubber.add_response("describe_training_job", described, {"TrainingJobName": "support-bot-v1"})
    stubber.add_response("stop_training_job", {}, {"TrainingJobName": "support-bot-v1"})
    real_client = launch.Aws.client
    monkeypatch.setattr(
        launch.Aws, "client", lambda self, n: sagemaker if n == "sagemaker" else real_client(self, n)
    )
    with stubber:
        code, out, err = _launch("stop", name)
        stubber.assert_no_pending_responses()
    assert code == launch.OK, err
    arn = f"{world.state_machine_arn.replace(':stateMachine:', ':execution:')}:{name}"
    assert f"stopped {arn}" in out and "training job support-bot-v1: Stopping" in out, out
    assert world.wait(arn, timeout=10).status == "ABORTED"


def test_stop_of_an_ended_execution_does_nothing(world, tmp_path):
    assert _launch(_write(tmp_path, VALID_REQUEST), "--name", "done", "--wait", "--poll-seconds", "0")[0] == 0
    code, out, _ = _launch("stop", "done")
    assert code == launch.OK and "has already ended: SUCCEEDED" in out


def test_stop_of_an_unknown_execution_is_a_usage_error(world):
    code, _, err = _launch("stop", "never-started")
    assert code == launch.INVALID and "no execution never-started" in err


def test_status_lists_recent_executions_with_their_adapters(world, tmp_path):
    assert (
        _launch(_write(tmp_path, VALID_REQUEST), "--name", "first", "--wait", "--poll-seconds", "0")[0] == 0
    )
    code, out, _ = _launch("status")
    assert code == launch.OK
    header, row = out.splitlines()
    assert header.split() == ["NAME", "STATUS", "STARTED", "(UTC)", "ADAPTER"]
    assert row.split()[:2] == ["first", "SUCCEEDED"] and row.split()[-1] == "support-bot"


def test_validate_only_needs_no_aws(tmp_path, monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    assert _launch(_write(tmp_path, VALID_REQUEST), "--validate-only")[0] == launch.OK
    code, _, err = _launch(_write(tmp_path, {**VALID_REQUEST, "job_name": "a_b"}), "--validate-only")
    assert code == launch.INVALID and "job_name: " in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["missing.json"], "missing.json: no such file"),
        (["--no-such-flag"], ""),
        (["status", "--limit", "many"], ""),
        (["stop"], ""),
    ],
)
def test_usage_errors_exit_2_without_a_traceback(tmp_path, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    code, out, err = _launch(*argv)
    assert code == launch.INVALID and "Traceback" not in out + err
    assert message in err


def test_a_request_that_is_not_json_is_a_usage_error(tmp_path):
    path = tmp_path / "request.json"
    path.write_text("{recipe: lora")
    code, _, err = _launch(str(path), "--validate-only")
    assert code == launch.INVALID and "not valid JSON" in err


def test_no_credentials_exit_3(tmp_path, monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    code, out, err = _launch(_write(tmp_path, VALID_REQUEST), "--data-bucket", BUCKET)
    assert code == launch.AWS_ACCESS and "AWS: Unable to locate credentials" in err, err
    assert "Traceback" not in out + err


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        ("ValidationError", "stack LlmFt-TrainingPipeline does not exist in us-east-1"),
        ("AccessDenied", "AWS: AccessDenied: not allowed"),
    ],
)
def test_stack_outputs_read_through_cloudformation_and_its_errors_exit_3(
    tmp_path, monkeypatch, error, expected
):
    cloudformation = boto3.client(
        "cloudformation", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="y"
    )
    stubber = Stubber(cloudformation)
    message = (
        "Stack with id LlmFt-TrainingPipeline does not exist" if error == "ValidationError" else "not allowed"
    )
    stubber.add_client_error(
        "describe_stacks", error, message, expected_params={"StackName": "LlmFt-TrainingPipeline"}
    )
    monkeypatch.setattr(launch.Aws, "client", lambda self, name: cloudformation)
    with stubber:
        code, _, err = _launch("status")
    assert code == launch.AWS_ACCESS and expected in err, err


def test_stack_outputs_give_the_state_machine(monkeypatch):
    cloudformation = boto3.client(
        "cloudformation", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="y"
    )
    stubber = Stubber(cloudformation)
    outputs = [
        {"OutputKey": "StateMachineArn", "OutputValue": "arn:aws:states:us-east-1:1:stateMachine:m"},
        {"OutputKey": "DataBucketName", "OutputValue": BUCKET},
    ]
    stack = {
        "StackName": "LlmFt-TrainingPipeline",
        "CreationTime": "2026-12-01T00:00:00Z",
        "StackStatus": "CREATE_COMPLETE",
    }
    stubber.add_response(
        "describe_stacks",
        {"Stacks": [{**stack, "Outputs": outputs}]},
        {"StackName": "LlmFt-TrainingPipeline"},
    )
    monkeypatch.setattr(launch.Aws, "client", lambda self, name: cloudformation)
    args = launch.parse_args(["status"], "LlmFt-TrainingPipeline")
    with stubber:
        aws = launch.Aws(args)
        assert aws.state_machine_arn() == "arn:aws:states:us-east-1:1:stateMachine:m"
        assert aws.output("DataBucketName") == BUCKET


@pytest.mark.parametrize(
    ("arn", "domain"),
    [
        ("arn:aws:states:eu-west-1:1:execution:m:e", "https://eu-west-1.console.aws.amazon.com/"),
        ("arn:aws-cn:states:cn-north-1:1:execution:m:e", "https://cn-north-1.console.amazonaws.cn/"),
        (
            "arn:aws-us-gov:states:us-gov-west-1:1:execution:m:e",
            "https://us-gov-west-1.console.amazonaws-us-gov.com/",
        ),
    ],
)
def test_console_links_follow_the_partition(arn, domain):
    links = launch.console_links(arn, "job-1")
    assert all(link.startswith(domain) for link in links.values()), links


def test_an_execution_arn_is_built_beside_its_state_machine():
    machine = "arn:aws-cn:states:cn-north-1:123456789012:stateMachine:llmft"
    assert (
        launch.execution_arn_for(machine, "run-1")
        == "arn:aws-cn:states:cn-north-1:123456789012:execution:llmft:run-1"
    )
    assert launch.execution_arn_for(machine, "arn:x") == "arn:x"


def test_the_manifest_path_the_launcher_reports_is_the_pipelines(world, tmp_path):
    code, out, _ = _launch(_write(tmp_path, VALID_REQUEST), "--wait", "--poll-seconds", "0")
    assert code == launch.OK
    assert world.s3.get_object(Bucket=BUCKET, Key=MANIFEST)["Body"].read()
