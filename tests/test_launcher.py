"""The launcher CLI: validation before anything starts, start, --wait progress, exit statuses."""

import io
import json

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws
from moto.sagemaker import models as sagemaker_models

from tests.pipeline_moto import BUCKET, REGION, PipelineWorld
from tests.test_training_pipeline_execution import VALID_REQUEST
from training_pipeline import launch


@pytest.fixture
def world(full_app):
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        yield PipelineWorld(full_app.template(full_app.stacks.training_pipeline))


def _write(tmp_path, request) -> str:
    path = tmp_path / "request.json"
    path.write_text(json.dumps(request))
    return str(path)


def _launch(*argv):
    out, err = io.StringIO(), io.StringIO()
    code = launch.main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def _pipeline_stack(world, monkeypatch) -> list[str]:
    """The TrainingPipeline stack's outputs, as CloudFormation would return them (moto's CloudFormation
    needs packages this project does not install); returns the stack names asked for."""
    asked = []

    def outputs(cloudformation, stack_name):
        asked.append(stack_name)
        return {"StateMachineArn": world.state_machine_arn, "DataBucketName": BUCKET}

    monkeypatch.setattr(launch, "stack_outputs", outputs)
    return asked


def test_start_and_wait_reads_the_stack_outputs_and_reports_success(world, tmp_path, monkeypatch):
    asked = _pipeline_stack(world, monkeypatch)
    code, out, err = _launch(
        _write(tmp_path, VALID_REQUEST),
        "--region",
        REGION,
        "--wait",
        "--poll-seconds",
        "0",
        "--name",
        "cli-run",
    )
    assert code == 0, err
    assert asked == ["LlmFt-TrainingPipeline"], "the stack name comes from cdk.json's stack_prefix"
    assert "started arn:aws:states:" in out and ":cli-run" in out, out
    assert "execution SUCCEEDED | job support-bot-v1 Completed/Completed" in out, out
    manifest = json.loads(out.split("succeeded: ", 1)[1])
    assert manifest["adapter_name"] == "support-bot" and manifest["training_job_name"] == "support-bot-v1"


def test_start_without_wait_returns_at_once(world, tmp_path):
    code, out, _ = _launch(
        _write(tmp_path, VALID_REQUEST),
        "--region",
        REGION,
        "--state-machine-arn",
        world.state_machine_arn,
        "--data-bucket",
        BUCKET,
    )
    assert code == 0 and out.startswith("started "), out
    (execution,) = world.sfn.list_executions(stateMachineArn=world.state_machine_arn)["executions"]
    # Let it finish here: moto's interpreter thread would otherwise write into the next test's world.
    assert world.wait(execution["executionArn"]).status == "SUCCEEDED"


def test_a_failed_execution_exits_1_with_its_error_and_cause(world, tmp_path, monkeypatch):
    original = sagemaker_models.FakeTrainingJob.__init__

    def failing(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self.training_job_status = self.secondary_status = "Failed"
        self.failure_reason = "AlgorithmError: out of memory"

    monkeypatch.setattr(sagemaker_models.FakeTrainingJob, "__init__", failing)
    code, out, err = _launch(
        _write(tmp_path, VALID_REQUEST),
        "--region",
        REGION,
        "--state-machine-arn",
        world.state_machine_arn,
        "--data-bucket",
        BUCKET,
        "--wait",
        "--poll-seconds",
        "0",
    )
    assert code == 1
    assert "failed: TrainingJobFailed: AlgorithmError: out of memory" in err, err
    assert "job support-bot-v1 Failed/Failed" in out, out


def test_an_invalid_request_exits_2_naming_the_fields_and_starts_nothing(world, tmp_path):
    request = {**VALID_REQUEST, "instance_count": 1.5, "train_data": "s3://other-bucket/datasets/x.jsonl"}
    request["learning_rate"] = "1e-4"
    code, _, err = _launch(
        _write(tmp_path, request),
        "--region",
        REGION,
        "--state-machine-arn",
        world.state_machine_arn,
        "--data-bucket",
        BUCKET,
    )
    assert code == 2
    assert "invalid request, nothing was started" in err
    assert "instance_count: 1.5 is not of type 'integer'" in err, err
    assert "train_data: must be an S3 URI in the data bucket under datasets/" in err, err
    assert "'learning_rate' was unexpected" in err, err
    assert world.sfn.list_executions(stateMachineArn=world.state_machine_arn)["executions"] == []


def test_validate_only_needs_no_aws(tmp_path):
    code, out, _ = _launch(_write(tmp_path, VALID_REQUEST), "--validate-only")
    assert code == 0 and out.endswith(": valid\n"), out
    code, _, err = _launch(
        _write(tmp_path, VALID_REQUEST), "--validate-only", "--data-bucket", "another-bucket"
    )
    assert code == 2 and "train_data: must be an S3 URI in the data bucket" in err, err


def test_a_file_that_is_not_json_exits_2(tmp_path):
    path = tmp_path / "request.json"
    path.write_text("{recipe: lora}")
    code, _, err = _launch(str(path), "--validate-only")
    assert code == 2 and "not valid JSON" in err, err


def test_stack_outputs_are_read_from_describe_stacks():
    cloudformation = boto3.client("cloudformation", region_name=REGION)
    with Stubber(cloudformation) as stub:
        stub.add_response(
            "describe_stacks",
            {
                "Stacks": [
                    {
                        "StackName": "LlmFt-TrainingPipeline",
                        "CreationTime": "2026-01-01T00:00:00Z",
                        "StackStatus": "CREATE_COMPLETE",
                        "Outputs": [{"OutputKey": "StateMachineArn", "OutputValue": "arn:sm"}],
                    }
                ]
            },
            {"StackName": "LlmFt-TrainingPipeline"},
        )
        assert launch.stack_outputs(cloudformation, "LlmFt-TrainingPipeline") == {"StateMachineArn": "arn:sm"}


def scheduled(name, resource="createTrainingJob"):
    return {
        "taskScheduledEventDetails": {
            "resource": resource,
            "parameters": json.dumps({"TrainingJobName": name}),
        }
    }


def test_the_newest_training_job_is_found_in_the_history():
    newest_first = [{"type": "WaitStateEntered"}, scheduled("job-r2"), scheduled("job")]
    assert launch.job_name_from_history(newest_first) == "job-r2"
    assert launch.job_name_from_history([{"type": "PassStateEntered"}]) is None


def test_a_long_job_is_found_from_its_polls_once_its_creation_left_the_newest_page():
    """After about 11 polls the createTrainingJob event is no longer among the newest 100 events."""
    poll = [
        {"type": "WaitStateEntered"},
        scheduled("job-r2", "describeTrainingJob"),
        {"type": "ChoiceStateExited"},
    ]
    assert launch.job_name_from_history(poll * 33) == "job-r2"


def test_progress_line_shows_elapsed_state_and_job_status():
    job = {"TrainingJobName": "j", "TrainingJobStatus": "InProgress", "SecondaryStatus": "Downloading"}
    assert (
        launch.progress_line(125.7, "RUNNING", job)
        == "[02:05] execution RUNNING | job j InProgress/Downloading"
    )
    assert launch.progress_line(3, "RUNNING", None) == "[00:03] execution RUNNING"


def test_a_job_scheduled_but_not_yet_created_is_shown_as_such():
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    with Stubber(sagemaker) as stub:
        stub.add_client_error("describe_training_job", "ValidationException", "Could not find training job")
        job = launch._describe_job(sagemaker, "support-bot-v1")
    assert job == {"TrainingJobName": "support-bot-v1", "TrainingJobStatus": "NotCreatedYet"}
    assert launch.progress_line(0, "RUNNING", job).endswith("job support-bot-v1 NotCreatedYet/-")
